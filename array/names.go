package array

import (
	"regexp"

	"github.com/volrep/volrep/errdefs"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// CheckName rejects names that cannot be stored or addressed: empty, too
// long, or holding "@" or "/", which separate volume from snapshot and array
// from volume in references.
func CheckName(field, name string) error {
	if name == "" {
		return errdefs.InvalidArgument(field, "is required")
	}
	if !nameRE.MatchString(name) {
		return errdefs.InvalidArgument(field, "%q is not a valid name; use 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit", name)
	}
	return nil
}
