package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/internal/etcdtest"
	"github.com/volrep/volrep/internal/testenv"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// netns is a network namespace the test owns.
type netns struct {
	t    *testing.T
	name string
}

func sh(t *testing.T, cmd string) error {
	t.Helper()
	out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", cmd, err, out)
	}
	return nil
}

// partitionable builds two namespaces, A and B, joined by a veth pair
// (10.77.0.1 ↔ 10.77.0.2), and each also joined to the test's own
// namespace (10.78.N.1 ↔ 10.78.N.2), so the test reaches both while the
// A–B link can be cut on its own.
func partitionable(t *testing.T) (a, b string) {
	t.Helper()
	a, b, _ = buildNamespaces(t, false)
	return a, b
}

// withMediatorNS is partitionable plus a third namespace, M, for the
// pods' mediator: joined to A (10.79.0.1 ↔ 10.79.0.2) and to B
// (10.79.1.1 ↔ 10.79.1.2) by links of their own, and to the test
// (10.78.2.2), so each of the three links can be cut apart.
func withMediatorNS(t *testing.T) (a, b, m string) {
	t.Helper()
	return buildNamespaces(t, true)
}

func buildNamespaces(t *testing.T, mediator bool) (a, b, m string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "the partition drill needs root to create network namespaces")
	}
	ip := tool(t, "ip")
	tool(t, "nft")
	id := fmt.Sprintf("%d", os.Getpid()%10000)
	a, b = "vra"+id, "vrb"+id
	names := []string{a, b}
	if mediator {
		m = "vrm" + id
		names = append(names, m)
	}
	var steps []string
	for _, ns := range names {
		steps = append(steps, "ip netns add "+ns, "ip -n "+ns+" link set lo up")
	}
	// link joins namespaces x and y (either "" for the test's own) with a
	// veth pair, xAddr and yAddr given as a /24.
	link := func(x, y, xDev, yDev, xAddr, yAddr string) {
		steps = append(steps, "ip link add "+xDev+" type veth peer name "+yDev)
		for _, end := range [][3]string{{x, xDev, xAddr}, {y, yDev, yAddr}} {
			in := ""
			if end[0] != "" {
				steps = append(steps, "ip link set "+end[1]+" netns "+end[0])
				in = "-n " + end[0] + " "
			}
			steps = append(steps, "ip "+in+"addr add "+end[2]+"/24 dev "+end[1], "ip "+in+"link set "+end[1]+" up")
		}
	}
	link(a, b, "va"+id, "vb"+id, "10.77.0.1", "10.77.0.2")
	for i, ns := range names {
		link("", ns, fmt.Sprintf("h%d%s", i, id), fmt.Sprintf("n%d%s", i, id), fmt.Sprintf("10.78.%d.1", i), fmt.Sprintf("10.78.%d.2", i))
	}
	if mediator {
		link(a, m, "ma"+id, "am"+id, "10.79.0.1", "10.79.0.2")
		link(b, m, "mb"+id, "bm"+id, "10.79.1.1", "10.79.1.2")
	}
	t.Cleanup(func() {
		for i, ns := range names {
			exec.Command(ip, "netns", "del", ns).Run()
			exec.Command(ip, "link", "del", fmt.Sprintf("h%d%s", i, id)).Run()
		}
	})
	for _, st := range steps {
		if err := sh(t, st); err != nil {
			testenv.Skip(t, "this machine cannot build network namespaces for the partition drill: %v", err)
		}
	}
	return a, b, m
}

