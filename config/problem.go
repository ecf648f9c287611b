package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong in a config file, located so that an editor or
// `journalctl -u volrepd` shows exactly which line to fix.
type Problem struct {
	File    string
	Line    int
	Section string
	Key     string
	Message string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message) }

func (p Problem) Error() string { return p.String() }

// Problems is every problem found, sorted by line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Err returns ps as an error, or nil when there are none. Returning a nil
// Problems as an error would give a non-nil interface.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// sorted orders problems by line, keeping the order they were found in on the
// same line, and drops repeats: a bad key in [backend_defaults] is met again
// by every backend that inherits it.
func (ps Problems) sorted() Problems {
	type id struct {
		line               int
		section, key, text string
	}
	seen := map[id]bool{}
	var out Problems
	for _, p := range ps {
		k := id{p.Line, p.Section, p.Key, p.Message}
		if !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}
