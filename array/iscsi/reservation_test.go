package iscsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// refusingDevice is a unit another target serves too, and shares no
// reservations with, while on is set.
type refusingDevice struct {
	*fileDevice
	on atomic.Bool
}

func (d *refusingDevice) RefusesReservations() bool { return d.on.Load() }

// PERSISTENT RESERVE OUT service actions and types the tests use.
const (
	paRegister        = 0x0
	paReserve         = 0x1
	paRelease         = 0x2
	paPreemptAbort    = 0x5
	paRegisterIgnore  = 0x6
	typeWE            = byte(prWriteExclusive)
	typeWERO          = byte(prWriteExclusiveRO)
	prInReadKeys      = 0x0
	prInReadResv      = 0x1
	prInReadFull      = 0x3
	prParamListLength = 24
)

// prOutParams is PERSISTENT RESERVE OUT's CDB and parameter list.
func prOutParams(action, typ byte, key, sark uint64, flags byte) (cdb, p []byte) {
	cdb = []byte{0x5f, action, typ, 0, 0, 0, 0, 0, prParamListLength, 0}
	p = make([]byte, prParamListLength)
	binary.BigEndian.PutUint64(p, key)
	binary.BigEndian.PutUint64(p[8:], sark)
	p[20] = flags
	return cdb, p
}

// prOutCmd sends PERSISTENT RESERVE OUT and returns the reply.
func (c *rawClient) prOutCmd(action, typ byte, key, sark uint64, flags byte) scsiReply {
	c.t.Helper()
	cdb, p := prOutParams(action, typ, key, sark, flags)
	return c.mustDo(0, cdb, len(p), p)
}

// goDo sends a command to LUN 0 from a goroutine of its own; the reply
// comes on the channel (status 0xff if the connection failed).
func (c *rawClient) goDo(cdb []byte, edtl int, out []byte) <-chan scsiReply {
	done := make(chan scsiReply, 1)
	go func() {
		r, err := c.do(0, cdb, edtl, out)
		if err != nil {
			r.status = 0xff
		}
		done <- r
	}()
	return done
}

// mustPROut sends PERSISTENT RESERVE OUT and requires GOOD.
func (c *rawClient) mustPROut(action, typ byte, key, sark uint64) {
	c.t.Helper()
	if r := c.prOutCmd(action, typ, key, sark, 0); r.status != statusGood {
		k, asc := r.senseKey()
		c.t.Fatalf("PERSISTENT RESERVE OUT %d type %d: status %#x sense %x/%04x", action, typ, r.status, k, asc)
	}
}

// prIn sends PERSISTENT RESERVE IN and returns its data.
func (c *rawClient) prIn(action byte) []byte {
	c.t.Helper()
	r := c.mustDo(0, []byte{0x5e, action, 0, 0, 0, 0, 0, 0x10, 0, 0}, 4096, nil)
	if r.status != statusGood {
		k, asc := r.senseKey()
		c.t.Fatalf("PERSISTENT RESERVE IN %d: status %#x sense %x/%04x", action, r.status, k, asc)
	}
	return r.data
}

// keysOf decodes READ KEYS.
func keysOf(d []byte) (gen uint32, keys []uint64) {
	n := int(binary.BigEndian.Uint32(d[4:]))
	for i := 8; i+8 <= 8+n && i+8 <= len(d); i += 8 {
		keys = append(keys, binary.BigEndian.Uint64(d[i:]))
	}
	return binary.BigEndian.Uint32(d), keys
}

func wantStatus(t *testing.T, what string, r scsiReply, status byte, asc uint16) {
	t.Helper()
	_, got := r.senseKey()
	if r.status != status || status == statusCheckCondition && got != asc {
		t.Fatalf("%s: status %#x sense %04x; want %#x %04x", what, r.status, got, status, asc)
	}
}

