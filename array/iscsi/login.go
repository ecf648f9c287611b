package iscsi

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Login stages (CSG/NSG).
const (
	stageSecurity    = 0
	stageOperational = 1
	stageFullFeature = 3
)

// Login status classes and details (11.13.5).
const (
	statusSuccess         = 0x0000
	statusInitiatorError  = 0x0200
	statusAuthFailure     = 0x0201
	statusNotFound        = 0x0203
	statusUnsupportedVer  = 0x0205
	statusMissingParam    = 0x0207
	statusSessionNotFound = 0x020a
	statusTargetError     = 0x0300
	statusOutOfResources  = 0x0302
)

// loginError ends a login with a status; reason is for the log.
type loginError struct {
	status uint16
	reason string
}

func (e *loginError) Error() string { return fmt.Sprintf("login status %04x: %s", e.status, e.reason) }

func loginFail(status uint16, format string, args ...any) *loginError {
	return &loginError{status: status, reason: fmt.Sprintf(format, args...)}
}

// loginState is the negotiation in progress.
type loginState struct {
	started   bool
	stage     int
	itt       uint32
	text      []byte // accumulated over C-bit PDUs
	auth      Auth
	needAuth  bool
	authDone  bool
	chap      int // 0 none, 1 method chosen, 2 challenge sent
	chapID    byte
	chapChal  []byte
	sentMRDSL bool
	sentTPGT  bool
}

// login runs the login phase. It returns true when the connection is in
// the full feature phase.
func (c *conn) login() bool {
	c.nc.SetDeadline(time.Now().Add(c.s.opts.LoginTimeout))
	var st loginState
	var p pdu
	for {
		if err := c.pr.read(&p); err != nil {
			if c.ctx.Err() == nil && !isEOF(err) {
				c.protocolError("login: reading a PDU", err)
			}
			return false
		}
		if p.opcode() != opLoginReq {
			c.protocolError("login: a non-login PDU before the full feature phase", fmt.Errorf("opcode %#x", p.opcode()))
			return false
		}
		done, err := c.loginStep(&st, &p)
		if err != nil {
			var le *loginError
			if !errors.As(err, &le) {
				le = &loginError{status: statusTargetError, reason: err.Error()}
			}
			c.s.refused.Add(1)
			c.log.Warn("iscsi: login refused", "remote", c.remote, "initiator", c.initiator,
				"target", c.target, "status", fmt.Sprintf("%04x", le.status), "reason", le.reason)
			c.writeLoginResponse(&p, &st, le.status, nil, false, 0)
			return false
		}
		if done {
			c.nc.SetDeadline(time.Time{})
			c.s.logins.Add(1)
			kind := "normal"
			if c.discovery {
				kind = "discovery"
			}
			c.log.Info("iscsi: login", "remote", c.remote, "initiator", c.initiator, "target", c.target,
				"session", kind, "tsih", c.tsih, "header_digest", c.headerDigest, "data_digest", c.dataDigest)
			return true
		}
	}
}

func isEOF(err error) bool {
	return errors.Is(err, errEOF) || strings.Contains(err.Error(), "EOF") ||
		strings.Contains(err.Error(), "connection reset")
}

