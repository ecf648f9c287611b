package config

import (
	"fmt"
	"io"
	"log/slog"
)

// Secret is a credential read from the file. Every way fmt, slog or
// encoding/json might print it yields a redaction, so a token cannot leak
// through a log line, an error or a %+v dump of a Config. Reveal is the one way
// to the value, easy to find in review.
type Secret string

const redacted = "****"

// Reveal returns the credential itself.
func (s Secret) Reveal() string { return string(s) }

// String shows whether the secret is set, never what it is.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// Format covers every verb, including %s, %q, %x and %#v, which would
// otherwise print the underlying string.
func (s Secret) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		io.WriteString(f, s.GoString())
	case verb == 'q':
		fmt.Fprintf(f, "%q", s.String())
	default:
		io.WriteString(f, s.String())
	}
}

func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText makes encoding/json (and so slog's JSON handler, which marshals
// structs) print the redaction.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
