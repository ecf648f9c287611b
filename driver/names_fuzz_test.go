package driver

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/validation"
)

// FuzzNames checks the name checks every API uses: array.CheckName (the
// names of volumes, snapshots, groups, pods, pools, links and backends,
// through validation.Name) and validation.ID (the driver's volume,
// snapshot and group ids). On any input they must not panic; what they
// accept must be bounded, free of path separators, '..' and control
// characters, so a name can never climb out of a directory or forge a log
// line; and every array name the driver derives from an accepted id must
// itself be accepted by the array.
func FuzzNames(f *testing.F) {
	for _, s := range []string{
		"vol-1", "6f1c0b9e-8a57-4c4e-9d4f-0f3e1a2b3c4d", "a.b_c:d", "", ".", "..", "a..b", "../etc",
		"a/b", `a\b`, "a@b", "a b", "a\nb", "a\x00b", "é", strings.Repeat("a", 128), strings.Repeat("a", 129),
		strings.Repeat("a", validation.MaxIDLen+1), "-x", "x-", "\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := array.CheckName("name", s); err == nil {
			checkSafe(t, "CheckName", s, array.MaxNameLen)
		} else if len(err.Error()) > 400 {
			t.Fatalf("CheckName's error is %d bytes; it must not echo the input", len(err.Error()))
		}
		if validation.Name("name", s) == nil {
			checkSafe(t, "validation.Name", s, array.MaxNameLen)
		}
		if validation.ID("volume_id", s) != nil {
			return
		}
		checkSafe(t, "validation.ID", s, validation.MaxIDLen)
		for _, derived := range []string{volumeName(s), snapshotName(s), groupName(s)} {
			if err := array.CheckName("name", derived); err != nil {
				t.Fatalf("id %q is accepted, but the array refuses the name the driver derives from it: %v", s, err)
			}
		}
		if id, ok := volumeID(volumeName(s)); !ok || id != s {
			t.Fatalf("volumeID(volumeName(%q)) = %q, %v", s, id, ok)
		}
	})
}

func checkSafe(t *testing.T, check, s string, max int) {
	t.Helper()
	switch {
	case s == "" || len(s) > max:
		t.Fatalf("%s accepted %q of %d bytes, outside 1..%d", check, s, len(s), max)
	case !utf8.ValidString(s):
		t.Fatalf("%s accepted invalid UTF-8 %q", check, s)
	case strings.ContainsAny(s, `/\@`) || strings.Contains(s, ".."):
		t.Fatalf("%s accepted %q, holding a path separator, '@' or '..'", check, s)
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0:
		t.Fatalf("%s accepted %q, holding a control or space character", check, s)
	}
}
