// Package testsuite is the conformance suite for array.Array. Every
// implementation, the local engine and the gRPC client alike, runs the
// same tests, so the client cannot drift from the engine it fronts.
package testsuite

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// Opener returns a fresh, empty array for one test. Cleanup is the
// opener's job (t.Cleanup).
type Opener func(t *testing.T) array.Array

// Run runs every conformance test against arrays from open.
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, array.Array)
	}{
		{"Pools", testPools},
		{"VolumeLifecycle", testVolumeLifecycle},
		{"ReadWrite", testReadWrite},
		{"Snapshots", testSnapshots},
		{"Clones", testClones},
		{"Diff", testDiff},
		{"Errors", testErrors},
		{"Exports", testExports},
		{"Hosts", testHosts},
		{"HostPreferredArrays", testHostPreferredArrays},
		{"Checksums", testChecksums},
		{"ReadOnlyAndSnapshotSets", testReadOnlyAndSets},
		{"Property", testProperty},
		{"Revert", testRevert},
		{"Rename", testRename},
		{"QoS", testQoS},
		{"Reservations", testReservations},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

const mib = 1 << 20

// mustT turns a (value, error) call into its value, failing the test on
// error: mVol(t)(a.CreateVolume(ctx, spec)).
func mustT[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

var (
	mPool  = mustT[array.Pool]
	mPools = mustT[[]array.Pool]
	mVol   = mustT[array.Volume]
	mVols  = mustT[[]array.Volume]
	mSnap  = mustT[array.Snapshot]
	mSnaps = mustT[[]array.Snapshot]
	mExts  = mustT[[]array.Extent]
	mInfo  = mustT[array.Info]
)

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantKind(t *testing.T, err error, k errdefs.Kind, what string) {
	t.Helper()
	if got := errdefs.KindOf(err); got != k {
		t.Fatalf("%s: got error %v (kind %v), want kind %v", what, err, got, k)
	}
}

func setup(t *testing.T, a array.Array) context.Context {
	ctx := t.Context()
	mPool(t)(a.CreatePool(ctx, "p1"))
	return ctx
}

func testPools(t *testing.T, a array.Array) {
	ctx := t.Context()
	p := mPool(t)(a.CreatePool(ctx, "gold"))
	if p.Name != "gold" || p.Created.IsZero() {
		t.Fatalf("CreatePool = %+v", p)
	}
	again := mPool(t)(a.CreatePool(ctx, "gold"))
	if !again.Created.Equal(p.Created) {
		t.Fatal("re-creating a pool replaced it")
	}
	mPool(t)(a.CreatePool(ctx, "silver"))
	pools := mPools(t)(a.ListPools(ctx))
	if len(pools) != 2 || pools[0].Name != "gold" || pools[1].Name != "silver" {
		t.Fatalf("ListPools = %+v", pools)
	}
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "gold", SizeBytes: mib}))
	if got := mPool(t)(a.GetPool(ctx, "gold")); got.VolumeCount != 1 {
		t.Fatalf("VolumeCount = %d", got.VolumeCount)
	}
	wantKind(t, a.DeletePool(ctx, "gold"), errdefs.KindFailedPrecondition, "delete non-empty pool")
	ok(t, a.DeletePool(ctx, "silver"))
	_, err := a.GetPool(ctx, "silver")
	wantKind(t, err, errdefs.KindNotFound, "get deleted pool")
	info := mInfo(t)(a.Info(ctx))
	if info.ID == "" || info.BlockSize != array.BlockSize || info.CapacityBytes <= 0 {
		t.Fatalf("Info = %+v", info)
	}
	// A pod's preferred array forwards its peer's writes only to a peer
	// that reports this (over gRPC too).
	if !info.Has(array.FeatureForwardOwnCopy) {
		t.Fatalf("Info.Features = %q; want %q among them", info.Features, array.FeatureForwardOwnCopy)
	}
}