// loginStep handles one Login Request. It returns true after the final
// response (transition to the full feature phase).
func (c *conn) loginStep(st *loginState, p *pdu) (bool, error) {
	flags := p.flags()
	transit, cont := flags&0x80 != 0, flags&0x40 != 0
	csg, nsg := int(flags>>2&3), int(flags&3)
	if transit && cont {
		return false, loginFail(statusInitiatorError, "both T and C bits set")
	}
	if p.bhs[3] > 0 { // Version-min
		return false, loginFail(statusUnsupportedVer, "version-min %d, only version 0 is supported", p.bhs[3])
	}
	if !st.started {
		if csg != stageSecurity && csg != stageOperational {
			return false, loginFail(statusInitiatorError, "first login PDU with CSG %d", csg)
		}
		st.started = true
		st.stage = csg
		st.itt = p.itt()
		copy(c.isid[:], p.bhs[8:14])
		if tsih := binary.BigEndian.Uint16(p.bhs[14:]); tsih != 0 {
			return false, loginFail(statusSessionNotFound, "login to add a connection to session %d: one connection per session", tsih)
		}
		c.cid = binary.BigEndian.Uint16(p.bhs[20:])
		c.expCmdSN = p.u32(24)
		c.statSN = p.u32(28)
	} else if csg != st.stage {
		return false, loginFail(statusInitiatorError, "CSG %d while in stage %d", csg, st.stage)
	}
	if len(st.text)+len(p.data) > maxLoginText {
		return false, loginFail(statusInitiatorError, "login text over %d bytes", maxLoginText)
	}
	st.text = append(st.text, p.data...)
	if cont {
		// More text follows: answer with an empty response.
		c.writeLoginResponse(p, st, statusSuccess, nil, false, 0)
		return false, nil
	}
	kv, err := parseText(st.text)
	st.text = st.text[:0]
	if err != nil {
		return false, loginFail(statusInitiatorError, "%v", err)
	}
	if c.initiator == "" {
		if err := c.startLogin(st, kv, csg); err != nil {
			return false, err
		}
	}
	resp, err := c.negotiate(st, kv, csg)
	if err != nil {
		return false, err
	}
	if transit {
		switch {
		case csg == stageSecurity && (nsg == stageOperational || nsg == stageFullFeature):
		case csg == stageOperational && nsg == stageFullFeature:
		default:
			return false, loginFail(statusInitiatorError, "transition from stage %d to %d", csg, nsg)
		}
		if csg == stageSecurity && !st.authDone {
			if st.chap == 0 && st.needAuth {
				return false, loginFail(statusAuthFailure, "leaving the security stage without authenticating")
			}
			if st.chap != 0 {
				// CHAP has steps to go: stay in the stage (T=0).
				transit = false
			}
		}
	}
	if (csg == stageOperational || (transit && nsg == stageFullFeature)) && !st.sentMRDSL {
		resp = appendText(resp, "MaxRecvDataSegmentLength", strconv.Itoa(c.s.opts.MaxRecvDataSegmentLength))
		st.sentMRDSL = true
	}
	final := transit && nsg == stageFullFeature
	if final {
		c.tsih = uint16(c.s.tsih.Add(1))
		if c.tsih == 0 {
			c.tsih = uint16(c.s.tsih.Add(1))
		}
	}
	c.writeLoginResponse(p, st, statusSuccess, resp, transit, nsg)
	if transit {
		st.stage = nsg
	}
	return final, nil
}

// startLogin reads the first PDU's InitiatorName, SessionType and
// TargetName and asks Targets which credentials the login needs.
func (c *conn) startLogin(st *loginState, kv [][2]string, csg int) error {
	sessionType := "Normal"
	for _, p := range kv {
		switch p[0] {
		case "InitiatorName":
			c.initiator = p[1]
		case "TargetName":
			c.target = p[1]
		case "SessionType":
			sessionType = p[1]
		}
	}
	if c.initiator == "" {
		return loginFail(statusMissingParam, "no InitiatorName in the first login PDU")
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.s.opts.LoginTimeout)
	defer cancel()
	var err error
	switch sessionType {
	case "Discovery":
		c.discovery = true
		st.auth, err = c.s.targets.DiscoveryAuth(ctx, c.initiator)
	case "Normal":
		if c.target == "" {
			return loginFail(statusMissingParam, "no TargetName in a normal session's first login PDU")
		}
		st.auth, err = c.s.targets.Login(ctx, c.initiator, c.target)
	default:
		return loginFail(statusInitiatorError, "SessionType %q", sessionType)
	}
	switch {
	case errors.Is(err, ErrUnknownInitiator):
		return loginFail(statusAuthFailure, "initiator not authorised")
	case errors.Is(err, ErrUnknownTarget):
		return loginFail(statusNotFound, "no such target")
	case err != nil:
		return loginFail(statusTargetError, "looking up the initiator: %v", err)
	}
	st.needAuth = st.auth.User != ""
	if st.needAuth && csg != stageSecurity {
		return loginFail(statusAuthFailure, "CHAP is required and the initiator skipped the security stage")
	}
	return nil
}

