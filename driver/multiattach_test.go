package driver

import (
	"bytes"
	"errors"
	"testing"

	"github.com/volrep/volrep/array/iscsi"
	"github.com/volrep/volrep/array/lunmap"
)

// TestMultiattach: one volume attached read-write to two hosts at once
// over iSCSI; each host's LUN reads what the other wrote, and detaching
// one host revokes only its LUN while the other keeps working.
func TestMultiattach(t *testing.T) {
	ctx := t.Context()
	a := iscsiArray(t, "site-a", "192.0.2.10:3260")
	b := oneBackend(t, a)
	if _, err := b.CreateVolume(ctx, "shared", 1, VolumeType{}, ""); err != nil {
		t.Fatal(err)
	}
	st, err := b.GetVolumeStats(ctx, true)
	if err != nil || !st.Multiattach {
		t.Fatalf("stats multiattach = %v (%v), want true", st.Multiattach, err)
	}
	tg := lunmap.New(a.st)
	open := func(c Connector) iscsi.Device {
		t.Helper()
		ci, err := b.InitializeConnection(ctx, "shared", "", c)
		if err != nil {
			t.Fatal(err)
		}
		p := ci.ISCSI.Paths[0]
		d, err := tg.Open(ctx, c.Initiator, p.IQN, uint64(p.LUN))
		if err != nil {
			t.Fatalf("%s cannot open its LUN %d: %v", c.Host, p.LUN, err)
		}
		t.Cleanup(d.Close)
		return d
	}
	ca := Connector{Host: "compute-a", Initiator: iqnA}
	cb := Connector{Host: "compute-b", Initiator: iqnB}
	da, db := open(ca), open(cb)
	if da.ReadOnly() || db.ReadOnly() {
		t.Fatal("a multiattached LUN is read-only")
	}
	pa, pb := bytes.Repeat([]byte{0xa1}, 4096), bytes.Repeat([]byte{0xb2}, 4096)
	if err := da.WriteAt(ctx, pa, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := db.WriteAt(ctx, pb, 4096, true); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8192)
	for name, d := range map[string]iscsi.Device{"compute-a": da, "compute-b": db} {
		if err := d.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got[:4096], pa) || !bytes.Equal(got[4096:], pb) {
			t.Fatalf("%s does not read both hosts' writes (%v)", name, err)
		}
	}
	if err := b.TerminateConnection(ctx, "shared", "", ca); err != nil {
		t.Fatal(err)
	}
	if err := da.ReadAt(ctx, got, 0); !errors.Is(err, iscsi.ErrNotMapped) {
		t.Fatalf("compute-a after its detach: %v, want not mapped", err)
	}
	if err := db.WriteAt(ctx, pa, 4096, false); err != nil {
		t.Fatalf("compute-b after compute-a's detach: %v", err)
	}
	if err := db.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got[4096:], pa) {
		t.Fatalf("compute-b reads after compute-a's detach: %v", err)
	}
	if cs := connectionsOf(t, a, "", volumeName("shared")); len(cs) != 1 {
		t.Fatalf("connections after one detach = %+v, want compute-b's only", cs)
	}
}
