package iscsi

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
)

// sharingDevice is a fileDevice whose logical unit another target serves
// too (a pod's copy at its other array).
type sharingDevice struct {
	*fileDevice
	shared atomic.Uint64 // resets the other target took
	told   atomic.Int64  // resets this target told it of
}

func (d *sharingDevice) ShareReset()          { d.told.Add(1) }
func (d *sharingDevice) SharedResets() uint64 { return d.shared.Load() }

// lunReset sends a LOGICAL UNIT RESET and returns the TMF response code.
func (c *rawClient) lunReset(t *testing.T, lun uint64) byte {
	t.Helper()
	var bhs [bhsLen]byte
	bhs[0], bhs[1] = opTMFReq|0x40, flagFinal|tmfLUReset
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
		t.Fatalf("LOGICAL UNIT RESET: %v %+v", err, p)
	}
	return p.bhs[2]
}

// TestSharedLogicalUnitReset: a LOGICAL UNIT RESET taken by the other
// target of a shared logical unit is a unit attention here, reported once;
// one taken here is told to the other target, and is a unit attention
// here as before.
func TestSharedLogicalUnitReset(t *testing.T) {
	dev := &sharingDevice{fileDevice: newFileDevice(t, 16<<20, 9)}
	tt := newTestTargets()
	tt.add(testIQN, rawInit, Auth{}, 0, dev)
	ts := startServer(t, tt, Options{})
	c := dialRaw(t, ts.addr)
	c.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	tur := make([]byte, 6)
	if r := c.mustDo(0, tur, 0, nil); r.status != statusGood {
		t.Fatalf("TUR: %#x", r.status)
	}
	dev.shared.Add(1)
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
}
