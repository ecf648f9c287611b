package driver

import (
	"slices"
	"strings"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/errdefs"
)

const (
	iqnA = "iqn.1993-08.org.debian:01:compute-a"
	iqnB = "iqn.1993-08.org.debian:01:compute-b"
	iqnC = "iqn.1993-08.org.debian:01:operator"
)

// iscsiArray is a test array that reports iSCSI portals. Nothing listens
// there: the driver only hands them on.
func iscsiArray(t *testing.T, name string, portals ...string) *testArray {
	t.Helper()
	return newTestArrayOpts(t, store.Options{Name: name, ISCSIPortals: portals})
}

func oneBackend(t *testing.T, a *testArray, lines ...string) *Backend {
	t.Helper()
	d := startDriver(t, backendConf(map[string][]string{"b1": append([]string{
		"san_ip = " + a.addr, "pure_api_token = " + a.token}, lines...)}), a)
	return testBackend(t, d, "b1")
}

func connectionsOf(t *testing.T, a *testArray, host, vol string) []array.Connection {
	t.Helper()
	cs, err := a.st.ListConnections(t.Context(), host, vol)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestISCSIAttachment: with volrep_protocol unset and an array that serves
// iSCSI, InitializeConnection makes a host for the connector's initiator,
// connects the volume as a LUN and returns every portal, the target, the
// LUN, the host's CHAP credentials and the volume's WWN; a snapshot is
// connected read-only. TerminateConnection disconnects, and deletes the
// host it made with the host's last connection, never an operator's.
func TestISCSIAttachment(t *testing.T) {
	ctx := t.Context()
	a := iscsiArray(t, "site-a", "192.0.2.10:3260", "192.0.2.11:3260")
	b := oneBackend(t, a)
	for _, id := range []string{"v1", "v2"} {
		if _, err := b.CreateVolume(ctx, id, 1, VolumeType{}, ""); err != nil {
			t.Fatal(err)
		}
	}
	st, err := b.GetVolumeStats(ctx, true)
	if err != nil || st.StorageProtocol != "iSCSI" {
		t.Fatalf("stats: storage_protocol %q, %v; want iSCSI", st.StorageProtocol, err)
	}

	compute := Connector{Host: "compute-1", Initiator: iqnA, Multipath: true}
	ci, err := b.InitializeConnection(ctx, "v1", "", compute)
	if err != nil {
		t.Fatal(err)
	}
	if ci.DriverVolumeType != "iscsi" || ci.ISCSI == nil {
		t.Fatalf("InitializeConnection = %+v, want iscsi", ci)
	}
	tg := ci.ISCSI
	vol, err := a.st.GetVolume(ctx, volumeName("v1"))
	if err != nil {
		t.Fatal(err)
	}
	host, err := a.st.GetHost(ctx, tg.HostName, true)
	if err != nil {
		t.Fatalf("the host InitializeConnection names: %v", err)
	}
	wantPaths := []ISCSIPath{{"192.0.2.10:3260", a.st.TargetIQN(), 1}, {"192.0.2.11:3260", a.st.TargetIQN(), 1}}
	switch {
	case !slices.Equal(tg.Paths, wantPaths):
		t.Errorf("paths %+v, want %+v", tg.Paths, wantPaths)
	case host.Name != "compute-1" || !slices.Equal(host.IQNs, []string{iqnA}):
		t.Errorf("host %s with %v, want compute-1 with %s", host.Name, host.IQNs, iqnA)
	case host.Labels[labelHostCreator] != hostCreator || host.Labels[labelConnectorHost] != "compute-1":
		t.Errorf("host labels %v", host.Labels)
	case tg.CHAPUser != host.CHAPUser || tg.CHAPSecret != host.CHAPSecret || tg.CHAPSecret == "":
		t.Errorf("CHAP %q/%q, the host's is %q/%q", tg.CHAPUser, tg.CHAPSecret, host.CHAPUser, host.CHAPSecret)
	case len(vol.WWN) != 32 || tg.WWN != "3"+vol.WWN:
		t.Errorf("WWN %q, the volume's is %q", tg.WWN, vol.WWN)
	case !tg.Multipath || ci.Data["access_mode"] != "rw" || ci.Data["volume_id"] != "v1":
		t.Errorf("multipath %t, data %v", tg.Multipath, ci.Data)
	}

	// Again: the same LUN. Another volume: the next LUN on the same host.
	again, err := b.InitializeConnection(ctx, "v1", "", compute)
	if err != nil || again.ISCSI.Paths[0].LUN != 1 || again.ISCSI.HostName != "compute-1" {
		t.Errorf("InitializeConnection again: %+v, %v", again.ISCSI, err)
	}
	ci2, err := b.InitializeConnection(ctx, "v2", "", compute)
	if err != nil || ci2.ISCSI.Paths[0].LUN != 2 || ci2.ISCSI.HostName != "compute-1" {
		t.Fatalf("second volume: %+v, %v", ci2.ISCSI, err)
	}

	// A snapshot is connected read-only, with an identity of its own.
	if _, err := b.CreateSnapshot(ctx, "s1", "v1"); err != nil {
		t.Fatal(err)
	}
	cs, err := b.InitializeConnection(ctx, "v1", "s1", compute)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Data["access_mode"] != "ro" || cs.Data["snapshot_id"] != "s1" || cs.ISCSI.Paths[0].LUN != 3 || cs.ISCSI.WWN == tg.WWN {
		t.Errorf("snapshot: data %v, LUN %d, WWN %s (volume's %s)", cs.Data, cs.ISCSI.Paths[0].LUN, cs.ISCSI.WWN, tg.WWN)
	}
	if _, err := b.InitializeConnection(ctx, "v1", "no-such", compute); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "snapshot no-such") {
		t.Errorf("missing snapshot: %v", err)
	}
	if _, err := b.InitializeConnection(ctx, "no-such", "", compute); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "volume no-such") {
		t.Errorf("missing volume: %v", err)
	}

	// Another initiator that calls itself compute-1 gets a host of its own;
	// an initiator on an operator's host is connected to that host.
	other, err := b.InitializeConnection(ctx, "v1", "", Connector{Host: "compute-1", Initiator: iqnB})
	if err != nil {
		t.Fatal(err)
	}
	if n := other.ISCSI.HostName; n == "compute-1" || !strings.HasPrefix(n, "compute-1-") {
		t.Errorf("a second initiator of compute-1 is on host %q", n)
	}
	if len(other.ISCSI.Paths) != 2 || other.ISCSI.Multipath {
		t.Errorf("single-path connector: %+v", other.ISCSI)
	}
	if _, err := a.st.CreateHost(ctx, array.HostSpec{Name: "ops-made", IQNs: []string{strings.ToUpper(iqnC[:3]) + iqnC[3:]}}); err != nil {
		t.Fatal(err)
	}
	ops, err := b.InitializeConnection(ctx, "v2", "", Connector{Host: "backup-1", Initiator: iqnC})
	if err != nil || ops.ISCSI.HostName != "ops-made" {
		t.Fatalf("initiator of an existing host: %+v, %v", ops.ISCSI, err)
	}

	// Disconnecting v1 leaves compute-1 (v2 and the snapshot remain)...
	if err := b.TerminateConnection(ctx, "v1", "", compute); err != nil {
		t.Fatal(err)
	}
	if got := connectionsOf(t, a, "compute-1", ""); len(got) != 2 || slices.ContainsFunc(got, func(c array.Connection) bool {
		return c.Volume == volumeName("v1") && c.Snapshot == ""
	}) {
		t.Errorf("compute-1 after v1's detach: %+v", got)
	}
	// ...and once nothing is connected, the host the driver made goes.
	if err := b.TerminateConnection(ctx, "v1", "s1", compute); err != nil {
		t.Fatal(err)
	}
	if err := b.TerminateConnection(ctx, "v2", "", compute); err != nil {
		t.Fatal(err)
	}
	if _, err := a.st.GetHost(ctx, "compute-1", false); !errdefs.IsNotFound(err) {
		t.Errorf("compute-1 with no connections left: %v, want it deleted", err)
	}
	// Detaching again is a no-op.
	if err := b.TerminateConnection(ctx, "v2", "", compute); err != nil {
		t.Errorf("second TerminateConnection: %v", err)
	}

	// Force detach (no connector) disconnects v2 from every host; the
	// operator's host stays, empty.
	if err := b.TerminateConnection(ctx, "v2", "", Connector{}); err != nil {
		t.Fatal(err)
	}
	if got := connectionsOf(t, a, "", volumeName("v2")); len(got) != 0 {
		t.Errorf("v2 after force detach: %+v", got)
	}
	if h, err := a.st.GetHost(ctx, "ops-made", false); err != nil || h.Connections != 0 {
		t.Errorf("operator's host after force detach: %+v, %v; want it kept, empty", h, err)
	}
	// A connector without an initiator detaches what the driver connected
	// for its host name.
	if err := b.TerminateConnection(ctx, "v1", "", Connector{Host: "compute-1"}); err != nil {
		t.Fatal(err)
	}
	if got := connectionsOf(t, a, "", volumeName("v1")); len(got) != 0 {
		t.Errorf("v1 after detaching connector host compute-1: %+v", got)
	}
	if hs, _ := a.st.ListHosts(ctx); len(hs) != 1 || hs[0].Name != "ops-made" {
		t.Errorf("hosts left: %+v, want only ops-made", hs)
	}
}

