package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestScan(t *testing.T) {
	type pos struct {
		Line         int
		Section, Key string
		Value, Bad   string
	}
	tests := []struct {
		name     string
		text     string
		want     []pos
		problems []string // "LINE: message"
	}{
		{
			name: "sections keys and comments",
			text: "top = 1\n# c\n; c\n\n[a]\nk = v\nk: w\n  indented = x  \n[b] ; trailing\n",
			want: []pos{
				{1, "DEFAULT", "top", "1", ""},
				{5, "a", "", "", ""},
				{6, "a", "k", "v", ""},
				{7, "a", "k", "w", ""},
				{8, "a", "indented", "x", ""},
				{9, "b", "", "", ""},
			},
		},
		{
			name: "the first delimiter ends the key, whichever it is",
			text: "[s]\nreplication_device = backend_id:b,san_ip:h:1\nurl: http://x=y\n",
			want: []pos{
				{1, "s", "", "", ""},
				{2, "s", "replication_device", "backend_id:b,san_ip:h:1", ""},
				{3, "s", "url", "http://x=y", ""},
			},
		},
		{
			name: "no inline comments or continuations, quotes stripped as ini.v1 does",
			text: "a = x # not a comment\nb = c\\\nq = \"quoted\"\ne = ''\nt = `tick`\n",
			want: []pos{
				{1, "DEFAULT", "a", "x # not a comment", ""},
				{2, "DEFAULT", "b", "c\\", ""},
				{3, "DEFAULT", "q", "quoted", ""},
				{4, "DEFAULT", "e", "", ""},
				{5, "DEFAULT", "t", "tick", ""},
			},
		},
		{
			name: "CRLF and a byte-order mark",
			text: "\xef\xbb\xbf[s]\r\nk = v\r\n",
			want: []pos{{1, "s", "", "", ""}, {2, "s", "k", "v", ""}},
		},
		{
			name: "unreadable lines are reported and skipped",
			text: "[s]\nno delimiter\n= v\n[open\n[]\n- = auto\nk = v\n",
			want: []pos{{1, "s", "", "", ""}, {7, "s", "k", "v", ""}},
			problems: []string{
				`2: line is neither "key = value" nor a [section] header; fix it or comment it out with '#'`,
				"3: missing key name before '='",
				"4: section header has no closing ']'",
				"5: section header [] has no name",
				`6: "-" is not a key name`,
			},
		},
		{
			name: "lines ini.v1 would read differently are marked bad",
			text: "[s]\n\"k\" = v\nm = \"\"\"open\nn = `open\nk = v\n",
			want: []pos{
				{1, "s", "", "", ""},
				{2, "s", `"k"`, "", "quoted key names are not supported; write the key without quotes"},
				{3, "s", "m", "", "the value opens a quoted block (\"\"\" or `) that does not close on the same line; multi-line values are not supported"},
				{4, "s", "n", "", "the value opens a quoted block (\"\"\" or `) that does not close on the same line; multi-line values are not supported"},
				{5, "s", "k", "v", ""},
			},
		},
		{
			name:     "UTF-16 is refused outright",
			text:     "\xff\xfe[\x00s\x00]\x00",
			problems: []string{"1: the file is UTF-16 encoded; save it as UTF-8"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := scan([]byte(tt.text))
			var got []pos
			for _, e := range ix.entries {
				got = append(got, pos{e.line, e.section, e.key, e.value, e.bad})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("entries:\n got %+v\nwant %+v", got, tt.want)
			}
			var probs []string
			for _, p := range ix.problems {
				probs = append(probs, fmt.Sprintf("%d: %s", p.Line, p.Message))
			}
			if !reflect.DeepEqual(probs, tt.problems) {
				t.Errorf("problems:\n got %q\nwant %q", probs, tt.problems)
			}
			// Blanked lines keep the line count, so nothing after them moves.
			if n, m := strings.Count(string(ix.clean), "\n"), strings.Count(tt.text, "\n")+1; len(ix.entries) > 0 && n != m {
				t.Errorf("clean text has %d newlines, want %d", n, m)
			}
		})
	}
}
