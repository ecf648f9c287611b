package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never fails or panics, that every problem
// points at a line of the input, and that the index reads back what it
// wrote (checkAgreement), which is what the reported line numbers rest on.
// A plain `go test` runs the seeds only.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/seed-lab.conf", "testdata/typos.conf"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"\xef\xbb\xbf\xef\xbb\xbfk = v\n",
		"\xff\xfek\x00=\x00",
		"[s]\r\nk = \"\"\"\r\nk = \"\"\"x\"\"\"\nk = ``\nk = '' \n",
		"[DEFAULT]\nenabled_backends = a,a,,b\n[a]\nreplication_device = \nreplication_device = x\nreplication_device = x\n[b\n",
		"[a.b]\nk = v\n[a]\nk = w\n[]\n= x\n- = y\n\"q\" = z\n`q` = z\n",
		"[DEFAULT]\nenabled_backends = b\n[b]\nsan_ip = [::1]:0\nreplication_device = :,:::,backend_id:,type:\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.conf", data)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		// Lines end at "\n", "\r\n" or "\r", as in Python.
		lines := max(1, len(splitLines(data)))
		for i, p := range cfg.Problems {
			if p.File != "f.conf" || p.Line < 1 || p.Line > lines || p.Message == "" {
				t.Errorf("problem %#v does not point at a line of a %d-line input", p, lines)
			}
			if i > 0 && p.Line < cfg.Problems[i-1].Line {
				t.Errorf("problems out of order: %v", cfg.Problems)
			}
		}
		checkAgreement(t, data)
	})
}

// checkAgreement checks the index against itself: the entries, written out
// again in the plainest form oslo.config reads ("[section]", `key = "value"`
// and indented continuation lines), read back to the same entries. The
// differential test holds the reading itself to oslo.config.
func checkAgreement(t *testing.T, data []byte) {
	type kv struct{ section, key, value string }
	collect := func(ix *index) []kv {
		var out []kv
		for _, e := range ix.entries {
			if e.key != "" {
				out = append(out, kv{e.section, e.key, e.value})
			}
		}
		return out
	}
	ix := scan(data)
	var b strings.Builder
	written := map[string]bool{}
	for _, e := range ix.entries {
		if e.key == "" || written[e.section] {
			continue
		}
		written[e.section] = true
		fmt.Fprintf(&b, "[%s]\n", e.section)
		for _, k := range ix.keys(e.section) {
			first, rest, _ := strings.Cut(k.value, "\n")
			key := k.key
			if strings.ContainsAny(key[:1], "#;[") {
				// Only a line that starts with one is a comment or a
				// header; "\v#" is the key "#".
				key = "\v" + key
			}
			fmt.Fprintf(&b, "%s = \"%s\"\n", key, first)
			for _, l := range strings.Split(rest, "\n") {
				if rest != "" {
					fmt.Fprintf(&b, "  %s\n", l)
				}
			}
		}
	}
	want := map[string][]kv{}
	for _, x := range collect(ix) {
		want[x.section] = append(want[x.section], x)
	}
	got := map[string][]kv{}
	for _, x := range collect(scan([]byte(b.String()))) {
		got[x.section] = append(got[x.section], x)
	}
	if !reflect.DeepEqual(got, want) && len(got)+len(want) > 0 {
		t.Errorf("read back differently:\n got %q\nwant %q\nfrom %q", got, want, b.String())
	}
}
