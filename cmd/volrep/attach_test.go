package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// attachFake is fakeDriver plus canned answers for the attachment RPCs.
type attachFake struct {
	*fakeDriver
}

var cannedConnection = &driverv1.ConnectionInfo{
	DriverVolumeType: "nbd",
	Data: map[string]string{
		"host": "10.0.0.5", "port": "10809", "export_name": "s3cretname",
		"uri": "nbd://10.0.0.5:10809/s3cretname", "read_only": "false",
		"volume_id": "vol-1", "access_mode": "rw",
	},
}

func (f attachFake) InitializeConnection(context.Context, *driverv1.InitializeConnectionRequest) (*driverv1.InitializeConnectionResponse, error) {
	return &driverv1.InitializeConnectionResponse{ConnectionInfo: cannedConnection}, nil
}

func (f attachFake) TerminateConnection(context.Context, *driverv1.TerminateConnectionRequest) (*driverv1.TerminateConnectionResponse, error) {
	return &driverv1.TerminateConnectionResponse{}, nil
}

func (f attachFake) AttachReplica(context.Context, *driverv1.AttachReplicaRequest) (*driverv1.AttachReplicaResponse, error) {
	ci := &driverv1.ConnectionInfo{DriverVolumeType: "nbd", Data: map[string]string{
		"host": "10.0.0.6", "port": "10810", "export_name": "r3plica", "uri": "nbd://10.0.0.6:10810/r3plica",
		"read_only": "true", "volume_id": "vol-1", "access_mode": "ro", "snapshot_id": "cinder-group.site-b.7"}}
	return &driverv1.AttachReplicaResponse{ConnectionInfo: ci, Snapshot: "cinder-group.site-b.7",
		SnapshotCreated: timestamppb.New(time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC))}, nil
}

func (f attachFake) DetachReplica(context.Context, *driverv1.DetachReplicaRequest) (*driverv1.DetachReplicaResponse, error) {
	return &driverv1.DetachReplicaResponse{}, nil
}

// startAttachFake is startFake with the attachment RPCs implemented.
func startAttachFake(t *testing.T, backends ...string) (*fakeDriver, string) {
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
	driverv1.RegisterDriverServiceServer(srv, attachFake{f})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String()
}

func TestVolumeAttachTable(t *testing.T) {
	f, addr := startAttachFake(t, "pure-1")
	r := volrep(t, nil, "--addr", addr, "volume", "attach", "vol-1", "--host", "compute-1")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	want := &driverv1.InitializeConnectionRequest{Backend: "pure-1", VolumeId: "vol-1", Connector: &driverv1.Connector{Host: "compute-1"}}
	if got := f.only(t, "InitializeConnection"); !proto.Equal(got.req, want) {
		t.Errorf("server received\n%v\nwant\n%v", got.req, want)
	}
	wantOut := "" +
		"driver_volume_type  nbd\n" +
		"uri                 nbd://10.0.0.5:10809/s3cretname\n" +
		"host                10.0.0.5\n" +
		"port                10809\n" +
		"export_name         s3cretname\n" +
		"read_only           false\n"
	if r.stdout != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, wantOut)
	}
	if r.stderr != "" {
		t.Errorf("stderr = %q, want nothing", r.stderr)
	}
}

