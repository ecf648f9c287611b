package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/volrep/volrep/internal/testenv"
)

// effectiveConf sets what the example files leave at their defaults:
// [backend_defaults] under a backend, two replication devices, typed Cinder
// options, a mediator, an NBD export and iSCSI portals without ports.
const effectiveConf = `[DEFAULT]
enabled_backends = b1, b2

[volrep]
driver_api_token = tok-driver-0123456789
metrics_listen = 127.0.0.1:9100
log_level = debug

[array:a]
data_dir = /srv/a
listen = 127.0.0.1:7401
stream_port = 7411
api_token = tok-array-a-0123456789
nbd_listen = 127.0.0.1:10809
nbd_idle_timeout = 300
iscsi_listen = 127.0.0.1, 127.0.0.2:3261
pools = cinder, gold
volrep_pod_mediator = etcd://10.0.0.30:2379,10.0.0.31

[backend_defaults]
pure_replica_interval_default = 600
volrep_sync_timeout = 800
max_over_subscription_ratio = 20.5

[b1]
san_ip = 127.0.0.1
pure_api_token = tok-b1-0123456789
replication_device = backend_id:r1,san_ip:127.0.0.2:7402,api_token:tok-r1-0123456789,type:async
replication_device = backend_id:r2,san_ip:127.0.0.3,api_token:tok-r2-0123456789,type:sync
volrep_preferred_array = primary
volrep_pod_mediator = etcd://10.0.0.30:2379
use_multipath_for_image_xfer = Yes
reserved_percentage = 15

[b2]
san_ip = 127.0.0.1:7401
pure_api_token = tok-b2-0123456789
volrep_protocol = nbd
pure_replication_pg_name = gold-pg
`

// -o ini writes what volrepd read so that reading it back gives the same
// configuration, every setting and every default, with the tokens masked.
func TestWriteINIReadsBackTheSame(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string]string{"effective": effectiveConf, "lab": labConf(t)}
	examples, _ := filepath.Glob(filepath.Join(root, "deploy", "examples", "*.conf"))
	examples = append(examples, filepath.Join("testdata", "seed-lab.conf"))
	for _, p := range examples {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		inputs[filepath.Base(p)] = string(data)
	}
	if len(inputs) < 6 {
		t.Fatalf("only %d inputs: the example files moved", len(inputs))
	}
	for name, text := range inputs {
		t.Run(name, func(t *testing.T) {
			cfg, err := Parse(name, []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Problems) > 0 {
				t.Fatalf("the input has problems: %v", cfg.Problems)
			}
			var out bytes.Buffer
			if err := cfg.WriteINI(&out); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out.String(), "tok-") || strings.Contains(out.String(), "REPLACE-WITH") {
				t.Fatalf("a token is in the output:\n%s", out.String())
			}
			back, err := Parse("effective.conf", out.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if len(back.Problems) > 0 {
				t.Fatalf("reading the output back: %v\n%s", back.Problems, out.String())
			}
			want, got := comparable(cfg), comparable(back)
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("read back differently:\nwant %+v\n got %+v\n%s", want, got, out.String())
			}
			var again bytes.Buffer
			if err := back.WriteINI(&again); err != nil || again.String() != out.String() {
				t.Fatalf("writing what was read back gives another file (%v):\n%s\n---\n%s", err, out.String(), again.String())
			}
		})
	}
}

// comparable is c without what -o ini cannot keep: line numbers, the file
// name, and token values (masked, but whether one is set is kept).
func comparable(c *Config) Config {
	mask := func(s Secret) Secret {
		if s != "" {
			return redacted
		}
		return ""
	}
	out := Config{Daemon: c.Daemon}
	out.Daemon.DriverAPIToken = mask(c.Daemon.DriverAPIToken)
	// [volrep] driver_listen is always written: whether the file named it
	// is not kept.
	out.Daemon.DriverListenSet = false
	for _, a := range c.Arrays {
		a.Line, a.APIToken, a.Problems = 0, mask(a.APIToken), nil
		out.Arrays = append(out.Arrays, a)
	}
	for _, b := range c.Backends {
		b.Line, b.APIToken, b.Problems = 0, mask(b.APIToken), nil
		devs := make([]ReplicationDevice, 0, len(b.ReplicationDevices))
		for _, d := range b.ReplicationDevices {
			d.Line, d.APIToken = 0, mask(d.APIToken)
			devs = append(devs, d)
		}
		b.ReplicationDevices = devs
		out.Backends = append(out.Backends, b)
	}
	return out
}

// A value that a cinder.conf-style file cannot carry is refused, not
// written so that it reads back as something else.
func TestWriteINIRefusesALineBreak(t *testing.T) {
	cfg, err := Parse("c.conf", []byte(effectiveConf))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Arrays[0].DataDir = "/srv/a\nb"
	var out bytes.Buffer
	err = cfg.WriteINI(&out)
	if err == nil || !strings.Contains(err.Error(), "data_dir in [array:a]") {
		t.Fatalf("WriteINI = %v, want a refusal naming data_dir in [array:a]\n%s", err, out.String())
	}
}
