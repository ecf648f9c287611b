// Package validation holds small checks for request fields. Each returns
// nil or an errdefs.InvalidArgument error that names the field and says
// what a valid value looks like, so the client knows what to change.
//
// The Validate methods of the API request messages are built from these
// helpers; package server turns their errors into INVALID_ARGUMENT with a
// google.rpc.BadRequest detail naming the field.
package validation

import (
	"fmt"
	"math"
	"strings"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// Size units.
const (
	KiB int64 = 1 << 10
	MiB int64 = 1 << 20
	GiB int64 = 1 << 30
)

// MaxIO is the most bytes one ReadVolume, ReadSnapshot or WriteVolume call
// moves; bulk I/O goes through NBD.
const MaxIO = 4 * MiB

// MaxGB is the largest size in GiB whose byte count fits in an int64.
const MaxGB = math.MaxInt64 / GiB

// First returns the first non-nil error, so a Validate method can list its
// checks in field order and report the first field at fault.
func First(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Required rejects an empty (or all-blank) value.
func Required(field, value string) error {
	if strings.TrimSpace(value) == "" {
		return errdefs.InvalidArgument(field, "is required")
	}
	return nil
}

// Name checks a required object name: 1-128 letters, digits, '.', '_',
// ':' or '-', starting with a letter or digit (array.CheckName).
func Name(field, value string) error {
	return array.CheckName(field, value)
}

// OptionalName accepts an empty value and otherwise checks it as Name.
func OptionalName(field, value string) error {
	if value == "" {
		return nil
	}
	return array.CheckName(field, value)
}

// Positive requires n > 0.
func Positive(field string, n int64) error {
	if n <= 0 {
		return errdefs.InvalidArgument(field, "must be greater than 0, got %d", n)
	}
	return nil
}

// NonNegative requires n >= 0.
func NonNegative(field string, n int64) error {
	if n < 0 {
		return errdefs.InvalidArgument(field, "must not be negative, got %d", n)
	}
	return nil
}

// Range requires lo <= n <= hi.
func Range(field string, n, lo, hi int64) error {
	if n < lo || n > hi {
		return errdefs.InvalidArgument(field, "must be between %d and %d, got %d", lo, hi, n)
	}
	return nil
}

// MultipleOf requires n to be a multiple of unit (unit > 0), and suggests
// the next multiple up.
func MultipleOf(field string, n, unit int64) error {
	if unit <= 0 || n%unit == 0 {
		return nil
	}
	if n < 0 {
		return errdefs.InvalidArgument(field, "must be a multiple of %d, got %d", unit, n)
	}
	up := n + (unit - n%unit)
	if up < n { // overflow
		return errdefs.InvalidArgument(field, "must be a multiple of %d, got %d", unit, n)
	}
	return errdefs.InvalidArgument(field, "must be a multiple of %d, got %d; round up to %d", unit, n, up)
}

// BlockAligned requires n to be a multiple of array.BlockSize bytes.
func BlockAligned(field string, n int64) error {
	if n%array.BlockSize == 0 {
		return nil
	}
	if n < 0 || n > math.MaxInt64-array.BlockSize {
		return errdefs.InvalidArgument(field, "must be a multiple of the %d-byte block size, got %d", array.BlockSize, n)
	}
	return errdefs.InvalidArgument(field, "must be a multiple of the %d-byte block size, got %d; round up to %d",
		array.BlockSize, n, n+(array.BlockSize-n%array.BlockSize))
}

// SizeBytes requires a volume or snapshot size: greater than 0 and a
// multiple of array.BlockSize.
func SizeBytes(field string, n int64) error {
	return First(Positive(field, n), BlockAligned(field, n))
}

// OptionalSizeBytes accepts 0 ("keep the source's size") and otherwise
// checks n as SizeBytes.
func OptionalSizeBytes(field string, n int64) error {
	if n == 0 {
		return nil
	}
	return First(NonNegative(field, n), BlockAligned(field, n))
}

// SizeGB requires a size in GiB that is greater than 0 and whose byte
// count fits in an int64.
func SizeGB(field string, n int64) error {
	return Range(field, n, 1, MaxGB)
}

// OptionalSizeGB accepts 0 ("keep the source's size") and otherwise
// checks n as SizeGB.
func OptionalSizeGB(field string, n int64) error {
	return Range(field, n, 0, MaxGB)
}

// OneOf requires value to be one of allowed.
func OneOf(field, value string, allowed ...string) error {
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	return errdefs.InvalidArgument(field, "%q is not allowed; use one of %s", value, strings.Join(quoted, ", "))
}

// MaxBytes requires len(b) <= max.
func MaxBytes(field string, b []byte, max int) error {
	if len(b) > max {
		return errdefs.InvalidArgument(field, "is %d bytes, more than the limit of %d; split it into smaller pieces", len(b), max)
	}
	return nil
}

// BytesLen requires lo <= len(b) <= hi.
func BytesLen(field string, b []byte, lo, hi int) error {
	if len(b) < lo {
		if len(b) == 0 {
			return errdefs.InvalidArgument(field, "is empty; send between %d and %d bytes", lo, hi)
		}
		return errdefs.InvalidArgument(field, "is %d bytes; send at least %d", len(b), lo)
	}
	return MaxBytes(field, b, hi)
}

// IORange checks a byte range [offset, offset+length) for a read: offset
// >= 0, lo <= length <= hi, and offset+length not overflowing.
func IORange(offsetField string, offset int64, lengthField string, length, lo, hi int64) error {
	if err := NonNegative(offsetField, offset); err != nil {
		return err
	}
	if length < lo || length > hi {
		return errdefs.InvalidArgument(lengthField, "must be between %d and %d bytes, got %d; split larger reads", lo, hi, length)
	}
	if offset > math.MaxInt64-length {
		return errdefs.InvalidArgument(offsetField, "%d plus length %d overflows", offset, length)
	}
	return nil
}

// MapKeys requires every key of m to be non-blank. Use it for labels,
// extra specs and metadata.
func MapKeys(field string, m map[string]string) error {
	for k := range m {
		if strings.TrimSpace(k) == "" {
			return errdefs.InvalidArgument(field, "has an empty key; every key must be non-empty")
		}
	}
	return nil
}