// TestVolumeAttachAt: --at asks AttachReplica for the latest snapshot as
// host dr-test by default and shows the snapshot it got; detach --at
// without --host or --snapshot revokes every replica attachment.
func TestVolumeAttachAt(t *testing.T) {
	f, addr := startAttachFake(t, "pure-1")
	r := volrep(t, nil, "--addr", addr, "volume", "attach", "vol-1", "--at", "site-b")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	want := &driverv1.AttachReplicaRequest{Backend: "pure-1", VolumeId: "vol-1", BackendId: "site-b", Snapshot: "latest",
		Connector: &driverv1.Connector{Host: "dr-test"}}
	if got := f.only(t, "AttachReplica"); !proto.Equal(got.req, want) {
		t.Errorf("server received\n%v\nwant\n%v", got.req, want)
	}
	wantOut := "" +
		"driver_volume_type  nbd\n" +
		"snapshot            cinder-group.site-b.7\n" +
		"snapshot_created    2026-12-04T20:00:00Z\n" +
		"access_mode         ro\n" +
		"uri                 nbd://10.0.0.6:10810/r3plica\n" +
		"host                10.0.0.6\n" +
		"port                10810\n" +
		"export_name         r3plica\n" +
		"read_only           true\n"
	if r.stdout != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, wantOut)
	}
	r = volrep(t, nil, "--addr", addr, "volume", "detach", "vol-1", "--at", "site-b")
	if r.code != 0 || r.stdout != "detached every replicated snapshot of volume vol-1 at site-b from every host\n" {
		t.Fatalf("detach --at: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantDetach := &driverv1.DetachReplicaRequest{Backend: "pure-1", VolumeId: "vol-1", BackendId: "site-b"}
	if got := f.only(t, "DetachReplica"); !proto.Equal(got.req, wantDetach) {
		t.Errorf("server received\n%v\nwant\n%v", got.req, wantDetach)
	}
}

func TestVolumeAttachSnapshotJSON(t *testing.T) {
	f, addr := startAttachFake(t, "pure-1")
	r := volrep(t, nil, "--addr", addr, "-o", "json", "volume", "attach", "vol-1", "--host", "backup-1", "--snapshot", "snap-1")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	want := &driverv1.InitializeConnectionRequest{Backend: "pure-1", VolumeId: "vol-1",
		Connector: &driverv1.Connector{Host: "backup-1"}, SnapshotId: "snap-1"}
	if got := f.only(t, "InitializeConnection"); !proto.Equal(got.req, want) {
		t.Errorf("server received\n%v\nwant\n%v", got.req, want)
	}
	var got driverv1.InitializeConnectionResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("stdout is not protojson: %v\n%s", err, r.stdout)
	}
	if !proto.Equal(&got, &driverv1.InitializeConnectionResponse{ConnectionInfo: cannedConnection}) {
		t.Errorf("JSON = %v, want the canned connection info", &got)
	}
	if !strings.Contains(r.stdout, `"connection_info"`) || !strings.Contains(r.stdout, `"driver_volume_type"`) {
		t.Errorf("JSON does not use proto names:\n%s", r.stdout)
	}
}

func TestVolumeDetach(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		want   *driverv1.TerminateConnectionRequest
		stdout string
	}{
		{
			[]string{"vol-1", "--host", "compute-1"},
			&driverv1.TerminateConnectionRequest{Backend: "b", VolumeId: "vol-1", Connector: &driverv1.Connector{Host: "compute-1"}},
			"detached volume vol-1 from host compute-1\n",
		},
		{
			// No host: every attachment, so no connector at all.
			[]string{"vol-1"},
			&driverv1.TerminateConnectionRequest{Backend: "b", VolumeId: "vol-1"},
			"detached volume vol-1 from every host\n",
		},
		{
			[]string{"vol-1", "--snapshot", "snap-1", "--host", "backup-1"},
			&driverv1.TerminateConnectionRequest{Backend: "b", VolumeId: "vol-1", SnapshotId: "snap-1", Connector: &driverv1.Connector{Host: "backup-1"}},
			"detached snapshot snap-1 of volume vol-1 from host backup-1\n",
		},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			f, addr := startAttachFake(t, "b")
			r := volrep(t, nil, append([]string{"--addr", addr, "volume", "detach"}, tc.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
			}
			if got := f.only(t, "TerminateConnection"); !proto.Equal(got.req, tc.want) {
				t.Errorf("server received\n%v\nwant\n%v", got.req, tc.want)
			}
			if r.stdout != tc.stdout {
				t.Errorf("stdout = %q, want %q", r.stdout, tc.stdout)
			}
		})
	}
	// -o json prints the (empty) response.
	_, addr := startAttachFake(t, "b")
	r := volrep(t, nil, "--addr", addr, "-o", "json", "volume", "detach", "vol-1")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "{}" {
		t.Errorf("detach -o json: exit %d, stdout %q; want {}", r.code, r.stdout)
	}
}

