package transfer

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/retention"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/array/wire"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// Advance records, in one store transaction, the snapshot each unchanged
// member would have received in an empty transfer. A member the target
// cannot advance is listed with the reason, and nothing else changes.
func (t *Service) Advance(ctx context.Context, req *arrayv1.AdvanceRequest) (*arrayv1.AdvanceResponse, error) {
	reqs := make([]store.AdvanceRequest, len(req.GetMembers()))
	for i, m := range req.GetMembers() {
		reqs[i] = store.AdvanceRequest{BaseGUID: m.GetBaseGuid(), SnapshotRequest: store.SnapshotRequest{
			Volume: m.GetVolume(), Name: m.GetSnapshotName(), GUID: m.GetSnapshotGuid(), Labels: m.GetSnapshotLabels(),
			Created: m.GetSnapshotCreated().AsTime(),
		}}
	}
	snaps, refused, err := t.s.AdvanceSnapshots(ctx, reqs)
	if err != nil {
		return nil, err
	}
	out := &arrayv1.AdvanceResponse{Results: make([]*arrayv1.AdvanceResult, len(reqs))}
	for i, r := range reqs {
		res := &arrayv1.AdvanceResult{Volume: r.Volume}
		if refused[i] != nil {
			res.Refused = refused[i].Error()
		} else {
			res.Snapshot = wire.SnapshotToPB(snaps[i])
		}
		out.Results[i] = res
	}
	return out, nil
}

// AdvanceMember is one unchanged volume to advance at the target: remote
// volume Volume, whose newest snapshot must be Base, takes Snap.
type AdvanceMember struct {
	Volume string
	Base   string // GUID
	Snap   array.Snapshot
}

// MaxAdvance is how many members one Advance call carries.
const MaxAdvance = 1000

// SendAdvance asks the target to advance members, in calls of at most
// MaxAdvance. It returns the members the target advanced; the others need
// a transfer.
func SendAdvance(ctx context.Context, c arrayv1.TransferServiceClient, sourceID string, members []AdvanceMember) (map[string]bool, error) {
	done := map[string]bool{}
	for len(members) > 0 {
		batch := members[:min(len(members), MaxAdvance)]
		members = members[len(batch):]
		req := &arrayv1.AdvanceRequest{SourceArrayId: sourceID, Members: make([]*arrayv1.AdvanceMember, len(batch))}
		for i, m := range batch {
			req.Members[i] = &arrayv1.AdvanceMember{Volume: m.Volume, BaseGuid: m.Base, SnapshotName: m.Snap.Name,
				SnapshotGuid: m.Snap.GUID, SnapshotCreated: timestamppb.New(m.Snap.Created.Round(0).UTC()), SnapshotLabels: m.Snap.Labels}
		}
		resp, err := c.Advance(ctx, req)
		if err != nil {
			return done, err
		}
		for _, r := range resp.GetResults() {
			if r.GetRefused() == "" && r.GetSnapshot().GetGuid() != "" {
				done[r.GetVolume()] = true
			}
		}
	}
	return done, nil
}

// Prune applies a replica's target retention to its copies in one go:
// the sender need not list every copy's snapshots, and the deletes take
// one transaction.
func (t *Service) Prune(ctx context.Context, req *arrayv1.PruneRequest) (*arrayv1.PruneResponse, error) {
	policy, now := wire.RetentionFromPB(req.GetRetention()), req.GetNow().AsTime()
	var refs []store.SnapshotRef
	for _, vol := range req.GetVolumes() {
		ours, err := t.s.SnapshotsLabeled(ctx, vol, LabelReplica, req.GetReplica())
		if errdefs.IsNotFound(err) {
			continue // not replicated yet
		}
		if err != nil {
			return nil, err
		}
		times := make([]time.Time, len(ours))
		for i, s := range ours {
			times[i] = s.Created
		}
		for i, k := range retention.Keep(times, now, policy) {
			if !k {
				refs = append(refs, store.SnapshotRef{Volume: vol, Name: ours[i].Name})
			}
		}
	}
	kept, err := t.s.PruneSnapshots(ctx, refs)
	if err != nil {
		return nil, err
	}
	out := &arrayv1.PruneResponse{}
	for _, k := range kept {
		out.Kept = append(out.Kept, &arrayv1.PruneSnapshot{Volume: k.Volume, Snapshot: k.Name})
	}
	return out, nil
}

// LabelReplica is the label naming the replica a snapshot belongs to.
const LabelReplica = "volrep.replica"

// SendPrune asks the target to apply retention policy to the replica's
// snapshots of volumes, in calls of at most MaxAdvance volumes.
func SendPrune(ctx context.Context, c arrayv1.TransferServiceClient, replica string, volumes []string, policy array.Retention, now time.Time) error {
	for len(volumes) > 0 {
		batch := volumes[:min(len(volumes), MaxAdvance)]
		volumes = volumes[len(batch):]
		req := &arrayv1.PruneRequest{Replica: replica, Volumes: batch, Retention: wire.RetentionToPB(policy), Now: timestamppb.New(now)}
		if _, err := c.Prune(ctx, req); err != nil {
			return err
		}
	}
	return nil
}