func testVolumeLifecycle(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	spec := array.VolumeSpec{Name: "vol1", Pool: "p1", SizeBytes: 4 * mib, Labels: map[string]string{"k": "v"}}
	v := mVol(t)(a.CreateVolume(ctx, spec))
	if v.SizeBytes != 4*mib || v.Pool != "p1" || v.Labels["k"] != "v" || v.UsedBytes != 0 {
		t.Fatalf("CreateVolume = %+v", v)
	}
	// An identical create is idempotent; another shape is ALREADY_EXISTS.
	mVol(t)(a.CreateVolume(ctx, spec))
	spec.SizeBytes = 8 * mib
	_, err := a.CreateVolume(ctx, spec)
	wantKind(t, err, errdefs.KindAlreadyExists, "create with another size")

	v = mVol(t)(a.ExtendVolume(ctx, "vol1", 8*mib))
	if v.SizeBytes != 8*mib {
		t.Fatalf("extend: size %d", v.SizeBytes)
	}
	_, err = a.ExtendVolume(ctx, "vol1", 4*mib)
	wantKind(t, err, errdefs.KindInvalidArgument, "shrink")
	// The new space reads as zeros and can be written.
	buf := make([]byte, 4096)
	ok(t, a.ReadVolume(ctx, "vol1", 6*mib, buf))
	if !bytes.Equal(buf, make([]byte, 4096)) {
		t.Fatal("extended space not zero")
	}
	ok(t, a.WriteVolume(ctx, "vol1", 8*mib-4096, bytes.Repeat([]byte{7}, 4096), false))

	vols := mVols(t)(a.ListVolumes(ctx, "p1"))
	if len(vols) != 1 || vols[0].Name != "vol1" || vols[0].UsedBytes != 4096 {
		t.Fatalf("ListVolumes = %+v", vols)
	}
	ok(t, a.DeleteVolume(ctx, "vol1"))
	wantKind(t, a.DeleteVolume(ctx, "vol1"), errdefs.KindNotFound, "delete twice")
	if vols := mVols(t)(a.ListVolumes(ctx, "")); len(vols) != 0 {
		t.Fatalf("volumes left: %+v", vols)
	}
}

func testReadWrite(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "rw", Pool: "p1", SizeBytes: 2 * mib}))
	want := make([]byte, 2*mib)
	r := rand.New(rand.NewPCG(7, 7))
	for _, w := range []struct{ off, n int }{{0, 4096}, {100, 10}, {4095, 2}, {8192, 3 * 4096}, {2*mib - 700, 700}, {70000, 200000}} {
		p := make([]byte, w.n)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		copy(want[w.off:], p)
		ok(t, a.WriteVolume(ctx, "rw", int64(w.off), p, w.n == 10))
	}
	ok(t, a.FlushVolume(ctx, "rw"))
	got := make([]byte, 2*mib)
	for off := 0; off < len(got); off += mib {
		ok(t, a.ReadVolume(ctx, "rw", int64(off), got[off:off+mib]))
	}
	if !bytes.Equal(got, want) {
		t.Fatal("read back differs from what was written")
	}
	wantKind(t, a.WriteVolume(ctx, "rw", 2*mib-1, []byte{1, 2}, false), errdefs.KindInvalidArgument, "write past end")
	wantKind(t, a.ReadVolume(ctx, "rw", -1, got[:1]), errdefs.KindInvalidArgument, "negative offset")
	wantKind(t, a.ReadVolume(ctx, "nope", 0, got[:1]), errdefs.KindNotFound, "read unknown volume")
}

