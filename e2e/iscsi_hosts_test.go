package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/server"
)

// TestISCSIPortalsAndHosts: an array with two portals announces both,
// hands them out in connections, and its hosts are managed with the CLI.
func TestISCSIPortalsAndHosts(t *testing.T) {
	d := NewDaemon(t)
	p1, p2 := freePort(t), freePort(t)
	d.ISCSIA = p1 + ", " + p2
	d.Start()
	for _, p := range []string{p1, p2} {
		if want := "volrepd: array site-a iSCSI on " + p + " (target iqn.2026-12.io.volrep:site-a)"; !strings.Contains(d.out.String(), want) {
			t.Fatalf("no start-up line %q in:\n%s", want, d.out)
		}
	}
	if strings.Contains(d.out.String(), "array site-b iSCSI") {
		t.Fatal("site-b announces iSCSI without iscsi_listen")
	}

	cc, err := server.Dial(d.ArrayA, d.TokenA)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := client.New(cc).CreateVolume(t.Context(), array.VolumeSpec{Name: "lun-vol", Pool: "cinder", SizeBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	_, volrepBin := binaries(t)
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(volrepBin, args...)
		cmd.Env = append(cmd.Environ(), "VOLREP_ARRAY_ADDR="+d.ArrayA, "VOLREP_ARRAY_TOKEN="+d.TokenA)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("volrep %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	const ini = "iqn.1993-08.org.debian:01:e2e"
	cli("host", "create", "compute-1", "--iqn", ini)
	out := cli("volume", "attach", "lun-vol", "--protocol", "iscsi", "--initiator", ini)
	if !strings.Contains(out, p1+","+p2) || !strings.Contains(out, "iqn.2026-12.io.volrep:site-a") {
		t.Fatalf("attach does not give the real portals %s, %s:\n%s", p1, p2, out)
	}
	out = cli("host", "list")
	if !strings.Contains(out, "compute-1") || !strings.Contains(out, ini) || !strings.Contains(out, "lun-vol") {
		t.Fatalf("host list:\n%s", out)
	}
}
