package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/volrep/volrep/internal/testenv"
	"github.com/volrep/volrep/paging"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// runMainEnv makes the test binary act as the volrep command, so that a test
// can run it through a real shell and see its real exit status.
const runMainEnv = "VOLREP_CLI_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// fakeDriver is a test double for the DriverService protocol: it returns
// canned responses and records what the CLI sent. It is not the driver.
type fakeDriver struct {
	driverv1.UnimplementedDriverServiceServer

	mu       sync.Mutex
	backends []*driverv1.Backend
	fail     map[string]error // method name → error to return instead
	block    map[string]bool  // method name → wait for the call's context to end (at most 5s)
	// onePerPage makes ListVolumes answer one volume a page, as volrepd
	// does for a client that asks for page_size 1.
	onePerPage bool
	calls      []recordedCall
}

type recordedCall struct {
	method string // "CreateVolume"
	req    proto.Message
	auth   []string // values of the "authorization" metadata key
}

func (f *fakeDriver) record(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.calls = append(f.calls, recordedCall{method: method, req: proto.Clone(req.(proto.Message)), auth: md.Get("authorization")})
	err, block := f.fail[method], f.block[method]
	f.mu.Unlock()
	if block {
		// Wait for the client to give up, but not forever: a client that
		// ignores --timeout gets an answer and its test fails instead of
		// hanging.
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(5 * time.Second):
		}
	}
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (f *fakeDriver) recorded() []recordedCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recordedCall(nil), f.calls...)
}

