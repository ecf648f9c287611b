package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// TestISCSIPodHostPrefersPeer: two volrepd processes, each array serving
// iSCSI, and volrep_host_preferred_arrays making the hosts of compute-b*
// prefer the sync target. The driver attaches a pod volume at both arrays
// (uniform access); each array, asked with `volrep host list` (its
// ListConnections), says what it tells the host now: the peer
// active/optimized with PREF, the serving array active/non-optimized.
// qemu-io writes through the peer's path, the one the host's multipath
// would use, and the bytes read back through the serving array's. Detach
// removes the hosts at both arrays.
func TestISCSIPodHostPrefersPeer(t *testing.T) {
	_, qemuIO := needQemuISCSI(t)
	s := startSitesISCSI(t, "puredriver-1", syncBackend+"volrep_host_preferred_arrays = compute-b*:pure2-sync, *:primary\n", true)
	ctx := t.Context()
	dc := driverClient(t, s.a)
	if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "puredriver-1", VolumeId: "hp", SizeGb: 1, VolumeType: syncType}); err != nil {
		t.Fatal(err)
	}
	const ini = "iqn.2026-12.io.volrep.e2e:compute-b1"
	conn := &driverv1.Connector{Host: "compute-b1", Initiator: ini, Multipath: true}
	r, err := dc.InitializeConnection(ctx, &driverv1.InitializeConnectionRequest{Backend: "puredriver-1", VolumeId: "hp", Connector: conn})
	if err != nil {
		t.Fatal(err)
	}
	tg := r.GetConnectionInfo().GetIscsi()
	paths := tg.GetPaths()
	if len(paths) != 2 || paths[0].GetPortal() != s.a.ISCSIA || paths[1].GetPortal() != s.b.ISCSIB {
		t.Fatalf("paths %+v, want site-a's portal %s then site-b's %s", paths, s.a.ISCSIA, s.b.ISCSIB)
	}

	_, volrepBin := binaries(t)
	// cli runs the volrep CLI against the array at addr.
	cli := func(addr, token string, args ...string) (string, error) {
		cmd := exec.Command(volrepBin, args...)
		cmd.Env = append(cmd.Environ(), "VOLREP_ARRAY_ADDR="+addr, "VOLREP_ARRAY_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// alua is what `volrep -o json host list` at one array reports for the
	// host's connection: its ALUA state, whether PREF is set, and the
	// host's preferred arrays.
	alua := func(addr, token string) (state string, pref bool, preferred []string) {
		t.Helper()
		out, err := cli(addr, token, "-o", "json", "host", "list")
		if err != nil {
			t.Fatalf("volrep host list at %s: %v\n%s", addr, err, out)
		}
		var l struct {
			Hosts []struct {
				Name            string   `json:"name"`
				PreferredArrays []string `json:"preferred_arrays"`
			} `json:"hosts"`
			Connections []struct {
				Host          string `json:"host"`
				PathState     string `json:"path_state"`
				PathPreferred bool   `json:"path_preferred"`
			} `json:"connections"`
		}
		if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Hosts) != 1 || len(l.Connections) != 1 {
			t.Fatalf("volrep host list at %s: %v\n%s", addr, err, out)
		}
		return l.Connections[0].PathState, l.Connections[0].PathPreferred, l.Hosts[0].PreferredArrays
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		sa, pa, prefA := alua(s.a.ArrayA, s.a.TokenA)
		sb, pb, prefB := alua(s.b.ArrayB, s.b.TokenB)
		if len(prefA) != 1 || prefA[0] != "site-b" || len(prefB) != 1 || prefB[0] != "site-b" {
			t.Fatalf("the host's preferred arrays: %v at site-a, %v at site-b; want [site-b] at both", prefA, prefB)
		}
		if sa == "PATH_STATE_ACTIVE_NON_OPTIMIZED" && !pa && sb == "PATH_STATE_ACTIVE_OPTIMIZED" && pb {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("compute-b1 is told %s (PREF %v) at site-a and %s (PREF %v) at site-b; want non-optimized and optimized with PREF", sa, pa, sb, pb)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The CLI knows the peer's name at the serving array from its link:
	// setting the same preference by hand there draws no warning.
	hostName := tg.GetHostName()
	if out, err := cli(s.a.ArrayA, s.a.TokenA, "host", "set-preferred-arrays", hostName, "site-b"); err != nil || strings.Contains(out, "warning") || !strings.Contains(out, "site-b") {
		t.Fatalf("volrep host set-preferred-arrays %s site-b at site-a: %v\n%s", hostName, err, out)
	}
	// The pod's peer has no link back to site-a: naming it there is not
	// taken for a typo either.
	if out, err := cli(s.b.ArrayB, s.b.TokenB, "host", "set-preferred-arrays", hostName, "site-b", "site-a"); err != nil || strings.Contains(out, "warning") {
		t.Fatalf("volrep host set-preferred-arrays %s site-b site-a at site-b: %v\n%s", hostName, err, out)
	}

	// I/O through the path the host would use, and back through the other.
	lun := func(i int) lunOf {
		p := paths[i]
		return lunOf{Connection: array.Connection{Portals: []string{p.GetPortal()}, TargetIQN: p.GetIqn(), LUN: p.GetLun(),
			CHAPUser: tg.GetChapUsername(), CHAPSecret: tg.GetChapSecret()}, Initiator: ini}
	}
	out, _ := run(t, false, qemuIO, append(lun(1).QemuArgs(), "-c", "write -P 0x6b 3M 256k")...)
	if !strings.Contains(out, "wrote 262144/262144 bytes at offset 3145728") {
		t.Fatalf("qemu-io write through site-b's path:\n%s", out)
	}
	out, _ = run(t, false, qemuIO, append(lun(0).QemuArgs(), "-c", "read -P 0x6b 3M 256k")...)
	if !strings.Contains(out, "read 262144/262144 bytes at offset 3145728") {
		t.Fatalf("qemu-io read through site-a's path:\n%s", out)
	}
	// libiscsi's COMPARE AND WRITE tests through the peer's path (it
	// compares at the preferred array), and its multipath tests over both
	// paths of the one device: the same identity at both arrays, COMPARE
	// AND WRITE alternating between the paths, and a LOGICAL UNIT RESET
	// through one path raising a unit attention on the other. Both
	// sessions of a multipath test log in as the host's one initiator, the
	// only one its CHAP secret admits.
	//
	// Then libiscsi's persistent reservation tests with the two sessions
	// at the two arrays, in both orders: a key registered and a
	// reservation taken through one array's path hold at the other's
	// (the preferred array decides them all, the peer forwards its own),
	// so the access tests find the other array's path fenced as SPC-4
	// has it. Two sessions of one initiator with two ISIDs are two I_T
	// nexuses.
	both := []string{lun(0).URL(), lun(1).URL()}
	crossed := []string{lun(1).URL(), lun(0).URL()}
	reservations := 0
	for _, c := range []struct {
		family string
		urls   []string
	}{
		{"SCSI.CompareAndWrite", []string{lun(1).URL()}},
		{"SCSI.MultipathIO", both},
		{"SCSI.MultipathIO", crossed},
		{"SCSI.Prin*", both},
		{"SCSI.Prout*", both},
		{"SCSI.Prin*", crossed},
		{"SCSI.Prout*", crossed},
	} {
		// The multipath COMPARE AND WRITE test zeroes blocks 0-255 but
		// also compares block 256 with zeros, so a run after another
		// needs the LUN's start zeroed again.
		if out, _ := run(t, false, qemuIO, append(lun(0).QemuArgs(), "-c", "write -z 0 2M")...); !strings.Contains(out, "wrote 2097152/2097152 bytes") {
			t.Fatalf("qemu-io zeroing the LUN's start:\n%s", out)
		}
		r := runSuiteAs(t, c.family, ini, ini, c.urls...)
		t.Logf("%s: %d/%d passed, failed %v, skipped %v", c.family, r.Passed, r.Ran, r.Failures, r.Skipped)
		if r.Ran == 0 || r.Passed != r.Ran || len(r.Skipped) > 0 || r.Unreserved > 0 {
			t.Errorf("%s over %d path(s): %d of %d passed (%d for want of reservations), failed %v, skipped %v",
				c.family, len(c.urls), r.Passed, r.Ran, r.Unreserved, r.Failures, r.Skipped)
		}
		reservations += r.Reservations
	}
	if reservations < 40 {
		t.Errorf("%d persistent reservation tests passed over the pod's two arrays; want the 20 of libiscsi 1.19 in each order", reservations)
	}

	if _, err := dc.TerminateConnection(ctx, &driverv1.TerminateConnectionRequest{Backend: "puredriver-1", VolumeId: "hp", Connector: conn}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct{ addr, token string }{{s.a.ArrayA, s.a.TokenA}, {s.b.ArrayB, s.b.TokenB}} {
		if out, err := cli(a.addr, a.token, "host", "list"); err != nil || strings.Contains(out, "compute-b1") {
			t.Errorf("hosts at %s after detach: %v\n%s", a.addr, err, out)
		}
	}
}
