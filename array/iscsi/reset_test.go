package iscsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// sharingDevice is a fileDevice whose logical unit another target serves
// too (a pod's copy at its other array).
type sharingDevice struct {
	*fileDevice
	told atomic.Int64 // resets this target told it of
}

func (d *sharingDevice) ShareReset(context.Context) { d.told.Add(1) }

// lunReset sends a LOGICAL UNIT RESET and returns the TMF response code.
func (c *rawClient) lunReset(t *testing.T, lun uint64) byte {
	t.Helper()
	return c.tmf(t, tmfLUReset, lun)
}

// tmf sends a Task Management Function Request and returns its response
// code.
func (c *rawClient) tmf(t *testing.T, fn byte, lun uint64) byte {
	t.Helper()
	var bhs [bhsLen]byte
	bhs[0], bhs[1] = opTMFReq|0x40, flagFinal|fn
	b, _ := encodeLUN(lun)
	copy(bhs[8:16], b[:])
	c.itt++
	binary.BigEndian.PutUint32(bhs[16:], c.itt)
	binary.BigEndian.PutUint32(bhs[20:], 0xffffffff)
	binary.BigEndian.PutUint32(bhs[24:], c.cmdSN)
	binary.BigEndian.PutUint32(bhs[28:], c.expStatSN)
	if err := c.send(bhs, nil); err != nil {
		t.Fatal(err)
	}
	p, err := c.recv()
	if err != nil || p.opcode() != opTMFResp {
		t.Fatalf("task management function %d: %v %+v", fn, err, p)
	}
	return p.bhs[2]
}

// pendingWrite is a WRITE(10) of 8 blocks sent without its data, whose
// R2T the target sent: it waits for its Data-Out (finish).
type pendingWrite struct {
	c   *rawClient
	itt uint32
	ttt uint32
}

// startWrite sends a WRITE(10) of 8 blocks at LBA 0 of lun without data
// and reads its R2T.
func (c *rawClient) startWrite(t *testing.T, lun uint64) pendingWrite {
	t.Helper()
	bhs := c.cmdPDU(lun, write10(0, 8, false), 8*BlockSize, false, true)
	itt := c.itt
	if err := c.send(bhs, nil); err != nil {
		t.Fatal(err)
	}
	r2t, err := c.recv()
	if err != nil || r2t.opcode() != opR2T {
		t.Fatalf("want an R2T for the write: %v %+v", err, r2t)
	}
	return pendingWrite{c: c, itt: itt, ttt: r2t.u32(20)}
}

// finish sends the write's data and returns its SCSI Response.
func (w pendingWrite) finish(t *testing.T, data []byte) *pdu {
	t.Helper()
	var d [bhsLen]byte
	d[0], d[1] = opDataOut, flagFinal
	binary.BigEndian.PutUint32(d[16:], w.itt)
	binary.BigEndian.PutUint32(d[20:], w.ttt)
	binary.BigEndian.PutUint32(d[28:], w.c.expStatSN)
	if err := w.c.send(d, data); err != nil {
		t.Fatal(err)
	}
	resp, err := w.c.recv()
	if err != nil || resp.opcode() != opSCSIResp || resp.itt() != w.itt {
		t.Fatalf("want the write's response: %v %+v", err, resp)
	}
	return resp
}

// TestSharedLogicalUnitReset: a LOGICAL UNIT RESET taken by the other
// target of a shared logical unit is a unit attention here, reported once;
// one taken here is told to the other target, and is a unit attention
// here as before.
func TestSharedLogicalUnitReset(t *testing.T) {
	dev := &sharingDevice{fileDevice: newFileDevice(t, 16<<20, 9)}
	ts, c, _ := twoHosts(t, dev)
	tur := make([]byte, 6)
	if r := c.mustDo(0, tur, 0, nil); r.status != statusGood {
		t.Fatalf("TUR: %#x", r.status)
	}
	resetFrom["the other target"](t, ts, dev, nil)
	r := c.mustDo(0, tur, 0, nil)
	if key, asc := r.senseKey(); key != senseUnitAttention || asc != ascResetOccurred {
		t.Fatalf("after a reset at the other target: sense %x/%04x, want UNIT ATTENTION 29/00", key, asc)
	}
	if r := c.mustDo(0, tur, 0, nil); r.status != statusGood {
		t.Fatal("the unit attention is reported twice")
	}
	if resp := c.lunReset(t, 0); resp != tmfComplete {
		t.Fatalf("LOGICAL UNIT RESET response %d", resp)
	}
	if n := dev.told.Load(); n != 1 {
		t.Fatalf("the other target was told of %d resets, want 1", n)
	}
	r = c.mustDo(0, tur, 0, nil)
	if key, asc := r.senseKey(); key != senseUnitAttention || asc != ascResetOccurred {
		t.Fatalf("after a reset here: sense %x/%04x, want UNIT ATTENTION 29/00", key, asc)
	}
	// Both are counted, and the journal names each.
	if st := ts.srv.Stats(); st.Resets != 2 || st.TaskManagement != 1 {
		t.Fatalf("Stats: %d resets and %d task management requests, want 2 and 1", st.Resets, st.TaskManagement)
	}
	for _, want := range []string{`msg="iscsi: task management" initiator=` + rawInit, `function="LOGICAL UNIT RESET" lun=0 response="function complete"`,
		`msg="iscsi: a LOGICAL UNIT RESET taken at the other target applied" wwn=`} {
		if !strings.Contains(ts.logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, ts.logs)
		}
	}
}

