package main

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/errdefs/errgrpc"
)

// TestArrayUnavailableBehindDaemon: volrepd answered, with UNAVAILABLE
// about an array it could not reach. The hint must not send the user
// looking for a volrepd that is running fine.
func TestArrayUnavailableBehindDaemon(t *testing.T) {
	f, addr := startFake(t, "a")
	f.fail["ListVolumes"] = errgrpc.ToStatus(errdefs.Unavailable("backend a is down: primary array at 10.0.0.1:7401 (san_ip in [a], cinder.conf:3) is unreachable: dial tcp 10.0.0.1:7401: connect: connection refused; check that it runs and the address is right"))
	r := volrep(t, nil, "--addr", addr, "-b", "a", "volume", "list")
	if r.code != exitUnavailable {
		t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, exitUnavailable, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "primary array at 10.0.0.1:7401") || !strings.HasSuffix(lines[0], " (UNAVAILABLE)") {
		t.Fatalf("stderr:\n%s", r.stderr)
	}
	if strings.Contains(lines[1], "is volrepd running") || !strings.Contains(lines[1], "volrepd at "+addr+" answered, but an array behind it did not") {
		t.Errorf("hint %q, want one saying volrepd answered and an array behind it did not", lines[1])
	}
}

func TestUnavailableHints(t *testing.T) {
	const addr = "10.0.0.5:7400"
	local := status.New(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial tcp 10.0.0.5:7400: connect: connection refused\"")
	if h := hintFor(local, addr); !strings.HasPrefix(h, "is volrepd running at 10.0.0.5:7400?") {
		t.Errorf("no answer from volrepd: hint %q", h)
	}
	answered := status.Convert(errgrpc.ToStatus(errdefs.Unavailable("replication target site-b at 10.0.0.9:7401 is unreachable")))
	if h := hintFor(answered, addr); !strings.HasPrefix(h, "volrepd at 10.0.0.5:7400 answered, but an array behind it did not") {
		t.Errorf("UNAVAILABLE returned by volrepd: hint %q", h)
	}
}
