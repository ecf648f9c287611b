package iscsi

// A tiny hand-rolled initiator for raw-protocol tests: exact PDUs, bad
// ones included. It is synchronous (one command at a time) unless a test
// drives the PDUs itself.

import (
	"bufio"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

type rawClient struct {
	t          testing.TB
	nc         net.Conn
	pr         pduReader
	itt        uint32
	cmdSN      uint32
	expStatSN  uint32
	hd, dd     bool
	maxBurst   int
	firstBurst int
	immediate  bool
	initialR2T bool
	tsih       uint16
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawClient{t: t, nc: nc, pr: pduReader{r: bufio.NewReaderSize(nc, 1<<20), maxData: maxDataSegment},
		maxBurst: 262144, firstBurst: 65536, immediate: true, initialR2T: true}
}

// send writes one PDU, digests as negotiated.
func (c *rawClient) send(bhs [bhsLen]byte, data []byte) error {
	_, err := c.nc.Write(appendPDU(nil, &bhs, data, c.hd, c.dd))
	return err
}

func (c *rawClient) recv() (*pdu, error) {
	var p pdu
	if err := c.pr.read(&p); err != nil {
		return nil, err
	}
	if op := p.opcode(); op != opR2T && (op != opDataIn || p.bhs[1]&1 != 0) {
		c.expStatSN = p.u32(24) + 1
	}
	return &p, nil
}

// loginOpts are the keys and credentials of a login.
type loginOpts struct {
	initiator, target string
	discovery         bool
	user, secret      string
	mutualSecret      string // set: challenge the target and check its answer
	keys              []string
	skipInitiatorName bool
	isid              [6]byte // zero: 80 00 00 00 00 01
}

// login runs a login and returns the final status (0 on success).
func (c *rawClient) login(o loginOpts) (uint16, error) {
	stage := 0
	if o.user == "" {
		stage = 1 // operational stage directly
	}
	var text []byte
	if !o.skipInitiatorName {
		text = appendText(text, "InitiatorName", o.initiator)
	}
	if o.discovery {
		text = appendText(text, "SessionType", "Discovery")
	} else {
		text = appendText(text, "TargetName", o.target)
	}
	var chapChal []byte
	sendLogin := func(csg, nsg int, transit bool, text []byte) (*pdu, map[string]string, error) {
		var bhs [bhsLen]byte
		bhs[0] = opLoginReq | immediateBit
		bhs[1] = byte(csg<<2 | nsg)
		if transit {
			bhs[1] |= 0x80
		}
		copy(bhs[8:14], []byte{0x80, 0, 0, 0, 0, 1})
		if o.isid != ([6]byte{}) {
			copy(bhs[8:14], o.isid[:])
		}
		binary.BigEndian.PutUint32(bhs[16:], c.itt)
		binary.BigEndian.PutUint32(bhs[24:], c.cmdSN)
		binary.BigEndian.PutUint32(bhs[28:], c.expStatSN)
		if _, err := c.nc.Write(appendPDU(nil, &bhs, text, false, false)); err != nil {
			return nil, nil, err
		}
		var p pdu
		if err := c.pr.read(&p); err != nil {
			return nil, nil, err
		}
		c.expStatSN = p.u32(24) + 1
		kv, err := parseText(p.data)
		m := map[string]string{}
		for _, x := range kv {
			m[x[0]] = x[1]
		}
		return &p, m, err
	}
	if stage == 0 {
		text = appendText(text, "AuthMethod", "CHAP,None")
		p, _, err := sendLogin(0, 1, false, text)
		if err != nil {
			return 0, err
		}
		if st := binary.BigEndian.Uint16(p.bhs[36:]); st != 0 {
			return st, nil
		}
		p, keys, err := sendLogin(0, 1, false, appendText(nil, "CHAP_A", "5"))
		if err != nil {
			return 0, err
		}
		if st := binary.BigEndian.Uint16(p.bhs[36:]); st != 0 {
			return st, nil
		}
		id, _ := strconv.Atoi(keys["CHAP_I"])
		chal, err := hex.DecodeString(strings.TrimPrefix(keys["CHAP_C"], "0x"))
		if err != nil {
			return 0, fmt.Errorf("CHAP_C %q: %v", keys["CHAP_C"], err)
		}
		h := md5.New()
		h.Write([]byte{byte(id)})
		h.Write([]byte(o.secret))
		h.Write(chal)
		var resp []byte
		resp = appendText(resp, "CHAP_N", o.user)
		resp = appendText(resp, "CHAP_R", "0x"+hex.EncodeToString(h.Sum(nil)))
		if o.mutualSecret != "" {
			chapChal = []byte("0123456789abcdef")
			resp = appendText(resp, "CHAP_I", "7")
			resp = appendText(resp, "CHAP_C", "0x"+hex.EncodeToString(chapChal))
		}
		p, keys, err = sendLogin(0, 1, true, resp)
		if err != nil {
			return 0, err
		}
		if st := binary.BigEndian.Uint16(p.bhs[36:]); st != 0 {
			return st, nil
		}
		if o.mutualSecret != "" {
			h := md5.New()
			h.Write([]byte{7})
			h.Write([]byte(o.mutualSecret))
			h.Write(chapChal)
			if keys["CHAP_R"] != "0x"+hex.EncodeToString(h.Sum(nil)) {
				return 0, fmt.Errorf("the target's mutual CHAP answer %q is wrong", keys["CHAP_R"])
			}
		}
		text = nil
	}
	text = append(text, []byte(strings.Join(append([]string{
		"HeaderDigest=" + map[bool]string{true: "CRC32C", false: "None"}[c.hd],
		"DataDigest=" + map[bool]string{true: "CRC32C", false: "None"}[c.dd],
		"MaxRecvDataSegmentLength=65536", "ImmediateData=Yes",
		"InitialR2T=" + map[bool]string{true: "Yes", false: "No"}[c.initialR2T],
		"MaxBurstLength=262144", "FirstBurstLength=65536", "ErrorRecoveryLevel=0",
	}, o.keys...), "\x00")+"\x00")...)
	hd, dd := c.hd, c.dd
	c.hd, c.dd = false, false
	p, keys, err := sendLogin(1, 3, true, text)
	if err != nil {
		return 0, err
	}
	if st := binary.BigEndian.Uint16(p.bhs[36:]); st != 0 {
		return st, nil
	}
	if p.flags()&0x80 == 0 {
		return 0, fmt.Errorf("the target did not move to the full feature phase")
	}
	c.tsih = binary.BigEndian.Uint16(p.bhs[14:])
	c.hd = hd && keys["HeaderDigest"] == "CRC32C"
	c.dd = dd && keys["DataDigest"] == "CRC32C"
	c.pr.headerDigest, c.pr.dataDigest = c.hd, c.dd
	if v, ok := keys["FirstBurstLength"]; ok {
		c.firstBurst, _ = strconv.Atoi(v)
	}
	if v, ok := keys["MaxBurstLength"]; ok {
		c.maxBurst, _ = strconv.Atoi(v)
	}
	c.immediate = keys["ImmediateData"] != "No"
	c.initialR2T = keys["InitialR2T"] != "No"
	c.cmdSN = p.u32(28)
	return 0, nil
}

func (c *rawClient) mustLogin(o loginOpts) {
	c.t.Helper()
	st, err := c.login(o)
	if err != nil || st != 0 {
		c.t.Fatalf("login: status %04x, %v", st, err)
	}
}

// scsiReply is a command's outcome as the initiator sees it.
type scsiReply struct {
	status   byte
	sense    []byte
	data     []byte
	residual uint32
	resFlags byte
}

func (r scsiReply) senseKey() (byte, uint16) {
	if len(r.sense) < 14 {
		return 0, 0
	}
	return r.sense[2] & 0xf, uint16(r.sense[12])<<8 | uint16(r.sense[13])
}

// cmdPDU builds a SCSI Command PDU.
func (c *rawClient) cmdPDU(lun uint64, cdb []byte, edtl int, read, write bool) [bhsLen]byte {
	var bhs [bhsLen]byte
	bhs[0] = opSCSICmd
	bhs[1] = flagFinal | 1 // SIMPLE
	if read {
		bhs[1] |= 0x40
	}
	if write {
		bhs[1] |= 0x20
	}
	b, _ := encodeLUN(lun)
	copy(bhs[8:16], b[:])
	c.itt++
	binary.BigEndian.PutUint32(bhs[16:], c.itt)
	binary.BigEndian.PutUint32(bhs[20:], uint32(edtl))
	binary.BigEndian.PutUint32(bhs[24:], c.cmdSN)
	c.cmdSN++
	binary.BigEndian.PutUint32(bhs[28:], c.expStatSN)
	copy(bhs[32:48], cdb)
	return bhs
}

// do runs one command: immediate data, R2Ts, Data-In, response.
func (c *rawClient) do(lun uint64, cdb []byte, edtl int, out []byte) (scsiReply, error) {
	read := out == nil && edtl > 0
	bhs := c.cmdPDU(lun, cdb, edtl, read, out != nil)
	itt := c.itt
	var imm []byte
	if out != nil && c.immediate {
		imm = out[:min(len(out), c.firstBurst)]
	}
	if err := c.send(bhs, imm); err != nil {
		return scsiReply{}, err
	}
	var r scsiReply
	for {
		p, err := c.recv()
		if err != nil {
			return r, err
		}
		switch p.opcode() {
		case opR2T:
			off, n := int(p.u32(40)), int(p.u32(44))
			ttt := p.u32(20)
			sn := uint32(0)
			for done := 0; done < n; sn++ {
				seg := min(65536, n-done)
				var d [bhsLen]byte
				d[0] = opDataOut
				if done+seg == n {
					d[1] = flagFinal
				}
				binary.BigEndian.PutUint32(d[16:], itt)
				binary.BigEndian.PutUint32(d[20:], ttt)
				binary.BigEndian.PutUint32(d[28:], c.expStatSN)
				binary.BigEndian.PutUint32(d[36:], sn)
				binary.BigEndian.PutUint32(d[40:], uint32(off+done))
				if err := c.send(d, out[off+done:off+done+seg]); err != nil {
					return r, err
				}
				done += seg
			}
		case opDataIn:
			r.data = append(r.data, p.data...)
			if p.bhs[1]&1 != 0 {
				r.status = p.bhs[3]
				r.residual = p.u32(44)
				r.resFlags = p.bhs[1] & 0x06
				return r, nil
			}
		case opSCSIResp:
			r.status = p.bhs[3]
			r.residual = p.u32(44)
			r.resFlags = p.bhs[1] & 0x06
			if len(p.data) >= 2 {
				n := int(binary.BigEndian.Uint16(p.data))
				if n <= len(p.data)-2 {
					r.sense = p.data[2 : 2+n]
				}
			}
			return r, nil
		default:
			return r, fmt.Errorf("unexpected PDU opcode %#x", p.opcode())
		}
	}
}

func (c *rawClient) mustDo(lun uint64, cdb []byte, edtl int, out []byte) scsiReply {
	c.t.Helper()
	r, err := c.do(lun, cdb, edtl, out)
	if err != nil {
		c.t.Fatalf("command %#x: %v", cdb[0], err)
	}
	return r
}

// nop pings the target and waits for the answer.
func (c *rawClient) nop() error {
	var bhs [bhsLen]byte
	bhs[0] = opNOPOut | immediateBit
	bhs[1] = flagFinal
	c.itt++
	binary.BigEndian.PutUint32(bhs[16:], c.itt)
	binary.BigEndian.PutUint32(bhs[20:], reservedTag)
	binary.BigEndian.PutUint32(bhs[24:], c.cmdSN)
	if err := c.send(bhs, []byte("ping")); err != nil {
		return err
	}
	p, err := c.recv()
	if err != nil {
		return err
	}
	if p.opcode() != opNOPIn || p.itt() != c.itt || string(p.data) != "ping" {
		return fmt.Errorf("NOP-Out answered with opcode %#x itt %#x data %q", p.opcode(), p.itt(), p.data)
	}
	return nil
}

func read10(lba uint32, n uint16) []byte {
	cdb := make([]byte, 10)
	cdb[0] = 0x28
	binary.BigEndian.PutUint32(cdb[2:], lba)
	binary.BigEndian.PutUint16(cdb[7:], n)
	return cdb
}

func write10(lba uint32, n uint16, fua bool) []byte {
	cdb := read10(lba, n)
	cdb[0] = 0x2a
	if fua {
		cdb[1] = 0x08
	}
	return cdb
}
