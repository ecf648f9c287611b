package driver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/driver/extraspecs"
	"github.com/volrep/volrep/errdefs"
)

// Adopting array volumes into Cinder (manage) and letting them go
// (unmanage). See doc.go, "Addressing", for why adoption renames.

// unmanagedSuffix ends the name of a volume or snapshot Cinder let go, as
// Pure's driver does, so it is neither Cinder's nor mistaken for it.
const unmanagedSuffix = "-unmanaged"

// ExistingRef names an array object to manage: Cinder's existing_ref,
// {'source-name': NAME} or {'source-id': PROVIDER_ID}.
type ExistingRef struct {
	Name, ID string
}

func (r ExistingRef) String() string {
	if r.Name != "" {
		return fmt.Sprintf("{'source-name': %q}", r.Name)
	}
	return fmt.Sprintf("{'source-id': %q}", r.ID)
}

// Manageable is an array volume or snapshot as Cinder's
// get_manageable_volumes and get_manageable_snapshots list it.
type Manageable struct {
	// Name is the array volume's name, or the snapshot's.
	Name string
	// Volume is the snapshot's volume (snapshots only).
	Volume   string
	SizeGB   int64
	Safe     bool
	Reason   string
	CinderID string
	Extra    map[string]string
}

// sizeGB rounds up: Cinder sizes are whole GiB, and manage grows a volume
// to the size Cinder records.
func sizeGB(bytes int64) int64 { return (bytes + gib - 1) / gib }

// holders is what, besides its record, reaches array volumes by name.
type holders struct {
	groups  map[string]array.Group
	conns   map[string]string // volume (or "volume@snapshot") → host
	exports map[string]string // the same → attachment
}

func (b *Backend) holders(ctx context.Context, a array.Array) (holders, error) {
	h := holders{groups: map[string]array.Group{}, conns: map[string]string{}, exports: map[string]string{}}
	gs, err := a.ListGroups(ctx)
	if err != nil {
		return h, err
	}
	for _, g := range gs {
		for _, m := range g.Members {
			h.groups[m] = g
		}
	}
	cs, err := a.ListConnections(ctx, "", "")
	if err != nil {
		return h, err
	}
	for _, c := range cs {
		h.conns[refOf(c.Volume, c.Snapshot)] = c.Host
	}
	es, err := a.ListExports(ctx, "")
	if err != nil {
		return h, err
	}
	for _, e := range es {
		h.exports[refOf(e.Volume, e.Snapshot)] = e.AttachmentID
	}
	return h, nil
}

func refOf(volume, snapshot string) string {
	if snapshot == "" {
		return volume
	}
	return volume + "@" + snapshot
}

// volumeRefusal says why an array volume cannot be adopted, and what to
// do; "" means it can. cinderID is the Cinder volume it already is.
func (b *Backend) volumeRefusal(v array.Volume, h holders) (reason, cinderID string) {
	if id, ok := volumeID(v.Name); ok {
		return fmt.Sprintf("already managed by Cinder as volume %s; unmanage it first to adopt it under another id", id), id
	}
	if id := v.Labels[labelVolumeID]; id != "" {
		return fmt.Sprintf("labelled as Cinder volume %s of backend %q; unmanage it there first", id, v.Labels[labelBackend]), id
	}
	if v.ReadOnly {
		return "a read-only replica target (replication writes this copy); manage its source volume, or fail over to promote it", ""
	}
	if g, ok := h.groups[v.Name]; ok {
		return fmt.Sprintf("a member of consistency group %q (a protection group or pod replicates it, or another backend's Cinder group holds it); remove it from that group first", g.Name), ""
	}
	if v.Pool != b.cfg.Pool {
		return fmt.Sprintf("in pool %q, but backend %s manages pool %q", v.Pool, b.cfg.Section, b.cfg.Pool), ""
	}
	if host, ok := h.conns[v.Name]; ok {
		return fmt.Sprintf("connected to host %q; disconnect it first", host), ""
	}
	if att, ok := h.exports[v.Name]; ok {
		return fmt.Sprintf("exported over NBD to attachment %q; detach it first", att), ""
	}
	return "", ""
}

