package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

func testApp(format outputFormat) (*app, *bytes.Buffer) {
	var out bytes.Buffer
	a := newApp(&out, &bytes.Buffer{}, func(string) string { return "" })
	a.output = format
	return a, &out
}

func TestReplicationStatusCinderSpelling(t *testing.T) {
	want := map[driverv1.ReplicationStatus]string{
		driverv1.ReplicationStatus_REPLICATION_STATUS_UNSPECIFIED:    "-",
		driverv1.ReplicationStatus_REPLICATION_STATUS_DISABLED:       "disabled",
		driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLED:        "enabled",
		driverv1.ReplicationStatus_REPLICATION_STATUS_ERROR:          "error",
		driverv1.ReplicationStatus_REPLICATION_STATUS_FAILING_OVER:   "failing-over",
		driverv1.ReplicationStatus_REPLICATION_STATUS_FAILED_OVER:    "failed-over",
		driverv1.ReplicationStatus_REPLICATION_STATUS_NOT_CAPABLE:    "not-capable",
		driverv1.ReplicationStatus_REPLICATION_STATUS_FAILOVER_ERROR: "failover-error",
		driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLING:       "enabling",
		driverv1.ReplicationStatus_REPLICATION_STATUS_DISABLING:      "disabling",
	}
	// Every value the proto defines must have a Cinder spelling, so a value
	// added to the enum later fails here until it gets one.
	for n := range driverv1.ReplicationStatus_name {
		s := driverv1.ReplicationStatus(n)
		w, ok := want[s]
		if !ok {
			t.Errorf("%s: no expected Cinder spelling in this test", s)
			continue
		}
		if got := replicationStatus(s); got != w {
			t.Errorf("replicationStatus(%s) = %q, want %q", s, got, w)
		}
	}
	if got := replicationStatus(driverv1.ReplicationStatus(99)); got != "unknown(99)" {
		t.Errorf("replicationStatus(99) = %q", got)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0:           "0 B",
		1023:        "1023 B",
		1024:        "1.0 KiB",
		1536:        "1.5 KiB",
		10 << 30:    "10.0 GiB",
		5 << 40:     "5.0 TiB",
		1<<62 + 1:   "4.0 EiB",
		3*1<<20 - 1: "3.0 MiB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBackendsTable(t *testing.T) {
	a, out := testApp(outputTable)
	err := a.printBackends(&driverv1.ListBackendsResponse{Backends: []*driverv1.Backend{
		{
			Name: "pure-1", Up: true, ActiveBackendId: "default",
			ReplicationTargets: []*driverv1.ReplicationTarget{{BackendId: "site-b", Type: "async"}, {BackendId: "site-c", Type: "sync"}},
		},
		{Name: "pure-2", Up: false, Reason: "cinder.conf:12: unknown key san_ipp (did you mean san_ip?)"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME    UP   ACTIVE   TARGETS                     REASON\n" +
		"pure-1  yes  default  site-b(async),site-c(sync)  -\n" +
		"pure-2  no   -        -                           cinder.conf:12: unknown key san_ipp (did you mean san_ip?)\n"
	if out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
}

func TestVolumesTable(t *testing.T) {
	a, out := testApp(outputTable)
	err := a.printVolumes(&driverv1.ListVolumesResponse{Volumes: []*driverv1.Volume{
		{Id: "vol-1", SizeGb: 10, ProviderId: "array-a/volume-vol-1", ReplicationStatus: driverv1.ReplicationStatus_REPLICATION_STATUS_FAILED_OVER, UsedBytes: 1536},
		{Id: "vol-2", SizeGb: 200, ReplicationStatus: driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLED, Source: "snapshot:snap-1"},
		{Id: "vol-3", SizeGb: 1, ReplicationStatus: driverv1.ReplicationStatus_REPLICATION_STATUS_DISABLED},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID     SIZE_GB  REPLICATION  USED     SOURCE           PROVIDER_ID\n" +
		"vol-1  10       failed-over  1.5 KiB  -                array-a/volume-vol-1\n" +
		"vol-2  200      enabled      0 B      snapshot:snap-1  -\n" +
		"vol-3  1        disabled     0 B      -                -\n"
	if out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
}

func TestVolumeShowTable(t *testing.T) {
	a, out := testApp(outputTable)
	err := a.printVolume(&driverv1.GetVolumeResponse{Volume: &driverv1.Volume{
		Id: "vol-1", SizeGb: 10, ProviderId: "array-a/volume-vol-1",
		ReplicationStatus: driverv1.ReplicationStatus_REPLICATION_STATUS_FAILING_OVER, UsedBytes: 2048,
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"id                  vol-1\n" +
		"size_gb             10\n" +
		"replication_status  failing-over\n" +
		"used                2.0 KiB (2048 bytes)\n" +
		"source              -\n" +
		"provider_id         array-a/volume-vol-1\n"
	if out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
}

func TestSnapshotsTable(t *testing.T) {
	a, out := testApp(outputTable)
	err := a.printSnapshots(&driverv1.ListSnapshotsResponse{Snapshots: []*driverv1.Snapshot{
		{Id: "snap-1", VolumeId: "vol-1", SizeGb: 10, ProviderId: "array-a/snap-1", Guid: "7d1e", Created: "2026-01-02T03:04:05Z"},
		{Id: "snap-2", VolumeId: "vol-1", SizeGb: 10},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID      VOLUME  SIZE_GB  CREATED               GUID  PROVIDER_ID\n" +
		"snap-1  vol-1   10       2026-01-02T03:04:05Z  7d1e  array-a/snap-1\n" +
		"snap-2  vol-1   10       -                     -     -\n"
	if out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
}

func TestStatsTable(t *testing.T) {
	a, out := testApp(outputTable)
	err := a.printStats(&driverv1.GetVolumeStatsResponse{
		VolumeBackendName: "pure", VendorName: "volrep", DriverVersion: "0.1.0", StorageProtocol: "nbd",
		TotalCapacityGb: 1024, FreeCapacityGb: 1000.5, ProvisionedCapacityGb: 24,
		ThinProvisioningSupport: true, ReplicationEnabled: true,
		ReplicationTargets: []string{"site-b", "site-c"}, ReplicationType: []string{"async", "sync"}, ReplicationCount: 2,
		ActiveBackendId: "default", MaxOverSubscriptionRatio: 20, ReservedPercentage: 5,
		BackendStateUp: false, BackendStateReason: "array site-b unreachable",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"volume_backend_name                   pure\n" +
		"backend_state                         down\n" +
		"backend_state_reason                  array site-b unreachable\n" +
		"active_backend_id                     default\n" +
		"vendor_name                           volrep\n" +
		"driver_version                        0.1.0\n" +
		"storage_protocol                      nbd\n" +
		"total_capacity_gb                     1024\n" +
		"free_capacity_gb                      1000.5\n" +
		"provisioned_capacity_gb               24\n" +
		"reserved_percentage                   5\n" +
		"max_over_subscription_ratio           20\n" +
		"thin_provisioning_support             true\n" +
		"thick_provisioning_support            false\n" +
		"multiattach                           false\n" +
		"replication_enabled                   true\n" +
		"replication_type                      async,sync\n" +
		"replication_count                     2\n" +
		"replication_targets                   site-b,site-c\n" +
		"consistent_group_snapshot_enabled     false\n" +
		"consistent_group_replication_enabled  false\n"
	if out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
}

func TestModelUpdateTable(t *testing.T) {
	a, out := testApp(outputTable)
	resp := &driverv1.CreateVolumeResponse{ModelUpdate: &driverv1.ModelUpdate{
		ProviderId:        "array-a/volume-v1",
		ReplicationStatus: driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLED,
		Metadata:          map[string]string{"pg": "cinder-group", "array": "array-a"},
	}}
	if err := a.render(resp, func(w io.Writer) { modelUpdateTable(w, "v1", "pure-1", resp.GetModelUpdate()) }); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"id                  v1\n" +
		"backend             pure-1\n" +
		"provider_id         array-a/volume-v1\n" +
		"replication_status  enabled\n" +
		"metadata.array      array-a\n" +
		"metadata.pg         cinder-group\n"
	if out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
}

// -o json prints the response itself, with proto field names and without
// unset fields.
func TestJSONOutput(t *testing.T) {
	for _, msg := range []proto.Message{
		&driverv1.ListBackendsResponse{Backends: []*driverv1.Backend{{Name: "pure-1", Up: true, ActiveBackendId: "default"}}},
		&driverv1.ListVolumesResponse{Volumes: []*driverv1.Volume{{Id: "v1", SizeGb: 3, ReplicationStatus: driverv1.ReplicationStatus_REPLICATION_STATUS_FAILED_OVER}}},
		&driverv1.GetVolumeStatsResponse{VolumeBackendName: "pure", ReplicationTargets: []string{"site-b"}},
	} {
		a, out := testApp(outputJSON)
		tableCalled := false
		if err := a.render(msg, func(io.Writer) { tableCalled = true }); err != nil {
			t.Fatal(err)
		}
		if tableCalled {
			t.Errorf("%T: -o json also rendered the table", msg)
		}
		got := msg.ProtoReflect().New().Interface()
		if err := protojson.Unmarshal(out.Bytes(), got); err != nil {
			t.Fatalf("%T: output is not protojson: %v\n%s", msg, err, out)
		}
		if !proto.Equal(got, msg) {
			t.Errorf("%T: round trip = %v, want %v", msg, got, msg)
		}
		s := out.String()
		if !strings.HasSuffix(s, "}\n") || strings.Count(s, "\n") < 3 {
			t.Errorf("%T: want multi-line JSON ending in a newline, got %q", msg, s)
		}
	}

	a, out := testApp(outputJSON)
	if err := a.printVolumes(&driverv1.ListVolumesResponse{Volumes: []*driverv1.Volume{{Id: "v1", SizeGb: 3, ReplicationStatus: driverv1.ReplicationStatus_REPLICATION_STATUS_FAILED_OVER}}}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{`"size_gb"`, `"replication_status"`, `"REPLICATION_STATUS_FAILED_OVER"`} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON lacks %s (proto names expected):\n%s", want, s)
		}
	}
	for _, unwanted := range []string{`"sizeGb"`, `"provider_id"`, `"used_bytes"`} {
		if strings.Contains(s, unwanted) {
			t.Errorf("JSON has %s (camelCase or an unset field):\n%s", unwanted, s)
		}
	}
}

func TestOutputFlagValue(t *testing.T) {
	var o outputFormat
	for in, want := range map[string]outputFormat{"json": outputJSON, "JSON": outputJSON, "table": outputTable} {
		if err := o.Set(in); err != nil || o != want {
			t.Errorf("Set(%q) = %v, value %q; want %q", in, err, o, want)
		}
	}
	for _, bad := range []string{"yaml", "", "wide"} {
		if err := o.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}