// TestReservationFencesTheOtherPathOfAHost: a path is an I_T nexus, so
// two sessions of one initiator name with different ISIDs are two
// nexuses, and a WRITE EXCLUSIVE reservation through one lets the other
// read but not write (SPC-4 5.13.1).
func TestReservationFencesTheOtherPathOfAHost(t *testing.T) {
	dev := newFileDevice(t, 1<<20, 21)
	tt := newTestTargets()
	tt.add(testIQN, rawInit, Auth{}, 0, dev)
	ts := startServer(t, tt, Options{})
	a, b := dialRaw(t, ts.addr), dialRaw(t, ts.addr)
	a.mustLogin(loginOpts{initiator: rawInit, target: testIQN, isid: [6]byte{0x80, 0, 0, 0, 0, 0xa}})
	b.mustLogin(loginOpts{initiator: rawInit, target: testIQN, isid: [6]byte{0x80, 0, 0, 0, 0, 0xb}})
	a.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil) // the power-on attention
	b.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil)

	const key = 0x1111
	a.mustPROut(paRegister, 0, 0, key)
	a.mustPROut(paReserve, typeWE, key, 0)
	block := bytes.Repeat([]byte{0xb5}, BlockSize)
	wantStatus(t, "the other path's write", b.mustDo(0, write10(3, 1, false), BlockSize, block), statusReservationConflict, 0)
	wantStatus(t, "the other path's read", b.mustDo(0, read10(3, 1), BlockSize, nil), statusGood, 0)
	got := make([]byte, BlockSize)
	if _, err := dev.f.ReadAt(got, 3*BlockSize); err != nil || bytes.Equal(got, block) {
		t.Fatalf("a write that conflicted reached the device (%v)", err)
	}
	wantStatus(t, "the holder's write", a.mustDo(0, write10(3, 1, false), BlockSize, block), statusGood, 0)

	// READ FULL STATUS names the holder by its initiator port: the
	// name and the ISID.
	full := a.prIn(prInReadFull)
	if !strings.Contains(string(full), rawInit+",i,0x80000000000a") || full[8+12]&1 == 0 || full[8+13] != typeWE {
		t.Fatalf("READ FULL STATUS does not show path a as the WRITE EXCLUSIVE holder: %x", full)
	}

	// Releasing lets the other path write again.
	a.mustPROut(paRelease, typeWE, key, 0)
	wantStatus(t, "the other path's write after RELEASE", b.mustDo(0, write10(3, 1, false), BlockSize, block), statusGood, 0)
	if d := a.prIn(prInReadResv); binary.BigEndian.Uint32(d[4:]) != 0 {
		t.Fatalf("READ RESERVATION after RELEASE: %x", d)
	}
}

// TestPreemptAndAbortFencesAHost is how a cluster fences a node
// (Pacemaker's fence_scsi, Windows failover clustering): the survivor
// preempts the node's key. PREEMPT AND ABORT is answered only once the
// node's write that was running is done, so nothing of the fenced node
// lands after the survivor is told it is fenced; the node is told its
// registration went (2Ah/05h) and its next write conflicts.
func TestPreemptAndAbortFencesAHost(t *testing.T) {
	dev := &gatedDevice{fileDevice: newFileDevice(t, 1<<20, 22), entered: make(chan struct{}, 4), gate: make(chan struct{})}
	ts, node, survivor := twoHosts(t, dev)
	release := sync.OnceFunc(func() { close(dev.gate) })
	t.Cleanup(release) // before the server stops, should the test fail with the write held
	node.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil)
	survivor.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil)
	const nodeKey, survivorKey = 0xaaaa, 0xbbbb
	node.mustPROut(paRegisterIgnore, 0, 0, nodeKey)
	survivor.mustPROut(paRegisterIgnore, 0, 0, survivorKey)
	node.mustPROut(paReserve, typeWERO, nodeKey, 0)
	gen0, _ := keysOf(survivor.prIn(prInReadKeys))

	block := bytes.Repeat([]byte{0x5c}, BlockSize)
	written := node.goDo(write10(9, 1, false), BlockSize, block)
	<-dev.entered
	cdb, p := prOutParams(paPreemptAbort, typeWERO, survivorKey, nodeKey, 0)
	preempted := survivor.goDo(cdb, len(p), p)
	select {
	case r := <-preempted:
		t.Fatalf("PREEMPT AND ABORT answered (status %#x) while the node's write was still running", r.status)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	wantStatus(t, "the node's write that was running", <-written, statusGood, 0)
	wantStatus(t, "PREEMPT AND ABORT", <-preempted, statusGood, 0)

	gen, keys := keysOf(survivor.prIn(prInReadKeys))
	if len(keys) != 1 || keys[0] != survivorKey || gen != gen0+1 {
		t.Fatalf("after the preemption: keys %x generation %d (before %d); want only %x, one more", keys, gen, gen0, survivorKey)
	}
	resv := survivor.prIn(prInReadResv)
	if len(resv) < 24 || binary.BigEndian.Uint64(resv[8:]) != survivorKey || resv[21] != typeWERO {
		t.Fatalf("the survivor does not hold the reservation: %x", resv)
	}
	wantStatus(t, "the node's next command", node.mustDo(0, write10(9, 1, false), BlockSize, block),
		statusCheckCondition, ascRegistrationsPreempted)
	wantStatus(t, "the fenced node's write", node.mustDo(0, write10(9, 1, false), BlockSize, block), statusReservationConflict, 0)
	wantStatus(t, "the fenced node's read", node.mustDo(0, read10(9, 1), BlockSize, nil), statusGood, 0)
	if n := ts.srv.Stats().Conflicts; n != 1 {
		t.Errorf("Stats.Conflicts = %d; want 1", n)
	}
	if !strings.Contains(ts.logs.String(), "preempted the reservation") {
		t.Errorf("the preemption is not in the log:\n%s", ts.logs.String())
	}
}