// existingVolume finds the array volume ref names and checks it can be
// adopted.
func (b *Backend) existingVolume(ctx context.Context, ref ExistingRef) (array.Volume, error) {
	name := ref.Name
	if name == "" {
		// A provider_id is the array volume's name; "<array>/<name>" is accepted too.
		name = ref.ID[strings.LastIndex(ref.ID, "/")+1:]
	}
	a := b.activeArray()
	v, err := a.GetVolume(ctx, name)
	if errdefs.IsNotFound(err) {
		return array.Volume{}, errdefs.NotFound("no array volume %q on backend %s (existing_ref %s); give {'source-name': NAME} with a name that `cinder manageable-list` shows", name, b.cfg.Section, ref)
	}
	if err != nil {
		return array.Volume{}, err
	}
	h, err := b.holders(ctx, a)
	if err != nil {
		return array.Volume{}, err
	}
	if reason, _ := b.volumeRefusal(v, h); reason != "" {
		return array.Volume{}, errdefs.FailedPrecondition("array volume %q cannot be managed: %s", v.Name, reason)
	}
	return v, nil
}

// ManageExistingSize returns the size, in whole GiB rounded up, that
// managing ref would give the volume, refusing what manage would refuse.
func (b *Backend) ManageExistingSize(ctx context.Context, ref ExistingRef) (int64, error) {
	if err := b.ready(); err != nil {
		return 0, err
	}
	v, err := b.existingVolume(ctx, ref)
	if err != nil {
		return 0, err
	}
	return sizeGB(v.SizeBytes), nil
}