// only returns the single recorded call to method, failing the test if there
// is not exactly one.
func (f *fakeDriver) only(t *testing.T, method string) recordedCall {
	t.Helper()
	var found []recordedCall
	for _, c := range f.recorded() {
		if c.method == method {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s call, got %d (all calls: %v)", method, len(found), f.methods())
	}
	return found[0]
}

func (f *fakeDriver) methods() []string {
	var ms []string
	for _, c := range f.recorded() {
		ms = append(ms, c.method)
	}
	return ms
}

var cannedModelUpdate = &driverv1.ModelUpdate{
	ProviderId:        "array-a/volume-x",
	ReplicationStatus: driverv1.ReplicationStatus_REPLICATION_STATUS_ENABLED,
}

var cannedVolumes = []*driverv1.Volume{
	{Id: "vol-1", SizeGb: 10, ProviderId: "array-a/volume-vol-1", ReplicationStatus: driverv1.ReplicationStatus_REPLICATION_STATUS_FAILED_OVER, UsedBytes: 4096},
	{Id: "vol-2", SizeGb: 20, ReplicationStatus: driverv1.ReplicationStatus_REPLICATION_STATUS_DISABLED},
}

func (f *fakeDriver) ListBackends(context.Context, *driverv1.ListBackendsRequest) (*driverv1.ListBackendsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &driverv1.ListBackendsResponse{Backends: f.backends}, nil
}

func (f *fakeDriver) GetVolumeStats(_ context.Context, r *driverv1.GetVolumeStatsRequest) (*driverv1.GetVolumeStatsResponse, error) {
	return &driverv1.GetVolumeStatsResponse{VolumeBackendName: r.GetBackend(), BackendStateUp: true, ReplicationEnabled: true}, nil
}

func (f *fakeDriver) CreateVolume(context.Context, *driverv1.CreateVolumeRequest) (*driverv1.CreateVolumeResponse, error) {
	return &driverv1.CreateVolumeResponse{ModelUpdate: cannedModelUpdate}, nil
}

func (f *fakeDriver) DeleteVolume(context.Context, *driverv1.DeleteVolumeRequest) (*driverv1.DeleteVolumeResponse, error) {
	return &driverv1.DeleteVolumeResponse{}, nil
}

func (f *fakeDriver) ExtendVolume(context.Context, *driverv1.ExtendVolumeRequest) (*driverv1.ExtendVolumeResponse, error) {
	return &driverv1.ExtendVolumeResponse{}, nil
}

func (f *fakeDriver) RevertToSnapshot(context.Context, *driverv1.RevertToSnapshotRequest) (*driverv1.RevertToSnapshotResponse, error) {
	return &driverv1.RevertToSnapshotResponse{}, nil
}

func (f *fakeDriver) SnapshotReplicate(context.Context, *driverv1.SnapshotReplicateRequest) (*driverv1.SnapshotReplicateResponse, error) {
	return &driverv1.SnapshotReplicateResponse{OperationId: "op-1"}, nil
}

func (f *fakeDriver) MigrateVolume(context.Context, *driverv1.MigrateVolumeRequest) (*driverv1.MigrateVolumeResponse, error) {
	return &driverv1.MigrateVolumeResponse{OperationId: "op-2"}, nil
}

func (f *fakeDriver) GetVolume(_ context.Context, r *driverv1.GetVolumeRequest) (*driverv1.GetVolumeResponse, error) {
	return &driverv1.GetVolumeResponse{Volume: &driverv1.Volume{Id: r.GetVolumeId(), SizeGb: 10}}, nil
}

func (f *fakeDriver) ListVolumes(_ context.Context, r *driverv1.ListVolumesRequest) (*driverv1.ListVolumesResponse, error) {
	f.mu.Lock()
	onePerPage := f.onePerPage
	f.mu.Unlock()
	if !onePerPage {
		return &driverv1.ListVolumesResponse{Volumes: cannedVolumes}, nil
	}
	one := &driverv1.ListVolumesRequest{Backend: r.GetBackend(), PageSize: 1, PageToken: r.GetPageToken()}
	page, next, err := paging.Page(cannedVolumes, (*driverv1.Volume).GetId, one, r.GetBackend())
	return &driverv1.ListVolumesResponse{Volumes: page, NextPageToken: next}, err
}

func (f *fakeDriver) CreateSnapshot(context.Context, *driverv1.CreateSnapshotRequest) (*driverv1.CreateSnapshotResponse, error) {
	return &driverv1.CreateSnapshotResponse{ModelUpdate: &driverv1.ModelUpdate{ProviderId: "array-a/snap-x"}}, nil
}

func (f *fakeDriver) DeleteSnapshot(context.Context, *driverv1.DeleteSnapshotRequest) (*driverv1.DeleteSnapshotResponse, error) {
	return &driverv1.DeleteSnapshotResponse{}, nil
}

func (f *fakeDriver) ListSnapshots(_ context.Context, r *driverv1.ListSnapshotsRequest) (*driverv1.ListSnapshotsResponse, error) {
	return &driverv1.ListSnapshotsResponse{Snapshots: []*driverv1.Snapshot{{Id: "snap-1", VolumeId: r.GetVolumeId(), SizeGb: 10}}}, nil
}

func (f *fakeDriver) CreateVolumeFromSnapshot(context.Context, *driverv1.CreateVolumeFromSnapshotRequest) (*driverv1.CreateVolumeFromSnapshotResponse, error) {
	return &driverv1.CreateVolumeFromSnapshotResponse{ModelUpdate: cannedModelUpdate}, nil
}

func (f *fakeDriver) CreateClonedVolume(context.Context, *driverv1.CreateClonedVolumeRequest) (*driverv1.CreateClonedVolumeResponse, error) {
	return &driverv1.CreateClonedVolumeResponse{ModelUpdate: cannedModelUpdate}, nil
}

func (f *fakeDriver) ManageExisting(context.Context, *driverv1.ManageExistingRequest) (*driverv1.ManageExistingResponse, error) {
	return &driverv1.ManageExistingResponse{ModelUpdate: cannedModelUpdate, SizeGb: 2}, nil
}

func (f *fakeDriver) Unmanage(context.Context, *driverv1.UnmanageRequest) (*driverv1.UnmanageResponse, error) {
	return &driverv1.UnmanageResponse{}, nil
}

func (f *fakeDriver) ListManageableVolumes(context.Context, *driverv1.ListManageableVolumesRequest) (*driverv1.ListManageableVolumesResponse, error) {
	return &driverv1.ListManageableVolumesResponse{Volumes: []*driverv1.Manageable{
		{Name: "legacy", SizeGb: 3, SafeToManage: true},
		{Name: "volume-v1-cinder", SizeGb: 1, CinderId: "v1", ReasonNotSafe: "already managed"},
	}}, nil
}

// startFake serves a fakeDriver with the given backends on a loopback port.
func startFake(t *testing.T, backends ...string) (*fakeDriver, string) {
	t.Helper()
	f := &fakeDriver{fail: map[string]error{}, block: map[string]bool{}}
	for _, b := range backends {
		f.backends = append(f.backends, &driverv1.Backend{Name: b, Up: true, ActiveBackendId: "default"})
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(f.record))
	driverv1.RegisterDriverServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String()
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

type result struct {
	stdout, stderr string
	code           int
}

// volrep runs the CLI in-process with the given environment.
func volrep(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr, func(k string) string { return env[k] })
	return result{stdout.String(), stderr.String(), code}
}

func TestVolumeCreateEndToEnd(t *testing.T) {
	f, addr := startFake(t, "pure-1", "pure-2")
	r := volrep(t, nil, "--addr", addr, "--token", "s3cret", "-b", "pure-2",
		"volume", "create", "vol-1", "--size", "10", "--type", "replicated",
		"--spec", "replication_enabled=<is> True",
		"--spec", "replication_type=<in> async",
		"--spec", "odd=a=b, c")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}

	got := f.only(t, "CreateVolume")
	want := &driverv1.CreateVolumeRequest{
		Backend:  "pure-2",
		VolumeId: "vol-1",
		SizeGb:   10,
		VolumeType: &driverv1.VolumeType{Name: "replicated", ExtraSpecs: map[string]string{
			"replication_enabled": "<is> True",
			"replication_type":    "<in> async",
			"odd":                 "a=b, c",
		}},
	}
	if !proto.Equal(got.req, want) {
		t.Errorf("server received\n%v\nwant\n%v", got.req, want)
	}
	if len(got.auth) != 1 || got.auth[0] != "Bearer s3cret" {
		t.Errorf("authorization metadata = %q, want [\"Bearer s3cret\"]", got.auth)
	}
	if ms := f.methods(); len(ms) != 1 {
		t.Errorf("with --backend the CLI should make one call, made %v", ms)
	}
	wantOut := "" +
		"id                  vol-1\n" +
		"backend             pure-2\n" +
		"provider_id         array-a/volume-x\n" +
		"replication_status  enabled\n"
	if r.stdout != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, wantOut)
	}
	if r.stderr != "" {
		t.Errorf("stderr = %q, want nothing", r.stderr)
	}
}