// TestReservationRefusals: what the server does not offer is refused
// rather than half done. APTPL asks for registrations that outlive a
// restart, which REPORT CAPABILITIES says are not kept (PTPL_C=0); a
// unit another target serves too (a pod) has no reservations at all, as
// one kept here would not fence the host's paths to the other array.
func TestReservationRefusals(t *testing.T) {
	dev := &refusingDevice{fileDevice: newFileDevice(t, 1<<20, 23)}
	c := loggedIn(t, dev)
	c.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil)

	wantStatus(t, "REGISTER with APTPL", c.prOutCmd(paRegister, 0, 0, 7, 0x01), statusCheckCondition, ascInvalidFieldInParams)
	caps := c.prIn(0x2)
	if len(caps) < 6 || caps[2]&0x01 != 0 || caps[3]&0x80 == 0 || caps[4] != prTypeMaskByte4 || caps[5] != prTypeMaskByte5 {
		t.Fatalf("REPORT CAPABILITIES: %x", caps)
	}
	if _, keys := keysOf(c.prIn(prInReadKeys)); len(keys) != 0 {
		t.Fatalf("a refused REGISTER registered %x", keys)
	}
	wantStatus(t, "REGISTER with a key while not registered", c.prOutCmd(paRegister, 0, 5, 7, 0), statusReservationConflict, 0)

	dev.on.Store(true)
	wantStatus(t, "PERSISTENT RESERVE IN of a unit that refuses them", c.mustDo(0, []byte{0x5e, 0, 0, 0, 0, 0, 0, 0x10, 0, 0}, 4096, nil),
		statusCheckCondition, ascInvalidOpcode)
	wantStatus(t, "PERSISTENT RESERVE OUT of a unit that refuses them", c.prOutCmd(paRegisterIgnore, 0, 0, 7, 0), statusCheckCondition, ascInvalidOpcode)
	r := c.mustDo(0, []byte{0xa3, 0x0c, 0x02, 0x5e, 0, 0, 0, 0, 0, 64, 0, 0}, 64, nil)
	if r.status != statusGood || len(r.data) < 2 || r.data[1]&0x07 != 0x01 {
		t.Fatalf("REPORT SUPPORTED OPERATION CODES for PERSISTENT RESERVE IN of a unit that refuses them: %#x %x; want not supported", r.status, r.data)
	}
	dev.on.Store(false)
	if d := c.prIn(prInReadKeys); len(d) != 8 {
		t.Fatalf("READ KEYS once the unit is this target's alone: %x", d)
	}
}

// sharedDevice is one target's device of a logical unit two targets
// serve (a pod's copy). At the deciding target, decide is nil; at the
// other, it runs the command at the decider. share gives the other target
// a new state; apart says the two cannot reach each other, so a change
// stays where it was decided (ShareReservations' "no other target to
// tell now").
type sharedDevice struct {
	*fileDevice
	decide func(ctx context.Context, req []byte) ([]byte, error)
	share  func(ctx context.Context, state []byte) ([]byte, error)
	apart  atomic.Bool
}

func (d *sharedDevice) ForwardReservation(ctx context.Context, req []byte) ([]byte, bool, error) {
	if d.decide == nil {
		return nil, false, nil
	}
	r, err := d.decide(ctx, req)
	return r, true, err
}

func (d *sharedDevice) ShareReservations(ctx context.Context, state []byte) ([]byte, error) {
	if d.apart.Load() || d.share == nil {
		return nil, nil
	}
	return d.share(ctx, state)
}

// sharedPair is one logical unit at two targets, A (port group 1),
// which decides its reservations, and B (port group 2), with a session
// of one initiator at each.
type sharedPair struct {
	a, b       *testServer
	devA, devB *sharedDevice
	id         [16]byte
	atA, atB   *rawClient
}

