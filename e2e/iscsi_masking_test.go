package e2e

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestISCSIMaskingAndDetach: two hosts, each sees only its own LUNs in
// REPORT LUNS (iscsi-ls and a raw session), the other's LUN number answers
// LOGICAL UNIT NOT SUPPORTED, and after `volrep volume detach --protocol
// iscsi` an open session's next command on the LUN fails with that sense
// and REPORT LUNS no longer lists it.
func TestISCSIMaskingAndDetach(t *testing.T) {
	iscsiLs := tool(t, "iscsi-ls")
	d := startISCSIDaemon(t, 1)
	a := d.Array("a")
	const ini1, ini2 = "iqn.2026-12.io.volrep.e2e:mask-1", "iqn.2026-12.io.volrep.e2e:mask-2"
	l1a := hostWithLUN(t, a, "mask-1", []string{ini1}, "m1a", "", 8<<20)
	l1b := hostWithLUN(t, a, "mask-1", []string{ini1}, "m1b", "", 16<<20)
	l2 := hostWithLUN(t, a, "mask-2", []string{ini2}, "m2", "", 24<<20)
	if l1a.LUN != 1 || l1b.LUN != 2 || l2.LUN != 1 {
		t.Fatalf("LUNs %d, %d (host 1) and %d (host 2), want 1, 2 and 1", l1a.LUN, l1b.LUN, l2.LUN)
	}

	ls := func(l lunOf) string {
		out, _ := runEnv(t, time.Minute, nil, iscsiLs, "-i", l.Initiator, "-s", "iscsi://"+l.CHAPUser+"%"+l.CHAPSecret+"@"+l.Portals[0])
		return out
	}
	if out := ls(l1a); !strings.Contains(out, "Lun:1") || !strings.Contains(out, "Lun:2") {
		t.Fatalf("iscsi-ls for host 1 does not show LUNs 1 and 2:\n%s", out)
	}
	if out := ls(l2); !strings.Contains(out, "Lun:1") || strings.Contains(out, "Lun:2") {
		t.Fatalf("iscsi-ls for host 2 should show only LUN 1:\n%s", out)
	}

	c2 := dialISCSI(t, l2.Portals[0])
	c2.mustLogin(l2, false)
	if got := c2.reportLUNs(); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("REPORT LUNS for host 2 = %v, want [1]", got)
	}
	if r := c2.mustDo(2, cdbTUR, 0, nil); r.status != 2 || r.key != 5 || r.asc != 0x2500 {
		t.Fatalf("host 2's TEST UNIT READY on host 1's LUN 2: %v, want ILLEGAL REQUEST/LOGICAL UNIT NOT SUPPORTED (5/2500)", r)
	}

	c1 := dialISCSI(t, l1a.Portals[0])
	c1.mustLogin(l1a, false)
	if got := c1.reportLUNs(); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("REPORT LUNS for host 1 = %v, want [1 2]", got)
	}
	if r := c1.mustDo(2, cdbRead10(0, 8), 4096, nil); r.status != 0 {
		t.Fatalf("READ of LUN 2 before detach: %v", r)
	}
	_, volrep := binaries(t)
	cmd := exec.Command(volrep, "volume", "detach", "m1b", "--protocol", "iscsi", "--initiator", ini1)
	cmd.Env = append(cmd.Environ(), "VOLREP_ARRAY_ADDR="+d.ArrayA, "VOLREP_ARRAY_TOKEN="+d.TokenA)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("volrep volume detach --protocol iscsi: %v\n%s", err, out)
	}
	if r := c1.mustDo(2, cdbRead10(0, 8), 4096, nil); r.status != 2 || r.key != 5 || r.asc != 0x2500 {
		t.Fatalf("READ of LUN 2 on the open session after detach: %v, want 5/2500", r)
	}
	if got := c1.reportLUNs(); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("REPORT LUNS for host 1 after detach = %v, want [1]", got)
	}
	if r := c1.mustDo(1, cdbRead10(0, 8), 4096, nil); r.status != 0 {
		t.Fatalf("READ of LUN 1 after detaching LUN 2: %v", r)
	}
}