// ManageExisting adopts the array volume ref names as Cinder volume id of
// type vt: it is renamed volume-<id>-cinder and labelled as the driver's
// own volumes are (its other labels stay), in one array transaction; it
// grows to whole GiB; and it joins the replication its type asks for.
// Managing again after success, under the same id, is a no-op.
func (b *Backend) ManageExisting(ctx context.Context, id string, ref ExistingRef, vt VolumeType) (ModelUpdate, int64, error) {
	kind, release, err := b.startCreate(id, vt)
	if err != nil {
		return ModelUpdate{}, 0, err
	}
	defer release()
	a, name := b.activeArray(), volumeName(id)
	if done, err := a.GetVolume(ctx, name); err == nil && done.Labels[labelVolumeID] == id && (ref.Name == name || ref.ID == name) {
		mu, err := b.finishCreate(ctx, name, kind, vt)
		return mu, sizeGB(done.SizeBytes), err
	}
	v, err := b.existingVolume(ctx, ref)
	if err != nil {
		return ModelUpdate{}, 0, err
	}
	labels := maps.Clone(v.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.DeleteFunc(labels, func(k, _ string) bool { return driverLabel(k) })
	maps.Copy(labels, b.volumeLabels(id, vt, kind))
	if _, err := a.RenameVolume(ctx, v.Name, name, labels); err != nil {
		if errdefs.IsAlreadyExists(err) {
			return ModelUpdate{}, 0, errdefs.AlreadyExists("volume %s already exists on backend %s; manage under another Cinder volume", id, b.cfg.Section)
		}
		return ModelUpdate{}, 0, fmt.Errorf("adopting array volume %q as %s: %w", v.Name, name, err)
	}
	size := sizeGB(v.SizeBytes)
	if v.SizeBytes%gib != 0 {
		if _, err := a.ExtendVolume(ctx, name, size*gib); err != nil {
			return ModelUpdate{}, 0, fmt.Errorf("growing adopted volume %s to %d GiB: %w", name, size, err)
		}
	}
	mu, err := b.finishCreate(ctx, name, kind, vt)
	return mu, size, err
}

// driverLabel says whether a label key is one the driver sets, which an
// adopted volume must not carry over and an unmanaged one loses.
func driverLabel(k string) bool {
	return strings.HasPrefix(k, "cinder.") || strings.HasPrefix(k, "volrep.")
}

// Unmanage lets Cinder volume id go, leaving it on the array: it leaves
// the protection group or pod its type put it in (with the snapshots
// replication took of it), loses the driver's labels, and is renamed
// volume-<id>-cinder-unmanaged, so it is neither Cinder's nor in its
// way, and manageable again. A volume already gone is success.
func (b *Backend) Unmanage(ctx context.Context, id string) error {
	if err := b.ready(); err != nil {
		return err
	}
	release, err := b.ops.acquire("volume "+id, "unmanage")
	if err != nil {
		return err
	}
	defer release()
	a, name := b.activeArray(), volumeName(id)
	v, err := a.GetVolume(ctx, name)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	kind, group, err := b.protectionOf(ctx, name)
	if err != nil {
		return err
	}
	if group != "" && group != b.cfg.PGName && group != b.cfg.PodName {
		return errdefs.FailedPrecondition("volume %s is in replicating group array group %q; remove it from its Cinder group first", id, group)
	}
	if err := b.dropReplicationSnapshots(ctx, a, name); err != nil {
		return err
	}
	// Cinder unmanages only detached volumes: exports left are stale.
	if _, err := a.DeleteExport(ctx, "", name, ""); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	labels := maps.Clone(v.Labels)
	maps.DeleteFunc(labels, func(k, _ string) bool { return driverLabel(k) })
	if labels == nil {
		labels = map[string]string{}
	}
	_, err = a.RenameVolume(ctx, name, name+unmanagedSuffix, labels)
	if errdefs.IsAlreadyExists(err) {
		return errdefs.AlreadyExists("cannot unmanage volume %s: array volume %q already exists on backend %s; rename or delete it first", id, name+unmanagedSuffix, b.cfg.Section)
	}
	if err == nil && kind == extraspecs.Async && !b.failedOver() {
		// The protection group's next copy removes the volume's copy on
		// the targets: start it now rather than at the next interval.
		b.kickGroup(ctx, b.cfg.PGName)
	}
	return err
}

// snapshotRefusal says why an array snapshot cannot be adopted; "" means
// it can. cinderID is the Cinder snapshot it already is.
func snapshotRefusal(s array.Snapshot, h holders) (reason, cinderID string) {
	if _, ok := volumeID(s.Volume); !ok {
		return fmt.Sprintf("its volume %q is not managed by Cinder; manage the volume first", s.Volume), ""
	}
	if id, ok := snapshotID(s.Name); ok {
		return fmt.Sprintf("already managed by Cinder as snapshot %s", id), id
	}
	if s.Labels[labelReplicaOwner] != "" {
		return "taken by replication, which deletes it when it is no longer needed", ""
	}
	if id := s.Labels["cinder.snapshot_id"]; id != "" {
		return fmt.Sprintf("labelled as Cinder snapshot %s", id), id
	}
	if host, ok := h.conns[s.Ref()]; ok {
		return fmt.Sprintf("connected to host %q; disconnect it first", host), ""
	}
	if att, ok := h.exports[s.Ref()]; ok {
		return fmt.Sprintf("exported over NBD to attachment %q; detach it first", att), ""
	}
	return "", ""
}

// existingSnapshot finds the snapshot of Cinder volume volumeID that ref
// names ("name", or a provider_id "volume@name") and checks it can be
// adopted.
func (b *Backend) existingSnapshot(ctx context.Context, volumeID string, ref ExistingRef) (array.Snapshot, error) {
	vol, snap := volumeName(volumeID), ref.Name
	if snap == "" {
		v, s, ok := strings.Cut(ref.ID, "@")
		if !ok || v != vol {
			return array.Snapshot{}, errdefs.NotFound("existing_ref %s is not a snapshot of volume %s (array volume %q); give {'source-name': SNAPSHOT} or {'source-id': '%s@SNAPSHOT'}", ref, volumeID, vol, vol)
		}
		snap = s
	}
	a := b.activeArray()
	s, err := a.GetSnapshot(ctx, vol, snap)
	if errdefs.IsNotFound(err) {
		return array.Snapshot{}, errdefs.NotFound("no snapshot %q of volume %s (array volume %q) on backend %s (existing_ref %s); give a name that `cinder snapshot-manageable-list` shows", snap, volumeID, vol, b.cfg.Section, ref)
	}
	if err != nil {
		return array.Snapshot{}, err
	}
	h, err := b.holders(ctx, a)
	if err != nil {
		return array.Snapshot{}, err
	}
	if reason, _ := snapshotRefusal(s, h); reason != "" {
		return array.Snapshot{}, errdefs.FailedPrecondition("array snapshot %s cannot be managed: %s", s.Ref(), reason)
	}
	return s, nil
}

// ManageExistingSnapshotSize returns the size in GiB, rounded up, of the
// snapshot managing ref would adopt.
func (b *Backend) ManageExistingSnapshotSize(ctx context.Context, volumeID string, ref ExistingRef) (int64, error) {
	if err := b.ready(); err != nil {
		return 0, err
	}
	s, err := b.existingSnapshot(ctx, volumeID, ref)
	if err != nil {
		return 0, err
	}
	return sizeGB(s.SizeBytes), nil
}

// ManageExistingSnapshot adopts a snapshot of Cinder volume volumeID as
// Cinder snapshot id: renamed snapshot-<id> and labelled, atomically.
func (b *Backend) ManageExistingSnapshot(ctx context.Context, id, volumeID string, ref ExistingRef) (ModelUpdate, int64, error) {
	if err := b.ready(); err != nil {
		return ModelUpdate{}, 0, err
	}
	release, err := b.ops.acquire("volume "+volumeID, "manage snapshot")
	if err != nil {
		return ModelUpdate{}, 0, err
	}
	defer release()
	a, vol := b.activeArray(), volumeName(volumeID)
	if done, err := a.GetSnapshot(ctx, vol, snapshotName(id)); err == nil && (ref.Name == done.Name || ref.ID == done.Ref()) {
		return ModelUpdate{ProviderID: done.Ref()}, sizeGB(done.SizeBytes), nil
	}
	s, err := b.existingSnapshot(ctx, volumeID, ref)
	if err != nil {
		return ModelUpdate{}, 0, err
	}
	labels := maps.Clone(s.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels["cinder.snapshot_id"] = id
	out, err := a.RenameSnapshot(ctx, vol, s.Name, snapshotName(id), labels)
	if errdefs.IsAlreadyExists(err) {
		return ModelUpdate{}, 0, errdefs.AlreadyExists("snapshot %s already exists on volume %s; manage under another Cinder snapshot", id, volumeID)
	}
	if err != nil {
		return ModelUpdate{}, 0, err
	}
	return ModelUpdate{ProviderID: out.Ref()}, sizeGB(out.SizeBytes), nil
}

// UnmanageSnapshot lets Cinder snapshot id go, leaving it on the array
// renamed snapshot-<id>-unmanaged without the driver's label. A snapshot
// already gone is success.
func (b *Backend) UnmanageSnapshot(ctx context.Context, id, volumeID string) error {
	if err := b.ready(); err != nil {
		return err
	}
	release, err := b.ops.acquire("volume "+volumeID, "unmanage snapshot")
	if err != nil {
		return err
	}
	defer release()
	a, vol, name := b.activeArray(), volumeName(volumeID), snapshotName(id)
	s, err := a.GetSnapshot(ctx, vol, name)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	labels := maps.Clone(s.Labels)
	maps.DeleteFunc(labels, func(k, _ string) bool { return driverLabel(k) })
	if labels == nil {
		labels = map[string]string{}
	}
	_, err = a.RenameSnapshot(ctx, vol, name, name+unmanagedSuffix, labels)
	if errdefs.IsAlreadyExists(err) {
		return errdefs.AlreadyExists("cannot unmanage snapshot %s: snapshot %q of volume %s already exists; rename or delete it first", id, name+unmanagedSuffix, volumeID)
	}
	return err
}

// ManageableVolumes lists the volumes of the backend's pool, each with
// whether it can be managed and, if not, why, by name.
func (b *Backend) ManageableVolumes(ctx context.Context) ([]Manageable, error) {
	_, vs, h, err := b.poolVolumes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Manageable, 0, len(vs))
	for _, v := range vs {
		reason, cinderID := b.volumeRefusal(v, h)
		extra := map[string]string{"created": v.Created.UTC().Format("2006-01-02T15:04:05Z"), "wwn": v.WWN}
		if v.Source != "" {
			extra["source"] = v.Source
		}
		out = append(out, Manageable{Name: v.Name, SizeGB: sizeGB(v.SizeBytes), Safe: reason == "", Reason: reason,
			CinderID: cinderID, Extra: extra})
	}
	slices.SortFunc(out, func(x, y Manageable) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// ManageableSnapshots lists the snapshots of the backend pool's volumes,
// each with whether it can be managed and, if not, why.
func (b *Backend) ManageableSnapshots(ctx context.Context) ([]Manageable, error) {
	a, vs, h, err := b.poolVolumes(ctx)
	if err != nil {
		return nil, err
	}
	out := []Manageable{}
	for _, v := range vs {
		if v.SnapshotCount == 0 {
			continue
		}
		ss, err := a.ListSnapshots(ctx, v.Name)
		if errdefs.IsNotFound(err) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, err
		}
		for _, s := range ss {
			reason, cinderID := snapshotRefusal(s, h)
			out = append(out, Manageable{Name: s.Name, Volume: s.Volume, SizeGB: sizeGB(s.SizeBytes), Safe: reason == "",
				Reason: reason, CinderID: cinderID,
				Extra: map[string]string{"created": s.Created.UTC().Format("2006-01-02T15:04:05Z"), "guid": s.GUID}})
		}
	}
	slices.SortFunc(out, func(x, y Manageable) int {
		return strings.Compare(x.Volume+"\x00"+x.Name, y.Volume+"\x00"+y.Name)
	})
	return out, nil
}

// poolVolumes lists the volumes of the backend's pool on the active array,
// with what reaches them by name.
func (b *Backend) poolVolumes(ctx context.Context) (array.Array, []array.Volume, holders, error) {
	if err := b.ready(); err != nil {
		return nil, nil, holders{}, err
	}
	a := b.activeArray()
	vs, err := a.ListVolumes(ctx, b.cfg.Pool)
	if err != nil {
		return nil, nil, holders{}, err
	}
	h, err := b.holders(ctx, a)
	return a, vs, h, err
}
