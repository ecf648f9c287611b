package config

import "testing"

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"san_ip", "san_ip", 0},
		{"san_iq", "san_ip", 1},
		{"bakend_id", "backend_id", 1},
		{"pure_replica_intreval_default", "pure_replica_interval_default", 1}, // one swap
		{"ab", "ba", 1},
		{"abc", "cab", 2},
		{"kitten", "sitting", 3},
	}
	for _, tt := range tests {
		if got := distance(tt.a, tt.b, 10); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
	if got := distance("a", "abcdef", 2); got != 3 {
		t.Errorf("distance past the limit = %d, want limit+1 = 3", got)
	}
}

func TestSuggestion(t *testing.T) {
	tests := []struct {
		name       string
		candidates []string
		want       string
	}{
		{"pure_replica_intreval_default", backendKeys, `; did you mean "pure_replica_interval_default"?`},
		{"bakend_id", deviceKeys, `; did you mean "backend_id"?`},
		{"san_iq", knownBackendKeys, `; did you mean "san_ip"?`},
		{"SAN_IP", knownBackendKeys, `; did you mean "san_ip"?`},
		{"typ", deviceKeys, `; did you mean "type"?`},
		{"frobnicate", knownBackendKeys, ""},
		{"ip", deviceKeys, ""},
		{"san_ip", knownBackendKeys, ""}, // not a typo of itself
	}
	for _, tt := range tests {
		if got := suggestion(tt.name, tt.candidates); got != tt.want {
			t.Errorf("suggestion(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}