// TestPartitionDrill runs each array in its own network namespace and cuts
// the link between them with nftables: the preferred side keeps taking
// writes, the other side refuses them, and healing resyncs.
func TestPartitionDrill(t *testing.T) {
	nsA, nsB := partitionable(t)
	qemuIO := tool(t, "qemu-io")
	ctx := t.Context()
	a, b := startPodPair(t, nsA, nsB, "")
	uri := podVolume(t, a, "pv")
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x01 0 1M", "-c", "flush", uri)
	repl := (&sites{a: a}).replicas(t)
	if r, err := repl.GetReplica(ctx, "cinder-pod.pure2-sync"); err != nil || r.PeerState != array.PeerOnline {
		t.Fatalf("before the partition: %+v, %v", r, err)
	}

	// Cut A ↔ B both ways.
	cutAB(t, nsA, nsB)
	start := time.Now()
	run(t, false, qemuIO, "-f", "raw", "-c", "write -P 0x02 1M 2M", "-c", "flush", uri)
	t.Logf("the preferred side took a write %s after the cut (timeout 500ms)", time.Since(start).Round(time.Millisecond))
	r, err := repl.GetReplica(ctx, "cinder-pod.pure2-sync")
	if err != nil || r.PeerState == array.PeerOnline || r.DirtyBytes < 2<<20 {
		t.Fatalf("during the partition: %+v, %v", r, err)
	}
	// The other side refuses writes: its copy is passive while A is preferred.
	cc := b.Array("b")
	if err := cc.WriteVolume(ctx, "volume-pv-cinder", 0, []byte{9}, false); err == nil {
		t.Fatal("the non-preferred side accepted a write during the partition")
	}
	got := make([]byte, 4096)
	if err := cc.ReadVolume(ctx, "volume-pv-cinder", 1<<20, got); err != nil || got[0] != 0 {
		t.Fatalf("the cut-off side has data it cannot have: %v %x", err, got[0])
	}

	// Heal.
	healAB(t, nsA, nsB)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err = repl.SyncReplica(cctx, "cinder-pod.pure2-sync", true)
	if err != nil || r.PeerState != array.PeerOnline || r.LastResyncBytes > (2<<20)*11/10 {
		t.Fatalf("after healing: %+v, %v", r, err)
	}
	want := make([]byte, 3<<20)
	if err := a.Array("a").ReadVolume(ctx, "volume-pv-cinder", 0, want); err != nil {
		t.Fatal(err)
	}
	have := make([]byte, 3<<20)
	if err := cc.ReadVolume(ctx, "volume-pv-cinder", 0, have); err != nil || !bytes.Equal(have, want) || want[2<<20] != 0x02 {
		t.Fatalf("after healing the two sides differ (%v)", err)
	}
}

// startPodPair starts array B in nsB, then array A in nsA with a backend
// whose sync replication_device is B. The test reaches each over its own
// link (10.78.0.2, 10.78.1.2); A reaches B over the link the drills cut
// (10.77.0.2). extra ends A's backend section.
func startPodPair(t *testing.T, nsA, nsB, extra string) (a, b *Daemon) {
	t.Helper()
	return startPodPairWith(t, nsA, nsB, extra, "")
}

// startPodPairWith is startPodPair with extraB added to B's array section.
func startPodPairWith(t *testing.T, nsA, nsB, extra, extraB string) (a, b *Daemon) {
	t.Helper()
	b = &Daemon{t: t, Dir: t.TempDir(), DriverAddr: "10.78.1.2:7500", ArrayB: "10.78.1.2:7402", TokenB: "tb",
		Prefix: []string{"ip", "netns", "exec", nsB}}
	b.WriteRaw(fmt.Sprintf("[volrep]\ndriver_listen = %s\n\n[array:site-b]\ndata_dir = %s/b\nlisten = 0.0.0.0:7402\nnbd_listen = 0.0.0.0:10810\napi_token = tb\n%s", b.DriverAddr, b.Dir, extraB))
	b.WaitFor("")
	b.Start()
	a = &Daemon{t: t, Dir: t.TempDir(), DriverAddr: "10.78.0.2:7400", ArrayA: "10.78.0.2:7401", TokenA: "ta",
		Prefix: []string{"ip", "netns", "exec", nsA}}
	a.WriteRaw(fmt.Sprintf(`[DEFAULT]
enabled_backends = puredriver-1

[volrep]
driver_listen = 0.0.0.0:7400

[array:site-a]
data_dir = %s/a
listen = 0.0.0.0:7401
nbd_listen = 0.0.0.0:10809
api_token = ta

[puredriver-1]
san_ip = 10.78.0.2:7401
pure_api_token = ta
replication_device = backend_id:pure2-sync,san_ip:10.77.0.2:7402,api_token:tb,type:sync
volrep_sync_timeout = 500
%s`, a.Dir, extra))
	a.WaitFor("backend/puredriver-1")
	a.Start()
	return a, b
}

