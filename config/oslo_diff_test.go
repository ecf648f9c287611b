package config

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/internal/testenv"
)

// The differential test: variants of the lab's cinder.conf, read by
// Debian's python3-oslo.config with the options registered as cinder-volume
// registers them (testdata/oslo_read.py) and by this package, must give the
// same values; what oslo.config refuses must be a problem here, on the same
// line (a file oslo.config cannot parse) or for the same option (a value it
// cannot convert, which Cinder fails on when it reads it).

// outcome is what a variant is written to show.
type outcome int

const (
	same     outcome = iota // both read it to the same values; volrep finds nothing wrong
	warned                  // the same values, and volrep reports something Cinder lets pass
	stricter                // oslo.config reads it; volrep refuses a value, so values may differ
	refused                 // oslo.config cannot parse the file: a problem on its line
	badValue                // oslo.config refuses an option's value: a problem for that option
)

func (o outcome) String() string {
	return [...]string{"same", "warned", "stricter", "refused", "bad value"}[o]
}

type variant struct {
	name string
	text string
	want outcome
}

// labVars fill in the lab's template. The tokens hold '-' and digits as the
// lab's do; variants add '$'.
var labVars = map[string]string{
	"HOSTNAME_CINDER": "lab", "BACKEND": "puredriver-1", "LAB": "/srv/lab",
	"RABBIT_PORT": "5672", "API_PORT": "8776", "GLANCE_PORT": "9292", "DRIVER_PORT": "7400",
	"PURE1_PORT": "7401", "PURE2_PORT": "7402", "NBD1_PORT": "10809", "NBD2_PORT": "10810",
	"DRIVER_TOKEN": "lab-driver-1234512345", "PURE1_TOKEN": "lab-pure1-2345623456", "PURE2_TOKEN": "lab-pure2-3456734567",
}

// labConf is the cinder.conf that deploy/lab/lab.sh writes, from the
// script's own here-document, so the test follows the lab.
func labConf(t *testing.T) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join(root, "deploy", "lab", "lab.sh"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(script), "cat >\"$CONF\" <<EOF\n")
	body, _, ok2 := strings.Cut(rest, "\nEOF\n")
	if !ok || !ok2 {
		t.Fatal("deploy/lab/lab.sh: no cat >\"$CONF\" <<EOF here-document; the test reads the lab's cinder.conf from it")
	}
	var missing []string
	text := regexp.MustCompile(`\$\{?([A-Z_0-9]+)\}?`).ReplaceAllStringFunc(body, func(m string) string {
		name := strings.Trim(m, "${}")
		v, ok := labVars[name]
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		t.Fatalf("lab.sh's cinder.conf uses %v; give them values in labVars", missing)
	}
	return text + "\n"
}

// lines helpers: the variants edit the lab file line by line.
type confLines []string