// Each command calls its RPC with the request built from its arguments.
func TestCommandsMapToRPCs(t *testing.T) {
	const b = "pure-1"
	for _, tc := range []struct {
		args   []string
		method string
		want   proto.Message
		stdout string // a line the table output must contain
	}{
		{[]string{"backend", "list"}, "ListBackends", &driverv1.ListBackendsRequest{PageSize: paging.MaxPageSize}, "pure-1  yes  default  -        -"},
		{[]string{"stats"}, "GetVolumeStats", &driverv1.GetVolumeStatsRequest{Backend: b}, "backend_state "},
		{[]string{"stats", "pure-1", "--refresh"}, "GetVolumeStats", &driverv1.GetVolumeStatsRequest{Backend: b, Refresh: true}, "replication_enabled "},
		{[]string{"volume", "delete", "vol-1"}, "DeleteVolume", &driverv1.DeleteVolumeRequest{Backend: b, VolumeId: "vol-1"}, "deleted volume vol-1"},
		{[]string{"volume", "extend", "vol-1", "--size", "20"}, "ExtendVolume", &driverv1.ExtendVolumeRequest{Backend: b, VolumeId: "vol-1", NewSizeGb: 20}, "extended volume vol-1 to 20 GB"},
		{[]string{"volume", "revert", "vol-1", "snap-1"}, "RevertToSnapshot", &driverv1.RevertToSnapshotRequest{Backend: b, VolumeId: "vol-1", SnapshotId: "snap-1"}, "reverted volume vol-1 to snapshot snap-1"},
		{[]string{"volume", "manage", "legacy", "--id", "m1", "--type", "gold"}, "ManageExisting",
			&driverv1.ManageExistingRequest{Backend: b, VolumeId: "m1", Ref: &driverv1.ExistingRef{SourceName: "legacy"}, VolumeType: &driverv1.VolumeType{Name: "gold"}}, "size_gb             2"},
		{[]string{"volume", "manage", "--provider-id", "array-a/legacy", "--id", "m1"}, "ManageExisting",
			&driverv1.ManageExistingRequest{Backend: b, VolumeId: "m1", Ref: &driverv1.ExistingRef{SourceId: "array-a/legacy"}}, "id                  m1"},
		{[]string{"volume", "unmanage", "m1"}, "Unmanage", &driverv1.UnmanageRequest{Backend: b, VolumeId: "m1"}, "unmanaged volume m1"},
		{[]string{"volume", "manageable"}, "ListManageableVolumes", &driverv1.ListManageableVolumesRequest{Backend: b, PageSize: paging.MaxPageSize},
			"volume-v1-cinder  1        no    v1         already managed"},
		{[]string{"volume", "list"}, "ListVolumes", &driverv1.ListVolumesRequest{Backend: b, PageSize: paging.MaxPageSize}, "vol-1  10       failed-over"},
		{[]string{"volume", "show", "vol 1/with spaces"}, "GetVolume", &driverv1.GetVolumeRequest{Backend: b, VolumeId: "vol 1/with spaces"}, "id                  vol 1/with spaces"},
		{[]string{"volume", "create", "v", "--size", "1", "--group", "cg-1"}, "CreateVolume", &driverv1.CreateVolumeRequest{Backend: b, VolumeId: "v", SizeGb: 1, GroupId: "cg-1"}, "replication_status  enabled"},
		{
			[]string{"volume", "clone", "vol-2", "--from", "vol-1", "--size", "30", "--spec", "replication_enabled=<is> True"},
			"CreateClonedVolume",
			&driverv1.CreateClonedVolumeRequest{Backend: b, VolumeId: "vol-2", SourceVolumeId: "vol-1", SizeGb: 30,
				VolumeType: &driverv1.VolumeType{ExtraSpecs: map[string]string{"replication_enabled": "<is> True"}}},
			"id                  vol-2",
		},
		{
			[]string{"volume", "from-snapshot", "vol-3", "--snapshot", "snap-1", "--source-volume", "vol-1", "--type", "gold", "--type-id", "t-1"},
			"CreateVolumeFromSnapshot",
			&driverv1.CreateVolumeFromSnapshotRequest{Backend: b, VolumeId: "vol-3", SnapshotId: "snap-1", SourceVolumeId: "vol-1",
				VolumeType: &driverv1.VolumeType{Id: "t-1", Name: "gold"}},
			"provider_id         array-a/volume-x",
		},
		{[]string{"snapshot", "create", "snap-1", "--volume", "vol-1"}, "CreateSnapshot", &driverv1.CreateSnapshotRequest{Backend: b, SnapshotId: "snap-1", VolumeId: "vol-1"}, "volume_id           vol-1"},
		{[]string{"snapshot", "delete", "snap-1", "--volume", "vol-1"}, "DeleteSnapshot", &driverv1.DeleteSnapshotRequest{Backend: b, SnapshotId: "snap-1", VolumeId: "vol-1"}, "deleted snapshot snap-1 of volume vol-1"},
		{[]string{"snapshot", "replicate", "s1", "s2", "--volume", "vol-1", "--to", "site-b", "--detach"}, "SnapshotReplicate",
			&driverv1.SnapshotReplicateRequest{Backend: b, VolumeId: "vol-1", DestinationBackend: "site-b", SnapshotIds: []string{"s1", "s2"}}, "operation_id  op-1"},
		{[]string{"snapshot", "replicate", "--count", "3", "--volume", "vol-1", "--to", "site-b", "--detach"}, "SnapshotReplicate",
			&driverv1.SnapshotReplicateRequest{Backend: b, VolumeId: "vol-1", DestinationBackend: "site-b", Count: 3}, "operation_id  op-1"},
		{[]string{"volume", "migrate", "vol-1", "--to", "site-b", "--small-pass-bytes", "1048576", "--detach"}, "MigrateVolume",
			&driverv1.MigrateVolumeRequest{Backend: b, VolumeId: "vol-1", DestinationBackend: "site-b", SmallPassBytes: 1 << 20}, "operation_id  op-2"},
		{[]string{"snapshot", "list", "--volume", "vol-1"}, "ListSnapshots", &driverv1.ListSnapshotsRequest{Backend: b, VolumeId: "vol-1", PageSize: paging.MaxPageSize}, "snap-1  vol-1   10"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			f, addr := startFake(t, b)
			r := volrep(t, nil, append([]string{"--addr", addr}, tc.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
			}
			if got := f.only(t, tc.method); !proto.Equal(got.req, tc.want) {
				t.Errorf("%s received\n%v\nwant\n%v", tc.method, got.req, tc.want)
			}
			if !strings.Contains(r.stdout, tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, r.stdout)
			}
		})
	}
}

