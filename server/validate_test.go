package server

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
	"github.com/volrep/volrep/validation/arrayapi"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// apiPackages are the proto packages whose requests the servers validate.
// Referencing the File_ descriptors links the Go packages in.
var apiPackages = map[protoreflect.FullName]protoreflect.FileDescriptor{
	"volrep.array.v1":  arrayv1.File_volrep_array_v1_array_service_proto,
	"volrep.driver.v1": driverv1.File_volrep_driver_v1_driver_service_proto,
}

// rpcInputs lists every RPC's request message of the API packages, by the
// RPC's full name.
func rpcInputs(t *testing.T) map[string]protoreflect.MessageDescriptor {
	t.Helper()
	out := map[string]protoreflect.MessageDescriptor{}
	for pkg := range apiPackages {
		protoregistry.GlobalFiles.RangeFilesByPackage(pkg, func(fd protoreflect.FileDescriptor) bool {
			svcs := fd.Services()
			for i := range svcs.Len() {
				methods := svcs.Get(i).Methods()
				for j := range methods.Len() {
					m := methods.Get(j)
					out[string(m.FullName())] = m.Input()
				}
			}
			return true
		})
	}
	return out
}

// hasValidate reports whether a validator handles the Go type of md.
func hasValidate(t *testing.T, md protoreflect.MessageDescriptor) bool {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	if err != nil {
		t.Fatalf("no Go type for %s: %v", md.FullName(), err)
	}
	return handled(mt.New().Interface())
}

func handled(req any) bool {
	for _, check := range validators {
		if ok, _ := check(req); ok {
			return true
		}
	}
	return false
}

