package store_test

import (
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/iscsi"
	"github.com/volrep/volrep/array/lunmap"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/array/testsuite"
)

func openTemp(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), store.Options{Name: "test", NBDAddress: "127.0.0.1:10809",
		ISCSIPortals: []string{"127.0.0.1:3260", "127.0.0.2:3260"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// withTarget gives s the iSCSI target that keeps its units' persistent
// reservations, as volrepd does.
func withTarget(t *testing.T, s *store.Store) *store.Store {
	srv := lunmap.NewServer(s, iscsi.Options{})
	t.Cleanup(func() { srv.Close() })
	return s
}

func TestConformance(t *testing.T) {
	testsuite.Run(t, func(t *testing.T) array.Array { return withTarget(t, openTemp(t)) })
}
