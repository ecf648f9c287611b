package validation

import (
	"errors"
	"fmt"
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
		{"name long", Name("f", strings.Repeat("a", 129)), "129 bytes, longer than the limit of 128"},
		{"name dotdot", Name("f", "a..b"), "not a valid name"},
		{"id ok", ID("f", "6f1c0b9e-8a57-4c4e-9d4f-0f3e1a2b3c4d"), ""},
		{"id long", ID("f", strings.Repeat("a", MaxIDLen+1)), "65 bytes, longer than the limit of 64 for an id"},
		{"id slash", ID("f", "a/b"), "not a valid name"},
		{"optional id empty", OptionalID("f", ""), ""},
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
		{"map ok", Labels("f", map[string]string{"k": ""}), ""},
		{"map nil", Labels("f", nil), ""},
		{"map empty key", Labels("f", map[string]string{"": "v"}), "empty key"},
		{"labels too many", Labels("f", manyLabels(MaxLabels+1)), "65 entries, more than the limit of 64"},
		{"labels at limit", Labels("f", manyLabels(MaxLabels)), ""},
		{"label key long", Labels("f", map[string]string{strings.Repeat("k", 129): "v"}), "longer than the limit of 128"},
		{"label value long", Labels("f", map[string]string{"k": strings.Repeat("v", 256)}), `value of "k": is 256 bytes, longer than the limit of 255`},
		{"label value escape", Labels("f", map[string]string{"k": "a\x1b[2Jb"}), "control character at byte 1"},
		{"label value lines", Labels("f", map[string]string{"k": "a\n\tb"}), ""},
		{"label key newline", Labels("f", map[string]string{"a\nb": "v"}), "control character at byte 1"},
		{"text newline", Text("f", "a\nb", 10), "control character at byte 1"},
		{"label value utf8", Labels("f", map[string]string{"k": "\xff"}), "not valid UTF-8"},
		{"specs value long", Specs("f", map[string]string{"k": strings.Repeat("v", 256)}), "limit of 255"},
		{"text ok", Text("f", "gold type ✓", 20), ""},
		{"text long", Text("f", strings.Repeat("x", 9<<20), MaxTextLen), "is 9437184 bytes, longer than the limit of 255"},
		{"count", Count("f", MaxIDs+1, MaxIDs), "more than the limit of 10000"},
		{"size max", SizeBytes("f", MaxVolumeBytes), ""},
		{"size over max", SizeBytes("f", MaxVolumeBytes+4096), "maximum volume size of 1 PiB"},
		{"size int64 max", SizeBytes("f", math.MaxInt64), "maximum volume size"},
		{"optional size over max", OptionalSizeBytes("f", MaxVolumeBytes+4096), "maximum volume size"},
		{"gb over max", SizeGB("f", MaxGB+1), "1 PiB, the maximum volume size"},
		{"interval ok", Interval("f", 3600, false), ""},
		{"interval year", Interval("f", Year, false), ""},
		{"interval zero", Interval("f", 0, false), "between 1 and 31536000 seconds (1 year), got 0"},
		{"interval zero ok", Interval("f", 0, true), ""},
		// 18446744079 s is 2^64 ns + 5 s: as a time.Duration it wrapped to 5 s.
		{"interval wraps", Interval("f", 18446744079, false), "between 1 and 31536000 seconds (1 year), got 18446744079"},
		{"interval int64 max", Interval("f", math.MaxInt64, true), "seconds (1 year), got 9223372036854775807"},
		{"retain over", RetainSeconds("f", 10*Year+1), "seconds (10 years)"},
		{"retain days over", RetainDays("f", MaxRetainDays+1), "days (10 years)"},
		{"per day over", PerDay("f", MaxPerDay+1), "one a minute"},
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

func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("key-%d", i)] = "v"
	}
	return m
}

// TestHugeKeyIsNotEchoed: a refused 9 MiB key is named, shortened, in the
// message; echoing it whole would make the error itself too big to send.
func TestHugeKeyIsNotEchoed(t *testing.T) {
	err := Labels("labels", map[string]string{strings.Repeat("k", 9<<20): "v"})
	checkField(t, err, "labels", "(9437184 bytes)")
	if len(err.Error()) > 300 {
		t.Fatalf("message is %d bytes; it must not echo the key", len(err.Error()))
	}
	err = Name("name", strings.Repeat("n", 9<<20))
	checkField(t, err, "name", "longer than the limit of 128")
	if len(err.Error()) > 300 {
		t.Fatalf("message is %d bytes; it must not echo the name", len(err.Error()))
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