// TestISCSIRequiresInitiator: over iSCSI the connector must carry its IQN.
func TestISCSIRequiresInitiator(t *testing.T) {
	a := iscsiArray(t, "site-a", "192.0.2.10:3260")
	b := oneBackend(t, a)
	if _, err := b.CreateVolume(t.Context(), "v1", 1, VolumeType{}, ""); err != nil {
		t.Fatal(err)
	}
	_, err := b.InitializeConnection(t.Context(), "v1", "", Connector{Host: "compute-1"})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "connector.initiator") {
		t.Errorf("InitializeConnection without initiator: %v", err)
	}
}

// TestProtocolChoice: volrep_protocol decides; unset, the primary array's
// iSCSI listener does. An array without one gets NBD by default, and a
// clear refusal when iscsi is asked for.
func TestProtocolChoice(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name, line string
		portals    []string
		want       string // driver_volume_type, or the refusal
	}{
		{"unset, iSCSI array", "", []string{"192.0.2.10:3260"}, "iscsi"},
		{"unset, NBD array", "", nil, "nbd"},
		{"nbd on an iSCSI array", "volrep_protocol = nbd", []string{"192.0.2.10:3260"}, "nbd"},
		{"iscsi on an NBD array", "volrep_protocol = iscsi", nil, "serves no iSCSI"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestArrayOpts(t, store.Options{Name: "site-a", ISCSIPortals: tc.portals, NBDAddress: "127.0.0.1:10809"})
			var lines []string
			if tc.line != "" {
				lines = append(lines, tc.line)
			}
			b := oneBackend(t, a, lines...)
			if _, err := b.CreateVolume(ctx, "v1", 1, VolumeType{}, ""); err != nil {
				t.Fatal(err)
			}
			ci, err := b.InitializeConnection(ctx, "v1", "", Connector{Host: "compute-1", Initiator: iqnA})
			if strings.Contains(tc.want, " ") {
				if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("InitializeConnection: %v, want FAILED_PRECONDITION saying %q", err, tc.want)
				}
				return
			}
			if err != nil || ci.DriverVolumeType != tc.want {
				t.Fatalf("InitializeConnection = %q, %v; want %s", ci.DriverVolumeType, err, tc.want)
			}
			st, err := b.GetVolumeStats(ctx, true)
			if err != nil || st.StorageProtocol != storageProtocol(tc.want) {
				t.Errorf("storage_protocol %q, %v; want %q", st.StorageProtocol, err, storageProtocol(tc.want))
			}
			// Detach revokes whichever kind of attachment there is.
			if err := b.TerminateConnection(ctx, "v1", "", Connector{Host: "compute-1", Initiator: iqnA}); err != nil {
				t.Fatal(err)
			}
			exports, _ := a.st.ListExports(ctx, volumeName("v1"))
			if conns := connectionsOf(t, a, "", volumeName("v1")); len(exports)+len(conns) != 0 {
				t.Errorf("after TerminateConnection: exports %+v, connections %+v", exports, conns)
			}
		})
	}
	if storageProtocol(config.ProtocolISCSI) != "iSCSI" || storageProtocol(config.ProtocolNBD) != "nbd" {
		t.Error("storage_protocol names")
	}
}

