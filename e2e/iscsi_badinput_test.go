package e2e

import (
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestISCSIBadInputDaemonSurvives sends volrepd's iSCSI portal what a
// broken or hostile initiator would: a wrong CHAP secret, an unknown
// initiator, an unmapped LUN, an unknown opcode, a data segment over the
// negotiated length, a header digest mismatch and 10,000 commands without
// reading a response. Each gets the protocol's answer, and afterwards the
// daemon still serves iscsi-ls and qemu-io.
func TestISCSIBadInputDaemonSurvives(t *testing.T) {
	iscsiLs := tool(t, "iscsi-ls")
	_, qemuIO := needQemuISCSI(t)
	d := startISCSIDaemon(t, 1)
	lun := hostWithLUN(t, d.Array("a"), "good", []string{"iqn.2026-12.io.volrep.e2e:good"}, "gv", "", 16<<20)
	portal := lun.Portals[0]

	// A wrong CHAP secret: login status 02/01, and iscsi-ls fails.
	c := dialISCSI(t, portal)
	if st, err := c.login(lun.Initiator, lun.TargetIQN, lun.CHAPUser, "wrong-secret-123", false); err != nil || st != 0x0201 {
		t.Fatalf("login with a wrong CHAP secret: status %04x, %v; want 0201", st, err)
	}
	out, err := runEnv(t, time.Minute, nil, iscsiLs, "-i", lun.Initiator, "-s", "iscsi://good%wrong-secret-123@"+portal)
	if err == nil || !strings.Contains(strings.ToLower(out), "auth") {
		t.Fatalf("iscsi-ls with a wrong CHAP secret: %v, want a non-zero exit naming the authentication failure", err)
	}
	// An initiator no host has: 02/01.
	c = dialISCSI(t, portal)
	if st, err := c.login("iqn.2026-12.io.volrep.e2e:stranger", lun.TargetIQN, "stranger", "stranger-secret", false); err != nil || st != 0x0201 {
		t.Fatalf("login of an unknown initiator: status %04x, %v; want 0201", st, err)
	}

	// A LUN that is not mapped, then an unknown opcode: the session lives on.
	c = dialISCSI(t, portal)
	c.mustLogin(lun, false)
	if r := c.mustDo(9, cdbRead10(0, 1), 512, nil); r.status != 2 || r.key != 5 || r.asc != 0x2500 {
		t.Fatalf("READ of unmapped LUN 9: %v, want 5/2500", r)
	}
	var bad [48]byte
	bad[0] = 0x1a | 0x40 // no such initiator opcode
	bad[1] = 0x80
	binary.BigEndian.PutUint32(bad[16:], 0x777)
	if err := c.send(bad, nil, false); err != nil {
		t.Fatal(err)
	}
	if rb, data, err := c.recv(); err != nil || rb[0]&0x3f != opReject || rb[2] != 0x05 || len(data) < 48 || data[0]&0x3f != 0x1a {
		t.Fatalf("unknown opcode answered with opcode %#x reason %#x (%v), want Reject 05h carrying the header", rb[0]&0x3f, rb[2], err)
	}
	if err := c.nop(); err != nil {
		t.Fatalf("the session does not survive a Reject: %v", err)
	}
	// A data segment over the target's MaxRecvDataSegmentLength closes
	// the connection.
	maxData, _ := strconv.Atoi(c.keys["MaxRecvDataSegmentLength"])
	if maxData == 0 {
		t.Fatalf("the target declared no MaxRecvDataSegmentLength: %v", c.keys)
	}
	var nop [48]byte
	nop[0], nop[1] = opNOPOut|0x40, 0x80
	binary.BigEndian.PutUint32(nop[20:], 0xffffffff)
	c.send(nop, make([]byte, maxData+4096), false)
	if !c.closed() {
		t.Fatal("a data segment longer than negotiated did not close the connection")
	}
	// A header digest mismatch closes the connection.
	c = dialISCSI(t, portal)
	c.mustLogin(lun, true)
	if !c.hd {
		t.Fatal("the target refused header digests")
	}
	if err := c.nop(); err != nil {
		t.Fatalf("NOP with a good header digest: %v", err)
	}
	c.send(nop, nil, true)
	if !c.closed() {
		t.Fatal("a header digest mismatch did not close the connection")
	}
	// 10,000 READs sent without reading a response, then hang up.
	c = dialISCSI(t, portal)
	c.mustLogin(lun, false)
	var flood []byte
	for i := range 10000 {
		bhs := c.cmdPDU(1, cdbRead10(uint32(i%4096)*8, 8), 4096, false)
		flood = append(flood, bhs[:]...)
	}
	c.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.nc.Write(flood); err != nil {
		t.Fatalf("the target stopped reading 10,000 commands: %v", err)
	}
	c.nc.Close()

	// The daemon serves the next clients.
	select {
	case <-d.exited:
		t.Fatalf("volrepd exited:\n%s", d.Logs())
	default:
	}
	out, _ = run(t, false, iscsiLs, "-i", lun.Initiator, "-s", "iscsi://good%"+lun.CHAPSecret+"@"+portal)
	if !strings.Contains(out, "Lun:1") {
		t.Fatalf("iscsi-ls after the bad input:\n%s", out)
	}
	out, _ = run(t, false, qemuIO, append(lun.QemuArgs(), "-c", "write -P 0x42 0 1M", "-c", "read -P 0x42 0 1M")...)
	if !strings.Contains(out, "read 1048576/1048576") {
		t.Fatalf("qemu-io after the bad input:\n%s", out)
	}
	logs := d.Logs()
	for _, want := range []string{"login refused", "protocol violation"} {
		if !strings.Contains(logs, want) {
			t.Errorf("volrepd's log has no %q", want)
		}
	}
}
