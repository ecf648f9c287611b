package config

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The index reads the file the way oslo.config's iniparser does, because
// cinder-volume reads the same file with it: one file, one reading. What
// oslo.config accepts is read to the same values, and what makes it raise
// ParseError (and so keeps cinder-volume from starting) is a Problem on the
// line it names. oslo.config stops at the first such line; the index goes
// on, so that one run shows every one.
//
// The rules, from oslo_config/iniparser.py:
//   - lines end at "\n", "\r\n" or "\r" (Python's universal newlines), and
//     trailing whitespace is dropped;
//   - a blank line ends a multi-line value;
//   - a line that starts with a space or a tab continues the value above it,
//     joined with "\n" and its leading whitespace dropped; with no value
//     above it (after a header, a comment or a blank line) it is an error;
//   - '#' and ';' start a comment only as the first character of a line;
//   - "[name]" must end with ']': "[name] ; comment" is an error, and the
//     name is taken as written, spaces included;
//   - "key = value" and "key: value" split at whichever of '=' and ':' comes
//     first; key and value are stripped, and a value that starts and ends
//     with the same quote (" or ') loses those two characters, nothing else;
//   - a key before any section header is an error.
//
// Section names are then matched as oslo.config matches option groups:
// lower-cased, except DEFAULT, so [PureDriver-1] and [puredriver-1] are one
// section and their keys merge, while [default] is not [DEFAULT].

// entry is one section header (key == "") or one key with its value.
type entry struct {
	line    int
	section string // normalised: see normSection
	key     string
	value   string // as oslo.config reads it, continuation lines included
	lines   int    // how many lines the value spans, 1 without continuations
}

type index struct {
	entries    []entry
	sections   []string             // normalised, in order of first appearance
	spelling   map[string]string    // normalised section -> as first written
	headers    map[string]int       // line of each section's first header; DEFAULT may have none
	keyLines   map[string][]entry   // key entries by section, in file order
	problems   []Problem            // lines oslo.config rejects; File is filled in by the caller
	problemsIn map[string][]Problem // the same, by the section they sit in
}

const defaultSection = "DEFAULT"

// normSection is oslo.config's _normalize_group_name.
func normSection(s string) string {
	if s == defaultSection {
		return s
	}
	return strings.ToLower(s)
}

// pySpace is Python's str.isspace for one character, which str.strip uses:
// Go's unicode.IsSpace plus the ASCII separators U+001C to U+001F.
func pySpace(r rune) bool { return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f }

func pyStrip(s string) string  { return strings.TrimFunc(s, pySpace) }
func pyLStrip(s string) string { return strings.TrimLeftFunc(s, pySpace) }
func pyRStrip(s string) string { return strings.TrimRightFunc(s, pySpace) }

// splitLines splits as Python's universal newlines do.
func splitLines(data []byte) []string {
	var lines []string
	start := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '\n':
			lines = append(lines, string(data[start:i]))
			start = i + 1
		case '\r':
			lines = append(lines, string(data[start:i]))
			if i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			start = i + 1
		}
	}
	if start < len(data) {
		lines = append(lines, string(data[start:]))
	}
	return lines
}

// Messages for the lines oslo.config refuses. Each says that cinder-volume
// would not start, as that is what makes a harmless-looking line urgent.
const failsCinder = "cinder-volume (oslo.config) fails to start on this line"

