package e2e

import (
	"sort"
	"strings"
	"testing"
)

// suiteArtefacts are failures that come from libiscsi 1.19, not the
// target (array/iscsi's conformance test explains them at length):
// iSCSIDataSnInvalid expects a corrupted DataSN on a connection the target
// rightly dropped at ErrorRecoveryLevel 0 (tgtd fails it too), and
// GetLBAStatus.UnmapSingle wants the first descriptor at LBA i+8 where
// SBC-3 5.8 puts it at the requested LBA.
var suiteArtefacts = map[string]bool{
	"iSCSIdatasn.iSCSIDataSnInvalid": true,
	"GetLBAStatus.UnmapSingle":       true,
}

// TestISCSIConformanceVsTgt runs libiscsi's conformance suite, the iSCSI
// and LINUX families, against a LUN of a real volrepd (a host with CHAP
// for the suite's two initiators, a volume connected) and against Debian's
// tgtd over a raw file of the same size: no failure against volrep, and
// at least tgtd's pass count in each family.
func TestISCSIConformanceVsTgt(t *testing.T) {
	tool(t, "iscsi-test-cu")
	const size = 64 << 20
	const ini = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
	d := startISCSIDaemon(t, 1)
	lun := hostWithLUN(t, d.Array("a"), "suite", []string{ini, ini + "-2"}, "suite-vol", "", size)
	tgtPortal, tgtIQN := startTgtd(t, t.TempDir(), size)

	var skipped []string
	for _, fam := range []string{"iSCSI", "LINUX"} {
		o := runSuite(t, fam, ini, lun.URL())
		g := runSuite(t, fam, ini, "iscsi://"+tgtPortal+"/"+tgtIQN+"/1")
		t.Logf("%-5s volrep: %d/%d passed, %d failed %v; tgtd: %d/%d passed, %d failed %v",
			fam, o.passed, o.ran, o.failed, o.failures, g.passed, g.ran, g.failed, g.failures)
		for _, f := range o.failures {
			if !suiteArtefacts[f] {
				t.Errorf("%s: %s failed against volrep", fam, f)
			}
		}
		if o.failed != len(o.failures) {
			t.Errorf("%s: the summary counts %d failures, the parser found %v", fam, o.failed, o.failures)
		}
		if o.ran == 0 || o.passed < g.passed {
			t.Errorf("%s: volrep passes %d of %d tests, tgtd %d", fam, o.passed, o.ran, g.passed)
		}
		for _, s := range o.skipped {
			skipped = append(skipped, fam+"."+s)
		}
	}
	sort.Strings(skipped)
	t.Logf("tests that skipped against volrep (%d):\n%s", len(skipped), strings.Join(skipped, "\n"))
	if logs := d.Logs(); strings.Contains(logs, lun.CHAPSecret) {
		t.Error("the host's CHAP secret reached volrepd's log")
	}
}