func parseConf(s string) confLines { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

func (c confLines) text(eol string) string { return strings.Join(c, eol) + eol }

// index is the line that starts with prefix; the variants are written
// against the lab file, and a change there must fail loudly here.
func (c confLines) index(prefix string) int {
	for i, l := range c {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	panic(fmt.Sprintf("the lab's cinder.conf has no line starting with %q", prefix))
}

func (c confLines) set(prefix string, lines ...string) confLines {
	i := c.index(prefix)
	return slices.Concat(c[:i], lines, c[i+1:])
}

func (c confLines) insertAfter(prefix string, lines ...string) confLines {
	i := c.index(prefix) + 1
	return slices.Concat(c[:i], lines, c[i:])
}

func (c confLines) replaceAll(old, new string) confLines {
	out := slices.Clone(c)
	for i := range out {
		out[i] = strings.ReplaceAll(out[i], old, new)
	}
	return out
}

const (
	asyncDev = "replication_device = backend_id:pure2-async,san_ip:127.0.0.1:7402,api_token:lab-pure2-3456734567,type:async"
	syncDev  = "replication_device = backend_id:pure2-sync,"
)

// variants generates the test's files: a product of independent styles
// that both parsers must read alike, then a table of single changes.
func variants(base string) []variant {
	lab := parseConf(base)
	var out []variant

	// The product: separator style x line ends x quoting x how the
	// replication_devices are laid out.
	seps := []string{" = ", "=", ": ", "\t=\t", " :"}
	eols := map[string]string{"LF": "\n", "CRLF": "\r\n", "CR": "\r"}
	quotes := []string{"", `"`, `'`}
	quoted := []string{"san_ip", "pure_api_token", "volume_backend_name", "data_dir", "listen", "api_token", "driver_api_token", "pure_replica_interval_default"}
	layouts := map[string]func(confLines) confLines{
		"one line": func(c confLines) confLines { return c },
		"continued": func(c confLines) confLines {
			return c.set("replication_device = backend_id:pure2-async",
				"replication_device = backend_id:pure2-async,",
				"    san_ip:127.0.0.1:7402,",
				"\tapi_token:lab-pure2-3456734567,",
				"    type:async")
		},
		"spaced and reordered": func(c confLines) confLines {
			return c.set("replication_device = backend_id:pure2-async",
				"replication_device =  type : async ,  api_token:lab-pure2-3456734567 , backend_id : pure2-async,san_ip: 127.0.0.1:7402  ")
		},
	}
	for _, sep := range seps {
		for _, eolName := range []string{"LF", "CRLF", "CR"} {
			for _, q := range quotes {
				for _, layoutName := range []string{"one line", "continued", "spaced and reordered"} {
					c := layouts[layoutName](slices.Clone(lab))
					for i, l := range c {
						k, v, ok := strings.Cut(l, " = ")
						if !ok || strings.HasPrefix(l, "#") || strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
							continue
						}
						if q != "" && slices.Contains(quoted, k) {
							v = q + v + q
						}
						c[i] = k + sep + v
					}
					out = append(out, variant{
						name: fmt.Sprintf("separator %q, %s, quotes %q, replication_device %s", sep, eolName, q, layoutName),
						text: c.text(eols[eolName]),
					})
				}
			}
		}
	}

	table := []struct {
		name string
		c    confLines
		want outcome
	}{
		{"the lab file as written", lab, same},
		{"comments and blank lines everywhere", lab.insertAfter("[puredriver-1]", "# the backend", "; also a comment", "", "   \t").
			insertAfter("san_ip =", "#san_ip = 10.0.0.1").set("use_multipath_for_image_xfer", "use_multipath_for_image_xfer = True   "), same},
		{"a '#' inside a value is not a comment", lab.set("volume_backend_name", "volume_backend_name = puredriver-1 # the name"), same},
		{"section name in capitals", lab.set("[puredriver-1]", "[PUREDRIVER-1]"), same},
		{"enabled_backends in capitals", lab.set("enabled_backends", "enabled_backends = PureDriver-1"), same},
		{"enabled_backends with a trailing comma and spaces", lab.set("enabled_backends", "enabled_backends =  puredriver-1 , "), same},
		{"enabled_backends on a continuation line", lab.set("enabled_backends", "enabled_backends =", "    puredriver-1"), same},
		{"the backend section split in two", lab.set("pure_replica_interval_default", "[oslo_concurrency]", "[puredriver-1]", "pure_replica_interval_default = 3600"), same},
		{"the backend section repeated in other capitals", append(slices.Clone(lab), "[PureDriver-1]", "volrep_pool = gold"), same},
		{"an array section in capitals", lab.set("[array:pure2]", "[ARRAY:pure2]"), same},
		{"integers as Python reads them", lab.set("pure_replica_interval_default", "pure_replica_interval_default = +3_600").
			set("pure_replica_retention_short_term_default", "pure_replica_retention_short_term_default = 0086400").
			set("pure_replica_retention_long_term_default", "pure_replica_retention_long_term_default =  7 "), same},
		{"an empty integer is Cinder's default", lab.set("pure_replica_interval_default", "pure_replica_interval_default ="), same},
		{"an empty integer falls back to [backend_defaults]", append(lab.set("pure_replica_interval_default", "pure_replica_interval_default ="),
			"[backend_defaults]", "pure_replica_interval_default = 600"), same},
		{"[backend_defaults] fills in, the backend overrides", append(lab.set("pure_replica_retention_long_term_default"),
			"[backend_defaults]", "pure_replica_retention_long_term_default = 9", "pure_replica_retention_short_term_default = 60",
			"replication_device = backend_id:other,san_ip:10.1.1.1,api_token:tok-other-0001"), same},
		{"max_over_subscription_ratio auto", lab.insertAfter("use_multipath", "max_over_subscription_ratio = auto"), same},
		{"max_over_subscription_ratio 2.5", lab.insertAfter("use_multipath", "max_over_subscription_ratio = 2.5", "reserved_percentage = 010"), same},
		{"volrep's own keys", lab.insertAfter("use_multipath", "volrep_sync_timeout = 250", "volrep_pool = gold", "volrep_preferred_array = primary", "volrep_failover_wait = 60"), same},
		{"'$$' and '\\$' are a literal '$'", lab.replaceAll("lab-pure2-3456734567", "lab$$pure2-34567").replaceAll("lab-pure1-2345623456", `lab\$pure1`), same},
		{"a value in quotes holding quotes", lab.set("volume_backend_name", `volume_backend_name = "lab "one" backend"`), same},
		{"backticks are characters", lab.set("volume_backend_name", "volume_backend_name = `lab`"), same},
		{"a key: value line whose value holds '='", lab.set("volume_backend_name", "volume_backend_name: a=b"), same},
		{"replication_device values with spaces inside", lab.set("replication_device = backend_id:pure2-async",
			"replication_device = backend_id:pure2 async,san_ip:127.0.0.1:7402,api_token:lab-pure2-3456734567"), same},
		{"booleans: TRUE", lab.set("use_multipath", "use_multipath_for_image_xfer = TRUE"), same},
		{"booleans: yes", lab.set("use_multipath", "use_multipath_for_image_xfer = yes"), same},
		{"booleans: On", lab.set("use_multipath", "use_multipath_for_image_xfer = On"), same},
		{"booleans: 0", lab.set("use_multipath", "use_multipath_for_image_xfer = 0"), same},
		{"booleans: quoted No", lab.set("use_multipath", `use_multipath_for_image_xfer = "No"`), same},
		{"typed Cinder options", lab.insertAfter("use_multipath", "target_port = 3260", "volrep_timeout = 30", "volume_clear = none",
			"image_volume_cache_max_count = 5", "pure_host_personality = esxi"), same},

		// oslo.config cannot parse these: cinder-volume does not start.
		{"an indented key after a header", lab.set("volume_backend_name", "  volume_backend_name = puredriver-1"), refused},
		{"a comment after a section header", lab.set("[puredriver-1]", "[puredriver-1] # the backend"), refused},
		{"a line with no separator", lab.insertAfter("use_multipath", "use_multipath_for_image_xfer"), refused},
		{"an empty key", lab.insertAfter("use_multipath", "= True"), refused},
		{"an empty key before ':'", lab.insertAfter("use_multipath", ": True"), refused},
		{"an unterminated section header", lab.set("[puredriver-1]", "[puredriver-1"), refused},
		{"an empty section name", lab.insertAfter("use_multipath", "[]"), refused},
		{"an indented line after a blank line", lab.insertAfter("use_multipath", "", "    type:async"), refused},
		{"an indented line after a comment", lab.insertAfter("use_multipath", "# the next line is indented", "    pure_replica_interval_default = 60"), refused},
		{"an indented comment after a section header", lab.insertAfter("[puredriver-1]", "  # about the backend"), refused},
		{"a key before any section", lab.set("[DEFAULT]"), refused},
		{"a byte-order mark", append(confLines{"\ufeff# BOM"}, lab...), refused},
		{"invalid UTF-8 in a comment", lab.insertAfter("use_multipath", "# caf\xe9"), refused},

		// oslo.config parses these but refuses a value: Cinder fails
		// where it reads it.
		{"replication_device with a trailing comma", lab.set("replication_device = backend_id:pure2-async", asyncDev+","), badValue},
		{"replication_device with a repeated key", lab.set("replication_device = backend_id:pure2-async", asyncDev+",type:sync"), badValue},
		{"replication_device with an empty key", lab.set("replication_device = backend_id:pure2-async", asyncDev+",:x"), badValue},
		{"replication_device ending in an item without ':'", lab.set("replication_device = backend_id:pure2-async", asyncDev+",sync"), badValue},
		{"a boolean that is not one", lab.set("use_multipath", "use_multipath_for_image_xfer = maybe"), badValue},
		{"an empty boolean", lab.set("use_multipath", "use_multipath_for_image_xfer ="), badValue},
		{"an integer that is not one", lab.set("pure_replica_interval_default", "pure_replica_interval_default = 1h"), badValue},
		{"an integer over Cinder's maximum", lab.insertAfter("use_multipath", "reserved_percentage = 101"), badValue},
		{"volrep_failover_wait over its maximum", lab.insertAfter("use_multipath", "volrep_failover_wait = 4000"), badValue},
		{"max_over_subscription_ratio in exponent form", lab.insertAfter("use_multipath", "max_over_subscription_ratio = 1e3"), badValue},
		{"a port out of range", lab.insertAfter("use_multipath", "target_port = 70000"), badValue},
		{"a choice not offered", lab.insertAfter("use_multipath", "volume_clear = shred"), badValue},
		{"a $reference to no option", lab.set("volume_backend_name", "volume_backend_name = pure$nothing"), badValue},
		{"a ${reference} to no option", lab.set("pure_api_token", "pure_api_token = lab-${pure1}"), badValue},

		// oslo.config reads these, and volrep reports them: Cinder would
		// run with a value nobody meant, or one volrep cannot serve.
		{"a repeated key: the last wins", lab.insertAfter("[puredriver-1]", "san_ip = 10.9.9.9:1"), warned},
		{"[default] is not [DEFAULT]", lab.insertAfter("transport_url", "[default]", "enabled_backends = other"), warned},
		{"a name continued on an indented line", lab.set("volume_backend_name", "volume_backend_name = pure", "    driver one"), warned},
		{"an accidentally indented key continues the value above", lab.set("pure_api_token", "  pure_api_token = lab-pure1-2345623456"), stricter},
		{"an indented comment inside a continued replication_device", lab.set("replication_device = backend_id:pure2-async",
			"replication_device = backend_id:pure2-async,", "  # the target", "  san_ip:127.0.0.1:7402,api_token:lab-pure2-3456734567"), warned},
		{"two commas in replication_device", lab.set("replication_device = backend_id:pure2-async",
			"replication_device = backend_id:pure2-async,,san_ip:127.0.0.1:7402,api_token:lab-pure2-3456734567"), warned},
		{"an item without ':' in replication_device", lab.set("replication_device = backend_id:pure2-async",
			"replication_device = backend_id:pure2-async,async,san_ip:127.0.0.1:7402,api_token:lab-pure2-3456734567"), warned},
		{"a $reference to an option", lab.set("volume_backend_name", "volume_backend_name = $volume_driver"), stricter},
		{"spaces inside a section header", lab.set("[puredriver-1]", "[ puredriver-1 ]"), warned},
		{"an empty name in enabled_backends", lab.set("enabled_backends", "enabled_backends = puredriver-1,,other"), badValue},
		{"max_over_subscription_ratio under 1", lab.insertAfter("use_multipath", "max_over_subscription_ratio = .5"), stricter},
	}
	for _, v := range table {
		out = append(out, variant{name: v.name, text: v.c.text("\n"), want: v.want})
	}
	// What `volrepd --check-config -o ini` writes of the lab's file, every
	// default spelled out and the tokens masked, reads the same in both.
	effective := "WriteINI: " // the file when WriteINI fails, so the variant fails
	if cfg, err := Parse("lab.conf", []byte(base)); err != nil {
		effective += err.Error()
	} else {
		var b bytes.Buffer
		if err := cfg.WriteINI(&b); err != nil {
			effective += err.Error()
		} else {
			effective = b.String()
		}
	}
	return append(out, variant{name: "as volrepd --check-config -o ini writes it", text: effective, want: same})
}

// osloResult is one line of oslo_read.py's output.
type osloResult struct {
	File       string `json:"file"`
	ParseError *struct {
		Line    int    `json:"line"`
		Message string `json:"message"`
	} `json:"parse_error"`
	EnabledBackends []string      `json:"enabled_backends"`
	Backends        []osloSection `json:"backends"`
	Arrays          []osloSection `json:"arrays"`
	Volrep          osloSection   `json:"volrep"`
}

type osloSection struct {
	Name   string         `json:"name"`
	Values map[string]any `json:"values"`
	Errors []struct {
		Option  string `json:"option"`
		Message string `json:"message"`
	} `json:"errors"`
}

type osloMeta struct {
	Kind    string   `json:"kind"`
	Min     *float64 `json:"min"`
	Max     *float64 `json:"max"`
	Choices []string `json:"choices"`
}

// osloPython is Debian's python3 when it can import oslo.config, Cinder and
// the Pure driver; a pyenv python3 earlier on PATH cannot.
func osloPython(t *testing.T) string {
	t.Helper()
	testenv.Tool(t, "python3")
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import oslo_config, cinder.objects; cinder.objects.register_all(); import cinder.volume.drivers.pure").Run(); err != nil {
		testenv.Skip(t, "%s cannot import oslo_config and cinder.volume.drivers.pure (%v); `make deps` installs python3-oslo.config and python3-cinder", py, err)
	}
	return py
}