// negotiate answers the keys of one login request.
func (c *conn) negotiate(st *loginState, kv [][2]string, csg int) ([]byte, error) {
	var resp []byte
	var chapN, chapR, chapI, chapC string
	var haveN, haveR, haveI, haveC bool
	if !st.sentTPGT && !c.discovery {
		resp = appendText(resp, "TargetPortalGroupTag", strconv.Itoa(int(c.s.opts.TargetPortalGroupTag)))
		if c.s.opts.TargetAlias != "" {
			resp = appendText(resp, "TargetAlias", c.s.opts.TargetAlias)
		}
		st.sentTPGT = true
	}
	for _, p := range kv {
		key, val := p[0], p[1]
		switch key {
		case "InitiatorName", "TargetName", "SessionType", "InitiatorAlias":
			// Taken by startLogin or declarative.
		case "AuthMethod":
			if csg != stageSecurity {
				resp = appendText(resp, key, "Irrelevant")
				continue
			}
			methods := strings.Split(val, ",")
			switch {
			case st.needAuth && slices.Contains(methods, "CHAP"):
				resp = appendText(resp, key, "CHAP")
				st.chap = 1
			case !st.needAuth && slices.Contains(methods, "None"):
				resp = appendText(resp, key, "None")
				st.authDone = true
			default:
				return nil, loginFail(statusAuthFailure, "AuthMethod %q offers no method the target accepts", val)
			}
		case "CHAP_A":
			if st.chap != 1 {
				return nil, loginFail(statusInitiatorError, "CHAP_A before AuthMethod=CHAP")
			}
			if !slices.Contains(strings.Split(val, ","), "5") {
				return nil, loginFail(statusAuthFailure, "CHAP_A %q: only 5 (MD5) is supported", val)
			}
			st.chapChal = make([]byte, 16)
			var id [1]byte
			rand.Read(st.chapChal)
			rand.Read(id[:])
			st.chapID = id[0]
			resp = appendText(resp, "CHAP_A", "5")
			resp = appendText(resp, "CHAP_I", strconv.Itoa(int(st.chapID)))
			resp = appendText(resp, "CHAP_C", "0x"+hex.EncodeToString(st.chapChal))
			st.chap = 2
		case "CHAP_N":
			chapN, haveN = val, true
		case "CHAP_R":
			chapR, haveR = val, true
		case "CHAP_I":
			chapI, haveI = val, true
		case "CHAP_C":
			chapC, haveC = val, true
		case "HeaderDigest", "DataDigest":
			choice := ""
			for _, d := range strings.Split(val, ",") {
				if d == "CRC32C" || d == "None" {
					choice = d
					break
				}
			}
			if choice == "" {
				resp = appendText(resp, key, "Reject")
				continue
			}
			if key == "HeaderDigest" {
				c.headerDigest = choice == "CRC32C"
			} else {
				c.dataDigest = choice == "CRC32C"
			}
			resp = appendText(resp, key, choice)
		case "MaxRecvDataSegmentLength":
			n, ok := parseNumber(val, minDataSegment, maxDataSegment)
			if !ok {
				resp = appendText(resp, key, "Reject")
				continue
			}
			c.maxSendData = n
		case "MaxBurstLength", "FirstBurstLength":
			n, ok := parseNumber(val, minDataSegment, maxDataSegment)
			if !ok {
				resp = appendText(resp, key, "Reject")
				continue
			}
			if key == "MaxBurstLength" {
				c.maxBurst = min(n, c.s.opts.MaxBurstLength)
				resp = appendText(resp, key, strconv.Itoa(c.maxBurst))
			} else {
				c.firstBurst = min(n, c.s.opts.FirstBurstLength)
				resp = appendText(resp, key, strconv.Itoa(c.firstBurst))
			}
		case "ImmediateData", "InitialR2T", "DataPDUInOrder", "DataSequenceInOrder", "IFMarker", "OFMarker":
			b, ok := parseBool(val)
			if !ok {
				resp = appendText(resp, key, "Reject")
				continue
			}
			switch key {
			case "ImmediateData": // AND: the target accepts either
				c.immediateData = b
			case "InitialR2T": // OR: the target accepts either
				c.initialR2T = b
			case "DataPDUInOrder", "DataSequenceInOrder": // OR: the target wants Yes
				b = true
			case "IFMarker", "OFMarker": // AND: no markers
				b = false
			}
			resp = appendText(resp, key, formatBool(b))
		case "MaxConnections", "MaxOutstandingR2T":
			if _, ok := parseNumber(val, 1, 65535); !ok {
				resp = appendText(resp, key, "Reject")
				continue
			}
			resp = appendText(resp, key, "1")
		case "ErrorRecoveryLevel", "DefaultTime2Retain":
			if _, ok := parseNumber(val, 0, 3600); !ok {
				resp = appendText(resp, key, "Reject")
				continue
			}
			resp = appendText(resp, key, "0")
		case "DefaultTime2Wait":
			n, ok := parseNumber(val, 0, 3600)
			if !ok {
				resp = appendText(resp, key, "Reject")
				continue
			}
			resp = appendText(resp, key, strconv.Itoa(max(n, 2)))
		case "OFMarkInt", "IFMarkInt":
			resp = appendText(resp, key, "Irrelevant")
		case "iSCSIProtocolLevel":
			n, ok := parseNumber(val, 0, 31)
			if !ok {
				resp = appendText(resp, key, "Reject")
				continue
			}
			resp = appendText(resp, key, strconv.Itoa(min(n, 1)))
		case "TaskReporting":
			resp = appendText(resp, key, "RFC3720")
		case "TargetAlias", "TargetAddress", "TargetPortalGroupTag", "SendTargets":
			resp = appendText(resp, key, "Irrelevant")
		default:
			resp = appendText(resp, key, "NotUnderstood")
		}
	}
	if haveN || haveR || haveI || haveC {
		out, err := c.chapRespond(st, chapN, chapR, chapI, chapC, haveN && haveR, haveI || haveC)
		if err != nil {
			return nil, err
		}
		resp = append(resp, out...)
	}
	return resp, nil
}

