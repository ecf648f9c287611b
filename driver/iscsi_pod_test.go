package driver

import (
	"bytes"
	"context"
	"fmt"
	"github.com/volrep/volrep/array"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array/iscsi"
	"github.com/volrep/volrep/array/lunmap"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/internal/testenv"
)

// qemuBlockISCSI is qemu's iSCSI block driver module (qemu-block-extra).
const qemuBlockISCSI = "/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so"

// servingISCSIArray is a test array whose portal is served: the array's
// own iSCSI target (array/iscsi over lunmap), as volrepd runs it.
func servingISCSIArray(t *testing.T, name string) *testArray {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := newTestArrayOpts(t, store.Options{Name: name, ISCSIPortals: []string{lis.Addr().String()}})
	srv := lunmap.NewServer(a.st, iscsi.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(ctx, lis); close(served) }()
	// Registered after the array's cleanup, so it runs before it: the
	// target stops before its store closes.
	t.Cleanup(func() { cancel(); srv.Close(); <-served })
	return a
}

// qemuIO runs qemu-io commands on one path of an iSCSI attachment, logging
// in as the initiator with CHAP user and secret.
func qemuIO(t *testing.T, p ISCSIPath, initiator, user, secret string, cmds ...string) string {
	t.Helper()
	args := []string{"--object", "secret,id=sec0,data=" + secret, "--image-opts",
		fmt.Sprintf("driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=%s,file.target=%s,file.lun=%d,file.user=%s,file.password-secret=sec0,file.initiator-name=%s",
			p.Portal, p.IQN, p.LUN, user, initiator)}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, testenv.Tool(t, "qemu-io"), args...).CombinedOutput()
	if err != nil || strings.Contains(string(out), "failed") {
		t.Fatalf("qemu-io %q at %s: %v\n%s", cmds, p.Portal, err, out)
	}
	return string(out)
}