func TestOsloDifferential(t *testing.T) {
	py := osloPython(t)
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	vs := variants(labConf(t))
	dir := t.TempDir()
	paths := make([]string, len(vs))
	for i, v := range vs {
		paths[i] = filepath.Join(dir, fmt.Sprintf("%03d.conf", i))
		if err := os.WriteFile(paths[i], []byte(v.text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	abs, err := filepath.Abs("testdata/oslo_read.py")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, py, append([]string{abs}, paths...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(root, "deploy", "cinder"), "PYTHONDONTWRITEBYTECODE=1",
		"PYTHONWARNINGS=ignore", "LC_ALL=C.UTF-8")
	in, _ := json.Marshal(ignoredBackendKeys)
	cmd.Stdin = bytes.NewReader(append(in, '\n'))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	outText, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s testdata/oslo_read.py: %v\n%s", py, err, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(outText))
	sc.Buffer(nil, 1<<24)
	if !sc.Scan() {
		t.Fatalf("oslo_read.py printed nothing\n%s", stderr.String())
	}
	var meta struct {
		Meta map[string]*osloMeta `json:"meta"`
	}
	if err := json.Unmarshal(sc.Bytes(), &meta); err != nil {
		t.Fatal(err)
	}
	checkCinderOptTypes(t, meta.Meta)

	counts := map[outcome]int{}
	for i, v := range vs {
		if !sc.Scan() {
			t.Fatalf("oslo_read.py stopped after %d of %d files\n%s", i, len(vs), stderr.String())
		}
		var res osloResult
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			t.Fatal(err)
		}
		cfg, err := Parse(paths[i], []byte(v.text))
		if err != nil {
			t.Fatal(err)
		}
		t.Run(fmt.Sprintf("%03d %s", i, v.name), func(t *testing.T) {
			got := compareOslo(t, cfg, res)
			if got != v.want {
				t.Errorf("outcome %s, the variant was written for %s\n%s", got, v.want, v.text)
			}
			counts[got]++
		})
	}
	t.Logf("compared %d variants of the lab's cinder.conf with oslo.config %v", len(vs), counts)
}

// compareOslo holds cfg to oslo.config's reading and says which outcome
// the file has.
func compareOslo(t *testing.T, cfg *Config, res osloResult) outcome {
	t.Helper()
	if res.ParseError != nil {
		line := res.ParseError.Line
		if !slices.ContainsFunc(cfg.Problems, func(p Problem) bool {
			return p.Line == line || strings.Contains(p.Message, fmt.Sprintf("at line %d)", line))
		}) {
			t.Errorf("oslo.config refuses line %d (%s); volrep reports %v", line, res.ParseError.Message, cfg.Problems)
		}
		return refused
	}
	var valueErrors int
	for _, sec := range append(append(slices.Clone(res.Backends), res.Arrays...), res.Volrep) {
		for _, e := range sec.Errors {
			valueErrors++
			if !slices.ContainsFunc(cfg.Problems, func(p Problem) bool {
				if sec.Name == "" {
					// A backend with no name: oslo.config reads its options
					// from [DEFAULT], which has none of them.
					return p.Key == "enabled_backends"
				}
				return p.Key == e.Option && (p.Section == normSection(sec.Name) || p.Section == backendDefaultsSection)
			}) {
				t.Errorf("oslo.config refuses %s in [%s] (%s); volrep reports %v", e.Option, sec.Name, e.Message, cfg.Problems)
			}
		}
	}
	if valueErrors > 0 {
		return badValue
	}
	diffs := diffOslo(cfg, res)
	switch {
	case len(cfg.Problems) == 0 && len(diffs) == 0:
		return same
	case len(cfg.Problems) == 0:
		t.Errorf("volrep reads differently from oslo.config and reports nothing:\n%s", strings.Join(diffs, "\n"))
		return same
	case len(diffs) == 0:
		t.Logf("oslo.config reads the same; volrep also reports %v", cfg.Problems)
		return warned
	default:
		t.Logf("volrep refuses what oslo.config reads: %v; differences: %v", cfg.Problems, diffs)
		return stricter
	}
}

// diffOslo lists every value that volrep reads differently from oslo.config.
// volrep's normalisations are applied to oslo.config's values first: the
// array port added to addresses, numbers of seconds as durations, an unset
// option as its default.
func diffOslo(cfg *Config, res osloResult) []string {
	var diffs []string
	check := func(where, key string, py any, got any) {
		if fmt.Sprint(py) != fmt.Sprint(got) {
			diffs = append(diffs, fmt.Sprintf("%s %s: oslo.config %q, volrep %q", where, key, fmt.Sprint(py), fmt.Sprint(got)))
		}
	}
	var names []string
	for _, b := range cfg.Backends {
		names = append(names, b.Section)
	}
	check("[DEFAULT]", "enabled_backends", slices.DeleteFunc(slices.Clone(res.EnabledBackends), func(s string) bool { return s == "" }), names)
	for i, pb := range res.Backends {
		if i >= len(cfg.Backends) {
			break
		}
		b, vals := cfg.Backends[i], pb.Values
		w := "[" + pb.Name + "]"
		check(w, "volume_backend_name", orStr(vals["volume_backend_name"], b.Section), b.VolumeBackendName)
		if d := vals["volume_driver"]; d != "cinder.volume.drivers.lvm.LVMVolumeDriver" || b.VolumeDriver != "" {
			check(w, "volume_driver", d, b.VolumeDriver)
		}
		check(w, "san_ip", addr(vals["san_ip"], defaultArrayPort), b.SanIP)
		check(w, "pure_api_token", orStr(vals["pure_api_token"], ""), b.APIToken.Reveal())
		devs, _ := vals["replication_device"].([]any)
		var pyDevs, goDevs []string
		for _, d := range devs {
			m, _ := d.(map[string]any)
			pyDevs = append(pyDevs, fmt.Sprintf("%v/%v/%v/%v", orStr(m["backend_id"], ""), addr(m["san_ip"], defaultArrayPort),
				orStr(m["api_token"], ""), orStr(m["type"], typeAsync)))
		}
		for _, d := range b.ReplicationDevices {
			goDevs = append(goDevs, fmt.Sprintf("%v/%v/%v/%v", d.BackendID, d.SanIP, d.APIToken.Reveal(), d.Type))
		}
		check(w, "replication_device", pyDevs, goDevs)
		check(w, "pure_replica_interval_default", orNum(vals["pure_replica_interval_default"], 3600), int64(b.ReplicaInterval/time.Second))
		check(w, "pure_replica_retention_short_term_default", orNum(vals["pure_replica_retention_short_term_default"], 14400), int64(b.RetentionShortTerm/time.Second))
		check(w, "pure_replica_retention_long_term_per_day_default", orNum(vals["pure_replica_retention_long_term_per_day_default"], 3), b.RetentionPerDay)
		check(w, "pure_replica_retention_long_term_default", orNum(vals["pure_replica_retention_long_term_default"], 7), b.RetentionDays)
		check(w, "pure_replication_pg_name", orStr(vals["pure_replication_pg_name"], "cinder-group"), b.PGName)
		check(w, "pure_replication_pod_name", orStr(vals["pure_replication_pod_name"], "cinder-pod"), b.PodName)
		check(w, "volrep_pool", orStr(vals["volrep_pool"], "cinder"), b.Pool)
		check(w, "volrep_preferred_array", orStr(vals["volrep_preferred_array"], "primary"), b.PreferredArray)
		check(w, "volrep_sync_timeout", orNum(vals["volrep_sync_timeout"], 5000), int64(b.SyncTimeout/time.Millisecond))
		check(w, "volrep_failover_wait", orNum(vals["volrep_failover_wait"], 30), int64(b.FailoverWait/time.Second))
		check(w, "reserved_percentage", orNum(vals["reserved_percentage"], 0), b.ReservedPercentage)
		ratio := fmt.Sprint(vals["max_over_subscription_ratio"])
		if ratio == "auto" {
			ratio = "0"
		} else if f, err := strconv.ParseFloat(ratio, 64); err == nil {
			ratio = fmt.Sprint(f)
		}
		check(w, "max_over_subscription_ratio", ratio, b.MaxOverSubscriptionRatio)
		for key := range cinderOpts {
			got, set := b.CinderOptions[key]
			if !set {
				continue // Cinder's default, which volrep does not keep
			}
			py := vals[key]
			if f, ok := py.(float64); ok {
				py = strconv.FormatFloat(f, 'f', -1, 64)
			}
			check(w, key, py, got)
		}
	}
	if len(res.Backends) != len(cfg.Backends) {
		diffs = append(diffs, fmt.Sprintf("oslo.config has %d backends, volrep %d", len(res.Backends), len(cfg.Backends)))
	}

	dv, d := res.Volrep.Values, cfg.Daemon
	check("[volrep]", "driver_listen", addr(orStr(dv["driver_listen"], "127.0.0.1:7400"), ""), d.DriverListen)
	check("[volrep]", "driver_api_token", orStr(dv["driver_api_token"], ""), d.DriverAPIToken.Reveal())
	check("[volrep]", "metrics_listen", addr(dv["metrics_listen"], ""), d.MetricsListen)
	check("[volrep]", "log_format", orStr(dv["log_format"], "auto"), d.LogFormat)
	check("[volrep]", "log_level", orStr(dv["log_level"], "info"), d.LogLevel)
	check("[volrep]", "state_dir", orStr(dv["state_dir"], "/var/lib/volrep/driver"), d.StateDir)

	if len(res.Arrays) != len(cfg.Arrays) {
		diffs = append(diffs, fmt.Sprintf("oslo.config has %d array sections, volrep %d", len(res.Arrays), len(cfg.Arrays)))
		return diffs
	}
	for _, pa := range res.Arrays {
		// list_all_sections is not in file order.
		i := slices.IndexFunc(cfg.Arrays, func(a Array) bool { return arrayPrefix+strings.ToLower(a.Name) == pa.Name })
		if i < 0 {
			diffs = append(diffs, fmt.Sprintf("oslo.config has [%s], volrep does not", pa.Name))
			continue
		}
		a, av := cfg.Arrays[i], pa.Values
		w := "[" + pa.Name + "]"
		check(w, "data_dir", orStr(av["data_dir"], ""), a.DataDir)
		check(w, "listen", addr(av["listen"], ""), a.Listen)
		check(w, "api_token", orStr(av["api_token"], ""), a.APIToken.Reveal())
		check(w, "nbd_listen", addr(av["nbd_listen"], ""), a.NBDListen)
		check(w, "nbd_max_connections", orNum(av["nbd_max_connections"], 1024), a.NBDMaxConnections)
		check(w, "nbd_idle_timeout", orNum(av["nbd_idle_timeout"], 0), int64(a.NBDIdleTimeout/time.Second))
		pools := []string{"cinder"}
		if s, ok := av["pools"].(string); ok {
			pools = nil
			for _, p := range osloList(s) {
				if p != "" && !slices.Contains(pools, p) {
					pools = append(pools, p)
				}
			}
		}
		check(w, "pools", pools, a.Pools)
	}
	return diffs
}

func orStr(v any, def string) string {
	if s, ok := v.(string); ok {
		return s
	}
	return def
}

func orNum(v any, def int64) int64 {
	if f, ok := v.(float64); ok {
		return int64(f)
	}
	return def
}

// addr is volrep's reading of an address that oslo.config read as text.
func addr(v any, defPort string) string {
	s, ok := v.(string)
	if !ok || s == "" {
		return ""
	}
	a, err := hostPort(s, defPort)
	if err != nil {
		return "invalid: " + s
	}
	return a
}

// checkCinderOptTypes holds cinderOpts to the options as Cinder registers
// them: every typed option volrep ignores is checked, with Cinder's bounds
// and choices.
func checkCinderOptTypes(t *testing.T, meta map[string]*osloMeta) {
	t.Helper()
	kinds := map[string]string{"BoolOpt": "bool", "IntOpt": "int", "PortOpt": "int", "FloatOpt": "float"}
	bound := func(p *float64, inf float64) float64 {
		if p == nil {
			return inf
		}
		return *p
	}
	for _, key := range ignoredBackendKeys {
		m := meta[key]
		if m == nil {
			// volrep's own (volrep_address ...) and Cinder's are all registered.
			t.Errorf("%s is not registered by Cinder, the Pure driver or volrep's driver", key)
			continue
		}
		kind := kinds[m.Kind]
		if kind == "" && len(m.Choices) > 0 {
			kind = "choice"
		}
		got, ok := cinderOpts[key]
		switch {
		case kind == "" && ok:
			t.Errorf("cinderOpts checks %s as %s, but Cinder registers it as %s without choices", key, got.kind, m.Kind)
		case kind == "":
		case !ok:
			t.Errorf("Cinder registers %s as %s; add it to cinderOpts", key, m.Kind)
		case got.kind != kind || !slices.Equal(got.choices, m.Choices) ||
			(kind == "int" || kind == "float") && (got.min != bound(m.Min, math.Inf(-1)) || got.max != bound(m.Max, math.Inf(1))):
			t.Errorf("cinderOpts[%s] = %+v; Cinder registers %s min %v max %v choices %v", key, got, m.Kind, bound(m.Min, math.Inf(-1)), bound(m.Max, math.Inf(1)), m.Choices)
		}
	}
}
