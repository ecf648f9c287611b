package store_test

import (
	"slices"
	"testing"
)

// TestDeleteRecordsByPrefix: DeleteRecords removes the records whose keys
// begin with the prefix, and no other, in a bucket or none.
func TestDeleteRecordsByPrefix(t *testing.T) {
	s := openTemp(t)
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
	if err := s.Records(ctx, "b", "", func(k string, _ []byte) error { left = append(left, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"po", "pod2/a", "poe"}; !slices.Equal(left, want) {
		t.Fatalf("records left after deleting prefix pod/: %q; want %q", left, want)
	}
}

// TestRecordsByPrefix: Records reads the records whose keys begin with
// the prefix, in key order, and all of them for "". PutRecords stores
// several at once.
func TestRecordsByPrefix(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	recs := map[string][]byte{}
	for _, k := range []string{"po", "pod/b", "pod/a", "pod2/a", "poe"} {
		recs[k] = []byte("v-" + k)
	}
	if err := s.PutRecords(ctx, "b", recs); err != nil {
		t.Fatal(err)
	}
	read := func(prefix string) []string {
		var got []string
		if err := s.Records(ctx, "b", prefix, func(k string, data []byte) error {
			if string(data) != "v-"+k {
				t.Errorf("record %s holds %q", k, data)
			}
			got = append(got, k)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got, want := read("pod/"), []string{"pod/a", "pod/b"}; !slices.Equal(got, want) {
		t.Errorf("records under pod/: %q; want %q", got, want)
	}
	if got, want := read(""), []string{"po", "pod/a", "pod/b", "pod2/a", "poe"}; !slices.Equal(got, want) {
		t.Errorf("all records: %q; want %q", got, want)
	}
	if got := read("q"); len(got) != 0 {
		t.Errorf("records under q: %q; want none", got)
	}
}
