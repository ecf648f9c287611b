package iscsi

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

const rawInit = "iqn.2024-01.org.volrep.test:raw"

// rawSetup serves one 16 MiB LUN 0 of testIQN to rawInit without CHAP.
func rawSetup(t *testing.T, opts Options) (*testServer, *testTargets, *fileDevice) {
	t.Helper()
	dev := newFileDevice(t, 16<<20, 9)
	tt := newTestTargets()
	tt.add(testIQN, rawInit, Auth{}, 0, dev)
	return startServer(t, tt, opts), tt, dev
}

// loggedIn serves dev as LUN 0 of testIQN to rawInit without CHAP, and
// logs rawInit in.
func loggedIn(t testing.TB, dev Device) *rawClient {
	t.Helper()
	tt := newTestTargets()
	tt.add(testIQN, rawInit, Auth{}, 0, dev)
	ts := startServer(t, tt, Options{})
	c := dialRaw(t, ts.addr)
	c.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	return c
}

func TestLoginRefusals(t *testing.T) {
	dev := newFileDevice(t, 1<<20, 1)
	tt := newTestTargets()
	tt.add(testIQN, rawInit, Auth{User: "u", Secret: "right-secret-1"}, 0, dev)
	ts := startServer(t, tt, Options{})
	cases := []struct {
		name string
		o    loginOpts
		want uint16
	}{
		{"right secret", loginOpts{initiator: rawInit, target: testIQN, user: "u", secret: "right-secret-1"}, 0},
		{"wrong secret", loginOpts{initiator: rawInit, target: testIQN, user: "u", secret: "wrong-secret-1"}, statusAuthFailure},
		{"wrong user", loginOpts{initiator: rawInit, target: testIQN, user: "v", secret: "right-secret-1"}, statusAuthFailure},
		{"skipping CHAP", loginOpts{initiator: rawInit, target: testIQN}, statusAuthFailure},
		{"unknown initiator", loginOpts{initiator: "iqn.2024-01.org.volrep.test:stranger", target: testIQN}, statusAuthFailure},
		{"unknown target", loginOpts{initiator: rawInit, target: testIQN + "-nope"}, statusNotFound},
		{"no initiator name", loginOpts{target: testIQN, skipInitiatorName: true}, statusMissingParam},
		{"mutual CHAP not configured", loginOpts{initiator: rawInit, target: testIQN, user: "u", secret: "right-secret-1", mutualSecret: "x"}, statusAuthFailure},
	}
	for _, tc := range cases {
		c := dialRaw(t, ts.addr)
		st, err := c.login(tc.o)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if st != tc.want {
			t.Errorf("%s: login status %04x, want %04x", tc.name, st, tc.want)
		}
		if st != 0 {
			// The target closes the connection after a refusal.
			c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.nc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("%s: connection not closed after the refusal: %v", tc.name, err)
			}
		}
	}
	logs := ts.logs.String()
	if !strings.Contains(logs, `level=WARN msg="iscsi: login refused" remote=127.0.0.1:`) ||
		!strings.Contains(logs, "initiator=iqn.2024-01.org.volrep.test:stranger") ||
		!strings.Contains(logs, "target="+testIQN+"-nope") {
		t.Errorf("refusals are not logged with remote, initiator and target:\n%s", logs)
	}
	if strings.Contains(logs, "right-secret-1") || strings.Contains(logs, "wrong-secret-1") {
		t.Error("a secret reached the log")
	}
	if got := ts.srv.Stats().LoginsRefused; got != int64(len(cases)-1) {
		t.Errorf("LoginsRefused = %d, want %d", got, len(cases)-1)
	}
}