func newSharedPair(t *testing.T, naa byte) *sharedPair {
	sp := &sharedPair{devA: &sharedDevice{fileDevice: newFileDevice(t, 1<<20, naa)}, devB: &sharedDevice{fileDevice: newFileDevice(t, 1<<20, naa)}}
	ttA, ttB := newTestTargets(), newTestTargets()
	ttA.add(testIQN, rawInit, Auth{}, 0, sp.devA)
	ttB.add(testIQN+"-b", rawInit, Auth{}, 0, sp.devB)
	sp.a = startServer(t, ttA, Options{PortGroup: 1})
	sp.b = startServer(t, ttB, Options{PortGroup: 2})
	sp.id = sp.devA.Identity().NAA
	sp.devA.share = func(_ context.Context, state []byte) ([]byte, error) {
		newer, drain, err := sp.b.srv.InstallReservations(sp.id, state)
		if err == nil && drain != nil {
			err = drain(t.Context())
		}
		return newer, err
	}
	sp.devB.decide = func(ctx context.Context, req []byte) ([]byte, error) {
		return sp.a.srv.DecideReservation(ctx, sp.id, req, sp.devA.ShareReservations)
	}
	sp.atA, sp.atB = dialRaw(t, sp.a.addr), dialRaw(t, sp.b.addr)
	sp.atA.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	sp.atB.mustLogin(loginOpts{initiator: rawInit, target: testIQN + "-b"})
	sp.atA.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil)
	sp.atB.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil)
	return sp
}

// TestSharedUnitReservations: two targets serve one logical unit (the
// two arrays of a pod, port groups 1 and 2). Target A decides every
// PERSISTENT RESERVE OUT, B's included, and gives B each new state before
// it answers, so a host's paths to both meet one reservation: a key
// registered through B shows at A, A's holder fences B's unregistered
// path, and a preemption made through B tells A's preempted path
// (2Ah/05h). When the two are apart,
// the deciding side changes alone; when they meet again, each keeps the
// newer state, whichever side holds it.
func TestSharedUnitReservations(t *testing.T) {
	sp := newSharedPair(t, 31)
	a, b, devA, id, atA, atB := sp.a, sp.b, sp.devA, sp.id, sp.atA, sp.atB

	const keyA, keyB = 0xa1, 0xb2
	atA.mustPROut(paRegisterIgnore, 0, 0, keyA)
	atA.mustPROut(paReserve, typeWE, keyA, 0)
	block := bytes.Repeat([]byte{0x3c}, BlockSize)
	wantStatus(t, "B's unregistered path writes", atB.mustDo(0, write10(2, 1, false), BlockSize, block), statusReservationConflict, 0)
	atB.mustPROut(paRegisterIgnore, 0, 0, keyB) // decided at A
	if _, keys := keysOf(atA.prIn(prInReadKeys)); len(keys) != 2 || keys[0] != keyA || keys[1] != keyB {
		t.Fatalf("READ KEYS at A after B's path registered: %x", keys)
	}
	if full := atA.prIn(prInReadFull); !bytes.Contains(full, []byte{0, 2, 0, 0, 0}) {
		// B's registration carries B's relative port (2), then the
		// TransportID's length.
		t.Errorf("READ FULL STATUS at A does not show B's path at relative port 2: %x", full)
	}

	// B's path preempts A's holder: A's path is told, B's is not.
	wantStatus(t, "PREEMPT through B", atB.prOutCmd(0x4, typeWERO, keyB, keyA, 0), statusGood, 0)
	wantStatus(t, "A's preempted path", atA.mustDo(0, read10(2, 1), BlockSize, nil), statusCheckCondition, ascRegistrationsPreempted)
	wantStatus(t, "A's preempted path writes", atA.mustDo(0, write10(2, 1, false), BlockSize, block), statusReservationConflict, 0)
	wantStatus(t, "B's path, now the holder", atB.mustDo(0, write10(2, 1, false), BlockSize, block), statusGood, 0)
	resvB := atB.prIn(prInReadResv)
	if len(resvB) < 24 || binary.BigEndian.Uint64(resvB[8:]) != keyB || resvB[21] != typeWERO {
		t.Fatalf("READ RESERVATION at B after its preemption: %x", resvB)
	}

	// A's path takes it back: B's path hears of it through the state A
	// gives B, which carries what B's nexuses are owed.
	atA.mustPROut(paRegisterIgnore, 0, 0, keyA)
	wantStatus(t, "PREEMPT through A", atA.prOutCmd(0x4, typeWE, keyA, keyB, 0), statusGood, 0)
	wantStatus(t, "B's preempted path", atB.mustDo(0, read10(2, 1), BlockSize, nil), statusCheckCondition, ascRegistrationsPreempted)
	atB.mustPROut(paRegisterIgnore, 0, 0, keyB)

	// Apart, A changes alone (it carries the unit); B still has the old
	// state. Meeting again, B takes A's newer one, and A keeps it when B
	// offers its older one.
	devA.apart.Store(true)
	wantStatus(t, "CLEAR through A, apart", atA.prOutCmd(0x3, 0, keyA, 0, 0), statusGood, 0)
	if _, keys := keysOf(atB.prIn(prInReadKeys)); len(keys) != 2 {
		t.Fatalf("B while apart: keys %x; want its old two", keys)
	}
	newer, _, err := a.srv.InstallReservations(id, b.srv.Reservations(id))
	if err != nil || newer == nil {
		t.Fatalf("A offered B's older state: newer %x, %v; want A's back", newer, err)
	}
	if newer, _, err := b.srv.InstallReservations(id, newer); err != nil || newer != nil {
		t.Fatalf("B offered A's newer state: %x, %v", newer, err)
	}
	wantStatus(t, "B's path after the CLEAR reached it", atB.mustDo(0, read10(2, 1), BlockSize, nil), statusCheckCondition, ascReservationsPreempted)
	if d := atB.prIn(prInReadResv); binary.BigEndian.Uint32(d[4:]) != 0 {
		t.Fatalf("B still reserved after taking A's cleared state: %x", d)
	}
	if _, _, err := b.srv.InstallReservations(id, []byte{1, 2, 3}); err == nil {
		t.Error("a malformed state was installed")
	}
}

