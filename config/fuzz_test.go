package config

import (
	"bytes"
	"os"
	"reflect"
	"slices"
	"testing"

	"gopkg.in/ini.v1"
)

// FuzzParse checks that Parse never fails or panics, that every problem
// points at a line of the input, and that the index and ini.v1 agree on every
// value, which is what the reported line numbers rest on. A plain `go test`
// runs the seeds only.
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
		lines := bytes.Count(data, []byte("\n")) + 1
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

func checkAgreement(t *testing.T, data []byte) {
	ix := scan(data)
	f, err := ini.LoadSources(loadOptions, ix.clean)
	if err != nil {
		t.Fatalf("ini.v1 rejected the cleaned text: %v", err)
	}
	for _, sec := range f.Sections() {
		for _, key := range sec.KeyStrings() {
			var want []string
			for _, e := range ix.keys(sec.Name()) {
				if e.key == key && e.bad == "" && e.value != "" {
					want = append(want, e.value)
				}
			}
			if got := sec.Key(key).ValueWithShadows(); !reflect.DeepEqual(got, want) && len(got)+len(want) > 0 {
				t.Errorf("[%s] %s: ini.v1 read %q, the index %q", sec.Name(), key, got, want)
			}
		}
	}
	for _, e := range ix.entries {
		if e.key == "" || e.bad != "" {
			continue
		}
		sec, err := f.GetSection(e.section)
		if err != nil || !slices.Contains(sec.KeyStrings(), e.key) {
			t.Errorf("line %d: the index has [%s] %s, ini.v1 does not", e.line, e.section, e.key)
		}
	}
}
