package main

import (
	"strings"
	"testing"
)

const passing = `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:9: chatter\n"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Output":"PASS\n"}
{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}
{"Action":"pass","Package":"p"}
{"Action":"start","Package":"q"}
{"Action":"output","Package":"q","Output":"?   \tq\t[no test files]\n"}
{"Action":"skip","Package":"q"}
`

func TestPassingRunIsQuietAndClean(t *testing.T) {
	var out strings.Builder
	if err := report(strings.NewReader(passing), &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "ok  \tp\t0.1s\n?   \tq\t[no test files]\n" {
		t.Fatalf("output %q", got)
	}
}

func TestSkippedTestFailsTheRun(t *testing.T) {
	in := strings.Replace(passing, `{"Action":"pass","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:9: SKIPPED: no nft\n"}
{"Action":"skip","Package":"p","Test":"TestA"}`, 1)
	var out strings.Builder
	err := report(strings.NewReader(in), &out)
	if err == nil || !strings.Contains(err.Error(), "SKIP p TestA") {
		t.Fatalf("a skipped test: err %v", err)
	}
	if !strings.Contains(out.String(), "SKIPPED: no nft") {
		t.Fatalf("the skip's reason is not shown: %q", out.String())
	}
}

func TestFailedTestShowsItsOutput(t *testing.T) {
	in := strings.Replace(passing, `{"Action":"pass","Package":"p","Test":"TestA"}`,
		`{"Action":"fail","Package":"p","Test":"TestA"}`, 1)
	var out strings.Builder
	err := report(strings.NewReader(in), &out)
	if err == nil || !strings.Contains(err.Error(), "FAIL p TestA") || !strings.Contains(out.String(), "chatter") {
		t.Fatalf("err %v, output %q", err, out.String())
	}
}

func TestTruncatedStreamFails(t *testing.T) {
	in := strings.SplitAfter(passing, "\n")
	err := report(strings.NewReader(strings.Join(in[:5], "")), &strings.Builder{})
	if err == nil || !strings.Contains(err.Error(), "no result for package p") {
		t.Fatalf("a run that ended early: %v", err)
	}
}
