package extraspecs

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzMatch runs Match on any input (it must not panic, and must answer
// the same twice) and checks it against simple properties of Cinder's
// grammar, on requirements built from the fuzzed words:
//   - a requirement whose first word is no operator is plain equality;
//   - "s== w", "s!= w", "s< w" ... compare strings;
//   - "<in> w" is a substring test, "<is> w" compares oslo booleans;
//   - "<or> a <or> b" is value == a or value == b;
//   - numeric operators match only when both sides parse as numbers.
func FuzzMatch(f *testing.F) {
	f.Add("True", "<is> True", "True", "x", uint8(0))
	f.Add("async", "<in> sync", "sync", "async", uint8(1))
	f.Add("10", "= 5", "5", "7", uint8(2))
	f.Add("", "", "", "", uint8(3))
	f.Add("a b", "<or>", "a", "b", uint8(4))
	f.Add("NaN", "== NaN", "NaN", "inf", uint8(5))
	f.Fuzz(func(t *testing.T, value, raw, a, b string, sel uint8) {
		got := Match(value, raw)
		if Match(value, raw) != got {
			t.Fatalf("Match(%q, %q) is not deterministic", value, raw)
		}
		if words := strings.Fields(raw); len(words) > 0 {
			if _, isOp := ops[words[0]]; !isOp && words[0] != "<or>" && got != (value == raw) {
				t.Fatalf("Match(%q, %q) = %v; without an operator it is plain equality", value, raw, got)
			}
		} else if got != (value == raw) {
			t.Fatalf("Match(%q, %q) = %v; an empty requirement is plain equality", value, raw, got)
		}

		// Operands are single words, as the grammar splits on spaces.
		wa, wb := firstWord(a), firstWord(b)
		if wa == "" {
			return
		}
		type prop struct {
			req  string
			want bool
		}
		fa, errA := strconv.ParseFloat(strings.TrimSpace(value), 64)
		fb, errB := strconv.ParseFloat(wa, 64)
		numeric := errA == nil && errB == nil
		props := []prop{
			{"s== " + wa, value == wa},
			{"s!= " + wa, value != wa},
			{"s< " + wa, value < wa},
			{"s<= " + wa, value <= wa},
			{"s> " + wa, value > wa},
			{"s>= " + wa, value >= wa},
			{"<in> " + wa, strings.Contains(value, wa)},
			{"<is> " + wa, ParseBool(value) == ParseBool(wa)},
			{"== " + wa, numeric && fa == fb},
			{"!= " + wa, numeric && fa != fb},
			{">= " + wa, numeric && fa >= fb},
			{"<= " + wa, numeric && fa <= fb},
			{"= " + wa, numeric && fa >= fb},
		}
		if wb != "" {
			props = append(props, prop{"<or> " + wa + " <or> " + wb, value == wa || value == wb})
		}
		p := props[int(sel)%len(props)]
		if got := Match(value, p.req); got != p.want {
			t.Fatalf("Match(%q, %q) = %v, want %v", value, p.req, got, p.want)
		}
	})
}

func firstWord(s string) string {
	if w := strings.Fields(s); len(w) > 0 {
		return w[0]
	}
	return ""
}
