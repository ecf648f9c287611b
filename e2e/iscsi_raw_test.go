package e2e

// A tiny iSCSI initiator for what no tool sends: exact PDUs, bad ones
// included, and the sense data of single commands. Synchronous, no R2T
// (writes fit in immediate data), no data digests.

import (
	"bufio"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	opNOPOut   = 0x00
	opSCSICmd  = 0x01
	opLoginReq = 0x03
	opSCSIResp = 0x21
	opDataIn   = 0x25
	opReject   = 0x3f
	opNOPIn    = 0x20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type rawISCSI struct {
	t         *testing.T
	nc        net.Conn
	r         *bufio.Reader
	itt       uint32
	cmdSN     uint32
	expStatSN uint32
	hd        bool // header digests negotiated
	keys      map[string]string
}

func dialISCSI(t *testing.T, addr string) *rawISCSI {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(time.Minute))
	return &rawISCSI{t: t, nc: nc, r: bufio.NewReaderSize(nc, 1<<20)}
}

func pad4(n int) int { return (n + 3) &^ 3 }

// send writes one PDU; a header digest when negotiated, wrong if badDigest.
func (c *rawISCSI) send(bhs [48]byte, data []byte, badDigest bool) error {
	binary.BigEndian.PutUint32(bhs[4:], uint32(len(data))) // byte 4 (AHS) stays 0
	b := append([]byte(nil), bhs[:]...)
	if c.hd {
		sum := crc32.Checksum(bhs[:], castagnoli)
		if badDigest {
			sum ^= 1
		}
		b = binary.LittleEndian.AppendUint32(b, sum)
	}
	b = append(b, data...)
	b = append(b, make([]byte, pad4(len(data))-len(data))...)
	_, err := c.nc.Write(b)
	return err
}

// recv reads one PDU: its BHS and data segment.
func (c *rawISCSI) recv() (bhs [48]byte, data []byte, err error) {
	if _, err = io.ReadFull(c.r, bhs[:]); err != nil {
		return
	}
	skip := int(bhs[4]) * 4
	if c.hd {
		skip += 4
	}
	if _, err = c.r.Discard(skip); err != nil {
		return
	}
	n := int(bhs[5])<<16 | int(bhs[6])<<8 | int(bhs[7])
	data = make([]byte, pad4(n))
	if _, err = io.ReadFull(c.r, data); err != nil {
		return
	}
	data = data[:n]
	if op := bhs[0] & 0x3f; op != opDataIn || bhs[1]&1 != 0 {
		c.expStatSN = binary.BigEndian.Uint32(bhs[24:]) + 1
	}
	return
}

func textKeys(kv ...string) []byte { return []byte(strings.Join(kv, "\x00") + "\x00") }

// login logs initiator in to target with CHAP (user, secret) and moves to
// the full feature phase, asking for header digests when hd; it returns
// the login status (0 on success).
func (c *rawISCSI) login(initiator, target, user, secret string, hd bool) (uint16, error) {
	step := func(csg, nsg int, transit bool, text []byte) (uint16, map[string]string, error) {
		var bhs [48]byte
		bhs[0] = opLoginReq | 0x40
		bhs[1] = byte(csg<<2 | nsg)
		if transit {
			bhs[1] |= 0x80
		}
		copy(bhs[8:14], []byte{0x80, 0, 0, 0x2a, 0, 1})
		binary.BigEndian.PutUint32(bhs[24:], c.cmdSN)
		binary.BigEndian.PutUint32(bhs[28:], c.expStatSN)
		if err := c.send(bhs, text, false); err != nil {
			return 0, nil, err
		}
		rb, data, err := c.recv()
		if err != nil {
			return 0, nil, err
		}
		keys := map[string]string{}
		for _, kv := range strings.Split(string(data), "\x00") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				keys[k] = v
			}
		}
		c.cmdSN = binary.BigEndian.Uint32(rb[28:])
		return binary.BigEndian.Uint16(rb[36:]), keys, nil
	}
	st, _, err := step(0, 1, false, textKeys("InitiatorName="+initiator, "TargetName="+target, "SessionType=Normal", "AuthMethod=CHAP,None"))
	if err != nil || st != 0 {
		return st, err
	}
	st, keys, err := step(0, 1, false, textKeys("CHAP_A=5"))
	if err != nil || st != 0 {
		return st, err
	}
	id, _ := strconv.Atoi(keys["CHAP_I"])
	chal, err := hex.DecodeString(strings.TrimPrefix(keys["CHAP_C"], "0x"))
	if err != nil {
		return 0, fmt.Errorf("CHAP_C %q: %v", keys["CHAP_C"], err)
	}
	h := md5.New()
	h.Write([]byte{byte(id)})
	h.Write([]byte(secret))
	h.Write(chal)
	st, _, err = step(0, 1, true, textKeys("CHAP_N="+user, "CHAP_R=0x"+hex.EncodeToString(h.Sum(nil))))
	if err != nil || st != 0 {
		return st, err
	}
	digest := "None"
	if hd {
		digest = "CRC32C"
	}
	st, keys, err = step(1, 3, true, textKeys("HeaderDigest="+digest, "DataDigest=None", "MaxRecvDataSegmentLength=65536",
		"ImmediateData=Yes", "InitialR2T=Yes", "MaxBurstLength=262144", "FirstBurstLength=65536", "ErrorRecoveryLevel=0"))
	if err != nil || st != 0 {
		return st, err
	}
	c.keys = keys
	c.hd = keys["HeaderDigest"] == "CRC32C"
	return 0, nil
}

