package array

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/volrep/volrep/errdefs"
)

// MaxHostIQNs bounds the initiator names of one host.
const MaxHostIQNs = 32

// MaxISCSINameLen is the longest iSCSI name (RFC 3720 3.2.6.1).
const MaxISCSINameLen = 223

var (
	// iqnRE is RFC 3720 3.2.6.3.1's "iqn." form: the year and month a
	// naming authority owned its domain, the domain reversed, and an
	// optional ":"-separated string the authority chooses. Names are
	// compared case-insensitively (RFC 3722 folds them to lower case).
	iqnRE = regexp.MustCompile(`^(?i)iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[a-z0-9.:-]*)?$`)
	// euiRE is the "eui." form (3.2.6.3.2) and naaRE the "naa." form of
	// RFC 3980.
	euiRE = regexp.MustCompile(`^(?i)eui\.[0-9a-f]{16}$`)
	naaRE = regexp.MustCompile(`^(?i)naa\.([0-9a-f]{16}|[0-9a-f]{32})$`)
)

// CheckISCSIName rejects what is not an iSCSI initiator or target name.
func CheckISCSIName(field, name string) error {
	if name == "" {
		return errdefs.InvalidArgument(field, "is required")
	}
	if len(name) > MaxISCSINameLen {
		return errdefs.InvalidArgument(field, "is %d bytes, longer than the %d an iSCSI name may have", len(name), MaxISCSINameLen)
	}
	if iqnRE.MatchString(name) || euiRE.MatchString(name) || naaRE.MatchString(name) {
		return nil
	}
	return errdefs.InvalidArgument(field, "%s is not an iSCSI name; use iqn.YYYY-MM.reversed.domain[:anything] "+
		"(letters, digits, '-', '.', ':'; for example iqn.1993-08.org.debian:01:abcdef from /etc/iscsi/initiatorname.iscsi), "+
		"eui. and 16 hex digits, or naa. and 16 or 32 hex digits", QuoteShort(name))
}

// CheckIQN accepts only the "iqn." form, which a target's own name takes.
func CheckIQN(field, name string) error {
	if err := CheckISCSIName(field, name); err != nil {
		return err
	}
	if !iqnRE.MatchString(name) {
		return errdefs.InvalidArgument(field, "%s is not an iqn. name; use iqn.YYYY-MM.reversed.domain[:anything]", QuoteShort(name))
	}
	return nil
}

// ISCSINameKey is the form iSCSI names are compared in.
func ISCSINameKey(name string) string { return strings.ToLower(name) }

// DefaultTargetIQN is the target name of an array that does not set one:
// volrep's naming authority and the array's name, folded to the
// characters an IQN allows.
func DefaultTargetIQN(arrayName string) string {
	return "iqn.2026-12.io.volrep:" + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.', r == ':':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, arrayName)
}

// OUI is the company id in volrep's WWNs. It is not one IEEE assigned:
// 0xDA has the CID form (the low nibble 0xA: the locally administered "X"
// bit set, the multicast "M" bit clear), which no registered OUI has, so
// volrep's LUNs cannot collide with a vendor's.
const OUI = 0xDA7ABE

// SerialLen is the length of a volume serial in bytes (24 hex digits).
const SerialLen = 12

// NAA returns the NAA IEEE Registered Extended designator (NAA 6, SPC-4
// 7.8.6.6.5) of a volume serial: the 4-bit NAA, the 24-bit OUI, 4 zero
// bits and the 96-bit serial, as FlashArray builds its WWNs. serial must
// be 24 hex digits (ValidSerial).
func NAA(serial string) [16]byte {
	var out [16]byte
	s, _ := hex.DecodeString(serial)
	oui := uint32(OUI)
	out[0] = 0x60 | byte(oui>>20)
	out[1] = byte(oui >> 12)
	out[2] = byte(oui >> 4)
	out[3] = byte(oui&0xf) << 4
	copy(out[4:], s)
	return out
}

// WWN is NAA as 32 lower-case hex digits; Linux names the device
// /dev/disk/by-id/wwn-0x<WWN> and multipath "3<WWN>".
func WWN(serial string) string {
	n := NAA(serial)
	return hex.EncodeToString(n[:])
}

// ValidSerial reports whether s is a volume serial: 24 hex digits.
func ValidSerial(s string) bool {
	if len(s) != 2*SerialLen {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// DeriveSerial makes a serial from parts that name something stable, for
// what has no stored serial (a snapshot: its volume's serial and its GUID,
// both kept by every replica).
func DeriveSerial(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return strings.ToUpper(hex.EncodeToString(h.Sum(nil)[:SerialLen]))
}

// CheckCHAPSecret checks an optional CHAP secret: 12 to 255 printable
// ASCII characters without spaces. RFC 7143 (12.1.3) asks for at least 96
// bits; Linux's open-iscsi and libiscsi take at most 255.
func CheckCHAPSecret(field, secret string) error {
	if secret == "" {
		return nil
	}
	if len(secret) < 12 || len(secret) > 255 {
		return errdefs.InvalidArgument(field, "is %d characters; give 12 to 255 (RFC 7143 asks for at least 96 bits)", len(secret))
	}
	for i := 0; i < len(secret); i++ {
		if c := secret[i]; c < 0x21 || c > 0x7e {
			return errdefs.InvalidArgument(field, "has a character that is not printable ASCII at %d; use letters, digits and punctuation without spaces", i)
		}
	}
	return nil
}

// MaxPreferredArrays bounds a host's preferred arrays: a pod spans two
// arrays, so more than a few names can only be a mistake.
const MaxPreferredArrays = 4

// CheckPreferredArrays checks a host's preferred arrays: array names, each
// once. None is valid (no preference).
func CheckPreferredArrays(field string, names []string) error {
	if len(names) > MaxPreferredArrays {
		return errdefs.InvalidArgument(field, "has %d arrays, more than the %d a host may prefer", len(names), MaxPreferredArrays)
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if err := CheckName(field, n); err != nil {
			return err
		}
		if seen[n] {
			return errdefs.InvalidArgument(field, "names array %s twice", QuoteShort(n))
		}
		seen[n] = true
	}
	return nil
}
