package driver

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// TestManageUnmanage adopts a volume made directly on a real array (over
// gRPC), checks its data, size, replication and listing, refuses what
// must not be adopted, lets it go and adopts it again, and does the same
// for a snapshot.
func TestManageUnmanage(t *testing.T) {
	ctx := t.Context()
	b, primary, peer := pairedBackend(t, "async")
	st := primary.st
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	pool := b.cfg.Pool
	// 1 GiB and a block: manage rounds it up to 2 GiB.
	_, err := st.CreateVolume(ctx, array.VolumeSpec{Name: "legacy", Pool: pool, SizeBytes: gib + array.BlockSize,
		Labels: map[string]string{"app": "db"}})
	must(err)
	pattern := bytes.Repeat([]byte("volrep-manage"), 1000)[:8192]
	must(st.WriteVolume(ctx, "legacy", 4096, pattern, true))

	size, err := b.ManageExistingSize(ctx, ExistingRef{Name: "legacy"})
	if err != nil || size != 2 {
		t.Fatalf("ManageExistingSize = %d, %v; want 2", size, err)
	}
	listed := manageableByName(t, b)
	if m := listed["legacy"]; !m.Safe || m.SizeGB != 2 || m.CinderID != "" {
		t.Fatalf("legacy listed as %+v, want safe, 2 GiB", m)
	}

	mu, size, err := b.ManageExisting(ctx, "m1", ExistingRef{Name: "legacy"}, asyncSpecs)
	if err != nil {
		t.Fatal(err)
	}
	if mu.ProviderID != volumeName("m1") || size != 2 || mu.ReplicationStatus != ReplEnabled {
		t.Fatalf("ManageExisting = %+v, %d GiB", mu, size)
	}
	v, err := st.GetVolume(ctx, volumeName("m1"))
	must(err)
	if v.SizeBytes != 2*gib || v.Labels[labelVolumeID] != "m1" || v.Labels[labelBackend] != "b1" || v.Labels["app"] != "db" {
		t.Fatalf("adopted volume = %+v", v)
	}
	got := make([]byte, len(pattern))
	must(st.ReadVolume(ctx, volumeName("m1"), 4096, got))
	if !bytes.Equal(got, pattern) {
		t.Fatal("the adopted volume does not read as before")
	}
	if _, err := st.GetVolume(ctx, "legacy"); !errdefs.IsNotFound(err) {
		t.Fatalf("the old name after manage: %v, want NOT_FOUND", err)
	}
	if dv, err := b.GetVolume(ctx, "m1"); err != nil || dv.ReplicationType != "async" || dv.SizeGB != 2 {
		t.Fatalf("GetVolume(m1) = %+v, %v", dv, err)
	}
	if m := manageableByName(t, b)[volumeName("m1")]; m.Safe || m.CinderID != "m1" || !strings.Contains(m.Reason, "already managed") {
		t.Fatalf("the managed volume is listed as %+v", m)
	}

	// Refusals, each saying why.
	refused := func(ref ExistingRef, kind errdefs.Kind, why string) {
		t.Helper()
		_, _, err := b.ManageExisting(ctx, "x"+why[:3], ref, VolumeType{})
		if errdefs.KindOf(err) != kind || !strings.Contains(err.Error(), why) {
			t.Fatalf("managing %s: %v, want %v saying %q", ref, err, kind, why)
		}
		if _, err := b.ManageExistingSize(ctx, ref); errdefs.KindOf(err) != kind {
			t.Fatalf("sizing %s: %v, want %v", ref, err, kind)
		}
	}
	refused(ExistingRef{Name: volumeName("m1")}, errdefs.KindFailedPrecondition, "already managed")
	refused(ExistingRef{ID: volumeName("m1")}, errdefs.KindFailedPrecondition, "already managed")
	refused(ExistingRef{Name: "ghost"}, errdefs.KindNotFound, "no array volume")
	_, err = st.CreateVolume(ctx, array.VolumeSpec{Name: "copy", Pool: pool, SizeBytes: gib})
	must(err)
	must(st.SetReadOnly(ctx, "copy", true))
	refused(ExistingRef{Name: "copy"}, errdefs.KindFailedPrecondition, "replica target")
	_, err = st.CreateVolume(ctx, array.VolumeSpec{Name: "theirs", Pool: pool, SizeBytes: gib})
	must(err)
	_, err = st.CreateGroup(ctx, "other-backend-pg", pool, nil)
	must(err)
	_, err = st.AddMembers(ctx, "other-backend-pg", []string{"theirs"})
	must(err)
	refused(ExistingRef{Name: "theirs"}, errdefs.KindFailedPrecondition, "consistency group")
	listed = manageableByName(t, b)
	for _, n := range []string{"copy", "theirs"} {
		if listed[n].Safe || listed[n].Reason == "" {
			t.Fatalf("%s is listed as %+v, want not safe with a reason", n, listed[n])
		}
	}

	// A snapshot taken on the array, adopted and let go.
	_, err = st.CreateSnapshot(ctx, volumeName("m1"), "before-upgrade", map[string]string{"who": "dba"})
	must(err)
	_, err = st.CreateSnapshot(ctx, volumeName("m1"), "repl-owned", map[string]string{labelReplicaOwner: "x"})
	must(err)
	snaps := manageableSnapshots(t, b)
	if m := snaps["before-upgrade"]; !m.Safe || m.Volume != volumeName("m1") || m.SizeGB != 2 {
		t.Fatalf("before-upgrade listed as %+v", m)
	}
	if m := snaps["repl-owned"]; m.Safe {
		t.Fatalf("a replication snapshot is listed safe: %+v", m)
	}
	if _, _, err := b.ManageExistingSnapshot(ctx, "s0", "m1", ExistingRef{Name: "repl-owned"}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("managing a replication snapshot: %v, want FAILED_PRECONDITION", err)
	}
	if size, err := b.ManageExistingSnapshotSize(ctx, "m1", ExistingRef{ID: volumeName("m1") + "@before-upgrade"}); err != nil || size != 2 {
		t.Fatalf("ManageExistingSnapshotSize = %d, %v", size, err)
	}
	smu, _, err := b.ManageExistingSnapshot(ctx, "s1", "m1", ExistingRef{Name: "before-upgrade"})
	must(err)
	if smu.ProviderID != volumeName("m1")+"@"+snapshotName("s1") {
		t.Fatalf("managed snapshot's provider_id = %q", smu.ProviderID)
	}
	if !hasSnapshot(t, b, "m1", "s1") {
		t.Fatal("ListSnapshots does not show the managed snapshot")
	}
	if m := manageableSnapshots(t, b)[snapshotName("s1")]; m.Safe || m.CinderID != "s1" {
		t.Fatalf("the managed snapshot is listed as %+v", m)
	}
	must(b.UnmanageSnapshot(ctx, "s1", "m1"))
	if hasSnapshot(t, b, "m1", "s1") {
		t.Fatal("ListSnapshots still shows the unmanaged snapshot")
	}
	s, err := st.GetSnapshot(ctx, volumeName("m1"), snapshotName("s1")+unmanagedSuffix)
	must(err)
	if s.Labels["cinder.snapshot_id"] != "" || s.Labels["who"] != "dba" {
		t.Fatalf("unmanaged snapshot's labels = %v", s.Labels)
	}
	must(b.UnmanageSnapshot(ctx, "s1", "m1")) // already gone: success
	for _, n := range []string{snapshotName("s1") + unmanagedSuffix, "repl-owned"} {
		must(st.DeleteSnapshot(ctx, volumeName("m1"), n))
	}

	// Unmanage: the volume stays on the array, out of the protection group
	// and without the driver's labels.
	must(b.Unmanage(ctx, "m1"))
	if _, err := b.GetVolume(ctx, "m1"); !errdefs.IsNotFound(err) {
		t.Fatalf("GetVolume after unmanage: %v, want NOT_FOUND", err)
	}
	left := volumeName("m1") + unmanagedSuffix
	v, err = st.GetVolume(ctx, left)
	must(err)
	if v.Labels[labelVolumeID] != "" || v.Labels[labelBackend] != "" || v.Labels["app"] != "db" {
		t.Fatalf("unmanaged volume's labels = %v", v.Labels)
	}
	pg, err := st.GetGroup(ctx, b.cfg.PGName)
	must(err)
	if slices.Contains(pg.Members, left) || slices.Contains(pg.Members, volumeName("m1")) {
		t.Fatalf("the unmanaged volume is still in protection group %s: %v", pg.Name, pg.Members)
	}
	ss, err := st.ListSnapshots(ctx, left)
	must(err)
	if len(ss) != 0 {
		t.Fatalf("the unmanaged volume kept replication's snapshots: %v", ss)
	}
	// Replication removes the copy it made on the target.
	waitFor(t, 20*time.Second, func() string {
		if _, err := peer.st.GetVolume(ctx, volumeName("m1")); !errdefs.IsNotFound(err) {
			return fmt.Sprintf("the copy on the target after unmanage: %v, want NOT_FOUND", err)
		}
		return ""
	})
	must(b.Unmanage(ctx, "m1")) // already gone: success
	if m := manageableByName(t, b)[left]; !m.Safe {
		t.Fatalf("the unmanaged volume is listed as %+v, want safe", m)
	}

	// And adopted again, by provider id, unreplicated this time.
	mu, _, err = b.ManageExisting(ctx, "m2", ExistingRef{ID: left}, VolumeType{})
	must(err)
	if mu.ReplicationStatus != ReplDisabled {
		t.Fatalf("re-managed as an unreplicated type: %+v", mu)
	}
	must(st.ReadVolume(ctx, volumeName("m2"), 4096, got))
	if !bytes.Equal(got, pattern) {
		t.Fatal("the volume managed again does not read as before")
	}
	// A second manage under the same id is a no-op.
	if _, _, err := b.ManageExisting(ctx, "m2", ExistingRef{Name: volumeName("m2")}, VolumeType{}); err != nil {
		t.Fatalf("managing again under the same id: %v", err)
	}
}

