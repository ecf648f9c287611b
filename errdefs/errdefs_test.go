package errdefs

import (
	"errors"
	"testing"
)

// TestKindNamesRoundTrip: a kind written down as text (an operation's
// error code) reads back as the same kind.
func TestKindNamesRoundTrip(t *testing.T) {
	for k := KindUnknown; k <= KindResourceExhausted; k++ {
		if got := ParseKind(k.Name()); got != k {
			t.Errorf("ParseKind(%q) = %v, want %v", k.Name(), got, k)
		}
	}
	for name, want := range map[string]Kind{"UNAVAILABLE": KindUnavailable, "CANCELLED": KindCanceled, "INTERNAL": KindUnknown, "": KindUnknown, "unavailable": KindUnknown} {
		if got := ParseKind(name); got != want {
			t.Errorf("ParseKind(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestNewWrapsWithKind(t *testing.T) {
	inner := errors.New("connection refused")
	err := New(KindUnavailable, "peer site-b: %w", inner)
	if !IsUnavailable(err) || !errors.Is(err, inner) || err.Error() != "peer site-b: connection refused" {
		t.Fatalf("New: %v (kind %v)", err, KindOf(err))
	}
}