// memKeeper is a Keeper's disk: it outlives the servers that use it.
type memKeeper struct {
	mu    sync.Mutex
	saved map[[16]byte][]byte
	saves int
}

func (k *memKeeper) LoadReservations(_ context.Context, naa [16]byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return bytes.Clone(k.saved[naa]), nil
}

func (k *memKeeper) SaveReservations(_ context.Context, naa [16]byte, state []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.saved[naa] = bytes.Clone(state)
	k.saves++
	return nil
}

// TestReservationsOutliveARestart: with a Keeper every change is kept
// before it is answered, and a server started anew over the same keeper
// has the registrations and the reservation back, APTPL or not (a
// restart of the array is no power loss of the unit). REPORT CAPABILITIES
// says PTPL_C, and PTPL_A as the last REGISTER asked.
func TestReservationsOutliveARestart(t *testing.T) {
	keeper := &memKeeper{saved: map[[16]byte][]byte{}}
	dev := newFileDevice(t, 1<<20, 41)
	serve := func(dev Device) (*testServer, *rawClient) {
		tt := newTestTargets()
		tt.add(testIQN, rawInit, Auth{}, 0, dev)
		ts := startServer(t, tt, Options{Keeper: keeper})
		c := dialRaw(t, ts.addr)
		c.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
		c.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil)
		return ts, c
	}
	ts, c := serve(dev)
	const key = 0x7e57
	wantStatus(t, "REGISTER with APTPL", c.prOutCmd(paRegister, 0, 0, key, 0x01), statusGood, 0)
	c.mustPROut(paReserve, typeWERO, key, 0)
	if keeper.saves != 2 {
		t.Fatalf("%d states kept for REGISTER and RESERVE; want 2", keeper.saves)
	}
	if caps := c.prIn(0x2); caps[2]&0x01 == 0 || caps[3]&0x01 == 0 {
		t.Fatalf("REPORT CAPABILITIES with a keeper, after REGISTER with APTPL: %x; want PTPL_C and PTPL_A", caps)
	}
	gen, _ := keysOf(c.prIn(prInReadKeys))
	ts.srv.Close()

	_, c = serve(dev)
	gen2, keys := keysOf(c.prIn(prInReadKeys))
	if len(keys) != 1 || keys[0] != key || gen2 != gen {
		t.Fatalf("after a restart: keys %x generation %d; want %x, %d", keys, gen2, key, gen)
	}
	resv := c.prIn(prInReadResv)
	if len(resv) < 24 || binary.BigEndian.Uint64(resv[8:]) != key || resv[21] != typeWERO {
		t.Fatalf("READ RESERVATION after a restart: %x", resv)
	}
	// A REGISTER without APTPL: still kept, and PTPL_A says so.
	c.mustPROut(paRegister, 0, key, key+1)
	if caps := c.prIn(0x2); caps[2]&0x01 == 0 || caps[3]&0x01 != 0 {
		t.Fatalf("REPORT CAPABILITIES after REGISTER without APTPL: %x; want PTPL_C without PTPL_A", caps)
	}
	keeper.saved[dev.Identity().NAA] = []byte{1, 2}
	ts3, c3 := serve(newFileDevice(t, 1<<20, 41)) // the same unit, a kept state that cannot be read
	if _, keys := keysOf(c3.prIn(prInReadKeys)); len(keys) != 0 {
		t.Fatalf("a unit whose kept state cannot be read starts with keys %x", keys)
	}
	if !strings.Contains(ts3.logs.String(), "cannot be read") {
		t.Errorf("an unreadable kept state is not logged:\n%s", ts3.logs.String())
	}
}