// TestISCSIPodUniformAccess: a pod volume is attached at both arrays, as
// Pure's ActiveCluster attaches a pod volume: the serving array's path
// first, then the peer's, one WWN on both. A write made through the
// peer's path (its target forwards it to the preferred array) reads back
// through the serving array's. Detach removes both connections; a volume
// outside the pod gets the serving array's paths only; and with the
// peer's API down, attach and detach still succeed on the serving array.
func TestISCSIPodUniformAccess(t *testing.T) {
	testenv.Tool(t, "qemu-io")
	if _, err := os.Stat(qemuBlockISCSI); err != nil {
		testenv.Skip(t, "qemu's iSCSI block driver %s is missing; `make deps` installs qemu-block-extra", qemuBlockISCSI)
	}
	ctx := t.Context()
	peer := servingISCSIArray(t, "site-b")
	primary := servingISCSIArray(t, "site-a")
	b := oneBackend(t, primary, device("site-b", peer.addr, peer, "sync"))
	if _, err := b.CreateVolume(ctx, "v1", 1, syncSpecs, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateVolume(ctx, "v2", 1, VolumeType{}, ""); err != nil {
		t.Fatal(err)
	}
	vol := volumeName("v1")
	compute := Connector{Host: "compute-1", Initiator: iqnA, Multipath: true}

	start := time.Now()
	ci, err := b.InitializeConnection(ctx, "v1", "", compute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attach of a pod volume (both arrays): %s", time.Since(start))
	tg := ci.ISCSI
	if len(tg.Paths) != 2 {
		t.Fatalf("pod volume: paths %+v, want the serving array's and the peer's", tg.Paths)
	}
	local, remote := tg.Paths[0], tg.Paths[1]
	switch {
	case local.Portal != primary.st.Portals()[0] || local.IQN != primary.st.TargetIQN():
		t.Errorf("first path %+v, want the serving array's portal %s and target %s", local, primary.st.Portals()[0], primary.st.TargetIQN())
	case remote.Portal != peer.st.Portals()[0] || remote.IQN != peer.st.TargetIQN():
		t.Errorf("second path %+v, want the peer's portal %s and target %s", remote, peer.st.Portals()[0], peer.st.TargetIQN())
	case local.Portal == remote.Portal || local.IQN == remote.IQN:
		t.Errorf("the two paths share a portal or target: %+v", tg.Paths)
	}
	// Each array's own connection says the LUN's identity: the same.
	pc, rc := connectionsOf(t, primary, "", vol), connectionsOf(t, peer, "", vol)
	if len(pc) != 1 || len(rc) != 1 {
		t.Fatalf("connections: serving array %+v, peer %+v; want one each", pc, rc)
	}
	if pc[0].WWN == "" || pc[0].WWN != rc[0].WWN || tg.WWN != "3"+strings.ToLower(rc[0].WWN) {
		t.Errorf("WWN: serving array %q, peer %q, connection info %q; want one", pc[0].WWN, rc[0].WWN, tg.WWN)
	}
	if rc[0].LUN != remote.LUN || pc[0].LUN != local.LUN {
		t.Errorf("LUNs: paths %d/%d, connections %d/%d", local.LUN, remote.LUN, pc[0].LUN, rc[0].LUN)
	}

	// The peer's copy takes writes once the pod's forward stream is open.
	waitFor(t, 30*time.Second, func() string {
		h, err := peer.st.OpenVolume(ctx, vol)
		if err != nil {
			return err.Error()
		}
		if h.ReadOnly() {
			return "the peer's copy of the pod volume is still read-only"
		}
		return ""
	})
	// The host logs in at every path with the connection info's one CHAP
	// pair, as os-brick does: the driver gave the peer's host that secret.
	peerHost, err := peer.st.GetHost(ctx, rc[0].Host, true)
	if err != nil {
		t.Fatal(err)
	}
	if peerHost.CHAPSecret != tg.CHAPSecret || peerHost.CHAPUser != tg.CHAPUser {
		t.Fatalf("the peer's host has CHAP %q, the connection info %q", peerHost.CHAPUser, tg.CHAPUser)
	}
	out := qemuIO(t, remote, iqnA, tg.CHAPUser, tg.CHAPSecret, "write -P 0x5a 1M 64k")
	if !strings.Contains(out, "wrote 65536/65536 bytes at offset 1048576") {
		t.Fatalf("qemu-io write through the peer:\n%s", out)
	}
	out = qemuIO(t, local, iqnA, tg.CHAPUser, tg.CHAPSecret, "read -P 0x5a 1M 64k", "read -P 0 0 64k")
	if !strings.Contains(out, "read 65536/65536 bytes at offset 1048576") || !strings.Contains(out, "read 65536/65536 bytes at offset 0") {
		t.Fatalf("qemu-io read through the serving array:\n%s", out)
	}
	got := make([]byte, 64<<10)
	if err := primary.st.ReadVolume(ctx, vol, 1<<20, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{0x5a}, len(got))) {
		t.Error("the preferred array's copy lacks the write made through the peer's path")
	}

	// Detach: no connection left on either array, nor the hosts made.
	if err := b.TerminateConnection(ctx, "v1", "", compute); err != nil {
		t.Fatal(err)
	}
	for _, a := range []*testArray{primary, peer} {
		if got := connectionsOf(t, a, "", vol); len(got) != 0 {
			t.Errorf("%s after detach: %+v", a.name, got)
		}
		if hs, err := a.st.ListHosts(ctx); err != nil || len(hs) != 0 {
			t.Errorf("%s's hosts after detach: %+v, %v; want none", a.name, hs, err)
		}
	}

	// A host made at the peer by someone else, with a secret of its own:
	// the initiator could not log in there, so its paths are left out and
	// nothing is connected there.
	if _, err := peer.st.CreateHost(ctx, array.HostSpec{Name: "made-by-hand", IQNs: []string{iqnA}}); err != nil {
		t.Fatal(err)
	}
	ci4, err := b.InitializeConnection(ctx, "v1", "", compute)
	if err != nil {
		t.Fatal(err)
	}
	if len(ci4.ISCSI.Paths) != 1 || ci4.ISCSI.Paths[0].Portal != local.Portal {
		t.Errorf("with a host of another secret at the peer: paths %+v, want the serving array's only", ci4.ISCSI.Paths)
	}
	if got := connectionsOf(t, peer, "", vol); len(got) != 0 {
		t.Errorf("a connection left at the peer for a host whose secret differs: %+v", got)
	}
	if err := b.TerminateConnection(ctx, "v1", "", compute); err != nil {
		t.Fatal(err)
	}
	if err := peer.st.DeleteHost(ctx, "made-by-hand", false); err != nil {
		t.Fatal(err)
	}

	// A volume outside the pod: the serving array's paths only.
	start = time.Now()
	ci2, err := b.InitializeConnection(ctx, "v2", "", compute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attach of an unreplicated volume: %s", time.Since(start))
	if len(ci2.ISCSI.Paths) != 1 || ci2.ISCSI.Paths[0].Portal != primary.st.Portals()[0] {
		t.Errorf("unreplicated volume: paths %+v, want the serving array's only", ci2.ISCSI.Paths)
	}
	if cs, err := peer.st.ListConnections(ctx, "", volumeName("v2")); len(cs) != 0 || (err != nil && !errdefs.IsNotFound(err)) {
		t.Errorf("the peer's connections of an unreplicated volume: %+v, %v; want none", cs, err)
	}
	if err := b.TerminateConnection(ctx, "v2", "", compute); err != nil {
		t.Fatal(err)
	}

	// The peer's API is down: attach and detach go on at the serving array.
	peer.halt()
	start = time.Now()
	ci3, err := b.InitializeConnection(ctx, "v1", "", compute)
	if err != nil {
		t.Fatalf("attach with the peer down: %v", err)
	}
	t.Logf("attach of a pod volume with the peer's API down: %s", time.Since(start))
	if len(ci3.ISCSI.Paths) != 1 || ci3.ISCSI.Paths[0] != local || ci3.ISCSI.WWN != tg.WWN {
		t.Errorf("attach with the peer down: %+v, want the serving array's path %+v", ci3.ISCSI, local)
	}
	if err := b.TerminateConnection(ctx, "v1", "", compute); err != nil {
		t.Fatalf("detach with the peer down: %v", err)
	}
	if d := time.Since(start); d > 2*peerTimeout+5*time.Second {
		t.Errorf("attach and detach with the peer down took %s", d)
	}
	if got := connectionsOf(t, primary, "", vol); len(got) != 0 {
		t.Errorf("serving array after detach with the peer down: %+v", got)
	}
}

// A connection left at a peer that was down when its volume was detached
// goes with the next detach of the volume that reaches the peer.
func TestISCSIPodPeerLeftoverDetached(t *testing.T) {
	ctx := t.Context()
	peer, b := syncISCSIPair(t)
	compute := Connector{Host: "compute-1", Initiator: iqnA}
	ci, err := b.InitializeConnection(ctx, "v1", "", compute)
	if err != nil {
		t.Fatal(err)
	}
	// Single-path connector: both arrays' paths all the same, serving first.
	if len(ci.ISCSI.Paths) != 2 || ci.ISCSI.Paths[0].Portal != "192.0.2.10:3260" || ci.ISCSI.Paths[1].Portal != "198.51.100.20:3260" {
		t.Fatalf("paths %+v", ci.ISCSI.Paths)
	}
	peer.halt()
	if err := b.TerminateConnection(ctx, "v1", "", compute); err != nil {
		t.Fatalf("detach with the peer down: %v", err)
	}
	if got := connectionsOf(t, peer, "", volumeName("v1")); len(got) != 1 {
		t.Fatalf("the peer's connection while it was down: %+v; want it left behind", got)
	}
	peer.start()
	waitFor(t, 20*time.Second, func() string {
		if err := b.TerminateConnection(ctx, "v1", "", compute); err != nil {
			return err.Error()
		}
		if got := connectionsOf(t, peer, "", volumeName("v1")); len(got) != 0 {
			return fmt.Sprintf("the peer still has %+v", got)
		}
		return ""
	})
	if _, err := peer.st.GetHost(ctx, "compute-1", false); !errdefs.IsNotFound(err) {
		t.Errorf("the host the driver made at the peer: %v, want it deleted", err)
	}
}

// TestISCSIHostPreferredArrays: a host's preferred arrays (purehost
// setattr --preferred-array) decide which array's paths to a pod volume
// are active/optimized for that host while both arrays take I/O, as each
// array's iSCSI target reports them (lunmap, on a real pod). A session
// already open sees a change at its next command. When the pod's peer
// stops taking I/O, the serving array is optimized for every host again,
// whatever it prefers: its paths are the only ones that work. A host with
// preferred arrays outlives its last detach.
func TestISCSIHostPreferredArrays(t *testing.T) {
	ctx := t.Context()
	peer := iscsiArray(t, "site-b", "198.51.100.20:3260")
	primary := iscsiArray(t, "site-a", "192.0.2.10:3260")
	b := oneBackend(t, primary, device("site-b", peer.addr, peer, "sync"))
	if _, err := b.CreateVolume(ctx, "v1", 1, syncSpecs, ""); err != nil {
		t.Fatal(err)
	}
	vol := volumeName("v1")
	compute := Connector{Host: "compute-b1", Initiator: iqnA, Multipath: true}
	ci, err := b.InitializeConnection(ctx, "v1", "", compute)
	if err != nil {
		t.Fatal(err)
	}
	if len(ci.ISCSI.Paths) != 2 {
		t.Fatalf("paths %+v, want both arrays'", ci.ISCSI.Paths)
	}
	pc, rc := connectionsOf(t, primary, "", vol), connectionsOf(t, peer, "", vol)
	if len(pc) != 1 || len(rc) != 1 {
		t.Fatalf("connections: serving array %+v, peer %+v", pc, rc)
	}
	// Each array's LUN as its iSCSI target opens it for the host's session,
	// held open across the changes below, as a logged-in session holds it.
	open := func(a *testArray, lun int64) iscsi.AccessReporter {
		d, err := lunmap.New(a.st).Open(ctx, iqnA, a.st.TargetIQN(), uint64(lun))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		r, ok := d.(iscsi.AccessReporter)
		if !ok {
			t.Fatalf("the LUN at %s reports no ALUA state", a.name)
		}
		return r
	}
	atA, atB := open(primary, pc[0].LUN), open(peer, rc[0].LUN)
	ao := iscsi.Access{State: iscsi.ActiveOptimized, Preferred: true}
	ano := iscsi.Access{State: iscsi.ActiveNonOptimized}
	// listed is the state an array's ListConnections reports for the LUN,
	// as the iSCSI target's encoding of it.
	listed := func(a *testArray) iscsi.Access {
		cs := connectionsOf(t, a, "", vol)
		if len(cs) != 1 || cs[0].Path == nil {
			t.Fatalf("%s's connections %+v: want one, with its path state", a.name, cs)
		}
		st := map[array.PathState]iscsi.AccessState{array.PathOptimized: iscsi.ActiveOptimized, array.PathNonOptimized: iscsi.ActiveNonOptimized,
			array.PathUnavailable: iscsi.Unavailable}[cs[0].Path.State]
		return iscsi.Access{State: st, Preferred: cs[0].Path.Preferred}
	}
	expect := func(why string, a, b iscsi.Access) {
		t.Helper()
		waitFor(t, 30*time.Second, func() string {
			if ga, gb := atA.Access(), atB.Access(); ga != a || gb != b {
				return fmt.Sprintf("%s: site-a reports %v (PREF %v), site-b %v (PREF %v); want %v (%v) and %v (%v)",
					why, ga.State, ga.Preferred, gb.State, gb.Preferred, a.State, a.Preferred, b.State, b.Preferred)
			}
			if la, lb := listed(primary), listed(peer); la != a || lb != b {
				return fmt.Sprintf("%s: ListConnections says %v (PREF %v) at site-a and %v (PREF %v) at site-b", why, la.State, la.Preferred, lb.State, lb.Preferred)
			}
			return ""
		})
	}
	prefer := func(arrays ...string) {
		t.Helper()
		for _, a := range []*testArray{primary, peer} {
			h, err := a.st.SetHostPreferredArrays(ctx, map[*testArray]string{primary: pc[0].Host, peer: rc[0].Host}[a], arrays)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(h.PreferredArrays, arrays) && len(arrays)+len(h.PreferredArrays) > 0 {
				t.Fatalf("host at %s prefers %v, want %v", a.name, h.PreferredArrays, arrays)
			}
		}
	}

	expect("no preference: the array that orders the pod's writes is optimized", ao, ano)
	prefer("site-b")
	expect("the host prefers the peer", ano, ao)
	prefer("site-a")
	expect("the host prefers the serving array", ao, ano)
	prefer("site-a", "site-b")
	expect("the host prefers both", ao, ao)
	prefer("site-b")
	expect("the host prefers the peer again", ano, ao)

	// The peer stops taking I/O (its API, and so the forward stream, is
	// down): the serving array is the only working side, optimized for a
	// host that prefers the peer too; the peer is unavailable.
	peer.halt()
	expect("the peer's API is down", ao, iscsi.Access{State: iscsi.Unavailable})
	peer.start()
	expect("the peer is back in sync", ano, ao)

	// Detach: the connections go, the hosts with preferences stay.
	if err := b.TerminateConnection(ctx, "v1", "", compute); err != nil {
		t.Fatal(err)
	}
	for _, a := range []*testArray{primary, peer} {
		if got := connectionsOf(t, a, "", vol); len(got) != 0 {
			t.Errorf("%s after detach: %+v", a.name, got)
		}
		hs, err := a.st.ListHosts(ctx)
		if err != nil || len(hs) != 1 || !slices.Equal(hs[0].PreferredArrays, []string{"site-b"}) {
			t.Errorf("%s's hosts after detach: %+v, %v; want the host with its preferred arrays", a.name, hs, err)
		}
	}
}

// TestISCSIHostPreferenceFromConfig: volrep_host_preferred_arrays gives
// the hosts the driver creates their preferred array by the connector's
// host name, at both arrays of the pod, by the array's name (not the
// backend_id that names it in the backend section); it owns that
// preference (an attach puts back one changed by hand), and such hosts go
// with their last connection as before.
func TestISCSIHostPreferenceFromConfig(t *testing.T) {
	ctx := t.Context()
	peer := iscsiArray(t, "site-b", "198.51.100.20:3260")
	primary := iscsiArray(t, "site-a", "192.0.2.10:3260")
	b := oneBackend(t, primary, device("pure2-sync", peer.addr, peer, "sync"),
		"volrep_host_preferred_arrays = compute-b*:pure2-sync, compute-a*:primary")
	if _, err := b.CreateVolume(ctx, "v1", 1, syncSpecs, ""); err != nil {
		t.Fatal(err)
	}
	vol := volumeName("v1")
	const iqnOther = "iqn.1993-08.org.debian:01:cccc"
	hosts := []struct {
		c    Connector
		want []string
	}{
		{Connector{Host: "compute-b1", Initiator: iqnB, Multipath: true}, []string{"site-b"}},
		{Connector{Host: "compute-a1", Initiator: iqnA, Multipath: true}, []string{"site-a"}},
		{Connector{Host: "backup-1", Initiator: iqnOther, Multipath: true}, nil},
	}
	// prefers fails unless the host of c's initiator prefers want at a.
	prefers := func(a *testArray, c Connector, want []string) array.Host {
		t.Helper()
		hs, err := a.st.ListHosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		h, ok := hostWithIQN(hs, c.Initiator)
		if !ok || !slices.Equal(h.PreferredArrays, want) {
			t.Fatalf("host of %s at %s: %+v (found %v); want preferred arrays %v", c.Host, a.name, h, ok, want)
		}
		return h
	}
	for _, h := range hosts {
		ci, err := b.InitializeConnection(ctx, "v1", "", h.c)
		if err != nil {
			t.Fatal(err)
		}
		if len(ci.ISCSI.Paths) != 2 {
			t.Fatalf("%s: paths %+v, want both arrays'", h.c.Host, ci.ISCSI.Paths)
		}
		prefers(primary, h.c, h.want)
		prefers(peer, h.c, h.want)
	}
	// What compute-b1's sessions are told at each array: the peer's paths
	// are the optimized ones (once the peer takes writes).
	b1 := prefers(primary, hosts[0].c, hosts[0].want)
	var lunA, lunB int64
	for _, cn := range connectionsOf(t, primary, b1.Name, vol) {
		lunA = cn.LUN
	}
	for _, cn := range connectionsOf(t, peer, b1.Name, vol) {
		lunB = cn.LUN
	}
	access := func(a *testArray, lun int64) iscsi.Access {
		d, err := lunmap.New(a.st).Open(ctx, iqnB, a.st.TargetIQN(), uint64(lun))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		return d.(iscsi.AccessReporter).Access()
	}
	waitFor(t, 30*time.Second, func() string {
		if ga, gb := access(primary, lunA), access(peer, lunB); ga != (iscsi.Access{State: iscsi.ActiveNonOptimized}) || gb != (iscsi.Access{State: iscsi.ActiveOptimized, Preferred: true}) {
			return fmt.Sprintf("compute-b1 is told %v (PREF %v) at site-a and %v (PREF %v) at site-b", ga.State, ga.Preferred, gb.State, gb.Preferred)
		}
		return ""
	})

	// The setting owns the preference of the hosts it matches: one changed
	// by hand is set back at the next attach.
	if _, err := primary.st.SetHostPreferredArrays(ctx, b1.Name, []string{"site-a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.InitializeConnection(ctx, "v1", "", hosts[0].c); err != nil {
		t.Fatal(err)
	}
	prefers(primary, hosts[0].c, hosts[0].want)

	// Detach: the hosts the setting matches go with their connections.
	for _, h := range hosts {
		if err := b.TerminateConnection(ctx, "v1", "", h.c); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []*testArray{primary, peer} {
		if hs, err := a.st.ListHosts(ctx); err != nil || len(hs) != 0 {
			t.Errorf("%s's hosts after detach: %+v, %v; want none", a.name, hs, err)
		}
	}
}
