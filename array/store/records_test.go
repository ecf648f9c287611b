package store_test

import (
	"slices"
	"testing"

	"github.com/volrep/volrep/array/store"
)

// TestDeleteRecordsByPrefix: DeleteRecords removes the records whose keys
// begin with the prefix, and no other, in a bucket or none.
func TestDeleteRecordsByPrefix(t *testing.T) {
	s, err := store.Open(t.TempDir(), store.Options{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if err := s.DeleteRecords(ctx, "none", "pod/"); err != nil {
		t.Fatalf("deleting from a bucket never written: %v", err)
	}
	for _, k := range []string{"po", "pod/a", "pod/b", "pod2/a", "poe"} {
		if err := s.PutRecord(ctx, "b", k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteRecords(ctx, "b", "pod/"); err != nil {
		t.Fatal(err)
	}
	var left []string
	if err := s.Records(ctx, "b", func(k string, _ []byte) error { left = append(left, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"po", "pod2/a", "poe"}; !slices.Equal(left, want) {
		t.Fatalf("records left after deleting prefix pod/: %q; want %q", left, want)
	}
}