// TestOperatorClearsReservations: the array's operator reads a shared
// unit's reservations at either target and clears them through the one
// that does not decide (it forwards the clear, as a host's PERSISTENT
// RESERVE OUT): both targets then hold none, the generation moved on by
// one, each path that was registered is told RESERVATIONS PREEMPTED, and
// the path the reservation fenced writes again. A host cannot do the
// same: its CLEAR without a registration is a conflict.
func TestOperatorClearsReservations(t *testing.T) {
	sp := newSharedPair(t, 32)
	ctx := t.Context()
	const keyA, keyB = 0xa1, 0xb2
	sp.atA.mustPROut(paRegisterIgnore, 0, 0, keyA)
	sp.atA.mustPROut(paReserve, typeWE, keyA, 0)
	sp.atB.mustPROut(paRegisterIgnore, 0, 0, keyB)
	sp.atB.mustPROut(paRegister, 0, keyB, 0) // unregistered: B's path is fenced
	block := bytes.Repeat([]byte{0x5a}, BlockSize)
	wantStatus(t, "B's unregistered path writes", sp.atB.mustDo(0, write10(2, 1, false), BlockSize, block), statusReservationConflict, 0)
	wantStatus(t, "a host's CLEAR, unregistered", sp.atB.prOutCmd(prClear, 0, 0, 0, 0), statusReservationConflict, 0)

	before := sp.b.srv.ReservationStatus(sp.id)
	if before.Type != typeWE || len(before.Registrations) != 1 || before.Generation != 3 {
		t.Fatalf("status at B before the clear: %+v; want A's path holding WRITE EXCLUSIVE at generation 3", before)
	}
	if r := before.Registrations[0]; r.Key != keyA || !r.Holder || r.RelativePort != 1 || r.Target != testIQN ||
		!strings.HasPrefix(r.InitiatorPort, rawInit+",i,0x") {
		t.Fatalf("A's registration as B shows it: %+v", r)
	}

	if err := sp.b.srv.ClearReservations(ctx, sp.id, sp.devB.ForwardReservation, sp.devB.ShareReservations); err != nil {
		t.Fatal(err)
	}
	for name, tgt := range map[string]*testServer{"A": sp.a, "B": sp.b} {
		if st := tgt.srv.ReservationStatus(sp.id); st.Type != 0 || len(st.Registrations) != 0 || st.Generation != 4 {
			t.Errorf("status at %s after the operator's clear: %+v; want none at generation 4", name, st)
		}
	}
	wantStatus(t, "A's registered path after the clear", sp.atA.mustDo(0, read10(2, 1), BlockSize, nil), statusCheckCondition, ascReservationsPreempted)
	wantStatus(t, "B's path after the clear", sp.atB.mustDo(0, write10(2, 1, false), BlockSize, block), statusGood, 0)
	if !strings.Contains(sp.a.logs.String(), "cleared by the array's operator") {
		t.Errorf("no journal line of the operator's clear at the deciding target:\n%s", sp.a.logs.String())
	}

	// Nothing to clear changes nothing.
	if err := sp.a.srv.ClearReservations(ctx, sp.id, nil, sp.devA.ShareReservations); err != nil {
		t.Fatal(err)
	}
	if st := sp.a.srv.ReservationStatus(sp.id); st.Generation != 4 {
		t.Errorf("a clear of a unit without reservations moved the generation to %d", st.Generation)
	}
}

