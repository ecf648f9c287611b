package config

import "testing"

func TestHostPort(t *testing.T) {
	tests := []struct {
		in, defPort string
		want        string // "" means an error
	}{
		{"10.0.0.10", defaultArrayPort, "10.0.0.10:7401"},
		{"10.0.0.10:8443", defaultArrayPort, "10.0.0.10:8443"},
		{"array-a.example.com", defaultArrayPort, "array-a.example.com:7401"},
		{"fe80::1", defaultArrayPort, "[fe80::1]:7401"},
		{"[fe80::1]", defaultArrayPort, "[fe80::1]:7401"},
		{"[fe80::1]:99", defaultArrayPort, "[fe80::1]:99"},
		// One array, however it is typed.
		{"Array-A.Example.COM.", defaultArrayPort, "array-a.example.com:7401"},
		{"[fe80:0:0::01]", defaultArrayPort, "[fe80::1]:7401"},
		{"::ffff:10.0.0.10", defaultArrayPort, "10.0.0.10:7401"},
		{"10.0.0.300", defaultArrayPort, ""},
		{"10.0.0", defaultArrayPort, ""},
		{"10.0.0.10:", defaultArrayPort, ""},
		{"10.0.0.10:0", defaultArrayPort, ""},
		{"10.0.0.10:65536", defaultArrayPort, ""},
		{"10.0.0.10:+80", defaultArrayPort, ""},
		{":7401", defaultArrayPort, ""},
		{"bad_host", defaultArrayPort, ""},
		{"-bad.example", defaultArrayPort, ""},
		{"10.0.0.10 # primary", defaultArrayPort, ""},
		{"", defaultArrayPort, ""},
		// Listen addresses: port required, host optional, 0 allowed.
		{"127.0.0.1:7400", "", "127.0.0.1:7400"},
		{":7400", "", ":7400"},
		{"localhost:0", "", "localhost:0"},
		{"127.0.0.1", "", ""},
	}
	for _, tt := range tests {
		got, err := hostPort(tt.in, tt.defPort)
		if tt.want == "" {
			if err == nil {
				t.Errorf("hostPort(%q, %q) = %q, want an error", tt.in, tt.defPort, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("hostPort(%q, %q) = %q, %v; want %q", tt.in, tt.defPort, got, err, tt.want)
		}
	}
}