func TestMutualCHAPRaw(t *testing.T) {
	dev := newFileDevice(t, 1<<20, 1)
	tt := newTestTargets()
	tt.add(testIQN, rawInit, Auth{User: "u", Secret: "s1-secret-123", MutualUser: "tgt", MutualSecret: "s2-secret-456"}, 0, dev)
	ts := startServer(t, tt, Options{})
	c := dialRaw(t, ts.addr)
	c.mustLogin(loginOpts{initiator: rawInit, target: testIQN, user: "u", secret: "s1-secret-123", mutualSecret: "s2-secret-456"})
	if r := c.mustDo(0, make([]byte, 6), 0, nil); r.status != statusGood {
		t.Fatalf("TEST UNIT READY after mutual CHAP: status %#x", r.status)
	}
	// A mutual challenge equal to the target's is refused.
	c2 := dialRaw(t, ts.addr)
	var bhs [bhsLen]byte
	bhs[0] = opLoginReq | immediateBit
	bhs[1] = 0x01 // CSG 0, NSG 1
	var text []byte
	text = appendText(text, "InitiatorName", rawInit)
	text = appendText(text, "TargetName", testIQN)
	text = appendText(text, "AuthMethod", "CHAP")
	c2.send(bhs, text)
	c2.recv()
	c2.send(bhs, appendText(nil, "CHAP_A", "5"))
	p, _ := c2.recv()
	kv, _ := parseText(p.data)
	keys := map[string]string{}
	for _, x := range kv {
		keys[x[0]] = x[1]
	}
	bhs[1] = 0x81
	var resp []byte
	resp = appendText(resp, "CHAP_N", "u")
	resp = appendText(resp, "CHAP_R", "0x00112233445566778899aabbccddeeff")
	resp = appendText(resp, "CHAP_I", "1")
	resp = appendText(resp, "CHAP_C", keys["CHAP_C"])
	c2.send(bhs, resp)
	p, err := c2.recv()
	if err != nil || binary.BigEndian.Uint16(p.bhs[36:]) != statusAuthFailure {
		t.Fatalf("reflected challenge: %v, status %x", err, p.bhs[36:38])
	}
}

func TestUnmappedAndRevokedLUN(t *testing.T) {
	ts, tt, dev := rawSetup(t, Options{})
	dev2 := newFileDevice(t, 1<<20, 10)
	tt.add(testIQN, rawInit, Auth{}, 1, dev2)
	c := dialRaw(t, ts.addr)
	c.mustLogin(loginOpts{initiator: rawInit, target: testIQN})

	reportLUNs := func() []byte {
		cdb := make([]byte, 12)
		cdb[0] = 0xa0
		binary.BigEndian.PutUint32(cdb[6:], 4096)
		r := c.mustDo(0, cdb, 4096, nil)
		if r.status != statusGood {
			t.Fatalf("REPORT LUNS: status %#x", r.status)
		}
		return r.data
	}
	if got := reportLUNs(); len(got) != 24 || got[3] != 16 || got[17] != 1 {
		t.Fatalf("REPORT LUNS = %x, want LUNs 0 and 1", got)
	}
	// LUN 5 is not mapped.
	r := c.mustDo(5, read10(0, 1), 512, nil)
	if key, asc := r.senseKey(); r.status != statusCheckCondition || key != senseIllegalRequest || asc != ascLUNotSupported {
		t.Fatalf("READ of an unmapped LUN: status %#x sense %x/%04x", r.status, key, asc)
	}
	// Open LUN 1, then unmap it: the next command gets 25h/00h, REPORT
	// LUNS drops it, and the device is closed.
	if r := c.mustDo(1, read10(0, 1), 512, nil); r.status != statusGood {
		t.Fatalf("READ LUN 1: %#x", r.status)
	}
	tt.unmap(testIQN, 1)
	dev2.revoked.Store(true)
	r = c.mustDo(1, read10(0, 1), 512, nil)
	if key, asc := r.senseKey(); key != senseIllegalRequest || asc != ascLUNotSupported {
		t.Fatalf("READ of a revoked LUN: sense %x/%04x", key, asc)
	}
	if got := reportLUNs(); len(got) != 16 {
		t.Fatalf("REPORT LUNS after unmapping = %x, want only LUN 0", got)
	}
	if dev2.closes.Load() != 1 {
		t.Fatalf("the revoked device was closed %d times, want 1", dev2.closes.Load())
	}
	if r := c.mustDo(0, read10(0, 1), 512, nil); r.status != statusGood || dev.reads.Load() == 0 {
		t.Fatal("LUN 0 stopped working")
	}
}