func scan(data []byte) *index {
	ix := &index{
		headers:    map[string]int{},
		spelling:   map[string]string{defaultSection: defaultSection},
		keyLines:   map[string][]entry{},
		problemsIn: map[string][]Problem{},
		sections:   []string{defaultSection},
	}
	if bytes.HasPrefix(data, []byte{0xfe, 0xff}) || bytes.HasPrefix(data, []byte{0xff, 0xfe}) {
		ix.problem(1, defaultSection, "", "the file is UTF-16 encoded; save it as UTF-8")
		return ix
	}
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		// Python reads a UTF-8 byte-order mark as a character of the
		// first line, which is then neither a header nor a key.
		ix.problem(1, defaultSection, "", "the file starts with a UTF-8 byte-order mark, which oslo.config reads as part of the first line; "+
			failsCinder+": save the file without the mark")
		data = data[3:]
	}

	section := ""   // "" until the first header: oslo.config has no implicit DEFAULT
	var open *entry // the key whose value continuation lines extend
	flush := func() {
		if open != nil {
			ix.entries = append(ix.entries, *open)
			ix.keyLines[open.section] = append(ix.keyLines[open.section], *open)
			open = nil
		}
	}
	noSection := false
	for n, raw := range splitLines(data) {
		lineNo := n + 1
		if !utf8.ValidString(raw) {
			ix.problem(lineNo, orDefault(section), "", "line is not valid UTF-8; cinder-volume cannot read the file: save it as UTF-8")
		}
		line := pyRStrip(raw)
		switch {
		case line == "":
			flush()
			continue
		case line[0] == ' ' || line[0] == '\t':
			if open == nil {
				ix.problem(lineNo, orDefault(section), "", "line is indented, so oslo.config reads it as the continuation of the value above, "+
					"but there is none (a blank line, a comment or a section header ends a value); "+failsCinder+": remove the leading whitespace")
				continue
			}
			open.value += "\n" + pyLStrip(line)
			open.lines = lineNo - open.line + 1
			continue
		}
		flush()
		switch {
		case line[0] == '[':
			name, msg := header(line)
			if msg != "" {
				ix.problem(lineNo, orDefault(section), "", msg)
			}
			if name == "" {
				continue
			}
			section = normSection(name)
			if _, ok := ix.headers[section]; !ok {
				ix.headers[section] = lineNo
				if section != defaultSection {
					ix.sections = append(ix.sections, section)
					ix.spelling[section] = name
				}
			}
			ix.entries = append(ix.entries, entry{line: lineNo, section: section})
		case line[0] == '#' || line[0] == ';':
		default:
			key, value, msg := keyValue(line)
			if msg != "" {
				ix.problem(lineNo, orDefault(section), "", msg)
				continue
			}
			if section == "" && !noSection {
				// oslo.config raises when the assignment ends, on the next
				// line that is not a continuation; the key's own line is
				// the one to fix, and the message names both.
				noSection = true
				ix.problem(lineNo, defaultSection, key, fmt.Sprintf("%q comes before any [section] header; %s (oslo.config: \"Section must be started before assignment\" at line %d): put [DEFAULT] above it",
					key, strings.Replace(failsCinder, "this line", "it", 1), assignmentEnd(data, lineNo)))
			}
			open = &entry{line: lineNo, section: orDefault(section), key: key, value: value, lines: 1}
		}
	}
	flush()
	return ix
}

func orDefault(section string) string {
	if section == "" {
		return defaultSection
	}
	return section
}

// assignmentEnd is the line on which oslo.config ends the assignment that
// starts on line start: the first following line that is not a continuation,
// or the last line.
func assignmentEnd(data []byte, start int) int {
	lines := splitLines(data)
	for i := start; i < len(lines); i++ {
		if l := pyRStrip(lines[i]); l == "" || l[0] != ' ' && l[0] != '\t' {
			return i + 1
		}
	}
	return len(lines)
}

// header reads a "[name]" line. name is what the line most likely means,
// for reading on, even when msg says oslo.config refuses it.
func header(line string) (name, msg string) {
	switch end := strings.LastIndexByte(line, ']'); {
	case end < 0:
		return "", "section header has no closing ']'; " + failsCinder + ": close it"
	case end == 1:
		return "", "section header [] has no name; " + failsCinder + ": name it or delete the line"
	case end < len(line)-1:
		return line[1:end], "section header has text after its ']'; oslo.config allows nothing there, not even a comment, so " +
			failsCinder + ": move the text to a line of its own"
	default:
		return line[1:end], ""
	}
}

// keyValue splits a key line as iniparser's _split_key_value does.
func keyValue(line string) (key, value, msg string) {
	i := strings.IndexAny(line, "=:")
	if i < 0 {
		return "", "", `line is neither "key = value" nor a [section] header; ` + failsCinder + ": fix it or comment it out with '#'"
	}
	key = pyStrip(line[:i])
	if key == "" {
		return "", "", "missing key name before '" + line[i:i+1] + "'; " + failsCinder + ": add the key or delete the line"
	}
	value = pyStrip(line[i+1:])
	if value != "" && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
		// Python's value[1:-1]: one pair of matching quotes goes, and a
		// lone quote character becomes the empty string.
		value = value[1:max(1, len(value)-1)]
	}
	return key, value, ""
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
