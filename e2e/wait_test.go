package e2e

import (
	"os"
	"testing"
	"time"
)

// waitFor polls cond until it holds or 20 seconds pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("condition not reached within 20s")
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}