func (c *rawISCSI) mustLogin(l lunOf, hd bool) {
	c.t.Helper()
	if st, err := c.login(l.Initiator, l.TargetIQN, l.CHAPUser, l.CHAPSecret, hd); err != nil || st != 0 {
		c.t.Fatalf("login of %s: status %04x, %v", l.Initiator, st, err)
	}
}

// cmdPDU builds a SCSI Command PDU for lun (flat addressing below 256,
// single level otherwise).
func (c *rawISCSI) cmdPDU(lun uint64, cdb []byte, edtl int, write bool) [48]byte {
	var bhs [48]byte
	bhs[0] = opSCSICmd
	bhs[1] = 0x80 | 1 // final, SIMPLE
	if write {
		bhs[1] |= 0x20
	} else if edtl > 0 {
		bhs[1] |= 0x40
	}
	if lun < 256 {
		bhs[9] = byte(lun)
	} else {
		binary.BigEndian.PutUint16(bhs[8:], 0x4000|uint16(lun))
	}
	c.itt++
	binary.BigEndian.PutUint32(bhs[16:], c.itt)
	binary.BigEndian.PutUint32(bhs[20:], uint32(edtl))
	binary.BigEndian.PutUint32(bhs[24:], c.cmdSN)
	c.cmdSN++
	binary.BigEndian.PutUint32(bhs[28:], c.expStatSN)
	copy(bhs[32:], cdb)
	return bhs
}

// scsiResult is a command's status, sense key and ASC/ASCQ, and data.
type scsiResult struct {
	status byte
	key    byte
	asc    uint16
	data   []byte
}

func (r scsiResult) String() string {
	return fmt.Sprintf("status %#x sense %#x/%04x", r.status, r.key, r.asc)
}

// do runs one command; out (if any) goes as immediate data.
func (c *rawISCSI) do(lun uint64, cdb []byte, edtl int, out []byte) (scsiResult, error) {
	if err := c.send(c.cmdPDU(lun, cdb, edtl, out != nil), out, false); err != nil {
		return scsiResult{}, err
	}
	var r scsiResult
	for {
		bhs, data, err := c.recv()
		if err != nil {
			return r, err
		}
		switch bhs[0] & 0x3f {
		case opDataIn:
			r.data = append(r.data, data...)
			if bhs[1]&1 != 0 {
				r.status = bhs[3]
				return r, nil
			}
		case opSCSIResp:
			r.status = bhs[3]
			if len(data) >= 16 { // 2-byte length, fixed-format sense
				s := data[2:]
				r.key, r.asc = s[2]&0xf, binary.BigEndian.Uint16(s[12:])
			}
			return r, nil
		default:
			return r, fmt.Errorf("unexpected PDU opcode %#x", bhs[0]&0x3f)
		}
	}
}

func (c *rawISCSI) mustDo(lun uint64, cdb []byte, edtl int, out []byte) scsiResult {
	c.t.Helper()
	r, err := c.do(lun, cdb, edtl, out)
	if err != nil {
		c.t.Fatalf("command %#x on LUN %d: %v", cdb[0], lun, err)
	}
	return r
}

// reportLUNs returns the LUNs REPORT LUNS lists.
func (c *rawISCSI) reportLUNs() []uint64 {
	c.t.Helper()
	cdb := make([]byte, 12)
	cdb[0] = 0xa0
	binary.BigEndian.PutUint32(cdb[6:], 4096)
	r := c.mustDo(0, cdb, 4096, nil)
	if r.status != 0 || len(r.data) < 8 {
		c.t.Fatalf("REPORT LUNS: %v, %d bytes", r, len(r.data))
	}
	n := int(binary.BigEndian.Uint32(r.data)) / 8
	var luns []uint64
	for i := range n {
		e := r.data[8+8*i:]
		luns = append(luns, uint64(binary.BigEndian.Uint16(e)&0x3fff))
	}
	return luns
}

// The CDBs the tests send.
var (
	cdbTUR = make([]byte, 6)
)

func cdbRead10(lba uint32, blocks uint16) []byte {
	cdb := make([]byte, 10)
	cdb[0] = 0x28
	binary.BigEndian.PutUint32(cdb[2:], lba)
	binary.BigEndian.PutUint16(cdb[7:], blocks)
	return cdb
}

func cdbWrite10(lba uint32, blocks uint16) []byte {
	cdb := cdbRead10(lba, blocks)
	cdb[0] = 0x2a
	return cdb
}

// nop pings the target.
func (c *rawISCSI) nop() error {
	var bhs [48]byte
	bhs[0] = opNOPOut | 0x40
	bhs[1] = 0x80
	c.itt++
	binary.BigEndian.PutUint32(bhs[16:], c.itt)
	binary.BigEndian.PutUint32(bhs[20:], 0xffffffff)
	binary.BigEndian.PutUint32(bhs[24:], c.cmdSN)
	if err := c.send(bhs, []byte("ping"), false); err != nil {
		return err
	}
	rb, data, err := c.recv()
	if err != nil {
		return err
	}
	if rb[0]&0x3f != opNOPIn || string(data) != "ping" {
		return fmt.Errorf("NOP-Out answered with opcode %#x data %q", rb[0]&0x3f, data)
	}
	return nil
}

// closed reports whether the target closed the connection (a read sees EOF
// or a reset within a few seconds).
func (c *rawISCSI) closed() bool {
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := c.recv(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return false
			}
			return true
		}
	}
}
