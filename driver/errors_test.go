package driver

import (
	"context"
	"log/slog"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/errdefs"
)

// failedOps is a Replication whose snapshot transfers all end failed with
// one error code, as an array records them.
type failedOps struct {
	array.Replication
	code string
}

func (f failedOps) ReplicateSnapshot(context.Context, array.SnapshotReplicateSpec) (string, error) {
	return "op-1", nil
}

func (f failedOps) WatchOperation(_ context.Context, id string, fn func(array.Operation) error) error {
	return fn(array.Operation{ID: id, State: array.OpFailed, Err: "peer site-a at 10.0.0.1:7401: connection refused", ErrCode: f.code})
}

// TestSendSnapshotKeepsTheOperationsKind: a failback or rewind whose
// transfer failed reports the transfer's own kind, not INTERNAL.
func TestSendSnapshotKeepsTheOperationsKind(t *testing.T) {
	for _, tc := range []struct {
		code string
		kind errdefs.Kind
	}{
		{"UNAVAILABLE", errdefs.KindUnavailable},
		{"FAILED_PRECONDITION", errdefs.KindFailedPrecondition},
		{"NOT_FOUND", errdefs.KindNotFound},
		{"RESOURCE_EXHAUSTED", errdefs.KindResourceExhausted},
		{"CANCELED", errdefs.KindCanceled},
		{"INTERNAL", errdefs.KindUnknown},
		{"", errdefs.KindUnknown},
	} {
		_, err := sendSnapshot(t.Context(), failedOps{code: tc.code}, array.SnapshotReplicateSpec{Volume: "volume-v1-cinder", Snapshot: "failback.1", Link: "failback.b1"})
		if got := errdefs.KindOf(err); got != tc.kind {
			t.Errorf("operation failed with %q: error kind %v, want %v (%v)", tc.code, got, tc.kind, err)
		}
	}
}

// snapArray is an Array that answers Info, and ListSnapshots with err.
type snapArray struct {
	array.Array
	infoErr, listErr error
}

func (a snapArray) Info(context.Context) (array.Info, error) { return array.Info{}, a.infoErr }

func (a snapArray) ListSnapshots(context.Context, string) ([]array.Snapshot, error) {
	return nil, a.listErr
}

// TestGroupFailoverKeepsInnerKinds: a group failover that cannot list the
// target's snapshots because the target stopped answering is UNAVAILABLE
// (retry), not FAILED_PRECONDITION; one that finds no common group
// snapshot is FAILED_PRECONDITION.
func TestGroupFailoverKeepsInnerKinds(t *testing.T) {
	down := errdefs.Unavailable("replication target site-b is unreachable")
	for _, tc := range []struct {
		listErr error
		kind    errdefs.Kind
	}{
		{down, errdefs.KindUnavailable},
		{nil, errdefs.KindFailedPrecondition},
	} {
		b := &Backend{cfg: config.Backend{Section: "b1", PGName: "cinder-group", Pool: "cinder",
			ReplicationDevices: []config.ReplicationDevice{{BackendID: "site-b", SanIP: "b:7401", Type: "async"}}},
			log:     slog.New(slog.DiscardHandler),
			primary: Conn{Array: snapArray{infoErr: errdefs.Unavailable("primary down")}},
			targets: map[string]Conn{"site-b": {Array: snapArray{listErr: tc.listErr}}}}
		b.opts.defaults()
		_, err := b.groupFailover(t.Context(), groupName("g1"), []string{"volume-v1-cinder"}, "site-b")
		if got := errdefs.KindOf(err); got != tc.kind {
			t.Errorf("ListSnapshots error %v: group failover error kind %v, want %v (%v)", tc.listErr, got, tc.kind, err)
		}
	}
}
