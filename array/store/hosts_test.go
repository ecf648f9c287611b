package store_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
)

const initiator = "iqn.1993-08.org.debian:01:store-test"

func openISCSI(t *testing.T, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(dir, store.Options{Name: "a1", ISCSIPortals: []string{"127.0.0.1:3260"}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHostsSurviveReopen: hosts, secrets, LUNs and WWNs are metadata that
// a restart (clean or not: every change is its own bbolt transaction)
// must keep exactly.
func TestHostsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s := openISCSI(t, dir)
	ctx := t.Context()
	must[array.Pool](t)(s.CreatePool(ctx, "p"))
	v := must[array.Volume](t)(s.CreateVolume(ctx, array.VolumeSpec{Name: "v1", Pool: "p", SizeBytes: 1 << 20}))
	must[array.Volume](t)(s.CreateVolume(ctx, array.VolumeSpec{Name: "v2", Pool: "p", SizeBytes: 1 << 20}))
	must[array.Host](t)(s.CreateHost(ctx, array.HostSpec{Name: "h", IQNs: []string{initiator}, MutualCHAP: true}))
	must[array.Host](t)(s.SetHostPreferredArrays(ctx, "h", []string{"site-b"}))
	c1 := must[array.Connection](t)(s.ConnectVolume(ctx, array.ConnectionSpec{Host: "h", Volume: "v1"}))
	c2 := must[array.Connection](t)(s.ConnectVolume(ctx, array.ConnectionSpec{Host: "h", Volume: "v2"}))
	if err := s.DisconnectVolume(ctx, array.ConnectionSpec{Host: "h", Volume: "v1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openISCSI(t, dir)
	defer s.Close()
	h := must[array.Host](t)(s.GetHost(ctx, "h", true))
	if h.CHAPSecret != c1.CHAPSecret || h.MutualCHAPSecret != c1.MutualCHAPSecret || len(h.IQNs) != 1 || !slices.Equal(h.PreferredArrays, []string{"site-b"}) {
		t.Fatalf("host after reopen = %+v", h)
	}
	cs := must[[]array.Connection](t)(s.ListConnections(ctx, "h", ""))
	if len(cs) != 1 || cs[0].Volume != "v2" || cs[0].LUN != c2.LUN {
		t.Fatalf("connections after reopen = %+v, want only v2 at LUN %d", cs, c2.LUN)
	}
	if got := must[array.Volume](t)(s.GetVolume(ctx, "v1")); got.WWN != v.WWN {
		t.Fatalf("WWN %s became %s across a restart", v.WWN, got.WWN)
	}
	in, found, err := s.LookupInitiator(ctx, "IQN.1993-08.ORG.DEBIAN:01:STORE-TEST")
	if err != nil || !found || in.Host.Name != "h" || len(in.LUNs) != 1 || in.LUNs[0] != c2.LUN {
		t.Fatalf("LookupInitiator (other case) = %+v, %v, %v", in, found, err)
	}
	// The IQN index was rebuilt: another host cannot take it.
	if _, err := s.CreateHost(ctx, array.HostSpec{Name: "h2", IQNs: []string{initiator}}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("taking a reloaded host's IQN: %v", err)
	}
}

// TestDisconnectRevokesOpenHandles: a session's handle checks its
// connection on every I/O, so unmapping ends I/O already under way, as
// revoking an NBD export does.
func TestDisconnectRevokesOpenHandles(t *testing.T) {
	s := openISCSI(t, t.TempDir())
	defer s.Close()
	ctx := t.Context()
	must[array.Pool](t)(s.CreatePool(ctx, "p"))
	v := must[array.Volume](t)(s.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 1 << 20}))
	must[array.Snapshot](t)(s.CreateSnapshot(ctx, "v", "s", nil))
	must[array.Host](t)(s.CreateHost(ctx, array.HostSpec{Name: "h", IQNs: []string{initiator}}))
	c := must[array.Connection](t)(s.ConnectVolume(ctx, array.ConnectionSpec{Host: "h", Volume: "v"}))
	cs := must[array.Connection](t)(s.ConnectVolume(ctx, array.ConnectionSpec{Host: "h", Volume: "v", Snapshot: "s"}))

	hd, serial, err := s.OpenLUN(ctx, initiator, c.LUN)
	if err != nil {
		t.Fatal(err)
	}
	if array.WWN(serial) != v.WWN || hd.ReadOnly() {
		t.Fatalf("LUN %d: serial %s (WWN %s, want %s), read-only %t", c.LUN, serial, array.WWN(serial), v.WWN, hd.ReadOnly())
	}
	data := bytes.Repeat([]byte{9}, 4096)
	if err := hd.WriteAt(ctx, data, 0, true); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if err := s.ReadVolume(ctx, "v", 0, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a write through the LUN is not in the volume: %v", err)
	}
	sh, _, err := s.OpenLUN(ctx, initiator, cs.LUN)
	if err != nil {
		t.Fatal(err)
	}
	if !sh.ReadOnly() || !errdefs.IsFailedPrecondition(sh.WriteAt(ctx, data, 0, false)) {
		t.Fatal("the snapshot's LUN is writable")
	}
	if _, _, err := s.OpenLUN(ctx, initiator, 77); !errdefs.IsNotFound(err) {
		t.Fatalf("unmapped LUN: %v", err)
	}
	if _, _, err := s.OpenLUN(ctx, "iqn.1993-08.org.debian:01:other", c.LUN); !errdefs.IsNotFound(err) {
		t.Fatalf("another initiator's LUN: %v", err)
	}

	if err := s.DisconnectVolume(ctx, array.ConnectionSpec{Host: "h", Volume: "v"}); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"read":  hd.ReadAt(ctx, got, 0),
		"write": hd.WriteAt(ctx, data, 0, false),
		"flush": hd.Flush(ctx),
		"zero":  hd.Zero(ctx, 0, 4096, false),
	} {
		if !errors.Is(err, store.ErrRevoked) {
			t.Errorf("%s after the disconnect: %v, want ErrRevoked", name, err)
		}
	}
	// The snapshot's LUN is another connection and still works.
	if err := sh.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	// Deleting the snapshot unmaps it, and its handle stops too.
	if err := s.DeleteSnapshot(ctx, "v", "s"); err != nil {
		t.Fatal(err)
	}
	if err := sh.ReadAt(ctx, got, 0); !errors.Is(err, store.ErrRevoked) {
		t.Fatalf("read from a deleted snapshot's LUN: %v", err)
	}
}

// TestReceivedVolumeKeepsSerial: a replica created by a transfer takes the
// source's serial, so it has the source's WWN (what failover relies on).
func TestReceivedVolumeKeepsSerial(t *testing.T) {
	ctx := t.Context()
	src := openISCSI(t, t.TempDir())
	defer src.Close()
	dst, err := store.Open(t.TempDir(), store.Options{Name: "a2"})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	must[array.Pool](t)(src.CreatePool(ctx, "p"))
	must[array.Pool](t)(dst.CreatePool(ctx, "p"))
	v := must[array.Volume](t)(src.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 1 << 20}))
	serial := must[string](t)(src.VolumeSerial(ctx, "v"))
	r, err := dst.BeginReceive(ctx, store.ReceiveSpec{TransferID: "t1", Volume: "v", Pool: "p", SizeBytes: 1 << 20,
		Snapshot: store.SnapshotRequest{Name: "s", GUID: "g1"}, Created: time.Now(), ReadOnly: true, Serial: serial})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r.Release()
	if got := must[array.Volume](t)(dst.GetVolume(ctx, "v")); got.WWN != v.WWN {
		t.Fatalf("replica WWN %s, source %s", got.WWN, v.WWN)
	}
	// A clone is a new volume with an identity of its own.
	must[array.Snapshot](t)(src.CreateSnapshot(ctx, "v", "s", nil))
	cl := must[array.Volume](t)(src.CloneSnapshot(ctx, array.CloneSpec{Volume: "v", Snapshot: "s", Name: "c"}))
	if cl.WWN == v.WWN {
		t.Fatal("a clone has its source's WWN")
	}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestHostGivenCHAPSecret: a new host takes the secrets asked for (a pod's
// second array gets the first's), keeps them across a reopen, and an
// existing host keeps its own; a secret outside RFC 7143's bounds is
// refused, naming the field.
func TestHostGivenCHAPSecret(t *testing.T) {
	dir := t.TempDir()
	s := openISCSI(t, dir)
	ctx := t.Context()
	spec := array.HostSpec{Name: "h", IQNs: []string{initiator}, MutualCHAP: true, CHAPSecret: "given-secret-0001", MutualCHAPSecret: "given-mutual-0002"}
	must[array.Host](t)(s.CreateHost(ctx, spec))
	again := spec
	again.CHAPSecret, again.MutualCHAPSecret = "another-secret-01", "another-mutual-02"
	must[array.Host](t)(s.CreateHost(ctx, again))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openISCSI(t, dir)
	defer s.Close()
	if h := must[array.Host](t)(s.GetHost(ctx, "h", true)); h.CHAPSecret != spec.CHAPSecret || h.MutualCHAPSecret != spec.MutualCHAPSecret {
		t.Fatalf("host's secrets %q/%q, want the ones it was created with", h.CHAPSecret, h.MutualCHAPSecret)
	}
	for _, c := range []struct {
		spec  array.HostSpec
		field string
	}{
		{array.HostSpec{Name: "x", IQNs: []string{"iqn.1993-08.org.debian:01:x"}, CHAPSecret: "short"}, "chap_secret"},
		{array.HostSpec{Name: "x", IQNs: []string{"iqn.1993-08.org.debian:01:x"}, CHAPSecret: "has a space 123"}, "chap_secret"},
		{array.HostSpec{Name: "x", IQNs: []string{"iqn.1993-08.org.debian:01:x"}, MutualCHAPSecret: "mutual-secret-1"}, "mutual_chap_secret"},
		{array.HostSpec{Name: "x", IQNs: []string{"iqn.1993-08.org.debian:01:x"}, MutualCHAP: true, CHAPSecret: "same-secret-123", MutualCHAPSecret: "same-secret-123"}, "mutual_chap_secret"},
	} {
		_, err := s.CreateHost(ctx, c.spec)
		var fe *errdefs.Error
		if !errdefs.IsInvalidArgument(err) || !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("CreateHost(%+v) = %v; want INVALID_ARGUMENT on %s", c.spec, err, c.field)
		}
	}
}
