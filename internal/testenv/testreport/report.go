package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// event is one line of test2json output.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

// report prints the run as a plain `go test` would and returns an error
// naming every failed or skipped test, or a stream that ended without a
// result for some package (a crashed or killed go test).
func report(in io.Reader, out io.Writer) error {
	type key struct{ pkg, test string }
	outputs := map[key][]string{}
	var failed, skipped []string
	started, finished := map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			// go test writes build errors and the like as plain text.
			fmt.Fprintf(out, "%s\n", line)
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "start":
			started[e.Package] = true
		case "output", "build-output":
			if e.Test != "" {
				outputs[k] = append(outputs[k], e.Output)
				continue
			}
			if o := strings.TrimSpace(e.Output); o == "PASS" || o == "FAIL" || strings.HasPrefix(o, "=== ") {
				continue
			}
			fmt.Fprint(out, e.Output)
		case "fail":
			if e.Test != "" {
				failed = append(failed, e.Package+" "+e.Test)
				fmt.Fprint(out, strings.Join(outputs[k], ""))
			} else {
				finished[e.Package] = true
			}
			delete(outputs, k)
		case "skip":
			if e.Test != "" {
				skipped = append(skipped, e.Package+" "+e.Test)
				fmt.Fprint(out, strings.Join(outputs[k], ""))
			} else {
				finished[e.Package] = true // no test files
			}
			delete(outputs, k)
		case "pass":
			if e.Test == "" {
				finished[e.Package] = true
			}
			delete(outputs, k)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	var problems []string
	for pkg := range started {
		if !finished[pkg] {
			problems = append(problems, "no result for package "+pkg)
		}
	}
	sort.Strings(problems)
	for _, f := range failed {
		problems = append(problems, "FAIL "+f)
	}
	for _, s := range skipped {
		problems = append(problems, "SKIP "+s+" (make test allows no skips: fix the machine or the test)")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problem(s):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return nil
}