// TestVolumeListFollowsPages: the CLI prints every page, not the first.
func TestVolumeListFollowsPages(t *testing.T) {
	f, addr := startFake(t, "pure-1")
	f.onePerPage = true
	r := volrep(t, nil, "--addr", addr, "--backend", "pure-1", "volume", "list")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, id := range []string{"vol-1", "vol-2"} {
		if n := strings.Count(r.stdout, "\n"+id+" "); n != 1 {
			t.Errorf("stdout has %d rows for %s, want one:\n%s", n, id, r.stdout)
		}
	}
	var tokens []string
	for _, c := range f.recorded() {
		if c.method == "ListVolumes" {
			tokens = append(tokens, c.req.(*driverv1.ListVolumesRequest).GetPageToken())
		}
	}
	if len(tokens) != 2 || tokens[0] != "" || tokens[1] == "" {
		t.Errorf("ListVolumes page tokens %q, want the first page then the next", tokens)
	}
}

func TestDefaultBackend(t *testing.T) {
	t.Run("one backend is used", func(t *testing.T) {
		f, addr := startFake(t, "only-one")
		r := volrep(t, nil, "--addr", addr, "volume", "list")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if got := f.only(t, "ListVolumes").req.(*driverv1.ListVolumesRequest).GetBackend(); got != "only-one" {
			t.Errorf("backend = %q, want only-one", got)
		}
		if ms := f.methods(); len(ms) != 2 || ms[0] != "ListBackends" {
			t.Errorf("calls = %v, want ListBackends then ListVolumes", ms)
		}
	})
	t.Run("several backends need --backend", func(t *testing.T) {
		f, addr := startFake(t, "a", "b")
		r := volrep(t, nil, "--addr", addr, "volume", "delete", "vol-1")
		if r.code != exitUsage {
			t.Errorf("exit %d, want %d", r.code, exitUsage)
		}
		if !strings.Contains(r.stderr, "volrepd serves 2 backends (a, b)") || !strings.Contains(r.stderr, "--backend or VOLREP_BACKEND") {
			t.Errorf("stderr does not name the backends and the way out:\n%s", r.stderr)
		}
		for _, m := range f.methods() {
			if m == "DeleteVolume" {
				t.Errorf("DeleteVolume was called without a backend choice")
			}
		}
	})
	t.Run("no backends", func(t *testing.T) {
		_, addr := startFake(t)
		r := volrep(t, nil, "--addr", addr, "volume", "list")
		if r.code != exitNotFound || !strings.Contains(r.stderr, "serves no backends") {
			t.Errorf("exit %d, stderr %q; want %d and 'serves no backends'", r.code, r.stderr, exitNotFound)
		}
	})
	t.Run("stats argument and --backend disagree", func(t *testing.T) {
		f, addr := startFake(t, "a", "b")
		r := volrep(t, nil, "--addr", addr, "-b", "a", "stats", "b")
		if r.code != exitUsage {
			t.Errorf("exit %d, want %d; stderr %s", r.code, exitUsage, r.stderr)
		}
		if ms := f.methods(); len(ms) != 0 {
			t.Errorf("calls %v, want none", ms)
		}
	})
}