func manageableByName(t *testing.T, b *Backend) map[string]Manageable {
	t.Helper()
	return byName(t)(b.ManageableVolumes(t.Context()))
}

func manageableSnapshots(t *testing.T, b *Backend) map[string]Manageable {
	t.Helper()
	return byName(t)(b.ManageableSnapshots(t.Context()))
}

func byName(t *testing.T) func([]Manageable, error) map[string]Manageable {
	return func(ms []Manageable, err error) map[string]Manageable {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]Manageable{}
		for _, m := range ms {
			out[m.Name] = m
		}
		return out
	}
}

func hasSnapshot(t *testing.T, b *Backend, volumeID, id string) bool {
	t.Helper()
	ss, err := b.ListSnapshots(t.Context(), volumeID)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(ss, func(s Snapshot) bool { return s.ID == id })
}

// TestManageSync adopts an array volume into a sync-replicated type: it
// joins the pod and its copy is on the peer when manage returns; unmanage
// takes it out of the pod, whose peer drops its copy, and the volume
// stays, writable, on the array.
func TestManageSync(t *testing.T) {
	ctx := t.Context()
	b, primary, peer := pairedBackend(t, "sync")
	st := primary.st
	if _, err := st.CreateVolume(ctx, array.VolumeSpec{Name: "legacy", Pool: b.cfg.Pool, SizeBytes: gib}); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0x77}, 2*array.BlockSize)
	if err := st.WriteVolume(ctx, "legacy", 0, data, true); err != nil {
		t.Fatal(err)
	}
	mu, _, err := b.ManageExisting(ctx, "s1", ExistingRef{Name: "legacy"}, syncSpecs)
	if err != nil {
		t.Fatal(err)
	}
	if mu.ReplicationStatus != ReplEnabled {
		t.Fatalf("managed into a sync type: %+v", mu)
	}
	pod, err := st.GetGroup(ctx, b.cfg.PodName)
	if err != nil || !slices.Contains(pod.Members, volumeName("s1")) {
		t.Fatalf("pod %s after manage: %v, %v", b.cfg.PodName, pod.Members, err)
	}
	got := make([]byte, len(data))
	if err := peer.st.ReadVolume(ctx, volumeName("s1"), 0, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the peer's copy after manage: %v, equal %v", err, bytes.Equal(got, data))
	}

	if err := b.Unmanage(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	left := volumeName("s1") + unmanagedSuffix
	pod, err = st.GetGroup(ctx, b.cfg.PodName)
	if err != nil || slices.Contains(pod.Members, volumeName("s1")) || slices.Contains(pod.Members, left) {
		t.Fatalf("pod %s after unmanage: %v, %v", b.cfg.PodName, pod.Members, err)
	}
	if err := st.WriteVolume(ctx, left, 0, data[:array.BlockSize], true); err != nil {
		t.Fatalf("writing the unmanaged volume: %v", err)
	}
	waitFor(t, 20*time.Second, func() string {
		if _, err := peer.st.GetVolume(ctx, volumeName("s1")); !errdefs.IsNotFound(err) {
			return fmt.Sprintf("the peer's copy after unmanage: %v, want NOT_FOUND", err)
		}
		return ""
	})
}