func testSnapshots(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "sv", Pool: "p1", SizeBytes: mib}))
	ok(t, a.WriteVolume(ctx, "sv", 0, bytes.Repeat([]byte{1}, 8192), false))
	s1 := mSnap(t)(a.CreateSnapshot(ctx, "sv", "s1", map[string]string{"a": "b"}))
	if s1.GUID == "" || s1.SizeBytes != mib || s1.Volume != "sv" || s1.Labels["a"] != "b" {
		t.Fatalf("CreateSnapshot = %+v", s1)
	}
	if again := mSnap(t)(a.CreateSnapshot(ctx, "sv", "s1", nil)); again.GUID != s1.GUID {
		t.Fatal("re-creating a snapshot replaced it")
	}
	ok(t, a.WriteVolume(ctx, "sv", 4096, bytes.Repeat([]byte{2}, 4096), false))
	s2 := mSnap(t)(a.CreateSnapshot(ctx, "sv", "s2", nil))
	if s2.GUID == s1.GUID {
		t.Fatal("two snapshots share a GUID")
	}
	ok(t, a.WriteVolume(ctx, "sv", 0, bytes.Repeat([]byte{3}, 4096), false))

	buf := make([]byte, 8192)
	ok(t, a.ReadSnapshot(ctx, "sv", "s1", 0, buf))
	if !bytes.Equal(buf, bytes.Repeat([]byte{1}, 8192)) {
		t.Fatal("s1 changed after later writes")
	}
	ok(t, a.ReadSnapshot(ctx, "sv", "s2", 0, buf))
	if buf[0] != 1 || buf[4096] != 2 {
		t.Fatalf("s2 = %d,%d", buf[0], buf[4096])
	}
	list := mSnaps(t)(a.ListSnapshots(ctx, "sv"))
	if len(list) != 2 || list[0].Name != "s1" || list[1].Name != "s2" {
		t.Fatalf("ListSnapshots = %+v", list)
	}
	wantKind(t, a.DeleteVolume(ctx, "sv"), errdefs.KindFailedPrecondition, "delete volume with snapshots")
	// Deleting the older snapshot must leave the newer one and the volume intact.
	ok(t, a.DeleteSnapshot(ctx, "sv", "s1"))
	ok(t, a.ReadSnapshot(ctx, "sv", "s2", 0, buf))
	if buf[0] != 1 || buf[4096] != 2 {
		t.Fatalf("s2 after deleting s1 = %d,%d", buf[0], buf[4096])
	}
	ok(t, a.ReadVolume(ctx, "sv", 0, buf))
	if buf[0] != 3 || buf[4096] != 2 {
		t.Fatalf("volume after deleting s1 = %d,%d", buf[0], buf[4096])
	}
	_, err := a.GetSnapshot(ctx, "sv", "s1")
	wantKind(t, err, errdefs.KindNotFound, "get deleted snapshot")
	ok(t, a.DeleteSnapshot(ctx, "sv", "s2"))
	ok(t, a.ReadVolume(ctx, "sv", 0, buf))
	if buf[0] != 3 || buf[4096] != 2 {
		t.Fatalf("volume after deleting s2 = %d,%d", buf[0], buf[4096])
	}
	ok(t, a.DeleteVolume(ctx, "sv"))
}

func testClones(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "src", Pool: "p1", SizeBytes: mib}))
	ok(t, a.WriteVolume(ctx, "src", 0, bytes.Repeat([]byte{9}, 4096), false))
	mSnap(t)(a.CreateSnapshot(ctx, "src", "base", nil))
	mPool(t)(a.CreatePool(ctx, "p2"))
	spec := array.CloneSpec{Volume: "src", Snapshot: "base", Name: "c1", Pool: "p2", SizeBytes: 2 * mib}
	c := mVol(t)(a.CloneSnapshot(ctx, spec))
	if c.Source != "src@base" || c.Pool != "p2" || c.SizeBytes != 2*mib {
		t.Fatalf("CloneSnapshot = %+v", c)
	}
	mVol(t)(a.CloneSnapshot(ctx, spec)) // idempotent
	spec.SizeBytes = 4 * mib
	_, err := a.CloneSnapshot(ctx, spec)
	wantKind(t, err, errdefs.KindAlreadyExists, "clone with another size")
	c2 := mVol(t)(a.CloneSnapshot(ctx, array.CloneSpec{Volume: "src", Snapshot: "base", Name: "c2"}))
	if c2.Pool != "p1" || c2.SizeBytes != mib {
		t.Fatalf("clone defaults = %+v", c2)
	}
	// Writes to the clone, the source and the other clone stay apart.
	ok(t, a.WriteVolume(ctx, "c1", 0, bytes.Repeat([]byte{1}, 100), false))
	ok(t, a.WriteVolume(ctx, "src", 0, bytes.Repeat([]byte{2}, 4096), false))
	buf := make([]byte, 4096)
	ok(t, a.ReadVolume(ctx, "c1", 0, buf))
	if buf[0] != 1 || buf[100] != 9 {
		t.Fatalf("c1 = %d,%d", buf[0], buf[100])
	}
	ok(t, a.ReadVolume(ctx, "c2", 0, buf))
	if buf[0] != 9 {
		t.Fatalf("c2 = %d", buf[0])
	}
	// The snapshot may go while clones still use its data.
	ok(t, a.DeleteSnapshot(ctx, "src", "base"))
	ok(t, a.ReadVolume(ctx, "c2", 0, buf))
	if buf[0] != 9 {
		t.Fatalf("c2 after deleting its snapshot = %d", buf[0])
	}
	ok(t, a.DeleteVolume(ctx, "c1"))
	ok(t, a.ReadVolume(ctx, "c2", 0, buf))
	if buf[0] != 9 {
		t.Fatalf("c2 after deleting c1 = %d", buf[0])
	}
	ok(t, a.DeleteVolume(ctx, "src"))
	ok(t, a.ReadVolume(ctx, "c2", 4000, buf[:96]))
	if buf[0] != 9 {
		t.Fatalf("c2 after deleting src = %d", buf[0])
	}
	_, err = a.CloneSnapshot(ctx, array.CloneSpec{Volume: "c2", Snapshot: "missing", Name: "c3"})
	wantKind(t, err, errdefs.KindNotFound, "clone missing snapshot")
}