// startMediatedPair runs the pods' mediator (a real etcd) in its own
// namespace and the two arrays in theirs, each configured to reach the
// mediator over its own link (A at 10.79.0.2, B at 10.79.1.2).
func startMediatedPair(t *testing.T) (nsA, nsB string, a, b *Daemon) {
	t.Helper()
	return startMediatedPairWith(t, "")
}

// startMediatedPairWith is startMediatedPair with more lines for A's
// backend section.
func startMediatedPairWith(t *testing.T, extraA string) (nsA, nsB string, a, b *Daemon) {
	t.Helper()
	nsA, nsB, nsM := withMediatorNS(t)
	_, clientPort, _ := net.SplitHostPort(freePort(t))
	_, peerPort, _ := net.SplitHostPort(freePort(t))
	etcdtest.StartIn(t, nsM, "10.78.2.2:"+clientPort, "127.0.0.1:"+peerPort)
	a, b = startPodPairWith(t, nsA, nsB, "volrep_pod_mediator = etcd://10.79.0.2:"+clientPort+"\n"+extraA,
		"volrep_pod_mediator = etcd://10.79.1.2:"+clientPort+"\n")
	return nsA, nsB, a, b
}

// cutPeer drops everything to and from the A-B link (10.77.0.0/24) in
// the namespace it is loaded in; "delete table inet drill" heals.
const cutPeer = "add table inet drill; add chain inet drill out { type filter hook output priority 0; }; add rule inet drill out ip daddr 10.77.0.0/24 drop; add chain inet drill in { type filter hook input priority 0; }; add rule inet drill in ip saddr 10.77.0.0/24 drop"

// cutMediator, loaded in A's namespace, drops A's link to the mediator
// (10.79.0.0/24); "delete table inet med" heals.
const cutMediator = "add table inet med; add chain inet med out { type filter hook output priority 0; }; add rule inet med out ip daddr 10.79.0.0/24 drop; add chain inet med in { type filter hook input priority 0; }; add rule inet med in ip saddr 10.79.0.0/24 drop"

// nft loads rules into namespace ns.
func nft(t *testing.T, ns, rules string) {
	t.Helper()
	if err := sh(t, fmt.Sprintf("ip netns exec %s nft '%s'", ns, rules)); err != nil {
		t.Fatal(err)
	}
}

// cutAB cuts the A–B link both ways; healAB restores it.
func cutAB(t *testing.T, nsA, nsB string) {
	t.Helper()
	nft(t, nsA, cutPeer)
	nft(t, nsB, cutPeer)
}

func healAB(t *testing.T, nsA, nsB string) {
	t.Helper()
	nft(t, nsA, "delete table inet drill")
	nft(t, nsB, "delete table inet drill")
}

// podVolume creates a 1 GiB pod volume through a's driver and returns
// its NBD attachment's URI.
func podVolume(t *testing.T, a *Daemon, id string) string {
	t.Helper()
	dc := driverClient(t, a)
	if _, err := dc.CreateVolume(t.Context(), &driverv1.CreateVolumeRequest{Backend: "puredriver-1", VolumeId: id, SizeGb: 1, VolumeType: syncType}); err != nil {
		t.Fatal(err)
	}
	return attachURI(t, dc, "puredriver-1", id)
}
