package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/volrep/volrep/array"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
	"github.com/volrep/volrep/server"
)

// fakeArray is a test double for the array calls doctor makes. It is
// served by the real server package, so a wrong token meets the real
// auth interceptor and comes back UNAUTHENTICATED.
type fakeArray struct {
	arrayv1.UnimplementedArrayServiceServer
	arrayv1.UnimplementedLinkServiceServer
	arrayv1.UnimplementedTransferServiceServer
	name     string
	version  string
	features []string
	skew     time.Duration
	links    []*arrayv1.Link
	pods     map[string]*arrayv1.PodCopy // nil: the array serves no GetPodCopy
}

func (f *fakeArray) GetArrayInfo(context.Context, *arrayv1.GetArrayInfoRequest) (*arrayv1.GetArrayInfoResponse, error) {
	return &arrayv1.GetArrayInfoResponse{Info: &arrayv1.ArrayInfo{Name: f.name, Id: "id-" + f.name, Version: f.version, Features: f.features,
		Now: timestamppb.New(time.Now().Add(f.skew))}}, nil
}

func (f *fakeArray) ListLinks(context.Context, *arrayv1.ListLinksRequest) (*arrayv1.ListLinksResponse, error) {
	return &arrayv1.ListLinksResponse{Links: f.links}, nil
}

func (f *fakeArray) GetPodCopy(_ context.Context, req *arrayv1.GetPodCopyRequest) (*arrayv1.GetPodCopyResponse, error) {
	if f.pods == nil {
		return nil, status.Error(codes.Unimplemented, "unknown method GetPodCopy")
	}
	c, ok := f.pods[req.GetPod()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pod %q has no copies on this array", req.GetPod())
	}
	return &arrayv1.GetPodCopyResponse{Pod: c}, nil
}

// startFakeArray serves f with token on a loopback port until the test ends.
func startFakeArray(t *testing.T, f *fakeArray, token string) string {
	t.Helper()
	srv := server.New(server.Options{Name: "array " + f.name, Token: token, Logger: slog.New(slog.DiscardHandler)})
	arrayv1.RegisterArrayServiceServer(srv.GRPC(), f)
	arrayv1.RegisterLinkServiceServer(srv.GRPC(), f)
	arrayv1.RegisterTransferServiceServer(srv.GRPC(), f)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fake array %s: %v", f.name, err)
		}
	})
	return lis.Addr().String()
}

func writeConf(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "volrep.conf")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodConf = `[DEFAULT]
enabled_backends = pure1

[volrep]
driver_listen = %s

[pure1]
san_ip = %s
pure_api_token = primary-secret-token
replication_device = backend_id:pure2-async,san_ip:%s,api_token:target-secret-token
pure_replica_interval_default = 600
`

// noTokens fails the test if output shows any token of the test configs.
func noTokens(t *testing.T, out string) {
	t.Helper()
	for _, tok := range []string{"primary-secret-token", "target-secret-token", "wrong-secret-token"} {
		if strings.Contains(out, tok) {
			t.Errorf("output shows the token %q:\n%s", tok, out)
		}
	}
}

