package array

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/volrep/volrep/errdefs"
)

// MaxNameLen is the longest object name, in bytes.
const MaxNameLen = 128

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// CheckName rejects names that cannot be stored or addressed: empty, too
// long, holding "@" or "/", which separate volume from snapshot and array
// from volume in references, or "..", so that no name can climb out of a
// directory should one ever become part of a path.
func CheckName(field, name string) error {
	if name == "" {
		return errdefs.InvalidArgument(field, "is required")
	}
	if len(name) > MaxNameLen {
		return errdefs.InvalidArgument(field, "is %d bytes, longer than the limit of %d; use a shorter name", len(name), MaxNameLen)
	}
	if !nameRE.MatchString(name) || strings.Contains(name, "..") {
		return errdefs.InvalidArgument(field, "%s is not a valid name; use 1-%d letters, digits, '.', '_', ':' or '-', starting with a letter or digit, without '..'",
			QuoteShort(name), MaxNameLen)
	}
	return nil
}

// QuoteShort quotes s for a message, cut to its first 64 bytes (on a rune
// boundary) with the full length noted: an error names what was wrong
// without echoing megabytes of it back or into the log.
func QuoteShort(s string) string {
	const max = 64
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}