// gatedDevice holds every write until gate is closed, after saying so on
// entered.
type gatedDevice struct {
	*fileDevice
	entered chan struct{}
	gate    chan struct{}
}

func (d *gatedDevice) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	d.entered <- struct{}{}
	<-d.gate
	return d.fileDevice.WriteAt(ctx, p, off, fua)
}

// twoHosts serves dev to two hosts and logs each in: two I_T nexuses
// to one logical unit.
func twoHosts(t *testing.T, dev Device) (ts *testServer, c1, c2 *rawClient) {
	t.Helper()
	tt := newTestTargets()
	const other = "iqn.2026-12.test:other-host"
	tt.add(testIQN, rawInit, Auth{}, 0, dev)
	tt.add(testIQN, other, Auth{}, 0, nil)
	ts = startServer(t, tt, Options{})
	c1, c2 = dialRaw(t, ts.addr), dialRaw(t, ts.addr)
	c1.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	c2.mustLogin(loginOpts{initiator: other, target: testIQN})
	return ts, c1, c2
}

// resetFrom is where a LOGICAL UNIT RESET of LUN 0 comes from: a host
// of this target (c2's session), or the other target of the shared
// unit. It returns once the reset is answered there.
var resetFrom = map[string]func(t *testing.T, ts *testServer, dev Device, c2 *rawClient){
	"a session here": func(t *testing.T, _ *testServer, _ Device, c2 *rawClient) {
		if resp := c2.lunReset(t, 0); resp != tmfComplete {
			t.Fatalf("LOGICAL UNIT RESET response %d", resp)
		}
	},
	"the other target": func(t *testing.T, ts *testServer, dev Device, _ *rawClient) {
		if err := ts.srv.SharedReset(dev.Identity().NAA)(t.Context()); err != nil {
			t.Fatalf("the drain of a reset at the other target: %v", err)
		}
	},
}

// TestLogicalUnitResetWaitsForEveryNexus: a LOGICAL UNIT RESET is
// answered only once the commands running on the unit from every
// session are done, not only those of the session that sent it, and a
// reset at the other target of a shared unit only once those here are;
// a host that reissues its writes after the reset must not have an
// older one land afterwards.
func TestLogicalUnitResetWaitsForEveryNexus(t *testing.T) {
	for from, reset := range resetFrom {
		t.Run(from, func(t *testing.T) {
			dev := &gatedDevice{fileDevice: newFileDevice(t, 16<<20, 10), entered: make(chan struct{}, 1), gate: make(chan struct{})}
			ts, c1, c2 := twoHosts(t, dev)
			type reply struct {
				r   scsiReply
				err error
			}
			written := make(chan reply, 1)
			go func() {
				r, err := c1.do(0, write10(0, 8, false), 8*BlockSize, bytes.Repeat([]byte{0x5a}, 8*BlockSize))
				written <- reply{r, err}
			}()
			<-dev.entered
			const held = 300 * time.Millisecond
			var opened atomic.Int64
			time.AfterFunc(held, func() { opened.Store(time.Now().UnixNano()); close(dev.gate) })
			reset(t, ts, dev, c2)
			answered := time.Now().UnixNano()
			if o := opened.Load(); o == 0 || answered < o {
				t.Fatalf("the reset was answered while a write of another session still ran (held %s)", held)
			}
			if w := <-written; w.err != nil || w.r.status != statusGood {
				t.Fatalf("the write that ran across the reset: %+v, %v", w.r, w.err)
			}
		})
	}
}