func TestEnvironment(t *testing.T) {
	f, addr := startFake(t, "a", "b")
	env := map[string]string{"VOLREP_ADDR": addr, "VOLREP_TOKEN": "from-env\n", "VOLREP_BACKEND": "b"}

	r := volrep(t, env, "volume", "show", "vol-1")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	c := f.only(t, "GetVolume")
	if got := c.req.(*driverv1.GetVolumeRequest).GetBackend(); got != "b" {
		t.Errorf("backend from VOLREP_BACKEND = %q, want b", got)
	}
	if len(c.auth) != 1 || c.auth[0] != "Bearer from-env" {
		t.Errorf("authorization from VOLREP_TOKEN = %q, want [\"Bearer from-env\"]", c.auth)
	}

	// Flags win over the environment.
	f2, addr2 := startFake(t, "a", "b")
	r = volrep(t, env, "--addr", addr2, "--token", "from-flag", "-b", "a", "volume", "show", "vol-1")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	c = f2.only(t, "GetVolume")
	if got := c.req.(*driverv1.GetVolumeRequest).GetBackend(); got != "a" {
		t.Errorf("backend with -b a = %q", got)
	}
	if len(c.auth) != 1 || c.auth[0] != "Bearer from-flag" {
		t.Errorf("authorization with --token = %q", c.auth)
	}
	if n := len(f.recorded()); n != 1 {
		t.Errorf("--addr did not override VOLREP_ADDR: the env daemon got %d calls, want 1", n)
	}
}

