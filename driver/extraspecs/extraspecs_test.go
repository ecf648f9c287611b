package extraspecs

import (
	"slices"
	"strings"
	"testing"

	"github.com/volrep/volrep/errdefs"
)

// TestMatchCinderGrammar pins Match to the behaviour of Cinder's
// extra_specs_ops.match, including its surprises.
func TestMatchCinderGrammar(t *testing.T) {
	for _, tc := range []struct {
		value, req string
		want       bool
	}{
		{"True", "<is> True", true},
		{"True", "<is> true", true},
		{"True", "<is> False", false},
		{"False", "<is> False", true},
		{"yes", "<is> True", true},
		{"garbage", "<is> False", true}, // bool_from_string defaults to False
		{"True", "True", true},          // no operator: plain equality
		{"True", "true", false},         // and it is case-sensitive
		{"async", "<in> async", true},
		{"async", "<in> sync", true}, // <in> is a substring test
		{"sync", "<in> async", false},
		{"async,sync", "<in> sync", true},
		{"async", "<in>", false}, // operator without operand
		{"sync", "<or> async <or> sync", true},
		{"sync", "<or> async", false},
		{"10", "= 5", true}, // "=" means at least
		{"4", "= 5", false},
		{"5", "== 5.0", true},
		{"5", "!= 5", false},
		{"abc", "== 5", false}, // not a number: no match, no panic
		{"7", ">= 7", true},
		{"7", "<= 6", false},
		{"abc", "s== abc", true},
		{"abc", "s!= abc", false},
		{"abc", "s< abd", true},
		{"abd", "s<= abc", false},
		{"b", "s> a", true},
		{"a", "s>= b", false},
		{"x", "", false},
		{"", "", true},
		{"v", "<nope> v", false}, // unknown first word: compared as a whole
	} {
		if got := Match(tc.value, tc.req); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.value, tc.req, got, tc.want)
		}
	}
}

func TestReplicationTypes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		specs map[string]string
		want  []string
		err   string // substring of the INVALID_ARGUMENT message
	}{
		{"no specs", nil, nil, ""},
		{"disabled", map[string]string{"replication_enabled": "<is> False", "replication_type": "<in> sync"}, nil, ""},
		{"enabled, no type: async", map[string]string{"replication_enabled": "<is> True"}, []string{"async"}, ""},
		{"bare True enables", map[string]string{"replication_enabled": "True"}, []string{"async"}, ""},
		{"scoped key", map[string]string{"capabilities:replication_enabled": "<is> True"}, []string{"async"}, ""},
		{"async", map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> async"}, []string{"async"}, ""},
		{"sync", map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> sync"}, []string{"sync"}, ""},
		{"s== sync", map[string]string{"replication_enabled": "<is> True", "replication_type": "s== sync"}, []string{"sync"}, ""},
		{"either", map[string]string{"replication_enabled": "<is> True", "replication_type": "<or> sync <or> async"}, []string{"sync", "async"}, ""},
		{"typo is refused", map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> asnyc"}, nil, `"asnyc" is not a replication type`},
		// Cinder's substring <in> would let these through; the exact-token rule does not.
		{"substring refused", map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> ync"}, nil, `"ync" is not a replication type`},
		{"case matters", map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> Async"}, nil, "not a replication type"},
		{"numeric op", map[string]string{"replication_enabled": "<is> True", "replication_type": "== 1"}, nil, "does not apply"},
		{"two values for <in>", map[string]string{"replication_enabled": "<is> True", "replication_type": "<in> async sync"}, nil, "exactly one value"},
		{"empty", map[string]string{"replication_enabled": "<is> True", "replication_type": " "}, nil, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReplicationTypes(tc.specs)
			if tc.err != "" {
				if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want INVALID_ARGUMENT containing %q", err, tc.err)
				}
				if !strings.Contains(err.Error(), "'<in> async'") {
					t.Fatalf("error %q does not list the accepted values", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("ReplicationTypes = %v, want %v", got, tc.want)
			}
		})
	}
}
