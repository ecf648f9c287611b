package transfer

import (
	"testing"

	"github.com/volrep/volrep/array/bitmap"
)

// After a restart, a carried pod's record says which blocks go back to
// the preferred array: the dirty ones after a clean stop; with the intent
// too after an unclean one; every block (ok false) when the record cannot
// tell.
func TestRestoredBlocks(t *testing.T) {
	enc := func(lo, hi uint64) []byte {
		b := bitmap.New()
		b.SetRange(lo, hi)
		data, err := b.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	withIntent := carriedRec{Volumes: []string{"v"}, Dirty: map[string][]byte{"v": enc(3, 5)}, Intent: map[string][]byte{"v": enc(0, intentBlocks)}}
	older := carriedRec{Volumes: []string{"v"}, Dirty: map[string][]byte{"v": enc(3, 5)}}
	broken := carriedRec{Volumes: []string{"v"}, Dirty: map[string][]byte{"v": []byte("{")}, Intent: map[string][]byte{"v": enc(0, intentBlocks)}}
	for _, c := range []struct {
		name      string
		rec       carriedRec
		clean, ok bool
		count     uint64 // dirty blocks, when ok
	}{
		{"clean stop", withIntent, true, true, 2},
		{"unclean stop", withIntent, false, true, intentBlocks},
		{"clean stop, older record", older, true, true, 2},
		{"unclean stop, older record", older, false, false, 0},
		{"undecodable", broken, true, false, 0},
	} {
		d, in, ok := restoredBlocks(c.rec, "v", c.clean)
		if ok != c.ok {
			t.Errorf("%s: ok %v, want %v", c.name, ok, c.ok)
			continue
		}
		if in == nil {
			t.Errorf("%s: no intent bitmap", c.name)
		}
		if ok && d.Count() != c.count {
			t.Errorf("%s: %d dirty blocks, want %d", c.name, d.Count(), c.count)
		}
	}
}
