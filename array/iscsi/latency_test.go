package iscsi

import (
	"testing"

	"github.com/volrep/volrep/internal/latency"
)

// TestLatencyCountsEachCommand: every SCSI command the server runs is
// counted once, under its kind, whatever its status.
func TestLatencyCountsEachCommand(t *testing.T) {
	dev := newFileDevice(t, 1<<20, 41)
	tt := newTestTargets()
	tt.add(testIQN, rawInit, Auth{}, 0, dev)
	ts := startServer(t, tt, Options{})
	c := dialRaw(t, ts.addr)
	c.mustLogin(loginOpts{initiator: rawInit, target: testIQN})
	c.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil) // TEST UNIT READY: the power-on attention
	c.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil)
	block := make([]byte, BlockSize)
	for lba := range uint32(3) {
		wantStatus(t, "write", c.mustDo(0, write10(lba, 1, false), BlockSize, block), statusGood, 0)
	}
	wantStatus(t, "read", c.mustDo(0, read10(0, 1), BlockSize, nil), statusGood, 0)
	wantStatus(t, "SYNCHRONIZE CACHE", c.mustDo(0, []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0, nil), statusGood, 0)
	lat := ts.srv.Stats().Latency
	// Read, write, flush, other.
	if got, want := latency.Counts(lat), [latency.NumOps]uint64{1, 3, 1, 2}; got != want {
		t.Errorf("commands counted by kind %v; want %v", got, want)
	}
	if lat[latency.Write].Sum <= 0 {
		t.Errorf("writes took no time: %+v", lat[latency.Write])
	}
}