// TestEveryRPCRequestHasValidate fails when an RPC's request message has no
// case in its API's validator: add one to validation/arrayapi or
// validation/driverapi.
func TestEveryRPCRequestHasValidate(t *testing.T) {
	inputs := rpcInputs(t)
	// The APIs as of this test; more is fine, fewer means the walk broke.
	if len(inputs) < 5+15+12 {
		t.Fatalf("found only %d RPCs in %v", len(inputs), apiPackages)
	}
	var missing []string
	for rpc, md := range inputs {
		if !hasValidate(t, md) {
			missing = append(missing, rpc+" ("+string(md.FullName())+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("requests no validator handles:\n  %s", strings.Join(missing, "\n  "))
	}
}

// TestHasValidateDetectsMissing shows the check above can fail: no
// validator handles a response message.
func TestHasValidateDetectsMissing(t *testing.T) {
	if hasValidate(t, (&arrayv1.GetVolumeResponse{}).ProtoReflect().Descriptor()) {
		t.Fatal("hasValidate is true for a message no validator handles")
	}
}

var (
	volType       = &driverv1.VolumeType{Name: "gold", ExtraSpecs: map[string]string{"replication_enabled": "<is> True"}}
	badType       = &driverv1.VolumeType{Name: "gold", ExtraSpecs: map[string]string{"": "x"}}
	groupType     = &driverv1.GroupType{Name: "replicated", GroupSpecs: map[string]string{"consistent_group_replication_enabled": "<is> True"}}
	mib4          = make([]byte, 4<<20)
	advanceMember = &arrayv1.AdvanceMember{Volume: "v", BaseGuid: "b", SnapshotName: "s", SnapshotGuid: "g", SnapshotCreated: timestamppb.Now()}
)

// validateCases holds, for every request type, at least one valid request
// (field "") and invalid ones with the field that must be named.
var validateCases = []struct {
	name  string
	req   proto.Message
	field string
}{
	// array: ArrayService
	{"info", &arrayv1.GetArrayInfoRequest{}, ""},
	{"create pool", &arrayv1.CreatePoolRequest{Name: "p1"}, ""},
	{"create pool empty", &arrayv1.CreatePoolRequest{}, "name"},
	{"create pool slash", &arrayv1.CreatePoolRequest{Name: "a/b"}, "name"},
	{"get pool", &arrayv1.GetPoolRequest{Name: "p1"}, ""},
	{"get pool at", &arrayv1.GetPoolRequest{Name: "p@1"}, "name"},
	{"list pools", &arrayv1.ListPoolsRequest{}, ""},
	{"delete pool", &arrayv1.DeletePoolRequest{Name: "p1"}, ""},
	{"delete pool empty", &arrayv1.DeletePoolRequest{}, "name"},

	// array: ExportService
	{"create export", &arrayv1.CreateExportRequest{Volume: "v1", AttachmentId: "host1"}, ""},
	{"create export no attachment", &arrayv1.CreateExportRequest{Volume: "v1"}, "attachment_id"},
	{"create export bad snapshot", &arrayv1.CreateExportRequest{Volume: "v1", Snapshot: "a/b", AttachmentId: "h"}, "snapshot"},
	{"delete export by name", &arrayv1.DeleteExportRequest{Name: "abc"}, ""},
	{"delete export by volume", &arrayv1.DeleteExportRequest{Volume: "v1", AttachmentId: "h"}, ""},
	{"delete export nothing", &arrayv1.DeleteExportRequest{}, "volume"},
	{"list exports", &arrayv1.ListExportsRequest{}, ""},

	// array: HostService
	{"create host", &arrayv1.CreateHostRequest{Name: "h", Iqns: []string{"iqn.1993-08.org.debian:01:ab"}}, ""},
	{"create host no iqn", &arrayv1.CreateHostRequest{Name: "h"}, "iqns"},
	{"create host given secret", &arrayv1.CreateHostRequest{Name: "h", Iqns: []string{"iqn.1993-08.org.debian:01:ab"}, ChapSecret: "given-secret-0001"}, ""},
	{"create host short secret", &arrayv1.CreateHostRequest{Name: "h", Iqns: []string{"iqn.1993-08.org.debian:01:ab"}, ChapSecret: "short"}, "chap_secret"},
	{"create host mutual secret alone", &arrayv1.CreateHostRequest{Name: "h", Iqns: []string{"iqn.1993-08.org.debian:01:ab"}, MutualChapSecret: "mutual-secret-01"}, "mutual_chap_secret"},
	{"create host bad iqn", &arrayv1.CreateHostRequest{Name: "h", Iqns: []string{"iqn.1993-08.org.debian:01:ab", "host-1"}}, "iqns"},
	{"create host too many iqns", &arrayv1.CreateHostRequest{Name: "h", Iqns: make([]string, 33)}, "iqns"},
	{"get host", &arrayv1.GetHostRequest{Name: "h", IncludeSecrets: true}, ""},
	{"get host no name", &arrayv1.GetHostRequest{}, "name"},
	{"list hosts", &arrayv1.ListHostsRequest{}, ""},
	{"delete host", &arrayv1.DeleteHostRequest{Name: "h", Force: true}, ""},
	{"set host preferred arrays", &arrayv1.SetHostPreferredArraysRequest{Name: "h", PreferredArrays: []string{"site-b"}}, ""},
	{"clear host preferred arrays", &arrayv1.SetHostPreferredArraysRequest{Name: "h"}, ""},
	{"set host preferred arrays twice", &arrayv1.SetHostPreferredArraysRequest{Name: "h", PreferredArrays: []string{"site-b", "site-b"}}, "preferred_arrays"},
	{"set host preferred arrays bad name", &arrayv1.SetHostPreferredArraysRequest{Name: "h", PreferredArrays: []string{"site b"}}, "preferred_arrays"},
	{"set host preferred arrays no host", &arrayv1.SetHostPreferredArraysRequest{PreferredArrays: []string{"site-b"}}, "name"},
	{"create host bad preferred array", &arrayv1.CreateHostRequest{Name: "h", Iqns: []string{"iqn.1993-08.org.debian:01:ab"}, PreferredArrays: []string{"-x"}}, "preferred_arrays"},
	{"connect volume", &arrayv1.ConnectVolumeRequest{Host: "h", Volume: "v1", Snapshot: "s"}, ""},
	{"connect volume no host", &arrayv1.ConnectVolumeRequest{Volume: "v1"}, "host"},
	{"disconnect volume", &arrayv1.DisconnectVolumeRequest{Host: "h", Volume: "v1"}, ""},
	{"disconnect volume bad snapshot", &arrayv1.DisconnectVolumeRequest{Host: "h", Volume: "v1", Snapshot: "a/b"}, "snapshot"},
	{"volume reservations", &arrayv1.GetVolumeReservationsRequest{Volume: "v1"}, ""},
	{"volume reservations no volume", &arrayv1.GetVolumeReservationsRequest{}, "volume"},
	{"clear volume reservations", &arrayv1.ClearVolumeReservationsRequest{Volume: "v1"}, ""},
	{"clear volume reservations bad volume", &arrayv1.ClearVolumeReservationsRequest{Volume: "a/b"}, "volume"},
	{"list connections", &arrayv1.ListConnectionsRequest{Host: "h"}, ""},
	{"list connections bad volume", &arrayv1.ListConnectionsRequest{Volume: "a/b"}, "volume"},

	// array: LinkService, ConsistencyGroupService, ReplicaService, TransferService
	{"create link", &arrayv1.CreateLinkRequest{Name: "l", Address: "h:1", Token: "t"}, ""},
	{"create link no address", &arrayv1.CreateLinkRequest{Name: "l"}, "address"},
	{"create link negative bw", &arrayv1.CreateLinkRequest{Name: "l", Address: "h:1", BandwidthLimit: -1}, "bandwidth_limit"},
	{"get link", &arrayv1.GetLinkRequest{Name: "l"}, ""},
	{"list links", &arrayv1.ListLinksRequest{}, ""},
	{"delete link", &arrayv1.DeleteLinkRequest{Name: "l"}, ""},
	{"create group", &arrayv1.CreateGroupRequest{Name: "g", Pool: "p"}, ""},
	{"create group no pool", &arrayv1.CreateGroupRequest{Name: "g"}, "pool"},
	{"get group", &arrayv1.GetGroupRequest{Name: "g"}, ""},
	{"list groups", &arrayv1.ListGroupsRequest{}, ""},
	{"delete group", &arrayv1.DeleteGroupRequest{Name: "g"}, ""},
	{"add members", &arrayv1.AddMembersRequest{Name: "g", Volumes: []string{"v"}}, ""},
	{"add no members", &arrayv1.AddMembersRequest{Name: "g"}, "volumes"},
	{"remove members", &arrayv1.RemoveMembersRequest{Name: "g", Volumes: []string{"v"}}, ""},
	{"group snapshot", &arrayv1.CreateGroupSnapshotRequest{Name: "g", Snapshot: "s"}, ""},
	{"group snapshot no name", &arrayv1.CreateGroupSnapshotRequest{Name: "g"}, "snapshot"},
	{"replicate entity", &arrayv1.ReplicateEntityRequest{Volume: "v", Link: "l", RemotePool: "p"}, ""},
	{"replicate entity no pool", &arrayv1.ReplicateEntityRequest{Volume: "v", Link: "l"}, "remote_pool"},
	{"replicate entity use base", &arrayv1.ReplicateEntityRequest{Volume: "v", Link: "l", Mode: arrayv1.ReplicaMode_REPLICA_MODE_USE_BASE, LocalSnapshot: "a"}, "remote_snapshot"},
	{"replicate entity bad retention", &arrayv1.ReplicateEntityRequest{Volume: "v", Link: "l", RemotePool: "p", TargetRetention: &arrayv1.Retention{Days: -1}}, "target_retention.days"},
	{"replicate cg", &arrayv1.ReplicateConsGroupRequest{Group: "g", Link: "l", RemotePool: "p"}, ""},
	{"replicate cg no link", &arrayv1.ReplicateConsGroupRequest{Group: "g", RemotePool: "p"}, "link"},
	{"replicate entity sync timeout of a day", &arrayv1.ReplicateEntityRequest{Volume: "v", Link: "l", RemotePool: "p", SyncTimeoutMs: 86400000}, "sync_timeout_ms"},
	{"replicate cg negative sync timeout", &arrayv1.ReplicateConsGroupRequest{Group: "g", Link: "l", RemotePool: "p", SyncTimeoutMs: -1}, "sync_timeout_ms"},
	{"replicate cg sync timeout of ten minutes", &arrayv1.ReplicateConsGroupRequest{Group: "g", Link: "l", RemotePool: "p", SyncTimeoutMs: 600000}, ""},
	{"replicate cg mediator", &arrayv1.ReplicateConsGroupRequest{Group: "g", Link: "l", RemotePool: "p", PodMediator: []string{"10.0.0.30:2379", "m2:2379"}}, ""},
	{"replicate cg mediator no port", &arrayv1.ReplicateConsGroupRequest{Group: "g", Link: "l", RemotePool: "p", PodMediator: []string{"10.0.0.30"}}, "pod_mediator"},
	{"replicate entity mediator url", &arrayv1.ReplicateEntityRequest{Volume: "v", Link: "l", RemotePool: "p", PodMediator: []string{"etcd://m:2379"}}, "pod_mediator"},
	{"get replica", &arrayv1.GetReplicaRequest{Name: "r"}, ""},
	{"list replicas", &arrayv1.ListReplicasRequest{}, ""},
	{"update replica", &arrayv1.UpdateReplicaRequest{Name: "r", IntervalSeconds: 60}, ""},
	{"update replica negative", &arrayv1.UpdateReplicaRequest{Name: "r", IntervalSeconds: -1}, "interval_seconds"},
	{"delete replica", &arrayv1.DeleteReplicaRequest{Name: "r"}, ""},
	{"suspend replica", &arrayv1.SuspendReplicaRequest{Name: "r"}, ""},
	{"resume replica", &arrayv1.ResumeReplicaRequest{Name: "r"}, ""},
	{"sync replica", &arrayv1.SyncReplicaRequest{Name: "r"}, ""},
	{"change type", &arrayv1.ChangeReplicaTypeRequest{Name: "r", ReplicationType: arrayv1.ReplicationType_REPLICATION_TYPE_SYNC}, ""},
	{"change type unspecified", &arrayv1.ChangeReplicaTypeRequest{Name: "r"}, "replication_type"},
	{"receive", &arrayv1.ReceiveRequest{}, ""},
	{"mirror", &arrayv1.MirrorRequest{}, ""},
	{"forward", &arrayv1.ForwardRequest{}, ""},
	{"reclaim", &arrayv1.ReclaimRequest{}, ""},
	{"advance", &arrayv1.AdvanceRequest{Members: []*arrayv1.AdvanceMember{advanceMember}}, ""},
	{"prune", &arrayv1.PruneRequest{Replica: "r", Volumes: []string{"v"}, Retention: &arrayv1.Retention{AllForSeconds: 3600}, Now: timestamppb.Now()}, ""},
	{"prune none", &arrayv1.PruneRequest{Replica: "r", Now: timestamppb.Now()}, "volumes"},
	{"prune no replica", &arrayv1.PruneRequest{Volumes: []string{"v"}, Now: timestamppb.Now()}, "replica"},
	{"prune no time", &arrayv1.PruneRequest{Replica: "r", Volumes: []string{"v"}}, "now"},
	{"prune bad volume", &arrayv1.PruneRequest{Replica: "r", Volumes: []string{"a/b"}, Now: timestamppb.Now()}, "volumes[0]"},
	{"get pod copy", &arrayv1.GetPodCopyRequest{Pod: "cinder-pod.site-b"}, ""},
	{"get pod copy no pod", &arrayv1.GetPodCopyRequest{}, "pod"},
	{"get pod copy bad pod", &arrayv1.GetPodCopyRequest{Pod: "a/b"}, "pod"},
	{"advance none", &arrayv1.AdvanceRequest{}, "members"},
	{"advance no base", &arrayv1.AdvanceRequest{Members: []*arrayv1.AdvanceMember{{Volume: "v", SnapshotName: "s", SnapshotGuid: "g", SnapshotCreated: timestamppb.Now()}}}, "members[0].base_guid"},
	{"advance no created", &arrayv1.AdvanceRequest{Members: []*arrayv1.AdvanceMember{{Volume: "v", BaseGuid: "b", SnapshotName: "s", SnapshotGuid: "g"}}}, "members[0].snapshot_created"},
	{"advance bad volume", &arrayv1.AdvanceRequest{Members: []*arrayv1.AdvanceMember{{Volume: "a/b", BaseGuid: "b", SnapshotName: "s", SnapshotGuid: "g", SnapshotCreated: timestamppb.Now()}}}, "members[0].volume"},
	{"set read only", &arrayv1.SetVolumeReadOnlyRequest{Name: "v", ReadOnly: true}, ""},
	{"set read only no name", &arrayv1.SetVolumeReadOnlyRequest{}, "name"},
	{"set qos", &arrayv1.SetVolumeQoSRequest{Name: "v", Qos: &arrayv1.QoS{TotalIops: 500, ReadBytesPerSec: 1 << 20}}, ""},
	{"set qos none", &arrayv1.SetVolumeQoSRequest{Name: "v"}, ""},
	{"set qos no name", &arrayv1.SetVolumeQoSRequest{Qos: &arrayv1.QoS{TotalIops: 5}}, "name"},
	{"set qos negative", &arrayv1.SetVolumeQoSRequest{Name: "v", Qos: &arrayv1.QoS{WriteBytesPerSec: -1}}, "qos.write_bytes_per_sec"},
	{"hold writes", &arrayv1.HoldVolumeWritesRequest{Name: "v", LeaseMs: 30000}, ""},
	{"hold writes release", &arrayv1.HoldVolumeWritesRequest{Name: "v"}, ""},
	{"hold writes too long", &arrayv1.HoldVolumeWritesRequest{Name: "v", LeaseMs: 3600_001}, "lease_ms"},
	{"hold writes negative", &arrayv1.HoldVolumeWritesRequest{Name: "v", LeaseMs: -1}, "lease_ms"},
	{"snapshot set", &arrayv1.CreateSnapshotSetRequest{Volumes: []string{"a", "b"}, Name: "s"}, ""},
	{"snapshot set no volumes", &arrayv1.CreateSnapshotSetRequest{Name: "s"}, "volumes"},

	{"replicate snapshot", &arrayv1.ReplicateSnapshotRequest{Volume: "v", Snapshot: "s", Link: "l", RemotePool: "p"}, ""},
	{"replicate snapshot bad label", &arrayv1.ReplicateSnapshotRequest{Volume: "v", Snapshot: "s", Link: "l", RemotePool: "p", RemoteVolumeLabels: map[string]string{"": "x"}}, "remote_volume_labels"},
	{"replicate snapshot no link", &arrayv1.ReplicateSnapshotRequest{Volume: "v", Snapshot: "s", RemotePool: "p"}, "link"},
	{"replicate snapshots", &arrayv1.ReplicateSnapshotRequest{Volume: "v", Snapshots: []string{"s1", "s2"}, Link: "l", RemotePool: "p"}, ""},
	{"replicate snapshots bad name", &arrayv1.ReplicateSnapshotRequest{Volume: "v", Snapshots: []string{"s1", "bad/name"}, Link: "l", RemotePool: "p"}, "snapshots"},
	{"replicate no snapshot", &arrayv1.ReplicateSnapshotRequest{Volume: "v", Link: "l", RemotePool: "p"}, "snapshot"},
	{"checksum", &arrayv1.ChecksumSnapshotRequest{Volume: "v", Snapshot: "s", Length: 4096}, ""},
	{"checksum too long", &arrayv1.ChecksumSnapshotRequest{Volume: "v", Snapshot: "s", Length: 65 << 20}, "length"},
	{"get operation", &arrayv1.GetOperationRequest{Id: "op"}, ""},
	{"list operations", &arrayv1.ListOperationsRequest{}, ""},
	{"watch operation", &arrayv1.WatchOperationRequest{Id: "op"}, ""},
	{"cancel operation", &arrayv1.CancelOperationRequest{Id: "op"}, ""},
	{"cancel operation no id", &arrayv1.CancelOperationRequest{}, "id"},

	// array: VolumeService
	{"create volume", &arrayv1.CreateVolumeRequest{Name: "v1", Pool: "p1", SizeBytes: 1 << 30, Labels: map[string]string{"a": ""}}, ""},
	{"create volume no pool", &arrayv1.CreateVolumeRequest{Name: "v1", SizeBytes: 4096}, "pool"},
	{"create volume zero", &arrayv1.CreateVolumeRequest{Name: "v1", Pool: "p1"}, "size_bytes"},
	{"create volume negative", &arrayv1.CreateVolumeRequest{Name: "v1", Pool: "p1", SizeBytes: -4096}, "size_bytes"},
	{"create volume unaligned", &arrayv1.CreateVolumeRequest{Name: "v1", Pool: "p1", SizeBytes: 4097}, "size_bytes"},
	{"create volume label", &arrayv1.CreateVolumeRequest{Name: "v1", Pool: "p1", SizeBytes: 4096, Labels: map[string]string{"": "x"}}, "labels"},
	{"get volume", &arrayv1.GetVolumeRequest{Name: "v1"}, ""},
	{"get volume empty", &arrayv1.GetVolumeRequest{}, "name"},
	{"list volumes", &arrayv1.ListVolumesRequest{}, ""},
	{"list volumes pool", &arrayv1.ListVolumesRequest{Pool: "p1"}, ""},
	{"list volumes bad pool", &arrayv1.ListVolumesRequest{Pool: "-p"}, "pool"},
	{"delete volume", &arrayv1.DeleteVolumeRequest{Name: "v1"}, ""},
	{"delete volume empty", &arrayv1.DeleteVolumeRequest{}, "name"},
	{"extend volume", &arrayv1.ExtendVolumeRequest{Name: "v1", SizeBytes: 8192}, ""},
	{"extend volume zero", &arrayv1.ExtendVolumeRequest{Name: "v1"}, "size_bytes"},
	{"extend volume unaligned", &arrayv1.ExtendVolumeRequest{Name: "v1", SizeBytes: 5000}, "size_bytes"},
	{"write", &arrayv1.WriteVolumeRequest{Name: "v1", Offset: 100, Data: []byte("x")}, ""},
	{"write 4MiB", &arrayv1.WriteVolumeRequest{Name: "v1", Data: mib4}, ""},
	{"write empty", &arrayv1.WriteVolumeRequest{Name: "v1"}, "data"},
	{"write too big", &arrayv1.WriteVolumeRequest{Name: "v1", Data: make([]byte, 4<<20+1)}, "data"},
	{"write negative offset", &arrayv1.WriteVolumeRequest{Name: "v1", Offset: -1, Data: []byte("x")}, "offset"},
	{"read", &arrayv1.ReadVolumeRequest{Name: "v1", Length: 4 << 20}, ""},
	{"read zero", &arrayv1.ReadVolumeRequest{Name: "v1"}, "length"},
	{"read too long", &arrayv1.ReadVolumeRequest{Name: "v1", Length: 4<<20 + 1}, "length"},
	{"read negative offset", &arrayv1.ReadVolumeRequest{Name: "v1", Offset: -4096, Length: 1}, "offset"},
	{"read overflow", &arrayv1.ReadVolumeRequest{Name: "v1", Offset: 1<<63 - 1, Length: 2}, "offset"},
	{"flush", &arrayv1.FlushVolumeRequest{Name: "v1"}, ""},
	{"flush empty", &arrayv1.FlushVolumeRequest{}, "name"},
	{"create snapshot", &arrayv1.CreateSnapshotRequest{Volume: "v1", Name: "s1"}, ""},
	{"create snapshot no volume", &arrayv1.CreateSnapshotRequest{Name: "s1"}, "volume"},
	{"create snapshot no name", &arrayv1.CreateSnapshotRequest{Volume: "v1"}, "name"},
	{"create snapshot label", &arrayv1.CreateSnapshotRequest{Volume: "v1", Name: "s1", Labels: map[string]string{" ": "x"}}, "labels"},
	{"get snapshot", &arrayv1.GetSnapshotRequest{Volume: "v1", Name: "s1"}, ""},
	{"get snapshot no name", &arrayv1.GetSnapshotRequest{Volume: "v1"}, "name"},
	{"list snapshots", &arrayv1.ListSnapshotsRequest{Volume: "v1"}, ""},
	{"list snapshots empty", &arrayv1.ListSnapshotsRequest{}, "volume"},
	{"delete snapshot", &arrayv1.DeleteSnapshotRequest{Volume: "v1", Name: "s1"}, ""},
	{"delete snapshot no volume", &arrayv1.DeleteSnapshotRequest{Name: "s1"}, "volume"},
	{"read snapshot", &arrayv1.ReadSnapshotRequest{Volume: "v1", Name: "s1", Length: 512}, ""},
	{"read snapshot no length", &arrayv1.ReadSnapshotRequest{Volume: "v1", Name: "s1"}, "length"},
	{"read snapshot no name", &arrayv1.ReadSnapshotRequest{Volume: "v1", Length: 1}, "name"},
	{"clone", &arrayv1.CloneSnapshotRequest{Volume: "v1", Snapshot: "s1", Name: "v2"}, ""},
	{"clone sized", &arrayv1.CloneSnapshotRequest{Volume: "v1", Snapshot: "s1", Name: "v2", Pool: "p2", SizeBytes: 8192}, ""},
	{"clone unaligned", &arrayv1.CloneSnapshotRequest{Volume: "v1", Snapshot: "s1", Name: "v2", SizeBytes: 10}, "size_bytes"},
	{"clone negative", &arrayv1.CloneSnapshotRequest{Volume: "v1", Snapshot: "s1", Name: "v2", SizeBytes: -4096}, "size_bytes"},
	{"clone no snapshot", &arrayv1.CloneSnapshotRequest{Volume: "v1", Name: "v2"}, "snapshot"},
	{"clone no name", &arrayv1.CloneSnapshotRequest{Volume: "v1", Snapshot: "s1"}, "name"},
	{"clone bad pool", &arrayv1.CloneSnapshotRequest{Volume: "v1", Snapshot: "s1", Name: "v2", Pool: "p/2"}, "pool"},
	{"diff", &arrayv1.DiffSnapshotsRequest{Volume: "v1", Snapshot: "s2"}, ""},
	{"diff base", &arrayv1.DiffSnapshotsRequest{Volume: "v1", Base: "s1", Snapshot: "s2"}, ""},
	{"diff no snapshot", &arrayv1.DiffSnapshotsRequest{Volume: "v1", Base: "s1"}, "snapshot"},
	{"diff bad base", &arrayv1.DiffSnapshotsRequest{Volume: "v1", Base: "s@1", Snapshot: "s2"}, "base"},

	// driver
	{"failover host", &driverv1.FailoverHostRequest{Backend: "b", VolumeIds: []string{"v"}, SecondaryId: "site-b"}, ""},
	{"failover host choose", &driverv1.FailoverHostRequest{Backend: "b"}, ""},
	{"failover host bad volume", &driverv1.FailoverHostRequest{Backend: "b", VolumeIds: []string{"a/b"}}, "volume_ids"},
	{"failover completed", &driverv1.FailoverCompletedRequest{Backend: "b", ActiveBackendId: "site-b"}, ""},
	{"failover completed no id", &driverv1.FailoverCompletedRequest{Backend: "b"}, "active_backend_id"},
	{"snapshot replicate", &driverv1.SnapshotReplicateRequest{Backend: "a", SnapshotId: "s", VolumeId: "v", DestinationBackend: "b"}, ""},
	{"snapshot replicate to itself", &driverv1.SnapshotReplicateRequest{Backend: "a", SnapshotId: "s", VolumeId: "v", DestinationBackend: "a"}, "destination_backend"},
	{"snapshot replicate count", &driverv1.SnapshotReplicateRequest{Backend: "a", VolumeId: "v", DestinationBackend: "b", Count: 3}, ""},
	{"snapshot replicate list", &driverv1.SnapshotReplicateRequest{Backend: "a", VolumeId: "v", DestinationBackend: "b", SnapshotIds: []string{"s1", "s2"}}, ""},
	{"snapshot replicate none", &driverv1.SnapshotReplicateRequest{Backend: "a", VolumeId: "v", DestinationBackend: "b"}, "snapshot_id"},
	{"snapshot replicate count and list", &driverv1.SnapshotReplicateRequest{Backend: "a", VolumeId: "v", DestinationBackend: "b", Count: 2, SnapshotIds: []string{"s1"}}, "count"},
	{"snapshot replicate count too big", &driverv1.SnapshotReplicateRequest{Backend: "a", VolumeId: "v", DestinationBackend: "b", Count: 101}, "count"},
	{"snapshot replicate list twice", &driverv1.SnapshotReplicateRequest{Backend: "a", VolumeId: "v", DestinationBackend: "b", SnapshotIds: []string{"s1", "s1"}}, "snapshot_ids"},
	{"revert", &driverv1.RevertToSnapshotRequest{Backend: "a", VolumeId: "v", SnapshotId: "s", SnapshotVolumeId: "v"}, ""},
	{"revert no snapshot", &driverv1.RevertToSnapshotRequest{Backend: "a", VolumeId: "v"}, "snapshot_id"},
	{"migrate", &driverv1.MigrateVolumeRequest{Backend: "a", VolumeId: "v", DestinationBackend: "b"}, ""},
	{"migrate thresholds", &driverv1.MigrateVolumeRequest{Backend: "a", VolumeId: "v", DestinationBackend: "b", SmallPassBytes: 1 << 20, SmallPassMs: 200, MaxPasses: 5}, ""},
	{"migrate to itself", &driverv1.MigrateVolumeRequest{Backend: "a", VolumeId: "v", DestinationBackend: "a"}, "destination_backend"},
	{"migrate no destination", &driverv1.MigrateVolumeRequest{Backend: "a", VolumeId: "v"}, "destination_backend"},
	{"migrate negative bytes", &driverv1.MigrateVolumeRequest{Backend: "a", VolumeId: "v", DestinationBackend: "b", SmallPassBytes: -1}, "small_pass_bytes"},
	{"migrate too many passes", &driverv1.MigrateVolumeRequest{Backend: "a", VolumeId: "v", DestinationBackend: "b", MaxPasses: 101}, "max_passes"},
	{"revert to another volume's snapshot", &driverv1.RevertToSnapshotRequest{Backend: "a", VolumeId: "v", SnapshotId: "s", SnapshotVolumeId: "w"}, "snapshot_volume_id"},
	{"array revert", &arrayv1.RevertVolumeRequest{Volume: "v1", Snapshot: "s1"}, ""},
	{"array revert no snapshot", &arrayv1.RevertVolumeRequest{Volume: "v1"}, "snapshot"},
	{"manage", &driverv1.ManageExistingRequest{Backend: "a", VolumeId: "v", Ref: &driverv1.ExistingRef{SourceName: "legacy"}}, ""},
	{"manage no ref", &driverv1.ManageExistingRequest{Backend: "a", VolumeId: "v"}, "ref"},
	{"manage both refs", &driverv1.ManageExistingRequest{Backend: "a", VolumeId: "v", Ref: &driverv1.ExistingRef{SourceName: "x", SourceId: "y"}}, "ref"},
	{"manage size by provider id", &driverv1.ManageExistingSizeRequest{Backend: "a", Ref: &driverv1.ExistingRef{SourceId: "site-a/volume-x-cinder"}}, ""},
	{"manage size bad name", &driverv1.ManageExistingSizeRequest{Backend: "a", Ref: &driverv1.ExistingRef{SourceName: "../x"}}, "ref.source_name"},
	{"unmanage", &driverv1.UnmanageRequest{Backend: "a", VolumeId: "v"}, ""},
	{"unmanage no id", &driverv1.UnmanageRequest{Backend: "a"}, "volume_id"},
	{"manage snapshot", &driverv1.ManageExistingSnapshotRequest{Backend: "a", SnapshotId: "s", VolumeId: "v", Ref: &driverv1.ExistingRef{SourceId: "vol@snap"}}, ""},
	{"manage snapshot bad provider id", &driverv1.ManageExistingSnapshotRequest{Backend: "a", SnapshotId: "s", VolumeId: "v", Ref: &driverv1.ExistingRef{SourceId: "snap"}}, "ref.source_id"},
	{"manage snapshot size", &driverv1.ManageExistingSnapshotSizeRequest{Backend: "a", VolumeId: "v", Ref: &driverv1.ExistingRef{SourceName: "snap"}}, ""},
	{"unmanage snapshot", &driverv1.UnmanageSnapshotRequest{Backend: "a", SnapshotId: "s", VolumeId: "v"}, ""},
	{"unmanage snapshot no volume", &driverv1.UnmanageSnapshotRequest{Backend: "a", SnapshotId: "s"}, "volume_id"},
	{"manageable volumes", &driverv1.ListManageableVolumesRequest{Backend: "a"}, ""},
	{"manageable snapshots", &driverv1.ListManageableSnapshotsRequest{Backend: "a", PageSize: 10}, ""},
	{"array rename", &arrayv1.RenameVolumeRequest{Name: "v1", NewName: "v2", SetLabels: true}, ""},
	{"array rename no new name", &arrayv1.RenameVolumeRequest{Name: "v1"}, "new_name"},
	{"array rename snapshot", &arrayv1.RenameSnapshotRequest{Volume: "v1", Name: "s1", NewName: "s2"}, ""},
	{"array rename snapshot bad name", &arrayv1.RenameSnapshotRequest{Volume: "v1", Name: "s1", NewName: "a b"}, "new_name"},
	{"driver get operation", &driverv1.GetOperationRequest{Backend: "a", OperationId: "op1"}, ""},
	{"driver get operation no id", &driverv1.GetOperationRequest{Backend: "a"}, "operation_id"},
	{"driver watch operation", &driverv1.WatchOperationRequest{Backend: "a", OperationId: "op1"}, ""},
	{"driver cancel operation", &driverv1.CancelOperationRequest{Backend: "a", OperationId: "op1"}, ""},
	{"verify snapshot", &driverv1.VerifySnapshotRequest{Backend: "a", SnapshotId: "s", VolumeId: "v", DestinationBackend: "b"}, ""},
	{"verify snapshot no destination", &driverv1.VerifySnapshotRequest{Backend: "a", SnapshotId: "s", VolumeId: "v"}, "destination_backend"},
	{"retype", &driverv1.RetypeRequest{Backend: "b", VolumeId: "v", NewType: &driverv1.VolumeType{Name: "t"}}, ""},
	{"retype no volume", &driverv1.RetypeRequest{Backend: "b"}, "volume_id"},
	{"retype qos", &driverv1.RetypeRequest{Backend: "b", VolumeId: "v", NewType: &driverv1.VolumeType{Name: "t", QosSpecs: map[string]string{"total_iops_sec_per_gb": "10"}}}, ""},
	{"retype qos unknown key", &driverv1.RetypeRequest{Backend: "b", VolumeId: "v", NewType: &driverv1.VolumeType{Name: "t", QosSpecs: map[string]string{"maxIOPS": "10"}}}, "new_type.qos_specs.maxIOPS"},
	{"create qos not a number", &driverv1.CreateVolumeRequest{Backend: "b", VolumeId: "v", SizeGb: 1, VolumeType: &driverv1.VolumeType{QosSpecs: map[string]string{"read_bytes_sec": "1M"}}}, "volume_type.qos_specs.read_bytes_sec"},
	{"extend with type", &driverv1.ExtendVolumeRequest{Backend: "b", VolumeId: "v", NewSizeGb: 2, VolumeType: &driverv1.VolumeType{QosSpecs: map[string]string{"write_iops_sec": "100"}}}, ""},
	{"extend bad qos", &driverv1.ExtendVolumeRequest{Backend: "b", VolumeId: "v", NewSizeGb: 2, VolumeType: &driverv1.VolumeType{QosSpecs: map[string]string{"write_iops_sec": "0"}}}, "volume_type.qos_specs.write_iops_sec"},
	{"replication info", &driverv1.GetReplicationInfoRequest{Backend: "b", VolumeId: "v"}, ""},
	{"replication info no volume", &driverv1.GetReplicationInfoRequest{Backend: "b"}, "volume_id"},
	{"schedule", &driverv1.SetReplicationScheduleRequest{Backend: "b", IntervalSeconds: 60}, ""},
	{"schedule zero interval", &driverv1.SetReplicationScheduleRequest{Backend: "b"}, "interval_seconds"},
	{"initialize connection", &driverv1.InitializeConnectionRequest{Backend: "b", VolumeId: "v", Connector: &driverv1.Connector{Host: "compute-1"}}, ""},
	{"initialize connection no host", &driverv1.InitializeConnectionRequest{Backend: "b", VolumeId: "v"}, "connector.host"},
	{"terminate connection", &driverv1.TerminateConnectionRequest{Backend: "b", VolumeId: "v", Connector: &driverv1.Connector{Host: "compute-1"}}, ""},
	{"terminate connection force", &driverv1.TerminateConnectionRequest{Backend: "b", VolumeId: "v"}, ""},
	{"terminate connection bad host", &driverv1.TerminateConnectionRequest{Backend: "b", VolumeId: "v", Connector: &driverv1.Connector{Host: "a b"}}, "connector.host"},
	{"attach replica", &driverv1.AttachReplicaRequest{Backend: "b", VolumeId: "v", BackendId: "site-b", Snapshot: "latest", Connector: &driverv1.Connector{Host: "dr"}}, ""},
	{"attach replica no target", &driverv1.AttachReplicaRequest{Backend: "b", VolumeId: "v", Connector: &driverv1.Connector{Host: "dr"}}, "backend_id"},
	{"attach replica bad snapshot", &driverv1.AttachReplicaRequest{Backend: "b", VolumeId: "v", BackendId: "site-b", Snapshot: "a/b", Connector: &driverv1.Connector{Host: "dr"}}, "snapshot"},
	{"attach replica no host", &driverv1.AttachReplicaRequest{Backend: "b", VolumeId: "v", BackendId: "site-b"}, "connector.host"},
	{"detach replica every host", &driverv1.DetachReplicaRequest{Backend: "b", VolumeId: "v", BackendId: "site-b"}, ""},
	{"detach replica no volume", &driverv1.DetachReplicaRequest{Backend: "b", BackendId: "site-b"}, "volume_id"},
	{"list backends", &driverv1.ListBackendsRequest{}, ""},
	{"stats", &driverv1.GetVolumeStatsRequest{Backend: "pure-1"}, ""},
	{"stats no backend", &driverv1.GetVolumeStatsRequest{}, "backend"},
	{"d create", &driverv1.CreateVolumeRequest{Backend: "pure-1", VolumeId: "6f1c0b9e-8a57-4c4e-9d4f-0f3e1a2b3c4d", SizeGb: 1, VolumeType: volType}, ""},
	{"d create no type", &driverv1.CreateVolumeRequest{Backend: "pure-1", VolumeId: "v", SizeGb: 10, GroupId: "g1"}, ""},
	{"d create no backend", &driverv1.CreateVolumeRequest{VolumeId: "v", SizeGb: 1}, "backend"},
	{"d create no id", &driverv1.CreateVolumeRequest{Backend: "b", SizeGb: 1}, "volume_id"},
	{"d create zero", &driverv1.CreateVolumeRequest{Backend: "b", VolumeId: "v"}, "size_gb"},
	{"d create huge", &driverv1.CreateVolumeRequest{Backend: "b", VolumeId: "v", SizeGb: 1 << 40}, "size_gb"},
	{"d create spec key", &driverv1.CreateVolumeRequest{Backend: "b", VolumeId: "v", SizeGb: 1, VolumeType: badType}, "volume_type.extra_specs"},
	{"d create group", &driverv1.CreateVolumeRequest{Backend: "b", VolumeId: "v", SizeGb: 1, GroupId: "g/1"}, "group_id"},
	{"d delete", &driverv1.DeleteVolumeRequest{Backend: "b", VolumeId: "v"}, ""},
	{"d delete no id", &driverv1.DeleteVolumeRequest{Backend: "b"}, "volume_id"},
	{"d extend", &driverv1.ExtendVolumeRequest{Backend: "b", VolumeId: "v", NewSizeGb: 2}, ""},
	{"d extend zero", &driverv1.ExtendVolumeRequest{Backend: "b", VolumeId: "v"}, "new_size_gb"},
	{"d get", &driverv1.GetVolumeRequest{Backend: "b", VolumeId: "v"}, ""},
	{"d get no backend", &driverv1.GetVolumeRequest{VolumeId: "v"}, "backend"},
	{"d list", &driverv1.ListVolumesRequest{Backend: "b"}, ""},
	{"d list no backend", &driverv1.ListVolumesRequest{}, "backend"},
	{"d snap", &driverv1.CreateSnapshotRequest{Backend: "b", SnapshotId: "s", VolumeId: "v"}, ""},
	{"d snap no id", &driverv1.CreateSnapshotRequest{Backend: "b", VolumeId: "v"}, "snapshot_id"},
	{"d snap no volume", &driverv1.CreateSnapshotRequest{Backend: "b", SnapshotId: "s"}, "volume_id"},
	{"d del snap", &driverv1.DeleteSnapshotRequest{Backend: "b", SnapshotId: "s", VolumeId: "v"}, ""},
	{"d del snap no id", &driverv1.DeleteSnapshotRequest{Backend: "b", VolumeId: "v"}, "snapshot_id"},
	{"d list snaps", &driverv1.ListSnapshotsRequest{Backend: "b"}, ""},
	{"d list snaps volume", &driverv1.ListSnapshotsRequest{Backend: "b", VolumeId: "v"}, ""},
	{"d list snaps bad volume", &driverv1.ListSnapshotsRequest{Backend: "b", VolumeId: "v/1"}, "volume_id"},
	{"d from snap", &driverv1.CreateVolumeFromSnapshotRequest{Backend: "b", VolumeId: "v2", SnapshotId: "s", SourceVolumeId: "v"}, ""},
	{"d from snap sized", &driverv1.CreateVolumeFromSnapshotRequest{Backend: "b", VolumeId: "v2", SnapshotId: "s", SourceVolumeId: "v", SizeGb: 5, VolumeType: volType}, ""},
	{"d from snap negative", &driverv1.CreateVolumeFromSnapshotRequest{Backend: "b", VolumeId: "v2", SnapshotId: "s", SourceVolumeId: "v", SizeGb: -1}, "size_gb"},
	{"d from snap no source", &driverv1.CreateVolumeFromSnapshotRequest{Backend: "b", VolumeId: "v2", SnapshotId: "s"}, "source_volume_id"},
	{"d from snap spec", &driverv1.CreateVolumeFromSnapshotRequest{Backend: "b", VolumeId: "v2", SnapshotId: "s", SourceVolumeId: "v", VolumeType: badType}, "volume_type.extra_specs"},
	{"d clone", &driverv1.CreateClonedVolumeRequest{Backend: "b", VolumeId: "v2", SourceVolumeId: "v"}, ""},
	{"d clone no source", &driverv1.CreateClonedVolumeRequest{Backend: "b", VolumeId: "v2"}, "source_volume_id"},
	{"d clone negative", &driverv1.CreateClonedVolumeRequest{Backend: "b", VolumeId: "v2", SourceVolumeId: "v", SizeGb: -2}, "size_gb"},
	{"g create", &driverv1.CreateGroupRequest{Backend: "b", GroupId: "g", GroupType: groupType}, ""},
	{"g create no type", &driverv1.CreateGroupRequest{Backend: "b", GroupId: "g"}, ""},
	{"g create no id", &driverv1.CreateGroupRequest{Backend: "b"}, "group_id"},
	{"g create spec key", &driverv1.CreateGroupRequest{Backend: "b", GroupId: "g", GroupType: &driverv1.GroupType{GroupSpecs: map[string]string{" ": "x"}}}, "group_type.group_specs"},
	{"g delete", &driverv1.DeleteGroupRequest{Backend: "b", GroupId: "g", VolumeIds: []string{"v1", "v2"}}, ""},
	{"g delete bad volume", &driverv1.DeleteGroupRequest{Backend: "b", GroupId: "g", VolumeIds: []string{"v1", "v/2"}}, "volume_ids"},
	{"g update", &driverv1.UpdateGroupRequest{Backend: "b", GroupId: "g", AddVolumeIds: []string{"v1"}, RemoveVolumeIds: []string{"v2"}}, ""},
	{"g update bad add", &driverv1.UpdateGroupRequest{Backend: "b", GroupId: "g", AddVolumeIds: []string{""}}, "add_volume_ids"},
	{"g update both", &driverv1.UpdateGroupRequest{Backend: "b", GroupId: "g", AddVolumeIds: []string{"v1"}, RemoveVolumeIds: []string{"v1"}}, "remove_volume_ids"},
	{"g snapshot", &driverv1.CreateGroupSnapshotRequest{Backend: "b", GroupId: "g", GroupSnapshotId: "gs"}, ""},
	{"g snapshot no id", &driverv1.CreateGroupSnapshotRequest{Backend: "b", GroupId: "g"}, "group_snapshot_id"},
	{"g snapshot bad volume", &driverv1.CreateGroupSnapshotRequest{Backend: "b", GroupId: "g", GroupSnapshotId: "gs", VolumeIds: []string{"-v"}}, "volume_ids"},
	{"g del snapshot", &driverv1.DeleteGroupSnapshotRequest{Backend: "b", GroupId: "g", GroupSnapshotId: "gs", VolumeIds: []string{"v"}}, ""},
	{"g del snapshot no group", &driverv1.DeleteGroupSnapshotRequest{Backend: "b", GroupSnapshotId: "gs"}, "group_id"},
	{"g from src", &driverv1.CreateGroupFromSrcRequest{Backend: "b", GroupId: "g2", GroupSnapshotId: "gs", Volumes: []*driverv1.GroupVolumeSource{{VolumeId: "n1", SourceVolumeId: "v1", VolumeType: volType}}}, ""},
	{"g from src no volumes", &driverv1.CreateGroupFromSrcRequest{Backend: "b", GroupId: "g2", GroupSnapshotId: "gs"}, "volumes"},
	{"g from src no source", &driverv1.CreateGroupFromSrcRequest{Backend: "b", GroupId: "g2", GroupSnapshotId: "gs", Volumes: []*driverv1.GroupVolumeSource{{VolumeId: "n1"}}}, "volumes.source_volume_id"},
	{"g from src twice", &driverv1.CreateGroupFromSrcRequest{Backend: "b", GroupId: "g2", GroupSnapshotId: "gs", Volumes: []*driverv1.GroupVolumeSource{{VolumeId: "n1", SourceVolumeId: "v1"}, {VolumeId: "n1", SourceVolumeId: "v2"}}}, "volumes.volume_id"},
	{"g from src spec", &driverv1.CreateGroupFromSrcRequest{Backend: "b", GroupId: "g2", GroupSnapshotId: "gs", Volumes: []*driverv1.GroupVolumeSource{{VolumeId: "n1", SourceVolumeId: "v1", VolumeType: badType}}}, "volumes.volume_type.extra_specs"},
	{"g enable", &driverv1.EnableReplicationRequest{Backend: "b", GroupId: "g", VolumeIds: []string{"v"}}, ""},
	{"g enable no group", &driverv1.EnableReplicationRequest{Backend: "b"}, "group_id"},
	{"g disable", &driverv1.DisableReplicationRequest{Backend: "b", GroupId: "g"}, ""},
	{"g disable bad volume", &driverv1.DisableReplicationRequest{Backend: "b", GroupId: "g", VolumeIds: []string{"a b"}}, "volume_ids"},
	{"g failover", &driverv1.FailoverReplicationRequest{Backend: "b", GroupId: "g", SecondaryBackendId: "site-b"}, ""},
	{"g failback", &driverv1.FailoverReplicationRequest{Backend: "b", GroupId: "g", VolumeIds: []string{"v"}, SecondaryBackendId: "default"}, ""},
	{"g failover bad secondary", &driverv1.FailoverReplicationRequest{Backend: "b", GroupId: "g", SecondaryBackendId: "site/b"}, "secondary_backend_id"},
	{"g failover no backend", &driverv1.FailoverReplicationRequest{GroupId: "g"}, "backend"},

	// Bounds (issue 12, items 10 and 16): every stored string, map and
	// duration has a limit, and the error names the field.
	{"d create 9MiB type name", &driverv1.CreateVolumeRequest{Backend: "b", VolumeId: "v", SizeGb: 1, VolumeType: &driverv1.VolumeType{Name: mib9}}, "volume_type.name"},
	{"d create type name at limit", &driverv1.CreateVolumeRequest{Backend: "b", VolumeId: "v", SizeGb: 1, VolumeType: &driverv1.VolumeType{Name: strings.Repeat("t", 255)}}, ""},
	{"d create type id long", &driverv1.CreateVolumeRequest{Backend: "b", VolumeId: "v", SizeGb: 1, VolumeType: &driverv1.VolumeType{Id: strings.Repeat("i", 256)}}, "volume_type.id"},
	{"d create spec value long", &driverv1.CreateVolumeRequest{Backend: "b", VolumeId: "v", SizeGb: 1, VolumeType: &driverv1.VolumeType{ExtraSpecs: map[string]string{"k": mib9}}}, "volume_type.extra_specs"},
	{"d create too many specs", &driverv1.CreateVolumeRequest{Backend: "b", VolumeId: "v", SizeGb: 1, VolumeType: &driverv1.VolumeType{ExtraSpecs: manyEntries(129)}}, "volume_type.extra_specs"},
	{"d create over 1 PiB", &driverv1.CreateVolumeRequest{Backend: "b", VolumeId: "v", SizeGb: 1<<20 + 1}, "size_gb"},
	{"d clone type name", &driverv1.CreateClonedVolumeRequest{Backend: "b", VolumeId: "v2", SourceVolumeId: "v", VolumeType: &driverv1.VolumeType{Name: mib9}}, "volume_type.name"},
	{"retype type name", &driverv1.RetypeRequest{Backend: "b", VolumeId: "v", NewType: &driverv1.VolumeType{Name: mib9}}, "new_type.name"},
	{"g create type name", &driverv1.CreateGroupRequest{Backend: "b", GroupId: "g", GroupType: &driverv1.GroupType{Name: mib9}}, "group_type.name"},
	{"g create spec value", &driverv1.CreateGroupRequest{Backend: "b", GroupId: "g", GroupType: &driverv1.GroupType{GroupSpecs: map[string]string{"k": mib9}}}, "group_type.group_specs"},
	{"connector initiator", &driverv1.InitializeConnectionRequest{Backend: "b", VolumeId: "v", Connector: &driverv1.Connector{Host: "h", Initiator: mib9}}, "connector.initiator"},
	{"connector initiator iqn", &driverv1.InitializeConnectionRequest{Backend: "b", VolumeId: "v", Connector: &driverv1.Connector{Host: "h", Initiator: "iqn.1993-08.org.debian:01:abc"}}, ""},
	{"connector initiator not iscsi", &driverv1.InitializeConnectionRequest{Backend: "b", VolumeId: "v", Connector: &driverv1.Connector{Host: "h", Initiator: "compute-1"}}, "connector.initiator"},
	{"terminate initiator not iscsi", &driverv1.TerminateConnectionRequest{Backend: "b", VolumeId: "v", Connector: &driverv1.Connector{Initiator: "iqn.bad"}}, "connector.initiator"},
	{"connector extra", &driverv1.InitializeConnectionRequest{Backend: "b", VolumeId: "v", Connector: &driverv1.Connector{Host: "h", Extra: manyEntries(129)}}, "connector.extra"},
	{"connector long wwpns", &driverv1.InitializeConnectionRequest{Backend: "b", VolumeId: "v", Connector: &driverv1.Connector{Host: "h", Extra: map[string]string{"wwpns": strings.Repeat("500143802426baf4,", 60)}}}, ""},
	{"connector extra value", &driverv1.InitializeConnectionRequest{Backend: "b", VolumeId: "v", Connector: &driverv1.Connector{Host: "h", Extra: map[string]string{"k": mib9}}}, "connector.extra"},
	{"failover too many ids", &driverv1.FailoverHostRequest{Backend: "b", VolumeIds: make([]string, 10001)}, "volume_ids"},
	{"schedule year", &driverv1.SetReplicationScheduleRequest{Backend: "b", IntervalSeconds: 365 * 86400, RetentionShortTermSeconds: 10 * 365 * 86400, RetentionLongTermPerDay: 1440, RetentionLongTermDays: 3650}, ""},
	{"schedule interval wraps to 5s", &driverv1.SetReplicationScheduleRequest{Backend: "b", IntervalSeconds: 18446744079}, "interval_seconds"},
	{"schedule interval int64 max", &driverv1.SetReplicationScheduleRequest{Backend: "b", IntervalSeconds: math.MaxInt64}, "interval_seconds"},
	{"schedule retention", &driverv1.SetReplicationScheduleRequest{Backend: "b", IntervalSeconds: 60, RetentionShortTermSeconds: math.MaxInt64}, "retention_short_term_seconds"},
	{"schedule per day", &driverv1.SetReplicationScheduleRequest{Backend: "b", IntervalSeconds: 60, RetentionLongTermPerDay: 1441}, "retention_long_term_per_day"},
	{"schedule days", &driverv1.SetReplicationScheduleRequest{Backend: "b", IntervalSeconds: 60, RetentionLongTermDays: 3651}, "retention_long_term_days"},
	{"update replica wraps", &arrayv1.UpdateReplicaRequest{Name: "r", IntervalSeconds: 18446744079}, "interval_seconds"},
	{"update replica rpo", &arrayv1.UpdateReplicaRequest{Name: "r", RpoSeconds: math.MaxInt64}, "rpo_seconds"},
	{"update replica retention", &arrayv1.UpdateReplicaRequest{Name: "r", SourceRetention: &arrayv1.Retention{AllForSeconds: math.MaxInt64}}, "source_retention.all_for_seconds"},
	{"replicate entity interval", &arrayv1.ReplicateEntityRequest{Volume: "v", Link: "l", RemotePool: "p", IntervalSeconds: 18446744079}, "interval_seconds"},
	{"replicate cg per day", &arrayv1.ReplicateConsGroupRequest{Group: "g", Link: "l", RemotePool: "p", TargetRetention: &arrayv1.Retention{PerDay: 1 << 30}}, "target_retention.per_day"},
	{"create volume 15MB labels", &arrayv1.CreateVolumeRequest{Name: "v1", Pool: "p1", SizeBytes: 4096, Labels: map[string]string{"k": strings.Repeat("x", 15<<20)}}, "labels"},
	{"create volume many labels", &arrayv1.CreateVolumeRequest{Name: "v1", Pool: "p1", SizeBytes: 4096, Labels: manyEntries(65)}, "labels"},
	{"create volume over 1 PiB", &arrayv1.CreateVolumeRequest{Name: "v1", Pool: "p1", SizeBytes: 1<<50 + 4096}, "size_bytes"},
	{"create volume long name", &arrayv1.CreateVolumeRequest{Name: mib9, Pool: "p1", SizeBytes: 4096}, "name"},
	{"extend volume over 1 PiB", &arrayv1.ExtendVolumeRequest{Name: "v1", SizeBytes: math.MaxInt64 - 4095}, "size_bytes"},
	{"clone over 1 PiB", &arrayv1.CloneSnapshotRequest{Volume: "v1", Snapshot: "s1", Name: "v2", SizeBytes: 1<<50 + 4096}, "size_bytes"},
	{"snapshot labels", &arrayv1.CreateSnapshotRequest{Volume: "v1", Name: "s1", Labels: map[string]string{mib9: "x"}}, "labels"},
	{"group labels", &arrayv1.CreateGroupRequest{Name: "g", Pool: "p", Labels: manyEntries(65)}, "labels"},
	{"group snapshot labels", &arrayv1.CreateGroupSnapshotRequest{Name: "g", Snapshot: "s", Labels: manyEntries(65)}, "labels"},
	{"snapshot set labels", &arrayv1.CreateSnapshotSetRequest{Volumes: []string{"a"}, Name: "s", Labels: manyEntries(65)}, "labels"},
	{"create link long address", &arrayv1.CreateLinkRequest{Name: "l", Address: mib9}, "address"},
	{"create link long token", &arrayv1.CreateLinkRequest{Name: "l", Address: "h:1", Token: mib9}, "token"},
	{"create link bandwidth", &arrayv1.CreateLinkRequest{Name: "l", Address: "h:1", BandwidthLimit: math.MaxInt64}, "bandwidth_limit"},
	{"add too many members", &arrayv1.AddMembersRequest{Name: "g", Volumes: make([]string, 10001)}, "volumes"},
	{"checksum offset over 1 PiB", &arrayv1.ChecksumSnapshotRequest{Volume: "v", Snapshot: "s", Offset: 1 << 51, Length: 4096}, "offset"},
}

var mib9 = strings.Repeat("n", 9<<20)

func manyEntries(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	return m
}

// TestReceiveHeaderBounds: a peer's transfer header stores labels too, so
// it is bounded like CreateVolume.
func TestReceiveHeaderBounds(t *testing.T) {
	ok := &arrayv1.ReceiveHeader{TransferId: "x1", Volume: "v", Pool: "p", SizeBytes: 4096, SnapshotName: "s", SnapshotGuid: "g",
		VolumeSerial: "0123456789ABCDEF01234567"}
	if err := arrayapi.ReceiveHeader(ok); err != nil {
		t.Fatalf("valid header refused: %v", err)
	}
	for field, h := range map[string]*arrayv1.ReceiveHeader{
		"header.volume_labels":   {TransferId: "x1", Volume: "v", Pool: "p", SizeBytes: 4096, SnapshotName: "s", VolumeLabels: map[string]string{"k": mib9}},
		"header.snapshot_labels": {TransferId: "x1", Volume: "v", Pool: "p", SizeBytes: 4096, SnapshotName: "s", SnapshotLabels: manyEntries(65)},
		"header.size_bytes":      {TransferId: "x1", Volume: "v", Pool: "p", SizeBytes: 1<<50 + 4096, SnapshotName: "s"},
		"header.snapshot_guid":   {TransferId: "x1", Volume: "v", Pool: "p", SizeBytes: 4096, SnapshotName: "s", SnapshotGuid: mib9},
		"header.volume_serial":   {TransferId: "x1", Volume: "v", Pool: "p", SizeBytes: 4096, SnapshotName: "s", VolumeSerial: "0123456789ABCDEF0123456Z"},
	} {
		var e *errdefs.Error
		if err := arrayapi.ReceiveHeader(h); !errors.As(err, &e) || e.Field != field {
			t.Errorf("%s: got %v, want INVALID_ARGUMENT naming it", field, err)
		}
	}
}

func TestValidateRules(t *testing.T) {
	for _, tc := range validateCases {
		t.Run(tc.name, func(t *testing.T) {
			if !handled(tc.req) {
				t.Fatalf("no validator handles %T", tc.req)
			}
			err := Validate(tc.req)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("valid request rejected: %v", err)
				}
				return
			}
			var e *errdefs.Error
			if !errors.As(err, &e) || e.Kind != errdefs.KindInvalidArgument {
				t.Fatalf("got %v, want an invalid-argument error for %s", err, tc.field)
			}
			if e.Field != tc.field || !strings.HasPrefix(e.Error(), tc.field+": ") {
				t.Fatalf("error %q names field %q, want %q", e.Error(), e.Field, tc.field)
			}
		})
	}
}

// TestValidateRulesCoverEveryRequest asks for a valid example of every
// RPC's request in validateCases, so a Validate that rejects everything
// cannot slip in with a new RPC.
func TestValidateRulesCoverEveryRequest(t *testing.T) {
	valid := map[protoreflect.FullName]bool{}
	for _, tc := range validateCases {
		if tc.field == "" {
			valid[tc.req.ProtoReflect().Descriptor().FullName()] = true
		}
	}
	var missing []string
	for rpc, md := range rpcInputs(t) {
		if !valid[md.FullName()] {
			missing = append(missing, rpc)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("validateCases has no valid request for:\n  %s", strings.Join(missing, "\n  "))
	}
}
