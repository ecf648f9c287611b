package driver

import (
	"testing"

	"github.com/volrep/volrep/config"
)

func TestCopyOn(t *testing.T) {
	b := &Backend{cfg: config.Backend{PGName: "cinder-group", PodName: "cinder-pod", SanIP: "a:7401",
		ReplicationDevices: []config.ReplicationDevice{
			{BackendID: "b-async", SanIP: "b:7401", Type: "async"},
			{BackendID: "b-sync", SanIP: "b:7401", Type: "sync"},
			{BackendID: "c-async", SanIP: "c:7401", Type: "async"},
		}}}
	for _, tc := range []struct {
		target, replica string
		want            bool
	}{
		{"b-async", "cinder-group.b-async", true},
		{"b-async", "cinder-pod.b-sync", true}, // the same array
		{"b-sync", "cinder-group.b-async", true},
		{"b-async", "consisgroup-g1-cinder.b-async", true},
		{"b-async", "cinder-group.c-async", false},
		{"c-async", "consisgroup-g1-cinder.b-async", false},
		{"b-async", "other-group.b-async", false},
		{"b-async", "consisgroup-g1-other.b-async", false},
		{"b-async", "", false},
	} {
		if got := b.copyOn(tc.target, tc.replica); got != tc.want {
			t.Errorf("copyOn(%q, %q) = %v, want %v", tc.target, tc.replica, got, tc.want)
		}
	}
}