// Bad command lines fail with exit 2 before anything is sent.
func TestAttachUsageErrors(t *testing.T) {
	addr := closedAddr(t)
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"volume", "attach", "vol-1"}, "--host must name the attaching host"},
		{[]string{"volume", "attach", "vol-1", "--protocol", "fc"}, "--protocol must be nbd or iscsi"},
		{[]string{"volume", "attach", "vol-1", "--protocol", "iscsi"}, "--initiator must name"},
		{[]string{"volume", "attach", "vol-1", "--protocol", "iscsi", "--initiator", "iqn.1993-08.org.debian:01:a"}, "name the array with --array"},
		{[]string{"volume", "detach", "vol-1", "--protocol", "iscsi"}, "--initiator must name"},
		{[]string{"host", "create", "h"}, "--iqn must name"},
		{[]string{"volume", "attach", "vol-1", "--host", ""}, "--host must name the attaching host"},
		{[]string{"volume", "attach", "--host", "h"}, "takes a volume ID, got 0 argument(s)"},
		{[]string{"volume", "attach", "a", "b", "--host", "h"}, "takes a volume ID, got 2 argument(s)"},
		{[]string{"volume", "detach"}, "takes a volume ID, got 0 argument(s)"},
		{[]string{"volume", "detach", "vol-1", "--host="}, "--host is empty; leave it out to detach every host"},
		{[]string{"volume", "attach", "vol-1", "--at", "site-b", "--protocol", "iscsi"}, "--protocol does not go with --at"},
		{[]string{"volume", "attach", "vol-1", "--at", "site-b", "--host="}, "--host must name the attaching host"},
		{[]string{"volume", "detach", "vol-1", "--at", "site-b", "--host="}, "--host is empty; leave it out to detach every host"},
	} {
		r := volrep(t, nil, append([]string{"--addr", addr}, tc.args...)...)
		if r.code != exitUsage {
			t.Errorf("%q: exit %d, want %d; stderr:\n%s", tc.args, r.code, exitUsage, r.stderr)
			continue
		}
		lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], tc.msg) || !strings.Contains(lines[1], "--help' for usage") {
			t.Errorf("%q: stderr\n%s\nwant one error line containing %q and a --help hint", tc.args, r.stderr, tc.msg)
		}
		if r.stdout != "" {
			t.Errorf("%q: stdout = %q, want nothing", tc.args, r.stdout)
		}
	}
}

func TestAttachServerErrors(t *testing.T) {
	for _, tc := range []struct {
		method string
		err    error
		args   []string
		code   int
		line   string
	}{
		{
			"InitializeConnection", status.Error(codes.NotFound, `volume "nope" not found on backend "a"`),
			[]string{"volume", "attach", "nope", "--host", "h1"}, exitNotFound,
			`volrep: attach volume "nope" to host "h1": volume "nope" not found on backend "a" (NOT_FOUND)`,
		},
		{
			"InitializeConnection", status.Error(codes.FailedPrecondition, "array a serves no NBD; set nbd_listen"),
			[]string{"volume", "attach", "v", "--host", "h1", "--snapshot", "s"}, exitPrecondition,
			`volrep: attach snapshot "s" of volume "v" to host "h1": array a serves no NBD; set nbd_listen (FAILED_PRECONDITION)`,
		},
		{
			"TerminateConnection", status.Error(codes.Unavailable, "array a unreachable"),
			[]string{"volume", "detach", "v"}, exitUnavailable,
			`volrep: detach volume "v" from every host: array a unreachable (UNAVAILABLE)`,
		},
	} {
		t.Run(tc.line, func(t *testing.T) {
			f, addr := startAttachFake(t, "a")
			f.fail[tc.method] = tc.err
			r := volrep(t, nil, append([]string{"--addr", addr}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d", r.code, tc.code)
			}
			if first := strings.SplitN(r.stderr, "\n", 2)[0]; first != tc.line {
				t.Errorf("error line\n got %q\nwant %q", first, tc.line)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing on error", r.stdout)
			}
		})
	}
}

func TestVolumeHelpListsAttach(t *testing.T) {
	r := volrep(t, nil, "volume", "--help")
	for _, want := range []string{"attach", "InitializeConnection", "detach", "TerminateConnection", "create"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("volume help lacks %q:\n%s", want, r.stdout)
		}
	}
}