// chapRespond checks the initiator's CHAP answer and, for mutual CHAP,
// answers the initiator's challenge.
func (c *conn) chapRespond(st *loginState, name, response, idStr, chal string, answered, mutual bool) ([]byte, error) {
	if st.chap != 2 || !answered {
		return nil, loginFail(statusInitiatorError, "CHAP_N/CHAP_R/CHAP_I/CHAP_C out of sequence")
	}
	r, err := decodeCHAPBinary(response)
	if err != nil {
		return nil, loginFail(statusAuthFailure, "CHAP_R: %v", err)
	}
	h := md5.New()
	h.Write([]byte{st.chapID})
	h.Write([]byte(st.auth.Secret))
	h.Write(st.chapChal)
	want := h.Sum(nil)
	userOK := subtle.ConstantTimeCompare([]byte(name), []byte(st.auth.User)) == 1
	if subtle.ConstantTimeCompare(r, want) != 1 || !userOK {
		return nil, loginFail(statusAuthFailure, "CHAP response does not match the user and secret")
	}
	st.chap = 3
	if !mutual {
		st.authDone = true
		return nil, nil
	}
	if st.auth.MutualUser == "" {
		return nil, loginFail(statusAuthFailure, "the initiator asks for mutual CHAP and none is configured")
	}
	id, err := strconv.ParseUint(idStr, 0, 8)
	if err != nil {
		return nil, loginFail(statusAuthFailure, "CHAP_I %q", idStr)
	}
	ch, err := decodeCHAPBinary(chal)
	if err != nil || len(ch) == 0 || len(ch) > 1024 {
		return nil, loginFail(statusAuthFailure, "CHAP_C is malformed")
	}
	if subtle.ConstantTimeCompare(ch, st.chapChal) == 1 {
		return nil, loginFail(statusAuthFailure, "the initiator's CHAP challenge repeats the target's")
	}
	h = md5.New()
	h.Write([]byte{byte(id)})
	h.Write([]byte(st.auth.MutualSecret))
	h.Write(ch)
	var out []byte
	out = appendText(out, "CHAP_N", st.auth.MutualUser)
	out = appendText(out, "CHAP_R", "0x"+hex.EncodeToString(h.Sum(nil)))
	st.authDone = true
	return out, nil
}

// decodeCHAPBinary decodes a CHAP binary value: 0x hex or 0b base64.
func decodeCHAPBinary(s string) ([]byte, error) {
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		return hex.DecodeString(s[2:])
	}
	if len(s) > 2 && (s[:2] == "0b" || s[:2] == "0B") {
		return base64.StdEncoding.DecodeString(s[2:])
	}
	return nil, errors.New("not a 0x or 0b encoded value")
}

func parseNumber(s string, lo, hi int) (int, bool) {
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil || n < int64(lo) {
		return 0, false
	}
	return int(min(n, int64(hi))), true
}

func parseBool(s string) (bool, bool) {
	switch s {
	case "Yes":
		return true, true
	case "No":
		return false, true
	}
	return false, false
}

func formatBool(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// writeLoginResponse answers a login request.
func (c *conn) writeLoginResponse(req *pdu, st *loginState, status uint16, data []byte, transit bool, nsg int) {
	var bhs [bhsLen]byte
	bhs[0] = opLoginResp
	flags := req.flags() & 0x0c // CSG
	if transit {
		flags |= 0x80 | byte(nsg)
	}
	bhs[1] = flags
	copy(bhs[8:14], c.isid[:])
	binary.BigEndian.PutUint16(bhs[14:], c.tsih)
	copy(bhs[16:20], req.bhs[16:20])
	binary.BigEndian.PutUint32(bhs[24:], c.statSN)
	c.statSN++
	binary.BigEndian.PutUint32(bhs[28:], c.expCmdSN)
	binary.BigEndian.PutUint32(bhs[32:], c.expCmdSN+uint32(c.s.opts.QueueDepth)-1)
	binary.BigEndian.PutUint16(bhs[36:], status)
	if status != statusSuccess {
		bhs[1] = req.flags() & 0x0c
		data = nil
	}
	buf := appendPDU(nil, &bhs, data, false, false)
	c.nc.Write(buf)
}
