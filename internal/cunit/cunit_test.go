package cunit

import (
	"slices"
	"testing"
)

// An excerpt of iscsi-test-cu -V output (libiscsi 1.19), trimmed.
const sample = `Suite: ProutReserve
  Test: Simple ...
    Send PROUT/REGISTER_AND_IGNORE to register init=iqn.a
passed
  Test: AccessEA ...
    [SKIPPED] PERSISTENT RESERVE OUT is not implemented.
passed
Suite: GetLBAStatus
  Test: UnmapSingle ...
    [FAILED] first descriptor at 2
FAILED
  Test: Simple ...
    [SKIPPED] PERSISTENT RESERVE IN is not implemented.
    [SKIPPED] GET LBA STATUS is not implemented.
passed

Run Summary:    Type  Total    Ran Passed Failed Inactive
              suites     2      2    n/a      0        0
               tests     4      4      3      1        0
`

func TestParse(t *testing.T) {
	r, err := Parse(sample)
	if err != nil {
		t.Fatal(err)
	}
	if r.Ran != 4 || r.Passed != 3 || r.Failed != 1 {
		t.Errorf("ran %d passed %d failed %d; want 4 3 1", r.Ran, r.Passed, r.Failed)
	}
	if !slices.Equal(r.Failures, []string{"GetLBAStatus.UnmapSingle"}) {
		t.Errorf("failures %v", r.Failures)
	}
	if r.Reservations != 2 || r.Unreserved != 1 {
		t.Errorf("reservation tests passed %d, %d for want of reservations; want 2, 1", r.Reservations, r.Unreserved)
	}
	want := []string{"ProutReserve.AccessEA: PERSISTENT RESERVE OUT is not implemented.", "GetLBAStatus.Simple: GET LBA STATUS is not implemented."}
	if !slices.Equal(r.Skipped, want) {
		t.Errorf("skipped %q; want %q", r.Skipped, want)
	}
	if _, err := Parse("no summary"); err == nil {
		t.Error("output without a run summary parsed")
	}
}
