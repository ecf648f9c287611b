// Package cunit reads the verbose output of libiscsi's iscsi-test-cu (a
// CUnit run), for the tests that run it against volrep's iSCSI target.
package cunit

import (
	"bufio"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Result is one run's summary.
type Result struct {
	Ran, Passed, Failed int
	Failures            []string // Suite.Test of the tests that failed
	Skipped             []string // "Suite.Test: reason", for tests that skipped
	// Reservations counts the persistent reservation tests (suites Prin*
	// and Prout*) that passed, Unreserved the lines where one of them
	// found the target without persistent reservations, which libiscsi
	// passes too.
	Reservations, Unreserved int
}

var (
	reSuite   = regexp.MustCompile(`^Suite: (\S+)`)
	reTest    = regexp.MustCompile(`^\s+Test: (\S+) \.\.\.`)
	reSummary = regexp.MustCompile(`(?m)^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)`)
	reResult  = regexp.MustCompile(`(^|\.\.\.)\s*(passed|FAILED)$`)
	reSkipped = regexp.MustCompile(`\[SKIPPED\] (.*)`)
	// reNoReservations is what libiscsi logs before it passes a
	// reservation test against a target without them.
	reNoReservations = regexp.MustCompile(`PERSISTENT RESERVE (IN|OUT) is not implemented|PROUT Not Supported`)
)

// Parse reads iscsi-test-cu's verbose output.
func Parse(out string) (Result, error) {
	var r Result
	m := reSummary.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no CUnit run summary in the output")
	}
	r.Ran, _ = strconv.Atoi(m[2])
	r.Passed, _ = strconv.Atoi(m[3])
	r.Failed, _ = strconv.Atoi(m[4])
	seen := map[string]bool{}
	var suite, test string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := reSuite.FindStringSubmatch(line); m != nil {
			suite = m[1]
		}
		if m := reTest.FindStringSubmatch(line); m != nil {
			test = m[1]
		}
		prSuite := strings.HasPrefix(suite, "Prin") || strings.HasPrefix(suite, "Prout")
		if m := reResult.FindStringSubmatch(strings.TrimSpace(line)); m != nil && test != "" {
			switch {
			case m[2] == "FAILED":
				r.Failures = append(r.Failures, suite+"."+test)
			case prSuite:
				r.Reservations++
			}
		}
		if prSuite && reNoReservations.MatchString(line) {
			r.Unreserved++
		}
		// libiscsi probes PERSISTENT RESERVE IN before every test; that
		// is not the test skipping.
		if m := reSkipped.FindStringSubmatch(line); m != nil && test != "" && !strings.Contains(m[1], "PERSISTENT RESERVE IN") {
			key := suite + "." + test + ": " + strings.TrimSpace(m[1])
			if !seen[key] {
				seen[key] = true
				r.Skipped = append(r.Skipped, key)
			}
		}
	}
	return r, nil
}