func TestDoctorOfflineTypo(t *testing.T) {
	conf := writeConf(t, fmt.Sprintf(goodConf, "127.0.0.1:7400", "10.0.0.10", "10.0.0.20")+
		"replication_device = bakend_id:pure3,san_ip:10.0.0.30,api_token:target-secret-token\n")
	r := volrep(t, nil, "doctor", "--config", conf, "--offline")
	if r.code != 1 {
		t.Errorf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	want := conf + `:12: unknown key "bakend_id" in replication_device of [pure1]; did you mean "backend_id"?`
	if !strings.Contains(r.stdout, "\n  "+want+"\n") {
		t.Errorf("stdout lacks the problem line\n  %s\ngot:\n%s", want, r.stdout)
	}
	if !strings.Contains(r.stdout, "1 problem(s)") || !strings.Contains(r.stderr, "doctor found 1 problem(s)") {
		t.Errorf("the summary does not count the problem:\n%s\n%s", r.stdout, r.stderr)
	}
	noTokens(t, r.stdout+r.stderr)
}

// TestDoctorOfflinePodNames: two backends of one file that stretch pods
// of one name to one target from different primary arrays are a failure,
// found from the file alone; from one primary array they are one pod,
// however its address is typed.
func TestDoctorOfflinePodNames(t *testing.T) {
	const twoBackends = `[DEFAULT]
enabled_backends = pure1, pure2

[pure1]
san_ip = 10.0.0.10
pure_api_token = primary-secret-token
replication_device = backend_id:dr,san_ip:10.0.0.30,api_token:target-secret-token,type:sync

[pure2]
san_ip = %s
pure_api_token = primary-secret-token
replication_device = backend_id:dr,san_ip:10.0.0.30,api_token:target-secret-token,type:sync
%s`
	conf := writeConf(t, fmt.Sprintf(twoBackends, "10.0.0.20", ""))
	r := volrep(t, nil, "doctor", "--config", conf, "--offline")
	wantStdout(t, r,
		"FAIL   [pure2] pod cinder-pod.dr at replication_device dr: [pure1] (line 7) stretches a pod of the same name to the same array 10.0.0.30:7401 "+
			"from another primary array (10.0.0.10:7401, not 10.0.0.20:7401)",
		"fix: set pure_replication_pod_name in [pure2] ("+conf+":9) or in [pure1] to a name of its own")
	if r.code != 1 {
		t.Errorf("exit %d, want 1\n%s", r.code, r.stdout)
	}
	for _, ok := range []string{fmt.Sprintf(twoBackends, "10.0.0.20", "pure_replication_pod_name = other-pod\n"), fmt.Sprintf(twoBackends, "10.0.0.10", ""),
		// The one primary array, its address typed another way.
		fmt.Sprintf(twoBackends, "[::ffff:10.0.0.10]:7401", "")} {
		r := volrep(t, nil, "doctor", "--config", writeConf(t, ok), "--offline")
		if r.code != 0 || strings.Contains(r.stdout, "pod cinder-pod.dr") {
			t.Errorf("exit %d for\n%s\n%s", r.code, ok, r.stdout)
		}
	}
}

func TestDoctorOfflineValid(t *testing.T) {
	conf := writeConf(t, fmt.Sprintf(goodConf, "127.0.0.1:7400", "10.0.0.10", "10.0.0.20"))
	r := volrep(t, nil, "doctor", "--config", conf, "--offline")
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	wantStdout(t, r,
		"no problems",
		"Backend [pure1] (line 7)",
		"10.0.0.10:7401 (pure_api_token set)",
		"pure2-async: async 10.0.0.20:7401 (api_token set, line 10)",
		"cinder-group: every 10m; keep all for 4h, then 3 a day for 7 days",
		"The file is fine. Only the file was checked (--offline).",
	)
	noTokens(t, r.stdout+r.stderr)
}

func TestDoctorOfflineNeedsConfig(t *testing.T) {
	if r := volrep(t, nil, "doctor", "--offline"); r.code != exitUsage {
		t.Errorf("doctor --offline without --config: exit %d, want %d", r.code, exitUsage)
	}
	if r := volrep(t, nil, "doctor", "--config", filepath.Join(t.TempDir(), "missing.conf"), "--offline"); r.code != 1 || !strings.Contains(r.stderr, "missing.conf") {
		t.Errorf("missing file: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestBackendFix(t *testing.T) {
	for _, c := range []struct{ reason, status, fix string }{
		{`/etc/volrep/volrep.conf:31: unknown key "bakend_id" in replication_device of [demo]; did you mean "backend_id"?`, statusFail,
			"fix the key at /etc/volrep/volrep.conf:31 and send SIGHUP (systemctl reload volrepd)"},
		{"primary array at 10.0.0.10:7401 (san_ip in [pure1], /etc/volrep/volrep.conf:12) is unreachable: dial tcp 10.0.0.10:7401: connect: connection refused; check that it runs and the address is right", statusFail,
			"check the array is running and reachable from this host"},
		{"primary array at 10.0.0.10:7401 rejected the token: check pure_api_token in [pure1] (/etc/volrep/volrep.conf:12)", statusFail,
			"check the token (/etc/volrep/volrep.conf:12): it must equal the array's api_token"},
		{"/etc/volrep/volrep.conf:40: [pure2] has no san_ip; set it", statusFail,
			"fix the configuration at /etc/volrep/volrep.conf:40 and send SIGHUP (systemctl reload volrepd)"},
		{"starting", statusWarn, "the backend is still starting; run volrep doctor again in a few seconds"},
		{"something else", statusFail, "see journalctl -u volrepd"},
	} {
		status, fix := backendFix(c.reason)
		if status != c.status || fix != c.fix {
			t.Errorf("backendFix(%q) = %s, %q; want %s, %q", c.reason, status, fix, c.status, c.fix)
		}
	}
}

func TestDoctorOnlineDaemonOnly(t *testing.T) {
	f, addr := startFake(t)
	f.mu.Lock()
	f.backends = []*driverv1.Backend{
		{Name: "pure1", Up: true, ActiveBackendId: "default", ReplicationTargets: []*driverv1.ReplicationTarget{{BackendId: "pure2-async", Type: "async"}}},
		{Name: "pure2", Reason: `/etc/volrep/volrep.conf:31: unknown key "bakend_id" in replication_device of [pure2]; did you mean "backend_id"?`},
	}
	f.mu.Unlock()
	r := volrep(t, nil, "--addr", addr, "doctor")
	if r.code != 1 {
		t.Errorf("exit %d, want 1 (a backend is down)\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantStdout(t, r,
		"OK     volrepd at "+addr+": answers; 2 backend(s)",
		"OK     [pure1]: up; active default; targets pure2-async(async)",
		`FAIL   [pure2]: down: /etc/volrep/volrep.conf:31: unknown key "bakend_id"`,
		"fix: fix the key at /etc/volrep/volrep.conf:31 and send SIGHUP (systemctl reload volrepd)",
	)

	f.mu.Lock()
	f.backends = f.backends[:1]
	f.mu.Unlock()
	if r := volrep(t, nil, "--addr", addr, "doctor"); r.code != 0 {
		t.Errorf("all backends up: exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestDoctorDaemonDown(t *testing.T) {
	addr := closedAddr(t)
	r := volrep(t, nil, "--addr", addr, "doctor")
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL   volrepd at "+addr+": ListBackends failed") || !strings.Contains(r.stdout, "UNAVAILABLE") {
		t.Errorf("exit %d, stdout:\n%s", r.code, r.stdout)
	}
}

// TestDoctorArrays checks the arrays of a config file directly: a good
// primary with a connected link, then a target whose token is wrong, an
// array far off in time, and one that is not there.
func TestDoctorArrays(t *testing.T) {
	_, daddr := startFake(t, "pure1")
	target := &fakeArray{name: "site-b"}
	taddr := startFakeArray(t, target, "target-secret-token")
	primary := &fakeArray{name: "site-a", links: []*arrayv1.Link{{Name: "pure2-async", Address: taddr, State: arrayv1.LinkState_LINK_STATE_CONNECTED, RemoteArrayName: "site-b"}}}
	paddr := startFakeArray(t, primary, "primary-secret-token")

	conf := writeConf(t, fmt.Sprintf(goodConf, daddr, paddr, taddr))
	// The daemon's address comes from driver_listen.
	r := volrep(t, nil, "doctor", "--config", conf)
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantStdout(t, r,
		"OK     volrepd at "+daddr,
		"OK     [pure1] primary array at "+paddr+": array site-a answers, token accepted; clock skew",
		"OK     [pure1] replication_device pure2-async at "+taddr+": array site-b answers",
		"OK     [pure1] primary site-a: link pure2-async -> "+taddr+": connected to array site-b",
		"Everything checked is fine.",
	)

	// Wrong target token, a skewed primary, a link the peer refuses.
	primary.skew = 30 * time.Second
	primary.links[0].State, primary.links[0].LastError = arrayv1.LinkState_LINK_STATE_UNAUTHORIZED, "invalid token"
	bad := writeConf(t, strings.Replace(fmt.Sprintf(goodConf, daddr, paddr, taddr), "api_token:target-secret-token", "api_token:wrong-secret-token", 1))
	r = volrep(t, nil, "doctor", "--config", bad)
	if r.code != 1 {
		t.Errorf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantStdout(t, r,
		"FAIL   [pure1] replication_device pure2-async at "+taddr+": rejected the token (UNAUTHENTICATED): invalid token",
		"fix: check the token: api_token of the replication_device pure2-async in [pure1] ("+bad+":10) must equal the array's api_token",
		"WARN   [pure1] primary array at "+paddr+": array site-a answers, token accepted; clock skew +30",
		"FAIL   [pure1] primary site-a: link pure2-async -> "+taddr+": the peer rejected the link's token (UNAUTHENTICATED): invalid token",
		"2 problem(s), 1 warning(s).",
	)
	noTokens(t, r.stdout+r.stderr)

	// The same as JSON.
	r = volrep(t, nil, "-o", "json", "doctor", "--config", bad)
	var rep doctorReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("-o json: %v\n%s", err, r.stdout)
	}
	if r.code != 1 || rep.Failures != 2 || rep.Warnings != 1 || len(rep.Backends) != 1 || rep.Backends[0].SanIP != paddr {
		t.Errorf("exit %d, report %+v", r.code, rep)
	}
	noTokens(t, r.stdout)

	// A connected link over which the release of a removed pod is owed:
	// the peer's copies of it still refuse writes, a warning.
	primary.skew = 0
	primary.links[0].State, primary.links[0].LastError = arrayv1.LinkState_LINK_STATE_CONNECTED, ""
	primary.links[0].PodsOwedRelease = []string{"pod-a", "pod-b"}
	r = volrep(t, nil, "doctor", "--config", conf)
	wantStdout(t, r,
		"WARN   [pure1] primary site-a: link pure2-async -> "+taddr+": connected to array site-b; clock skew +0s; "+
			"the peer has yet to release its copies of removed pod(s) pod-a, pod-b, which refuse writes until it does",
		"fix: the primary array tells the peer at its next link check",
		"No problems; 1 warning(s).",
	)
	if r.code != 0 {
		t.Errorf("exit %d with one warning, want 0", r.code)
	}

	// A missing link and an unreachable target.
	primary.skew, primary.links = 0, nil
	gone := closedAddr(t)
	r = volrep(t, nil, "doctor", "--config", writeConf(t, fmt.Sprintf(goodConf, daddr, paddr, gone)))
	wantStdout(t, r,
		"FAIL   [pure1] replication_device pure2-async at "+gone+": unreachable:",
		"fix: check the array is running and reachable from this host",
		"FAIL   [pure1] primary site-a: link pure2-async: missing",
	)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
}

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:7400":   "127.0.0.1:7400",
		"[::]:7400":      "127.0.0.1:7400",
		":7400":          "127.0.0.1:7400",
		"10.1.2.3:7400":  "10.1.2.3:7400",
		"localhost:7400": "localhost:7400",
	} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFormatSkew(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "+0s",
		-300 * time.Microsecond: "+0s", // rounds to zero: no "-0s"
		1500 * time.Millisecond: "+1.5s",
		-3 * time.Second:        "-3s",
	} {
		if got := formatSkew(d); got != want {
			t.Errorf("formatSkew(%v) = %q, want %q", d, got, want)
		}
	}
}

// syncConf serves a daemon, peer and a primary array site-a, and writes a
// file whose backend pure1 replicates from site-a to peer, sync, as
// replication_device pure2-sync. It returns the file and peer's address.
func syncConf(t *testing.T, peer *fakeArray) (conf, peerAddr string) {
	t.Helper()
	_, daddr := startFake(t, "pure1")
	taddr := startFakeArray(t, peer, "target-secret-token")
	paddr := startFakeArray(t, &fakeArray{name: "site-a"}, "primary-secret-token")
	return writeConf(t, strings.Replace(fmt.Sprintf(goodConf, daddr, paddr, taddr), "backend_id:pure2-async,san_ip:"+taddr+",api_token:target-secret-token",
		"backend_id:pure2-sync,san_ip:"+taddr+",api_token:target-secret-token,type:sync", 1)), taddr
}

// TestDoctorOldSyncPeer: a sync replication_device whose array lacks the
// protocol feature a pod's peer needs to take its clients' writes is a
// warning that names the feature and says to upgrade; once it reports
// the feature, the warning goes.
func TestDoctorOldSyncPeer(t *testing.T) {
	peer := &fakeArray{name: "site-b", version: "0.0.9"}
	conf, taddr := syncConf(t, peer)
	warning := "WARN   [pure1] replication_device pure2-sync at " + taddr + ": array site-b (volrep 0.0.9) lacks the protocol feature \"forward-own-copy\""
	r := volrep(t, nil, "doctor", "--config", conf)
	for _, want := range []string{warning, "fix: upgrade volrep on that array to the primary array's version"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	peer.features = []string{array.FeatureForwardOwnCopy}
	r = volrep(t, nil, "doctor", "--config", conf)
	if want := "lacks the protocol feature \"reservations\": the pods' volumes have no SCSI persistent reservations"; strings.Contains(r.stdout, `"forward-own-copy"`) || !strings.Contains(r.stdout, want) {
		t.Errorf("with forward-own-copy only, doctor does not warn of reservations alone (%q):\n%s", want, r.stdout)
	}
	peer.features = array.Features()
	r = volrep(t, nil, "doctor", "--config", conf)
	if strings.Contains(r.stdout, "lacks the protocol feature") || !strings.Contains(r.stdout, "OK     [pure1] replication_device pure2-sync at "+taddr) {
		t.Errorf("with the feature reported, doctor still warns or does not say OK:\n%s", r.stdout)
	}
}

// TestDoctorPodHeldForAnotherArray: doctor asks each sync target how it
// holds the backend's pod. A target that holds the pod's name for
// another primary array (a second backend, here or in another cloud,
// with the same pod name and target) refuses this backend's pod: a
// failure naming that array and the setting to change.
func TestDoctorPodHeldForAnotherArray(t *testing.T) {
	const pod = "cinder-pod.pure2-sync"
	peer := &fakeArray{name: "site-b", features: array.Features(), pods: map[string]*arrayv1.PodCopy{}}
	conf, _ := syncConf(t, peer)
	name := "[pure1] pod " + pod + " at replication_device pure2-sync: "

	r := volrep(t, nil, "doctor", "--config", conf)
	wantStdout(t, r, "Pods at their sync targets", "OK     "+name+"no copies there yet")

	peer.pods[pod] = &arrayv1.PodCopy{Pod: pod, State: array.PodOnline, Writes: array.WritesOnline, Volumes: []string{"v1", "v2"}, SourceArrayId: "id-site-a"}
	r = volrep(t, nil, "doctor", "--config", conf)
	wantStdout(t, r, "OK     "+name+"array site-b holds 2 of its copies: online, writes online")
	if r.code != 0 {
		t.Errorf("exit %d, want 0\n%s", r.code, r.stdout)
	}

	peer.pods[pod].SourceArrayId = "id-site-c"
	r = volrep(t, nil, "doctor", "--config", conf)
	wantStdout(t, r,
		"FAIL   "+name+"array site-b holds pod "+pod+" for array id-site-c, not for this backend's primary array site-a (id-site-a)",
		"fix: set pure_replication_pod_name in [pure1] ("+conf+":7) to a name no other backend replicating to array site-b uses")
	if r.code != 1 {
		t.Errorf("exit %d, want 1\n%s", r.code, r.stdout)
	}

	peer.pods, peer.version = nil, "0.0.9" // an array too old to answer
	r = volrep(t, nil, "doctor", "--config", conf)
	wantStdout(t, r, "WARN   "+name+"array site-b (volrep 0.0.9) cannot say how it holds the pod")
}

// wantStdout checks that a run's stdout holds each of wants.
func wantStdout(t *testing.T, r result, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
}
