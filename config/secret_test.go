package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestSecretFormatting(t *testing.T) {
	s := Secret("hunter2-token")
	outputs := []string{
		s.String(), s.GoString(), fmt.Sprint(s), fmt.Sprintln(s),
		fmt.Sprintf("%v %+v %#v %s %q %x %X %d %10s %-10v", s, s, s, s, s, s, s, s, s, s),
	}
	j, _ := json.Marshal(map[string]any{"s": s, "in": struct{ T Secret }{s}})
	outputs = append(outputs, string(j))
	for _, out := range outputs {
		if strings.Contains(out, "hunter2") || !strings.Contains(out, redacted) {
			t.Errorf("output %q shows the secret or no redaction", out)
		}
	}
	if s.Reveal() != "hunter2-token" {
		t.Errorf("Reveal() = %q", s.Reveal())
	}
	if got := fmt.Sprintf("%v|%#v", Secret(""), Secret("")); got != `|config.Secret("")` {
		t.Errorf("an unset secret prints %q, want it visibly empty", got)
	}
}

// tokenRE finds the credentials in a config's raw text: values of token keys
// and api_token items of replication_device lines.
var tokenRE = regexp.MustCompile(`(?m)(?:^\s*(?:pure_api_token|api_token|driver_api_token)\s*[=:]|api_token:)\s*([^,\s]+)`)

// TestTokensNeverShow prints configs every way the daemon might (errors, %v
// dumps, slog in text and JSON) and looks for any token of the file.
func TestTokensNeverShow(t *testing.T) {
	leaky := conf(
		"[DEFAULT]",
		"enabled_backends = b1",
		"[volrep]",
		"driver_api_token = s3cr3t/driver+tok==",
		"log_level = s3cr3t/driver+tok==",
		"[b1]",
		"san_ip = s3cr3t/primary+tok==",
		"pure_api_token = s3cr3t/primary+tok==",
		"pure_api_tokn = s3cr3t-misspelt-key",
		"replication_device = backend_id:r1,san_ip:10.0.0.20,api_token=s3cr3t-with-equals",
		"replication_device = backend_id:r2,san_ip:10.0.0.21,s3cr3t-bare-item",
		"replication_device = backend_id:r3,san_ip:10.0.0.22,api_token:s3cr3t-as-type,type:s3cr3t-as-type",
		"replication_device = backend_id:r4,san_ip:s3cr3t-as-host:1:2,api_token:s3cr3t-as-host:1:2",
		"[array:a]",
		"data_dir = /tmp/a",
		"listen = s3cr3t-array-tok",
		"api_token = s3cr3t-array-tok",
	)
	cases := map[string][]byte{"leaky.conf": leaky}
	for _, name := range []string{"testdata/seed-lab.conf", "testdata/typos.conf"} {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		cases[name] = data
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			var tokens []string
			for _, m := range tokenRE.FindAllStringSubmatch(string(data), -1) {
				tokens = append(tokens, m[1])
			}
			if name == "leaky.conf" {
				// Strings that are tokens though no token key names them.
				tokens = append(tokens, "s3cr3t")
			}
			if len(tokens) == 0 {
				t.Fatal("found no tokens to look for")
			}
			cfg, err := Parse(name, data)
			if err != nil {
				t.Fatal(err)
			}
			if name == "leaky.conf" && len(cfg.Problems) < 6 {
				t.Fatalf("the leaky config should raise problems that could leak, got %v", cfg.Problems)
			}
			var buf bytes.Buffer
			text := slog.New(slog.NewTextHandler(&buf, nil))
			js := slog.New(slog.NewJSONHandler(&buf, nil))
			for _, l := range []*slog.Logger{text, js} {
				l.Info("config", "cfg", cfg, "daemon", cfg.Daemon, "backends", cfg.Backends, "arrays", cfg.Arrays)
				for _, b := range cfg.Backends {
					l.Error("backend down", "backend", b.Section, "token", b.APIToken, "devices", b.ReplicationDevices, "err", b.Problems)
				}
			}
			fmt.Fprintf(&buf, "%v %+v %#v\n", cfg, cfg, cfg)
			fmt.Fprintf(&buf, "%v %+v %#v\n", *cfg, cfg.Daemon, cfg.Arrays)
			fmt.Fprintln(&buf, cfg.Problems.Error())
			for _, b := range cfg.Backends {
				fmt.Fprintln(&buf, b.Problems.Error(), b.ReplicationDevices, b.AsyncTargets(), b.SyncTargets())
			}
			out := buf.String()
			for _, tok := range tokens {
				if strings.Contains(out, tok) {
					i := strings.Index(out, tok)
					t.Errorf("token %q shows in output: ...%s...", tok, out[max(0, i-120):min(len(out), i+40)])
				}
			}
		})
	}
}