// TestPreemptAndAbortLeavesOthersRunning: PREEMPT AND ABORT ends the
// preempted nexuses' commands only (SAM); a write of another registered
// path that is running does not hold the preemption up, and completes.
func TestPreemptAndAbortLeavesOthersRunning(t *testing.T) {
	dev := &gatedDevice{fileDevice: newFileDevice(t, 1<<20, 23), entered: make(chan struct{}, 4), gate: make(chan struct{})}
	ts, node, survivor := twoHosts(t, dev)
	release := sync.OnceFunc(func() { close(dev.gate) })
	t.Cleanup(release)               // before the server stops, should the test fail with the write held
	bystander := dialRaw(t, ts.addr) // the node host's other path
	bystander.mustLogin(loginOpts{initiator: rawInit, target: testIQN, isid: [6]byte{0x80, 0, 0, 0, 0, 0x3}})
	const nodeKey, survivorKey, bystanderKey = 0xaaaa, 0xbbbb, 0xcccc
	for _, s := range []struct {
		c   *rawClient
		key uint64
	}{{node, nodeKey}, {survivor, survivorKey}, {bystander, bystanderKey}} {
		s.c.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil)
		s.c.mustPROut(paRegisterIgnore, 0, 0, s.key)
	}
	node.mustPROut(paReserve, typeWERO, nodeKey, 0)

	written := bystander.goDo(write10(9, 1, false), BlockSize, bytes.Repeat([]byte{0x6d}, BlockSize))
	<-dev.entered
	cdb, p := prOutParams(paPreemptAbort, typeWERO, survivorKey, nodeKey, 0)
	done := survivor.goDo(cdb, len(p), p)
	select {
	case r := <-done:
		wantStatus(t, "PREEMPT AND ABORT", r, statusGood, 0)
	case <-time.After(5 * time.Second):
		t.Fatal("PREEMPT AND ABORT waited for the write of a path it did not preempt")
	}
	release()
	wantStatus(t, "the other path's write", <-written, statusGood, 0)
	if _, keys := keysOf(survivor.prIn(prInReadKeys)); len(keys) != 2 || keys[0] != survivorKey || keys[1] != bystanderKey {
		t.Fatalf("keys after preempting the node's: %x; want the survivor's and the other path's", keys)
	}
}

// TestForgetReservations: a unit whose volume was deleted starts afresh
// should a volume with its identity come back: no registrations, no
// reservation, no attention owed from the old one's.
func TestForgetReservations(t *testing.T) {
	dev := newFileDevice(t, 1<<20, 24)
	ts, node, other := twoHosts(t, dev)
	node.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil)
	other.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil)
	node.mustPROut(paRegisterIgnore, 0, 0, 0x77)
	other.mustPROut(paRegisterIgnore, 0, 0, 0x88)
	node.mustPROut(paReserve, typeWE, 0x77, 0)
	other.mustPROut(0x4, typeWE, 0x88, 0x77) // PREEMPT: the node is owed REGISTRATIONS PREEMPTED
	naa := dev.Identity().NAA
	if st := ts.srv.ReservationStatus(naa); st.Type != typeWE || len(st.Registrations) != 1 {
		t.Fatalf("before: %+v", st)
	}
	ts.srv.ForgetReservations(naa)
	if st := ts.srv.ReservationStatus(naa); st.Type != 0 || len(st.Registrations) != 0 || st.Generation != 0 {
		t.Fatalf("after ForgetReservations: %+v; want nothing", st)
	}
	block := make([]byte, BlockSize)
	wantStatus(t, "the preempted node's write", node.mustDo(0, write10(1, 1, false), BlockSize, block), statusGood, 0)
	wantStatus(t, "the other host's write", other.mustDo(0, write10(1, 1, false), BlockSize, block), statusGood, 0)
}

// TestReservationStatusOfAnUnopenedUnit: the operator reads a unit no
// session has opened from what the Keeper holds, without the server
// keeping a unit for it.
func TestReservationStatusOfAnUnopenedUnit(t *testing.T) {
	keeper := &memKeeper{saved: map[[16]byte][]byte{}}
	ts := startServer(t, newTestTargets(), Options{Keeper: keeper})
	naa := [16]byte{0x60, 1, 2, 3}
	st := &prState{version: 2, generation: 1, regs: []registration{{n: nexus{initiator: rawInit, target: testIQN, port: 1}, key: 0x42}}}
	if err := ts.srv.keep(t.Context(), naa, st); err != nil {
		t.Fatal(err)
	}
	got := ts.srv.ReservationStatus(naa)
	if got.Generation != 1 || len(got.Registrations) != 1 || got.Registrations[0].Key != 0x42 {
		t.Fatalf("status from the Keeper: %+v", got)
	}
	if _, ok := ts.srv.units.Load(naa); ok {
		t.Error("reading the status kept a unit in memory")
	}
}

