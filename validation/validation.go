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
	"unicode"
	"unicode/utf8"

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

// MaxVolumeBytes is the largest volume (or snapshot, or clone) either API
// creates: 1 PiB. It keeps every byte count and offset far from int64
// overflow, in the engine and in every client that adds to them.
const MaxVolumeBytes = 1 << 50

// MaxGB is MaxVolumeBytes in GiB, the driver API's unit.
const MaxGB = MaxVolumeBytes / GiB

// Durations, in seconds. Anything longer is a typo or an attack: a year
// between replication cycles is already useless, and the bounds keep
// time.Duration (int64 nanoseconds, about 292 years) from overflowing.
const (
	Day             int64 = 24 * 60 * 60
	Year            int64 = 365 * Day
	MaxIntervalSecs       = Year      // a replication interval or an RPO
	MaxRetainSecs         = 10 * Year // how long snapshots are kept
	MaxRetainDays         = 3650      // days of daily snapshots kept (10 years)
	MaxPerDay             = 24 * 60   // daily snapshots kept: one a minute
)

// MaxSyncTimeoutMs bounds a pod's sync timeout (volrep_sync_timeout), in
// milliseconds: how long a write, a reservation change or a reset may
// wait for the peer before the pod carries on without it. Ten minutes is
// far past any host's command timeout.
const MaxSyncTimeoutMs int64 = 10 * 60 * 1000

// Limits on what a request may store. Every stored object stays small, so
// one page of any List reply stays far below the gRPC message limit
// whatever clients send (see package paging for the page's byte budget).
const (
	MaxLabels        = 64  // labels of one volume, snapshot or group
	MaxLabelKeyLen   = 128 // bytes
	MaxLabelValueLen = 255 // bytes; holds a Cinder volume type name
	MaxSpecs         = 128 // extra specs of a volume type, specs of a group type
	MaxSpecKeyLen    = 255 // Cinder's column width for spec keys and values
	MaxSpecValueLen  = 255
	MaxTextLen       = 255 // type names and ids, addresses, initiators
	MaxIDs           = 10000
	MaxTokenLen      = 4096 // a peer array's API token
	// MaxConnectorValueLen bounds a value of os-brick's connector, which
	// is not stored but may join lists (wwpns, for example).
	MaxConnectorValueLen = 4096
	// MaxBandwidth is the highest link bandwidth limit, in bytes per second.
	MaxBandwidth = 1 << 40
)

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

// MaxIDLen bounds the ids the driver API takes (volumes, snapshots,
// groups, group snapshots). The driver derives array names from them, the
// longest "consisgroup-<id>-cinder", which must stay within
// array.MaxNameLen; Cinder's own ids are 36-character UUIDs.
const MaxIDLen = 64

// ID checks a driver API id: a Name of at most MaxIDLen bytes.
func ID(field, value string) error {
	if len(value) > MaxIDLen {
		return errdefs.InvalidArgument(field, "is %d bytes, longer than the limit of %d for an id", len(value), MaxIDLen)
	}
	return array.CheckName(field, value)
}

