package config

import (
	"fmt"
	"reflect"
	"testing"
)

func TestScan(t *testing.T) {
	type pos struct {
		Line              int
		Section, Key, Val string
	}
	tests := []struct {
		name     string
		text     string
		want     []pos
		problems []string // "LINE: message"
	}{
		{
			name: "sections keys and comments",
			text: "[DEFAULT]\ntop = 1\n# c\n; c\n\n[a]\nk = v\nk: w\n[b]\n",
			want: []pos{
				{1, "DEFAULT", "", ""},
				{2, "DEFAULT", "top", "1"},
				{6, "a", "", ""},
				{7, "a", "k", "v"},
				{8, "a", "k", "w"},
				{9, "b", "", ""},
			},
		},
		{
			name: "the first delimiter ends the key, whichever it is",
			text: "[s]\nreplication_device = backend_id:b,san_ip:h:1\nurl: http://x=y\n",
			want: []pos{
				{1, "s", "", ""},
				{2, "s", "replication_device", "backend_id:b,san_ip:h:1"},
				{3, "s", "url", "http://x=y"},
			},
		},
		{
			name: "no inline comments; one pair of quotes stripped, backticks kept",
			text: "[DEFAULT]\na = x # not a comment\nb = c\\\nq = \"quoted\"\ne = ''\nt = `tick`\nl = \"\nm = \"a\"b\"\nn = 'a\"\n",
			want: []pos{
				{1, "DEFAULT", "", ""},
				{2, "DEFAULT", "a", "x # not a comment"},
				{3, "DEFAULT", "b", "c\\"},
				{4, "DEFAULT", "q", "quoted"},
				{5, "DEFAULT", "e", ""},
				{6, "DEFAULT", "t", "`tick`"},
				{7, "DEFAULT", "l", ""},
				{8, "DEFAULT", "m", "a\"b"},
				{9, "DEFAULT", "n", "'a\""},
			},
		},
		{
			name: "continuation lines join with a newline, indented comments included",
			text: "[s]\nk = a,\n  b\n\t# c\nj = x\n",
			want: []pos{{1, "s", "", ""}, {2, "s", "k", "a,\nb\n# c"}, {5, "s", "j", "x"}},
		},
		{
			name: "CRLF, a lone CR, and section names folded to lower case except DEFAULT",
			text: "[S]\r\nk = v\rj = w\r\n[default]\n",
			want: []pos{{1, "s", "", ""}, {2, "s", "k", "v"}, {3, "s", "j", "w"}, {4, "default", "", ""}},
		},
		{
			name: "lines oslo.config refuses are reported and skipped",
			text: "[s]\nno delimiter\n= v\n[open\n[]\n- = auto\nk = v\n\n  indented\n[t] ; comment\nj = w\n",
			want: []pos{{1, "s", "", ""}, {6, "s", "-", "auto"}, {7, "s", "k", "v"}, {10, "t", "", ""}, {11, "t", "j", "w"}},
			problems: []string{
				`2: line is neither "key = value" nor a [section] header; ` + failsCinder + ": fix it or comment it out with '#'",
				"3: missing key name before '='; " + failsCinder + ": add the key or delete the line",
				"4: section header has no closing ']'; " + failsCinder + ": close it",
				"5: section header [] has no name; " + failsCinder + ": name it or delete the line",
				"9: line is indented, so oslo.config reads it as the continuation of the value above, but there is none (a blank line, a comment or a section header ends a value); " +
					failsCinder + ": remove the leading whitespace",
				"10: section header has text after its ']'; oslo.config allows nothing there, not even a comment, so " + failsCinder + ": move the text to a line of its own",
			},
		},
		{
			name: "a key before any section",
			text: "k = v\n  more\n\n[DEFAULT]\n",
			want: []pos{{1, "DEFAULT", "k", "v\nmore"}, {4, "DEFAULT", "", ""}},
			problems: []string{
				`1: "k" comes before any [section] header; cinder-volume (oslo.config) fails to start on it (oslo.config: "Section must be started before assignment" at line 3): put [DEFAULT] above it`,
			},
		},
		{
			name:     "a UTF-8 byte-order mark and invalid UTF-8",
			text:     "\xef\xbb\xbf[s]\nk = \xff\n",
			want:     []pos{{1, "s", "", ""}, {2, "s", "k", "\xff"}},
			problems: []string{"1: the file starts with a UTF-8 byte-order mark, which oslo.config reads as part of the first line; " + failsCinder + ": save the file without the mark", "2: line is not valid UTF-8; cinder-volume cannot read the file: save it as UTF-8"},
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
				got = append(got, pos{e.line, e.section, e.key, e.value})
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
		})
	}
}