// TestReservationTurnEndsWithContext: PERSISTENT RESERVE OUTs of a unit
// take turns, and the deciding target's turn lasts until the other target
// holds the new state. One waiting for its turn behind a change the other
// target has not acknowledged gives up when its context ends, here the
// operator's clear with a deadline, rather than waiting out the peer.
func TestReservationTurnEndsWithContext(t *testing.T) {
	sp := newSharedPair(t, 33)
	shared := sp.devA.share
	entered, gate := make(chan struct{}, 1), make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // before the servers stop, should the test fail with the change held
	sp.devA.share = func(ctx context.Context, state []byte) ([]byte, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
		return shared(ctx, state)
	}
	cdb, p := prOutParams(paRegisterIgnore, 0, 0, 0xa1, 0)
	registered := sp.atA.goDo(cdb, len(p), p)
	<-entered // the REGISTER has the turn and waits for B

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	cleared := make(chan error, 1)
	go func() { cleared <- sp.a.srv.ClearReservations(ctx, sp.id, nil, sp.devA.ShareReservations) }()
	select {
	case err := <-cleared:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the clear queued behind an unacknowledged change returned %v; want its deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the operator's clear waited for its turn past its deadline")
	}

	release()
	wantStatus(t, "the REGISTER once B holds it", <-registered, statusGood, 0)
	if st := sp.b.srv.ReservationStatus(sp.id); len(st.Registrations) != 1 || st.Generation != 1 {
		t.Fatalf("status at B after the REGISTER: %+v; want one registration at generation 1", st)
	}
	// The turn was left: the next change goes through.
	if err := sp.a.srv.ClearReservations(t.Context(), sp.id, nil, sp.devA.ShareReservations); err != nil {
		t.Fatal(err)
	}
	if st := sp.b.srv.ReservationStatus(sp.id); len(st.Registrations) != 0 || st.Generation != 2 {
		t.Fatalf("status at B after the clear: %+v; want none at generation 2", st)
	}
}

// TestOutsiders: the check an NBD export makes of its volume's
// reservation follows every change a host makes over iSCSI, taken before
// the unit was opened or after: no reservation lets a client without a
// registration read and write; a WRITE EXCLUSIVE one lets it read only;
// an EXCLUSIVE ACCESS one lets it do neither. A unit's kept state counts
// before any session opens it again.
func TestOutsiders(t *testing.T) {
	keeper := &memKeeper{saved: map[[16]byte][]byte{}}
	dev := newFileDevice(t, 1<<20, 42)
	naa := dev.Identity().NAA
	tt := newTestTargets()
	tt.add(testIQN, rawInit, Auth{}, 0, dev)
	ts := startServer(t, tt, Options{Keeper: keeper})
	before := ts.srv.Outsiders(naa) // no session has opened the unit yet
	c := dialRaw(t, ts.addr)
	c.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	c.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil)
	after := ts.srv.Outsiders(naa)
	want := func(what string, w Outsider) {
		t.Helper()
		for _, check := range []func() Outsider{before, after} {
			if got := check(); got != w {
				t.Fatalf("%s: outsiders get %+v, want %+v", what, got, w)
			}
		}
	}
	want("no reservation", Outsider{Write: true, Read: true})
	const key = 0x0b5d
	c.mustPROut(paRegister, 0, 0, key)
	want("registered, not reserved", Outsider{Write: true, Read: true})
	c.mustPROut(paReserve, typeWE, key, 0)
	want("WRITE EXCLUSIVE", Outsider{Reserved: typeWE, Read: true})
	c.mustPROut(paRelease, typeWE, key, 0)
	const typeEARO = byte(prExclusiveAccessRO)
	c.mustPROut(paReserve, typeEARO, key, 0)
	want("EXCLUSIVE ACCESS, REGISTRANTS ONLY", Outsider{Reserved: typeEARO})

	// Another server with the same keeper, as after a restart: the kept
	// reservation holds before any session opens the unit.
	again := startServer(t, newTestTargets(), Options{Keeper: keeper})
	if got := again.srv.Outsiders(naa)(); got != (Outsider{Reserved: typeEARO}) {
		t.Fatalf("outsiders of a kept EXCLUSIVE ACCESS reservation after a restart: %+v", got)
	}

	ts.srv.ForgetReservations(naa)
	want("reservations forgotten (volume deleted)", Outsider{Write: true, Read: true})
}