func TestNoTokenSendsNoAuthorization(t *testing.T) {
	f, addr := startFake(t, "a")
	if r := volrep(t, nil, "--addr", addr, "backend", "list"); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if auth := f.only(t, "ListBackends").auth; len(auth) != 0 {
		t.Errorf("authorization = %q, want none", auth)
	}
}

func TestJSONEndToEnd(t *testing.T) {
	_, addr := startFake(t, "a")
	r := volrep(t, nil, "--addr", addr, "-o", "json", "volume", "list")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got driverv1.ListVolumesResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("stdout is not protojson: %v\n%s", err, r.stdout)
	}
	if !proto.Equal(&got, &driverv1.ListVolumesResponse{Volumes: cannedVolumes}) {
		t.Errorf("JSON = %v, want the canned volumes", &got)
	}
	if !strings.Contains(r.stdout, `"used_bytes"`) {
		t.Errorf("JSON does not use proto names:\n%s", r.stdout)
	}

	// A response with no fields prints as an empty object, not a message.
	r = volrep(t, nil, "--addr", addr, "--output=json", "volume", "delete", "vol-1")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "{}" {
		t.Errorf("delete -o json: exit %d, stdout %q; want {}", r.code, r.stdout)
	}
}

func TestGeneratedIDs(t *testing.T) {
	f, addr := startFake(t, "a")

	r := volrep(t, nil, "--addr", addr, "volume", "create", "--size", "1")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	id := f.only(t, "CreateVolume").req.(*driverv1.CreateVolumeRequest).GetVolumeId()
	if _, err := uuid.Parse(id); err != nil {
		t.Fatalf("generated volume ID %q is not a UUID: %v", id, err)
	}
	if !strings.Contains(r.stdout, "id                  "+id+"\n") {
		t.Errorf("table output does not show the generated ID %s:\n%s", id, r.stdout)
	}

	// With -o json, stdout stays the response alone and the ID goes to stderr.
	r = volrep(t, nil, "--addr", addr, "-o", "json", "snapshot", "create", "--generate-id", "--volume", "vol-1")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	snap := f.only(t, "CreateSnapshot").req.(*driverv1.CreateSnapshotRequest).GetSnapshotId()
	if _, err := uuid.Parse(snap); err != nil || snap == id {
		t.Fatalf("generated snapshot ID %q: %v (volume ID was %s)", snap, err, id)
	}
	if want := "volrep: generated snapshot ID " + snap + "\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
	var resp driverv1.CreateSnapshotResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Errorf("stdout is not just the JSON response: %v\n%s", err, r.stdout)
	}
}