func TestBadOpcodeRejected(t *testing.T) {
	ts, _, _ := rawSetup(t, Options{})
	c := dialRaw(t, ts.addr)
	c.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	var bhs [bhsLen]byte
	bhs[0] = 0x1c // not an initiator opcode
	binary.BigEndian.PutUint32(bhs[16:], 77)
	if err := c.send(bhs, nil); err != nil {
		t.Fatal(err)
	}
	p, err := c.recv()
	if err != nil {
		t.Fatal(err)
	}
	if p.opcode() != opReject || p.bhs[2] != rejectNotSupported || len(p.data) != bhsLen || p.data[0] != 0x1c {
		t.Fatalf("bad opcode answered with opcode %#x reason %#x data %x", p.opcode(), p.bhs[2], p.data)
	}
	if err := c.nop(); err != nil {
		t.Fatalf("the connection does not go on after a Reject: %v", err)
	}
	// An unsupported SCSI command: CHECK CONDITION, connection goes on.
	r := c.mustDo(0, []byte{0xc5, 0, 0, 0, 0, 0}, 0, nil)
	if key, asc := r.senseKey(); key != senseIllegalRequest || asc != ascInvalidOpcode {
		t.Fatalf("unsupported CDB: sense %x/%04x", key, asc)
	}
	if ts.srv.Stats().ProtocolErrors == 0 {
		t.Error("the Reject is not counted")
	}
}

// expectClosed waits for the server to close the connection.
func expectClosed(t *testing.T, c *rawClient) {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := c.nc.Read(make([]byte, 4096)); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the server did not close the connection")
			}
			return
		}
	}
}

