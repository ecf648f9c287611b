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
			fam, o.Passed, o.Ran, o.Failed, o.Failures, g.Passed, g.Ran, g.Failed, g.Failures)
		for _, f := range o.Failures {
			if !suiteArtefacts[f] {
				t.Errorf("%s: %s failed against volrep", fam, f)
			}
		}
		if o.Failed != len(o.Failures) {
			t.Errorf("%s: the summary counts %d failures, the parser found %v", fam, o.Failed, o.Failures)
		}
		if o.Ran == 0 || o.Passed < g.Passed {
			t.Errorf("%s: volrep passes %d of %d tests, tgtd %d", fam, o.Passed, o.Ran, g.Passed)
		}
		for _, s := range o.Skipped {
			skipped = append(skipped, fam+"."+s)
		}
	}
	sort.Strings(skipped)
	t.Logf("tests that skipped against volrep (%d):\n%s", len(skipped), strings.Join(skipped, "\n"))
	if logs := d.Logs(); strings.Contains(logs, lun.CHAPSecret) {
		t.Error("the host's CHAP secret reached volrepd's log")
	}
}
