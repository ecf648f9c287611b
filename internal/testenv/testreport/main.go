// Command testreport reads `go test -json` on stdin and prints what a plain
// `go test` would: a line per package and the output of the tests that
// failed. It also fails the run when any test skipped, which a plain
// `go test` hides: `make test` allows no skips (see internal/testenv).
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := report(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
}
