package config

import (
	"strings"
	"testing"
)

func TestProtocol(t *testing.T) {
	base := []string{"[DEFAULT]", "enabled_backends = b1", "[b1]", "san_ip = 10.0.0.10", "pure_api_token = tok-primary-0001"}
	for _, tc := range []struct {
		lines   []string
		want    string
		problem string
	}{
		{nil, "", ""},
		{[]string{"volrep_protocol = iscsi"}, ProtocolISCSI, ""},
		{[]string{"volrep_protocol = nbd"}, ProtocolNBD, ""},
		{[]string{"volrep_protocol = iSCSI"}, "", `t.conf:6: volrep_protocol in [b1] must be one of iscsi, nbd; got "iSCSI"; did you mean "iscsi"?`},
		{[]string{"volrep_protocol = fc"}, "", `t.conf:6: volrep_protocol in [b1] must be one of iscsi, nbd; got "fc"`},
		// [backend_defaults] sets it for every backend; a backend overrides it.
		{[]string{"[backend_defaults]", "volrep_protocol = nbd"}, ProtocolNBD, ""},
		{[]string{"volrep_protocol = iscsi", "[backend_defaults]", "volrep_protocol = nbd"}, ProtocolISCSI, ""},
	} {
		t.Run(strings.Join(tc.lines, ";"), func(t *testing.T) {
			cfg := mustParse(t, conf(append(base, tc.lines...)...))
			if got := cfg.Backends[0].Protocol; got != tc.want {
				t.Errorf("Protocol = %q, want %q", got, tc.want)
			}
			if got := strings.Join(problemLines(cfg.Problems), "\n"); got != tc.problem {
				t.Errorf("problems:\n got %s\nwant %s", got, tc.problem)
			}
		})
	}
}
