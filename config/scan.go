package config

import (
	"bytes"
	"strings"
	"unicode"
)

// ini.v1 does not say where anything came from, so the index re-reads the raw
// text with the rules ini.v1 applies under loadOptions and records the line of
// every section header and key. It also finds the lines ini.v1 would reject
// (or would read as the start of a multi-line value, which would shift every
// later line) and blanks them in the copy handed to ini.v1: one bad line
// then costs one Problem, not the whole file.

// entry is one section header (key == "") or one key line.
type entry struct {
	line    int
	section string
	key     string
	value   string // the value as ini.v1 reads it
	bad     string // why the line was kept from ini.v1; reported only where the section matters
}

type index struct {
	entries    []entry
	sections   []string             // in order of first appearance
	headers    map[string]int       // line of each section's first header; DEFAULT may have none
	keyLines   map[string][]entry   // key entries by section, in file order
	problems   []Problem            // lines that are not ini at all; File is filled in by the caller
	problemsIn map[string][]Problem // the same, by the section they sit in
	clean      []byte               // the text ini.v1 parses: same lines, bad ones blanked
}

const defaultSection = "DEFAULT"

func scan(data []byte) *index {
	ix := &index{
		headers:    map[string]int{},
		keyLines:   map[string][]entry{},
		problemsIn: map[string][]Problem{},
		sections:   []string{defaultSection},
	}
	if bytes.HasPrefix(data, []byte{0xfe, 0xff}) || bytes.HasPrefix(data, []byte{0xff, 0xfe}) {
		ix.problem(1, defaultSection, "", "the file is UTF-16 encoded; save it as UTF-8")
		return ix
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))

	// ini.v1 strips a byte-order mark only at the very start; the leading
	// newline keeps it from stripping a second one that the index reads as text.
	var clean bytes.Buffer
	clean.WriteByte('\n')

	section := defaultSection
	for n, raw := range bytes.SplitAfter(data, []byte("\n")) {
		lineNo := n + 1
		// ini.v1 sees each line with its newline, which matters for the
		// length test that decides whether `"""` opens a quoted block.
		line := string(raw)
		keep := true
		t := strings.TrimLeftFunc(line, unicode.IsSpace)
		switch {
		case t == "" || t[0] == '#' || t[0] == ';':
		case t[0] == '[':
			end := strings.LastIndexByte(t, ']')
			switch {
			case end < 0:
				ix.problem(lineNo, section, "", "section header has no closing ']'")
				keep = false
			case end == 1:
				ix.problem(lineNo, section, "", "section header [] has no name")
				keep = false
			default:
				section = t[1:end]
				if _, ok := ix.headers[section]; !ok {
					ix.headers[section] = lineNo
					if section != defaultSection {
						ix.sections = append(ix.sections, section)
					}
				}
				ix.entries = append(ix.entries, entry{line: lineNo, section: section})
			}
		default:
			e, msg := parseKeyLine(t)
			if msg != "" {
				ix.problem(lineNo, section, "", msg)
				keep = false
				break
			}
			e.line, e.section = lineNo, section
			keep = e.bad == ""
			ix.entries = append(ix.entries, e)
			ix.keyLines[section] = append(ix.keyLines[section], e)
		}
		if keep {
			clean.WriteString(line)
		} else {
			clean.WriteByte('\n')
		}
	}
	ix.clean = clean.Bytes()
	return ix
}

// parseKeyLine splits a left-trimmed, non-comment, non-header line. A
// non-empty msg means the line is not a key line at all; entry.bad means it is
// one, but in a form ini.v1 reads differently from oslo.config (quoted names,
// values that open a multi-line block), so it is left out of the ini.v1 text.
func parseKeyLine(t string) (e entry, msg string) {
	if t[0] == '"' || t[0] == '`' {
		e.key = strings.TrimSpace(t)
		if i := strings.IndexAny(t, "=:"); i > 0 {
			e.key = strings.TrimSpace(t[:i])
		}
		e.bad = "quoted key names are not supported; write the key without quotes"
		return e, ""
	}
	i := strings.IndexAny(t, "=:")
	switch {
	case i < 0:
		return e, `line is neither "key = value" nor a [section] header; fix it or comment it out with '#'`
	case i == 0:
		return e, "missing key name before '" + t[:1] + "'"
	}
	e.key = strings.TrimSpace(t[:i])
	if e.key == "-" {
		// ini.v1 would invent a numbered key for "-".
		return e, `"-" is not a key name`
	}
	v, ok := iniValue(t[i+1:])
	if !ok {
		e.bad = "the value opens a quoted block (\"\"\" or `) that does not close on the same line; multi-line values are not supported"
	}
	e.value = v
	return e, ""
}

// iniValue mirrors ini.v1's readValue under loadOptions (no inline comments,
// no continuation lines). ok is false where ini.v1 would go on reading the
// following lines.
func iniValue(raw string) (v string, ok bool) {
	s := strings.TrimLeftFunc(raw, unicode.IsSpace)
	if s == "" {
		return "", true
	}
	quote := ""
	if len(s) > 3 && s[:3] == `"""` {
		quote = `"""`
	} else if s[0] == '`' {
		quote = "`"
	}
	if quote != "" {
		end := strings.LastIndex(s[len(quote):], quote)
		if end < 0 {
			return "", false
		}
		return s[len(quote) : len(quote)+end], true
	}
	s = strings.TrimSpace(s)
	if surrounded(s, '\'') || surrounded(s, '"') {
		s = s[1 : len(s)-1]
	}
	return s, true
}

// surrounded reports whether q is the first and last byte of s and appears
// nowhere else, which is when ini.v1 strips it.
func surrounded(s string, q byte) bool {
	return len(s) >= 2 && s[0] == q && s[len(s)-1] == q && strings.IndexByte(s[1:], q) == len(s)-2
}

func (ix *index) problem(line int, section, key, msg string) {
	p := Problem{Line: line, Section: section, Key: key, Message: msg}
	ix.problems = append(ix.problems, p)
	ix.problemsIn[section] = append(ix.problemsIn[section], p)
}

// keys returns the key entries of a section in file order, repeats included.
func (ix *index) keys(section string) []entry { return ix.keyLines[section] }

// headerLine is where problems about a whole section are reported; a DEFAULT
// section without a header starts at the top of the file.
func (ix *index) headerLine(section string) int {
	if l := ix.headers[section]; l > 0 {
		return l
	}
	return 1
}