// Bad command lines fail with exit 2 before anything is sent: the address
// points at nothing, so a dial would turn into exit 4 instead.
func TestUsageErrors(t *testing.T) {
	addr := closedAddr(t)
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"volume", "create", "v1"}, `required flag(s) "size" not set`},
		{[]string{"volume", "create", "v1", "--size", "0"}, "--size must be a positive number of GB, got 0"},
		{[]string{"volume", "create", "v1", "--size", "ten"}, `invalid argument "ten" for "--size" flag`},
		{[]string{"volume", "create", "v1", "v2", "--size", "1"}, "takes at most one ID, got 2 arguments"},
		{[]string{"volume", "create", "v1", "--generate-id", "--size", "1"}, "give a volume ID or --generate-id, not both"},
		{[]string{"volume", "create", "v1", "--size", "1", "--spec", "no-equals-sign"}, "want key=value"},
		{[]string{"volume", "create", "v1", "--size", "1", "--spec", "k=a", "--spec", "k=b"}, `extra spec "k" given twice`},
		{[]string{"volume", "extend", "v1"}, `required flag(s) "size" not set`},
		{[]string{"volume", "revert", "v1"}, "takes a volume ID and a snapshot ID, got 1 argument(s)"},
		{[]string{"snapshot", "replicate", "--volume", "v1", "--to", "b"}, "takes one or more snapshot IDs, or --count"},
		{[]string{"snapshot", "replicate", "a", "b", "--count", "2", "--volume", "v1", "--to", "b"}, "with --count takes at most one snapshot ID"},
		{[]string{"volume", "extend", "v1", "--size", "-1"}, "--size must be a positive number of GB, got -1"},
		{[]string{"volume", "delete"}, "takes a volume ID, got 0 argument(s)"},
		{[]string{"volume", "show", "a", "b"}, "takes a volume ID, got 2 argument(s)"},
		{[]string{"volume", "clone", "v2"}, `required flag(s) "from" not set`},
		{[]string{"volume", "clone", "v2", "--from", "v1", "--size", "-5"}, "--size must not be negative"},
		{[]string{"volume", "from-snapshot", "v3", "--snapshot", "s1"}, `required flag(s) "source-volume" not set`},
		{[]string{"volume", "list", "extra"}, "takes no arguments, got 1 argument(s)"},
		{[]string{"volume", "bogus"}, `unknown command "bogus" for "volrep volume"`},
		{[]string{"bogus"}, `unknown command "bogus" for "volrep"`},
		{[]string{"snapshot", "create", "s1"}, `required flag(s) "volume" not set`},
		{[]string{"snapshot", "list"}, `required flag(s) "volume" not set`},
		{[]string{"-o", "yaml", "volume", "list"}, `invalid argument "yaml" for "-o, --output" flag: want table or json`},
		{[]string{"--timeout", "soon", "volume", "list"}, `invalid argument "soon" for "--timeout" flag`},
		{[]string{"stats", "a", "b"}, "takes at most one BACKEND, got 2 arguments"},
	} {
		r := volrep(t, nil, append([]string{"--addr", addr}, tc.args...)...)
		if r.code != exitUsage {
			t.Errorf("%q: exit %d, want %d; stderr:\n%s", tc.args, r.code, exitUsage, r.stderr)
			continue
		}
		lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "volrep: ") || !strings.Contains(lines[0], tc.msg) ||
			!strings.HasPrefix(lines[1], "volrep: hint: run 'volrep") || !strings.HasSuffix(lines[1], " --help' for usage") {
			t.Errorf("%q: stderr\n%s\nwant one error line containing %q and a --help hint", tc.args, r.stderr, tc.msg)
		}
		if r.stdout != "" {
			t.Errorf("%q: stdout = %q, want nothing", tc.args, r.stdout)
		}
	}
}

func TestHelpDocumentsExitCodes(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {}} {
		r := volrep(t, nil, args...)
		if r.code != 0 {
			t.Errorf("%q: exit %d", args, r.code)
		}
		for _, want := range []string{"Exit status:", "  3    not found", "  4    unavailable", "VOLREP_ADDR", "VOLREP_TOKEN", "VOLREP_BACKEND", "volume", "snapshot", "backend", "stats"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%q: help lacks %q", args, want)
			}
		}
	}
	// The token's value must never show up in help.
	r := volrep(t, map[string]string{"VOLREP_TOKEN": "top-secret"}, "volume", "--help")
	if strings.Contains(r.stdout, "top-secret") {
		t.Errorf("help shows the token:\n%s", r.stdout)
	}
}