func TestOversizedDataSegmentClosesConnection(t *testing.T) {
	ts, _, dev := rawSetup(t, Options{MaxRecvDataSegmentLength: 8192})
	c := dialRaw(t, ts.addr)
	c.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	bhs := c.cmdPDU(0, write10(0, 32, false), 16384, false, true)
	if err := c.send(bhs, make([]byte, 16384)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	if !strings.Contains(ts.logs.String(), "MaxRecvDataSegmentLength") {
		t.Errorf("the violation is not logged:\n%s", ts.logs.String())
	}
	if dev.writes.Load() != 0 {
		t.Fatal("the oversized write reached the device")
	}
	c2 := dialRaw(t, ts.addr)
	c2.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	if err := c2.nop(); err != nil {
		t.Fatalf("the server stopped serving: %v", err)
	}
}

func TestDigests(t *testing.T) {
	ts, _, dev := rawSetup(t, Options{})
	c := dialRaw(t, ts.addr)
	c.hd, c.dd = true, true
	c.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	if !c.hd || !c.dd {
		t.Fatal("CRC32C digests were not negotiated")
	}
	data := make([]byte, 64<<10)
	rand.Read(data)
	if r := c.mustDo(0, write10(8, 128, false), len(data), data); r.status != statusGood {
		t.Fatalf("WRITE with digests: %#x", r.status)
	}
	r := c.mustDo(0, read10(8, 128), len(data), nil)
	if r.status != statusGood || !bytes.Equal(r.data, data) {
		t.Fatal("READ with digests returned other data")
	}
	// A corrupt data digest closes the connection (ErrorRecoveryLevel 0).
	bhs := c.cmdPDU(0, write10(0, 1, false), 512, false, true)
	buf := appendPDU(nil, &bhs, make([]byte, 512), true, true)
	buf[len(buf)-1] ^= 0xff
	c.nc.Write(buf)
	expectClosed(t, c)
	// A corrupt header digest too.
	c2 := dialRaw(t, ts.addr)
	c2.hd = true
	c2.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	bhs = c2.cmdPDU(0, make([]byte, 6), 0, false, false)
	buf = appendPDU(nil, &bhs, nil, true, false)
	buf[bhsLen] ^= 1
	c2.nc.Write(buf)
	expectClosed(t, c2)
	before := dev.writes.Load()
	c3 := dialRaw(t, ts.addr)
	c3.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	if err := c3.nop(); err != nil {
		t.Fatalf("the server stopped serving: %v", err)
	}
	if dev.writes.Load() != before {
		t.Fatal("a write with a bad digest reached the device")
	}
}

// TestCommandFloodIsBounded: a client that sends 10,000 READs without
// reading a response cannot make the server hold more than the window.
func TestCommandFloodIsBounded(t *testing.T) {
	const depth = 16
	ts, _, _ := rawSetup(t, Options{QueueDepth: depth})
	c := dialRaw(t, ts.addr)
	c.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	var buf []byte
	for i := 0; i < 10000; i++ {
		bhs := c.cmdPDU(0, read10(uint32(i%4096)*8, 128), 64<<10, true, false)
		buf = appendPDU(buf, &bhs, nil, false, false)
	}
	before := ts.srv.Stats()
	done := make(chan error, 1)
	go func() {
		c.nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
		_, err := c.nc.Write(buf)
		done <- err
	}()
	// Watch until the server has seen a command past the window (the flood
	// arrived; on a loaded machine this can take seconds), then 1 s more.
	// The window's 16 responses can all fit in the loopback buffers and
	// finish within one sample, so the proof of arrival is the protocol
	// error, not a non-zero in-flight count.
	maxInflight := int64(0)
	var arrived time.Time
	for start := time.Now(); time.Since(start) < 20*time.Second; {
		st := ts.srv.Stats()
		maxInflight = max(maxInflight, st.Inflight)
		if arrived.IsZero() && st.ProtocolErrors > before.ProtocolErrors {
			arrived = time.Now()
		}
		if !arrived.IsZero() && time.Since(arrived) > time.Second {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if arrived.IsZero() {
		t.Fatal("the server never saw a command past MaxCmdSN: the flood did not arrive in 20 s")
	}
	if maxInflight > depth {
		t.Fatalf("%d commands in flight, the window is %d", maxInflight, depth)
	}
	// Commands past the window are dropped, not queued.
	if n := ts.srv.Stats().Commands - before.Commands; n >= 10000 || n < depth {
		t.Fatalf("%d of 10000 flooded commands accepted; want at least the window (%d) and far fewer than all", n, depth)
	}
	// Another client is served meanwhile.
	c2 := dialRaw(t, ts.addr)
	c2.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	if r := c2.mustDo(0, read10(0, 8), 4096, nil); r.status != statusGood {
		t.Fatalf("second client: %#x", r.status)
	}
	c.nc.Close()
	<-done
	deadline := time.Now().Add(10 * time.Second)
	for ts.srv.Stats().Inflight != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := ts.srv.Stats().Inflight; n != 0 {
		t.Fatalf("%d commands still counted in flight after the client left", n)
	}
}

func TestCapacityChangeUnitAttention(t *testing.T) {
	ts, _, dev := rawSetup(t, Options{})
	c := dialRaw(t, ts.addr)
	c.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	tur := make([]byte, 6)
	if r := c.mustDo(0, tur, 0, nil); r.status != statusGood {
		t.Fatalf("TUR: %#x", r.status)
	}
	if err := dev.grow(32 << 20); err != nil {
		t.Fatal(err)
	}
	inq := []byte{0x12, 0, 0, 0, 96, 0}
	if r := c.mustDo(0, inq, 96, nil); r.status != statusGood {
		t.Fatalf("INQUIRY must not report the unit attention: %#x", r.status)
	}
	r := c.mustDo(0, tur, 0, nil)
	if key, asc := r.senseKey(); key != senseUnitAttention || asc != ascCapacityChanged {
		t.Fatalf("after growing: sense %x/%04x, want UNIT ATTENTION 2A/09", key, asc)
	}
	if r := c.mustDo(0, tur, 0, nil); r.status != statusGood {
		t.Fatal("the unit attention is reported twice")
	}
	rc := make([]byte, 16)
	rc[0], rc[1], rc[13] = 0x9e, 0x10, 32
	r = c.mustDo(0, rc, 32, nil)
	if got := binary.BigEndian.Uint64(r.data); got != 32<<20/512-1 {
		t.Fatalf("READ CAPACITY(16) last LBA %d after growing", got)
	}
	if r.data[13] != 3 || r.data[14]&0xc0 != 0xc0 {
		t.Fatalf("READ CAPACITY(16) exponent/LBPME/LBPRZ: %x", r.data[12:16])
	}
}

func TestReadOnlyLUN(t *testing.T) {
	dev := newFileDevice(t, 1<<20, 1)
	dev.ro = true
	c := loggedIn(t, dev)
	unmap := make([]byte, 10)
	unmap[0] = 0x42
	unmap[8] = 24
	param := make([]byte, 24)
	param[1], param[3] = 22, 16
	param[19] = 1
	ws := make([]byte, 16)
	ws[0], ws[1], ws[13] = 0x93, 0x08, 1
	for _, x := range []struct {
		cdb []byte
		out []byte
	}{
		{write10(0, 1, false), make([]byte, 512)},
		{unmap, param},
		{ws, make([]byte, 512)},
	} {
		r := c.mustDo(0, x.cdb, len(x.out), x.out)
		if key, asc := r.senseKey(); key != senseDataProtect || asc != ascWriteProtected {
			t.Errorf("%#x on a read-only LUN: sense %x/%04x", x.cdb[0], key, asc)
		}
	}
	ms := []byte{0x1a, 0x08, 0x3f, 0, 255, 0}
	if r := c.mustDo(0, ms, 255, nil); r.status != statusGood || r.data[2]&0x80 == 0 {
		t.Error("MODE SENSE does not set WP for a read-only LUN")
	}
	if dev.writes.Load() != 0 || dev.zeroes.Load() != 0 {
		t.Fatal("a write reached the read-only device")
	}
}

func TestWriteFUAAndResiduals(t *testing.T) {
	ts, _, dev := rawSetup(t, Options{})
	c := dialRaw(t, ts.addr)
	c.initialR2T = false
	c.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	// 1 MiB: immediate data, then R2Ts.
	data := make([]byte, 1<<20)
	rand.Read(data)
	if r := c.mustDo(0, write10(0, 2048, true), len(data), data); r.status != statusGood {
		t.Fatalf("WRITE FUA: %#x", r.status)
	}
	if dev.fuaWrites.Load() != 1 {
		t.Fatalf("FUA writes = %d, want 1", dev.fuaWrites.Load())
	}
	// A READ with a smaller expected length: truncated, overflow residual.
	r := c.mustDo(0, read10(0, 8), 1024, nil)
	if r.status != statusGood || len(r.data) != 1024 || r.resFlags != 0x04 || r.residual != 3072 ||
		!bytes.Equal(r.data, data[:1024]) {
		t.Fatalf("short READ: status %#x, %d bytes, flags %#x residual %d", r.status, len(r.data), r.resFlags, r.residual)
	}
	// SYNCHRONIZE CACHE reaches Flush.
	if r := c.mustDo(0, []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0, nil); r.status != statusGood || dev.flushes.Load() == 0 {
		t.Fatal("SYNCHRONIZE CACHE did not flush")
	}
	// Out of range.
	r = c.mustDo(0, read10(1<<30, 1), 512, nil)
	if key, asc := r.senseKey(); key != senseIllegalRequest || asc != ascLBAOutOfRange {
		t.Fatalf("READ past the end: sense %x/%04x", key, asc)
	}
}

// TestDiscoverySession: SendTargets lists only what Discover returns.
func TestDiscoverySession(t *testing.T) {
	dev := newFileDevice(t, 1<<20, 1)
	tt := newTestTargets()
	tt.add(testIQN, rawInit, Auth{}, 0, dev)
	tt.add(testIQN+"-b", rawInit, Auth{}, 0, dev)
	tt.add(testIQN+"-secret", "iqn.other", Auth{}, 0, dev)
	ts := startServer(t, tt, Options{})
	c := dialRaw(t, ts.addr)
	c.mustLogin(loginOpts{initiator: rawInit, discovery: true})
	var bhs [bhsLen]byte
	bhs[0] = opTextReq | immediateBit
	bhs[1] = flagFinal
	binary.BigEndian.PutUint32(bhs[16:], 5)
	binary.BigEndian.PutUint32(bhs[20:], reservedTag)
	c.send(bhs, appendText(nil, "SendTargets", "All"))
	p, err := c.recv()
	if err != nil || p.opcode() != opTextResp {
		t.Fatalf("SendTargets: %v", err)
	}
	got := strings.ReplaceAll(string(p.data), "\x00", "\n")
	want := "TargetName=" + testIQN + "\nTargetAddress=" + ts.addr + ",1\nTargetName=" + testIQN + "-b\nTargetAddress=" + ts.addr + ",1\n"
	if got != want {
		t.Fatalf("SendTargets=All:\n%s\nwant\n%s", got, want)
	}
	// SCSI commands are not allowed in a discovery session.
	bhs = c.cmdPDU(0, make([]byte, 6), 0, false, false)
	c.send(bhs, nil)
	if p, err := c.recv(); err != nil || p.opcode() != opReject {
		t.Fatalf("SCSI command in a discovery session: %v", err)
	}
}