func testDiff(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "d", Pool: "p1", SizeBytes: 4 * mib}))
	ok(t, a.WriteVolume(ctx, "d", 0, bytes.Repeat([]byte{1}, 3*4096), false))
	ok(t, a.WriteVolume(ctx, "d", 2*mib, bytes.Repeat([]byte{1}, 4096), false))
	mSnap(t)(a.CreateSnapshot(ctx, "d", "a", nil))
	full := mExts(t)(a.Diff(ctx, "d", "", "a"))
	wantExt := []array.Extent{{Offset: 0, Length: 3 * 4096}, {Offset: 2 * mib, Length: 4096}}
	if fmt.Sprint(full) != fmt.Sprint(wantExt) {
		t.Fatalf("full diff = %v, want %v", full, wantExt)
	}
	ok(t, a.WriteVolume(ctx, "d", 4096, []byte{5}, false))
	ok(t, a.WriteVolume(ctx, "d", 3*mib, bytes.Repeat([]byte{6}, 8192), false))
	mSnap(t)(a.CreateSnapshot(ctx, "d", "b", nil))
	ok(t, a.WriteVolume(ctx, "d", 3*mib+8192, bytes.Repeat([]byte{6}, 4096), false))
	mSnap(t)(a.CreateSnapshot(ctx, "d", "c", nil))
	delta := mExts(t)(a.Diff(ctx, "d", "a", "c"))
	wantExt = []array.Extent{{Offset: 4096, Length: 4096}, {Offset: 3 * mib, Length: 3 * 4096}}
	if fmt.Sprint(delta) != fmt.Sprint(wantExt) {
		t.Fatalf("delta a..c = %v, want %v", delta, wantExt)
	}
	if d := mExts(t)(a.Diff(ctx, "d", "c", "c")); len(d) != 0 {
		t.Fatalf("diff of a snapshot with itself = %v", d)
	}
	_, err := a.Diff(ctx, "d", "c", "a")
	wantKind(t, err, errdefs.KindFailedPrecondition, "diff with base newer than snapshot")
}

func testErrors(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	_, err := a.CreateVolume(ctx, array.VolumeSpec{Name: "bad/name", Pool: "p1", SizeBytes: mib})
	wantKind(t, err, errdefs.KindInvalidArgument, "bad name")
	_, err = a.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "p1", SizeBytes: 1000})
	wantKind(t, err, errdefs.KindInvalidArgument, "unaligned size")
	_, err = a.CreateVolume(ctx, array.VolumeSpec{Name: "v", Pool: "nopool", SizeBytes: mib})
	wantKind(t, err, errdefs.KindNotFound, "unknown pool")
	_, err = a.CreateSnapshot(ctx, "ghost", "s", nil)
	wantKind(t, err, errdefs.KindNotFound, "snapshot of unknown volume")
	_, err = a.GetVolume(ctx, "ghost")
	wantKind(t, err, errdefs.KindNotFound, "get unknown volume")
	wantKind(t, a.DeleteSnapshot(ctx, "ghost", "s"), errdefs.KindNotFound, "delete unknown snapshot")
}

