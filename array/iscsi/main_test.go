package iscsi

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine (server, connection,
// writer, command or test client) outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