// TestLogicalUnitResetEndsWritesAwaitingData: a write that another
// session sent before a LOGICAL UNIT RESET (here, or at the other target
// of a shared unit), and whose data comes only after it, is not run, even
// once that session was told of the reset by another command: the reset
// was answered without it, so its host reissues it, and the old write
// must not land after the new one.
func TestLogicalUnitResetEndsWritesAwaitingData(t *testing.T) {
	for from, reset := range resetFrom {
		t.Run(from, func(t *testing.T) {
			dev := newFileDevice(t, 16<<20, 11)
			ts, c1, c2 := twoHosts(t, dev)

			if r := c1.mustDo(0, make([]byte, 6), 0, nil); r.status != statusGood {
				t.Fatalf("TEST UNIT READY: %#x", r.status)
			}
			// c1's write goes without immediate data and waits for its R2T.
			before := make([]byte, 8*BlockSize)
			if err := dev.ReadAt(context.Background(), before, 0); err != nil {
				t.Fatal(err)
			}
			w := c1.startWrite(t, 0)
			reset(t, ts, dev, c2)
			// c1 learns of the reset through a command of its own.
			r := c1.mustDo(0, make([]byte, 6), 0, nil)
			if key, asc := r.senseKey(); key != senseUnitAttention || asc != ascResetOccurred {
				t.Fatalf("TEST UNIT READY after the reset: sense %x/%04x, want UNIT ATTENTION 29/00", key, asc)
			}
			resp := w.finish(t, bytes.Repeat([]byte{0xa5}, 8*BlockSize))
			if resp.bhs[3] != statusCheckCondition || len(resp.data) < 16 || resp.data[2+2]&0xf != senseUnitAttention ||
				uint16(resp.data[2+12])<<8|uint16(resp.data[2+13]) != ascResetOccurred {
				t.Fatalf("the write that arrived before the reset: status %#x sense % x; want CHECK CONDITION, UNIT ATTENTION 29/00",
					resp.bhs[3], resp.data)
			}
			after := make([]byte, len(before))
			if err := dev.ReadAt(context.Background(), after, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Fatal("the write that arrived before the reset was run after it")
			}
			// A write sent after the reset runs.
			if r := c1.mustDo(0, write10(0, 8, false), 8*BlockSize, bytes.Repeat([]byte{0x3c}, 8*BlockSize)); r.status != statusGood {
				t.Fatalf("a write after the reset: status %#x", r.status)
			}
		})
	}
}

// TestTargetWarmResetResetsEveryLogicalUnit: a TARGET WARM RESET is a
// LOGICAL UNIT RESET of every unit the initiator sees through the
// target: each raises its attention in every session, ends the commands
// that came before it and had not begun, and is told to a shared unit's
// other target.
func TestTargetWarmResetResetsEveryLogicalUnit(t *testing.T) {
	dev0 := &sharingDevice{fileDevice: newFileDevice(t, 16<<20, 12)}
	dev1 := newFileDevice(t, 16<<20, 13)
	tt := newTestTargets()
	const other = "iqn.2026-12.test:other-host"
	tt.add(testIQN, rawInit, Auth{}, 0, dev0)
	tt.add(testIQN, rawInit, Auth{}, 1, dev1)
	tt.add(testIQN, other, Auth{}, 0, nil)
	ts := startServer(t, tt, Options{})
	c1, c2 := dialRaw(t, ts.addr), dialRaw(t, ts.addr)
	c1.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	c2.mustLogin(loginOpts{initiator: other, target: testIQN})
	tur := make([]byte, 6)
	for lun := range uint64(2) {
		if r := c1.mustDo(lun, tur, 0, nil); r.status != statusGood {
			t.Fatalf("TUR of LUN %d: %#x", lun, r.status)
		}
	}
	w := c1.startWrite(t, 1)
	if resp := c2.tmf(t, tmfTargetWarmReset, 0); resp != tmfComplete {
		t.Fatalf("TARGET WARM RESET response %d", resp)
	}
	if n := dev0.told.Load(); n != 1 {
		t.Fatalf("the shared unit's other target was told of %d resets, want 1", n)
	}
	for lun := range uint64(2) {
		r := c1.mustDo(lun, tur, 0, nil)
		if key, asc := r.senseKey(); key != senseUnitAttention || asc != ascResetOccurred {
			t.Fatalf("TUR of LUN %d after a target reset: sense %x/%04x, want UNIT ATTENTION 29/00", lun, key, asc)
		}
	}
	if resp := w.finish(t, bytes.Repeat([]byte{0xa5}, 8*BlockSize)); resp.bhs[3] != statusCheckCondition {
		t.Fatalf("the write that arrived before the target reset: %+v; want CHECK CONDITION", resp)
	}
	got := make([]byte, 8*BlockSize)
	if err := dev1.ReadAt(context.Background(), got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, len(got))) {
		t.Fatal("the write that arrived before the target reset was run after it")
	}
}
