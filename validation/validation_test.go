package validation

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/volrep/volrep/errdefs"
)

func TestHelpers(t *testing.T) {
	cases := []struct {
		name string
		err  error
		// want is "" for success, else a substring of the message after
		// the "field: " prefix.
		want string
	}{
		{"required ok", Required("f", "x"), ""},
		{"required empty", Required("f", ""), "is required"},
		{"required blank", Required("f", "  "), "is required"},
		{"name ok", Name("f", "vol-1.a_b:c"), ""},
		{"name empty", Name("f", ""), "is required"},
		{"name slash", Name("f", "a/b"), "not a valid name"},
		{"name at", Name("f", "a@b"), "not a valid name"},
		{"name long", Name("f", strings.Repeat("a", 129)), "not a valid name"},
		{"optional name empty", OptionalName("f", ""), ""},
		{"optional name bad", OptionalName("f", "-x"), "not a valid name"},
		{"positive", Positive("f", 1), ""},
		{"positive zero", Positive("f", 0), "greater than 0, got 0"},
		{"positive negative", Positive("f", -3), "got -3"},
		{"non-negative zero", NonNegative("f", 0), ""},
		{"non-negative negative", NonNegative("f", -1), "must not be negative"},
		{"range ok", Range("f", 5, 1, 10), ""},
		{"range low", Range("f", 0, 1, 10), "between 1 and 10, got 0"},
		{"range high", Range("f", 11, 1, 10), "between 1 and 10, got 11"},
		{"multiple ok", MultipleOf("f", 12, 4), ""},
		{"multiple bad", MultipleOf("f", 13, 4), "round up to 16"},
		{"multiple overflow", MultipleOf("f", math.MaxInt64, 4), "multiple of 4"},
		{"aligned ok", BlockAligned("f", 8192), ""},
		{"aligned bad", BlockAligned("f", 5000), "multiple of the 4096-byte block size, got 5000; round up to 8192"},
		{"aligned max", BlockAligned("f", math.MaxInt64), "block size"},
		{"size ok", SizeBytes("f", 4096), ""},
		{"size zero", SizeBytes("f", 0), "greater than 0"},
		{"size unaligned", SizeBytes("f", 1), "round up to 4096"},
		{"optional size zero", OptionalSizeBytes("f", 0), ""},
		{"optional size negative", OptionalSizeBytes("f", -4096), "must not be negative"},
		{"optional size unaligned", OptionalSizeBytes("f", 100), "block size"},
		{"gb ok", SizeGB("f", 1), ""},
		{"gb max", SizeGB("f", MaxGB), ""},
		{"gb zero", SizeGB("f", 0), "between 1 and"},
		{"gb overflow", SizeGB("f", MaxGB+1), "between 1 and"},
		{"optional gb zero", OptionalSizeGB("f", 0), ""},
		{"optional gb negative", OptionalSizeGB("f", -1), "between 0 and"},
		{"one of ok", OneOf("f", "sync", "async", "sync"), ""},
		{"one of bad", OneOf("f", "semi", "async", "sync"), `"semi" is not allowed; use one of "async", "sync"`},
		{"max bytes ok", MaxBytes("f", make([]byte, 10), 10), ""},
		{"max bytes over", MaxBytes("f", make([]byte, 11), 10), "11 bytes, more than the limit of 10"},
		{"bytes len ok", BytesLen("f", []byte("ab"), 1, 2), ""},
		{"bytes len empty", BytesLen("f", nil, 1, 2), "is empty"},
		{"bytes len short", BytesLen("f", []byte("a"), 2, 4), "at least 2"},
		{"bytes len long", BytesLen("f", []byte("abc"), 1, 2), "limit of 2"},
		{"io ok", IORange("f", 0, "len", MaxIO, 1, MaxIO), ""},
		{"map ok", MapKeys("f", map[string]string{"k": ""}), ""},
		{"map nil", MapKeys("f", nil), ""},
		{"map empty key", MapKeys("f", map[string]string{"": "v"}), "empty key"},
		{"first nil", First(nil, nil), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == "" {
				if tc.err != nil {
					t.Fatalf("unexpected error: %v", tc.err)
				}
				return
			}
			checkField(t, tc.err, "f", tc.want)
		})
	}
}

func TestIORange(t *testing.T) {
	checkField(t, IORange("offset", -1, "length", 10, 1, 100), "offset", "must not be negative")
	checkField(t, IORange("offset", 0, "length", 0, 1, 100), "length", "between 1 and 100 bytes, got 0")
	checkField(t, IORange("offset", 0, "length", 101, 1, 100), "length", "got 101")
	checkField(t, IORange("offset", math.MaxInt64-5, "length", 10, 1, 100), "offset", "overflows")
	if err := IORange("offset", math.MaxInt64-10, "length", 10, 1, 100); err != nil {
		t.Fatal(err)
	}
}

func TestFirstKeepsOrder(t *testing.T) {
	a, b := Required("a", ""), Required("b", "")
	if err := First(nil, a, b); err != a {
		t.Fatalf("First = %v, want the first error", err)
	}
}

func checkField(t *testing.T, err error, field, want string) {
	t.Helper()
	var e *errdefs.Error
	if !errors.As(err, &e) || e.Kind != errdefs.KindInvalidArgument {
		t.Fatalf("got %v, want an invalid-argument error", err)
	}
	if e.Field != field {
		t.Fatalf("field %q, want %q", e.Field, field)
	}
	if !strings.HasPrefix(e.Error(), field+": ") || !strings.Contains(e.Error(), want) {
		t.Fatalf("message %q, want %q after %q", e.Error(), want, field+": ")
	}
}