// TestISCSIAfterFailover: failed over, attachments go to the secondary
// array's target and portals, and the LUN keeps the volume's WWN.
func TestISCSIAfterFailover(t *testing.T) {
	ctx := t.Context()
	peer, b := syncISCSIPair(t)
	compute := Connector{Host: "compute-1", Initiator: iqnA}
	before, err := b.InitializeConnection(ctx, "v1", "", compute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.FailoverHost(ctx, []string{"v1"}, "site-b"); err != nil {
		t.Fatal(err)
	}
	after, err := b.InitializeConnection(ctx, "v1", "", compute)
	if err != nil {
		t.Fatal(err)
	}
	want := []ISCSIPath{{"198.51.100.20:3260", peer.st.TargetIQN(), 1}}
	if !slices.Equal(after.ISCSI.Paths, want) {
		t.Errorf("after failover: paths %+v, want %+v", after.ISCSI.Paths, want)
	}
	if after.ISCSI.WWN != before.ISCSI.WWN || after.ISCSI.WWN == "" {
		t.Errorf("WWN after failover %q, before %q", after.ISCSI.WWN, before.ISCSI.WWN)
	}
	if _, err := peer.st.GetHost(ctx, after.ISCSI.HostName, false); err != nil {
		t.Errorf("the host on the secondary: %v", err)
	}
	if err := b.TerminateConnection(ctx, "v1", "", compute); err != nil {
		t.Fatal(err)
	}
	if conns := connectionsOf(t, peer, "", volumeName("v1")); len(conns) != 0 {
		t.Errorf("secondary after detach: %+v", conns)
	}
}

// syncISCSIPair is a backend on array site-a (portal 192.0.2.10:3260)
// with a sync replication device at site-b (198.51.100.20:3260), holding
// the pod volume v1.
func syncISCSIPair(t *testing.T) (peer *testArray, b *Backend) {
	t.Helper()
	peer = iscsiArray(t, "site-b", "198.51.100.20:3260")
	b = oneBackend(t, iscsiArray(t, "site-a", "192.0.2.10:3260"), device("site-b", peer.addr, peer, "sync"))
	if _, err := b.CreateVolume(t.Context(), "v1", 1, syncSpecs, ""); err != nil {
		t.Fatal(err)
	}
	return peer, b
}