// testExports needs an array that serves NBD (or says it does).
func testExports(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "ev", Pool: "p1", SizeBytes: mib}))
	mSnap(t)(a.CreateSnapshot(ctx, "ev", "es", nil))
	e1, err := a.CreateExport(ctx, array.ExportSpec{Volume: "ev", AttachmentID: "host1"})
	ok(t, err)
	if len(e1.Name) < 20 || e1.Host == "" || e1.Port == 0 || e1.ReadOnly || e1.Volume != "ev" {
		t.Fatalf("CreateExport = %+v", e1)
	}
	again, err := a.CreateExport(ctx, array.ExportSpec{Volume: "ev", AttachmentID: "host1"})
	ok(t, err)
	if again.Name != e1.Name {
		t.Fatal("re-creating an export made a new one")
	}
	e2, err := a.CreateExport(ctx, array.ExportSpec{Volume: "ev", AttachmentID: "host2"})
	ok(t, err)
	if e2.Name == e1.Name {
		t.Fatal("two attachments share an export name")
	}
	se, err := a.CreateExport(ctx, array.ExportSpec{Volume: "ev", Snapshot: "es", AttachmentID: "host1"})
	ok(t, err)
	if !se.ReadOnly || se.Name == e1.Name {
		t.Fatalf("snapshot export = %+v", se)
	}
	_, err = a.CreateExport(ctx, array.ExportSpec{Volume: "nope", AttachmentID: "h"})
	wantKind(t, err, errdefs.KindNotFound, "export of unknown volume")
	if l, err := a.ListExports(ctx, "ev"); err != nil || len(l) != 3 {
		t.Fatalf("ListExports = %v, %v", l, err)
	}
	if n, err := a.DeleteExport(ctx, e1.Name, "", ""); err != nil || n != 1 {
		t.Fatalf("DeleteExport by name = %d, %v", n, err)
	}
	if n, err := a.DeleteExport(ctx, "", "ev", "host2"); err != nil || n != 1 {
		t.Fatalf("DeleteExport by attachment = %d, %v", n, err)
	}
	if n, err := a.DeleteExport(ctx, "", "ev", "host2"); err != nil || n != 0 {
		t.Fatalf("DeleteExport again = %d, %v", n, err)
	}
	// Deleting the snapshot revokes its export.
	ok(t, a.DeleteSnapshot(ctx, "ev", "es"))
	if l, err := a.ListExports(ctx, ""); err != nil || len(l) != 0 {
		t.Fatalf("exports left: %v, %v", l, err)
	}
}

func testChecksums(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "ck", Pool: "p1", SizeBytes: mib}))
	ok(t, a.WriteVolume(ctx, "ck", 4096, bytes.Repeat([]byte{7}, 5000), false))
	mSnap(t)(a.CreateSnapshot(ctx, "ck", "s", nil))
	sums, err := a.Checksums(ctx, "ck", "s", 0, 4*4096)
	ok(t, err)
	data := make([]byte, 4*4096)
	ok(t, a.ReadSnapshot(ctx, "ck", "s", 0, data))
	if len(sums) != 4 {
		t.Fatalf("%d checksums for 4 blocks", len(sums))
	}
	for i := range sums {
		if want := crc32.Checksum(data[i*4096:(i+1)*4096], crc32.MakeTable(crc32.Castagnoli)); sums[i] != want {
			t.Fatalf("block %d: checksum %08x, want %08x", i, sums[i], want)
		}
	}
	if sums[0] == sums[1] || sums[2] == sums[1] || sums[0] != sums[3] {
		t.Fatalf("checksums do not follow the data: %x", sums)
	}
	_, err = a.Checksums(ctx, "ck", "nope", 0, 4096)
	wantKind(t, err, errdefs.KindNotFound, "checksums of an unknown snapshot")
}

func testReadOnlyAndSets(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "ro", Pool: "p1", SizeBytes: mib}))
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "ro2", Pool: "p1", SizeBytes: mib}))
	ok(t, a.SetReadOnly(ctx, "ro", true))
	if v := mVol(t)(a.GetVolume(ctx, "ro")); !v.ReadOnly {
		t.Fatal("demoted volume is not read-only")
	}
	wantKind(t, a.WriteVolume(ctx, "ro", 0, []byte{1}, false), errdefs.KindFailedPrecondition, "write to a read-only volume")
	ok(t, a.SetReadOnly(ctx, "ro", false))
	ok(t, a.WriteVolume(ctx, "ro", 0, []byte{1}, false))
	ok(t, a.WriteVolume(ctx, "ro2", 0, []byte{2}, false))
	set := mSnaps(t)(a.CreateSnapshotSet(ctx, []string{"ro", "ro2"}, "set1", nil))
	if len(set) != 2 || set[0].Name != "set1" || set[1].Name != "set1" || set[0].Created != set[1].Created {
		t.Fatalf("CreateSnapshotSet = %+v", set)
	}
	wantKind(t, a.SetReadOnly(ctx, "nope", true), errdefs.KindNotFound, "demote an unknown volume")
	ad := mSnap(t)(a.AdoptSnapshot(ctx, "ro2", "adopted", "guid-from-elsewhere", nil))
	if ad.GUID != "guid-from-elsewhere" {
		t.Fatalf("AdoptSnapshot kept GUID %q", ad.GUID)
	}
	_, err := a.AdoptSnapshot(ctx, "ro2", "adopted", "another-guid", nil)
	wantKind(t, err, errdefs.KindAlreadyExists, "adopt an existing name with another identity")
}