// OptionalID accepts an empty value and otherwise checks it as ID.
func OptionalID(field, value string) error {
	if value == "" {
		return nil
	}
	return ID(field, value)
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

// SizeBytes requires a volume or snapshot size: greater than 0, a
// multiple of array.BlockSize and at most MaxVolumeBytes.
func SizeBytes(field string, n int64) error {
	return First(Positive(field, n), maxVolume(field, n), BlockAligned(field, n))
}

// OptionalSizeBytes accepts 0 ("keep the source's size") and otherwise
// checks n as SizeBytes.
func OptionalSizeBytes(field string, n int64) error {
	if n == 0 {
		return nil
	}
	return First(NonNegative(field, n), maxVolume(field, n), BlockAligned(field, n))
}

func maxVolume(field string, n int64) error {
	if n > MaxVolumeBytes {
		return errdefs.InvalidArgument(field, "%d bytes is more than the maximum volume size of 1 PiB (%d bytes)", n, int64(MaxVolumeBytes))
	}
	return nil
}

// SizeGB requires a size in GiB between 1 and MaxGB.
func SizeGB(field string, n int64) error {
	return Limit(field, n, 1, MaxGB, "GiB (1 PiB, the maximum volume size)")
}

// OptionalSizeGB accepts 0 ("keep the source's size") and otherwise
// checks n as SizeGB.
func OptionalSizeGB(field string, n int64) error {
	return Limit(field, n, 0, MaxGB, "GiB (1 PiB, the maximum volume size)")
}

// Limit requires lo <= n <= hi, and says in what unit and why hi is the
// limit, e.g. Limit("interval_seconds", n, 1, Year, "seconds (1 year)").
func Limit(field string, n, lo, hi int64, unit string) error {
	if n < lo || n > hi {
		return errdefs.InvalidArgument(field, "must be between %d and %d %s, got %d", lo, hi, unit, n)
	}
	return nil
}

// Interval checks a replication interval or RPO in seconds: 1 second to
// a year, or 0 as well when zero is allowed (meaning "unset" or "keep").
func Interval(field string, n int64, zeroOK bool) error {
	lo := int64(1)
	if zeroOK {
		lo = 0
	}
	return Limit(field, n, lo, MaxIntervalSecs, "seconds (1 year)")
}

// SyncTimeoutMs checks a pod's sync timeout in milliseconds: 0 (the
// default) to ten minutes.
func SyncTimeoutMs(field string, n int64) error {
	return Limit(field, n, 0, MaxSyncTimeoutMs, "milliseconds (10 minutes)")
}

// RetainSeconds checks how long snapshots are kept: 0 to 10 years.
func RetainSeconds(field string, n int64) error {
	return Limit(field, n, 0, MaxRetainSecs, "seconds (10 years)")
}

// RetainDays checks for how many days daily snapshots are kept.
func RetainDays(field string, n int64) error {
	return Limit(field, n, 0, MaxRetainDays, "days (10 years)")
}

// PerDay checks how many snapshots a day are kept.
func PerDay(field string, n int64) error {
	return Limit(field, n, 0, MaxPerDay, "snapshots a day (one a minute)")
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

// Text checks a free-form string that is stored or echoed: at most max
// bytes of UTF-8 without control characters. Empty is fine.
func Text(field, value string, max int) error {
	return text(field, value, max, unicode.IsControl)
}

// value is Text for the values of a map, which may span lines: tabs and
// line breaks pass, other control characters (NUL, ESC for terminal
// escapes) do not.
func value(field, v string, max int) error {
	return text(field, v, max, func(r rune) bool { return unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' })
}

func text(field, value string, max int, refused func(rune) bool) error {
	if len(value) > max {
		return errdefs.InvalidArgument(field, "is %d bytes, longer than the limit of %d; shorten it", len(value), max)
	}
	if !utf8.ValidString(value) {
		return errdefs.InvalidArgument(field, "is not valid UTF-8")
	}
	if i := strings.IndexFunc(value, refused); i >= 0 {
		return errdefs.InvalidArgument(field, "holds a control character at byte %d; remove it", i)
	}
	return nil
}

// Map bounds a string map that is stored: at most maxEntries entries,
// non-blank keys of at most maxKey bytes (Text) and values of at most
// maxValue bytes (Text, but tabs and line breaks pass). The error names the key,
// shortened, so a huge key is not echoed back whole.
func Map(field string, m map[string]string, maxEntries, maxKey, maxValue int) error {
	if len(m) > maxEntries {
		return errdefs.InvalidArgument(field, "has %d entries, more than the limit of %d", len(m), maxEntries)
	}
	for k, val := range m {
		if strings.TrimSpace(k) == "" {
			return errdefs.InvalidArgument(field, "has an empty key; every key must be non-empty")
		}
		if err := Text(field, k, maxKey); err != nil {
			return errdefs.InvalidArgument(field, "key %s: %s", Quote(k), strings.TrimPrefix(err.Error(), field+": "))
		}
		if err := value(field, val, maxValue); err != nil {
			return errdefs.InvalidArgument(field, "value of %s: %s", Quote(k), strings.TrimPrefix(err.Error(), field+": "))
		}
	}
	return nil
}

// Labels bounds the labels of an array object (MaxLabels entries, keys of
// MaxLabelKeyLen and values of MaxLabelValueLen bytes).
func Labels(field string, m map[string]string) error {
	return Map(field, m, MaxLabels, MaxLabelKeyLen, MaxLabelValueLen)
}

// Specs bounds a volume type's extra specs or a group type's specs.
func Specs(field string, m map[string]string) error {
	return Map(field, m, MaxSpecs, MaxSpecKeyLen, MaxSpecValueLen)
}

// ISCSIName checks an iSCSI initiator or target name (iqn., eui., naa.).
func ISCSIName(field, value string) error { return array.CheckISCSIName(field, value) }

// Count bounds the number of entries of a repeated field.
func Count(field string, n, max int) error {
	if n > max {
		return errdefs.InvalidArgument(field, "has %d entries, more than the limit of %d; send them in several calls", n, max)
	}
	return nil
}

// Quote quotes s for an error message, cut to 64 bytes: errors echo what
// was wrong without echoing megabytes of it.
func Quote(s string) string { return array.QuoteShort(s) }