func TestServerErrors(t *testing.T) {
	for _, tc := range []struct {
		method string
		err    error
		args   []string
		code   int
		line   string
		hint   string
	}{
		{
			"GetVolume", status.Error(codes.NotFound, `volume "nope" not found on backend "a"`),
			[]string{"volume", "show", "nope"}, exitNotFound,
			`volrep: show volume "nope": volume "nope" not found on backend "a" (NOT_FOUND)`, "volrep volume list",
		},
		{
			"CreateVolume", status.Error(codes.Unauthenticated, "missing or wrong token"),
			[]string{"volume", "create", "v", "--size", "1"}, exitUnauthenticated,
			`volrep: create volume "v": missing or wrong token (UNAUTHENTICATED)`, "check --token / VOLREP_TOKEN",
		},
		{
			"CreateVolume", status.Error(codes.AlreadyExists, `volume "v" exists with size 2 GB`),
			[]string{"volume", "create", "v", "--size", "1"}, exitAlreadyExists,
			`volrep: create volume "v": volume "v" exists with size 2 GB (ALREADY_EXISTS)`, "",
		},
		{
			"DeleteVolume", status.Error(codes.FailedPrecondition, `volume "v" has snapshots; delete them first`),
			[]string{"volume", "delete", "v"}, exitPrecondition,
			`volrep: delete volume "v": volume "v" has snapshots; delete them first (FAILED_PRECONDITION)`, "",
		},
		{
			"ListBackends", status.Error(codes.Unavailable, "array site-b unreachable"),
			[]string{"volume", "list"}, exitUnavailable,
			"volrep: list backends (to pick the default backend): array site-b unreachable (UNAVAILABLE)", "is volrepd running at ",
		},
		{
			"CreateVolume", status.Error(codes.InvalidArgument, "volume_type.extra_specs[replication_type]: want '<in> async' or '<in> sync'"),
			[]string{"volume", "create", "v", "--size", "1", "--spec", "replication_type=<in> asink"}, exitUsage,
			`volrep: create volume "v": volume_type.extra_specs[replication_type]: want '<in> async' or '<in> sync' (INVALID_ARGUMENT)`, "run 'volrep volume create --help' for usage",
		},
	} {
		t.Run(tc.method+"/"+status.Code(tc.err).String(), func(t *testing.T) {
			f, addr := startFake(t, "a")
			f.fail[tc.method] = tc.err
			r := volrep(t, nil, append([]string{"--addr", addr}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d", r.code, tc.code)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			if lines[0] != tc.line {
				t.Errorf("error line\n got %q\nwant %q", lines[0], tc.line)
			}
			switch {
			case tc.hint == "" && len(lines) != 1:
				t.Errorf("want no hint, stderr:\n%s", r.stderr)
			case tc.hint != "" && (len(lines) != 2 || !strings.HasPrefix(lines[1], "volrep: hint: ") || !strings.Contains(lines[1], tc.hint)):
				t.Errorf("want a hint containing %q, stderr:\n%s", tc.hint, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing on error", r.stdout)
			}
		})
	}
}

func TestDaemonNotRunning(t *testing.T) {
	addr := closedAddr(t)
	r := volrep(t, nil, "--addr", addr, "-b", "a", "volume", "list")
	if r.code != exitUnavailable {
		t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, exitUnavailable, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], `volrep: list volumes of backend "a": `) || !strings.HasSuffix(lines[0], " (UNAVAILABLE)") {
		t.Errorf("error line = %q", lines[0])
	}
	want := "volrep: hint: is volrepd running at " + addr + "? check --addr / VOLREP_ADDR (journalctl -u volrepd)"
	if len(lines) != 2 || lines[1] != want {
		t.Errorf("hint\n got %q\nwant %q", lines[len(lines)-1], want)
	}
}

func TestTimeout(t *testing.T) {
	f, addr := startFake(t, "a")
	f.block["ListVolumes"] = true
	r := volrep(t, nil, "--addr", addr, "--timeout", "200ms", "volume", "list")
	if r.code != exitDeadlineExceeded {
		t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, exitDeadlineExceeded, r.stderr)
	}
	if !strings.Contains(r.stderr, "(DEADLINE_EXCEEDED)") || !strings.Contains(r.stderr, "raise --timeout") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

// Through a real shell and a real process: quoting as a user types it keeps
// the extra spec values whole, and the process exits with the documented
// codes.
func TestShellQuotingAndProcessExit(t *testing.T) {
	sh := testenv.Tool(t, "sh")
	f, addr := startFake(t, "pure-1")
	script := `"$0" --addr "$1" volume create vol-sh --size 2 ` +
		`--spec replication_enabled='<is> True' --spec "replication_type=<in> sync" --spec 'note=a b,c=d'`
	cmd := exec.Command(sh, "-c", script, os.Args[0], addr)
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "VOLREP_TOKEN=shell-token", "VOLREP_ADDR=", "VOLREP_BACKEND=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("volrep via sh: %v\n%s", err, out)
	}
	c := f.only(t, "CreateVolume")
	want := map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> sync", "note": "a b,c=d"}
	got := c.req.(*driverv1.CreateVolumeRequest).GetVolumeType().GetExtraSpecs()
	if len(got) != len(want) {
		t.Errorf("extra specs = %q, want %q", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("extra spec %s = %q, want %q", k, got[k], v)
		}
	}
	if len(c.auth) != 1 || c.auth[0] != "Bearer shell-token" {
		t.Errorf("authorization = %q", c.auth)
	}

	// The process's exit status is the documented one.
	cmd = exec.Command(sh, "-c", `"$0" --addr "$1" -b x volume list`, os.Args[0], closedAddr(t))
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	out, err = cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != exitUnavailable {
		t.Errorf("unreachable daemon: err %v, want exit status %d\n%s", err, exitUnavailable, out)
	}
}
