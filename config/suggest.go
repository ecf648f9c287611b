package config

import (
	"fmt"
	"strings"
)

// suggestion returns `; did you mean "X"?` for the candidate closest to name,
// or "" when none is close enough to be a plausible typo.
func suggestion(name string, candidates []string) string {
	if c := closest(name, candidates, -1); c != "" {
		return fmt.Sprintf("; did you mean %q?", c)
	}
	return ""
}

// closest returns the candidate nearest to name within limit edits, ignoring
// case, or "". A negative limit grows with the shorter word, so "san_iq" may
// be one edit from "san_ip" while a long key may carry a few typos; callers
// pass a fixed limit where, as in [DEFAULT], hundreds of unrelated keys make a
// loose match a false alarm.
func closest(name string, candidates []string, limit int) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		if c == name {
			continue
		}
		l := limit
		if l < 0 {
			l = 1 + min(len(name), len(c))/5
		}
		d := distance(strings.ToLower(name), strings.ToLower(c), l)
		if d <= l && (bestDist < 0 || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// distance is the optimal string alignment distance (Levenshtein plus swaps of
// adjacent letters, the commonest typo) between a and b, or limit+1 when it is
// certainly larger than limit: keys in a hostile file can be megabytes long.
func distance(a, b string, limit int) int {
	ra, rb := []rune(a), []rune(b)
	if d := len(ra) - len(rb); d > limit || -d > limit {
		return limit + 1
	}
	// Three rows suffice: a swap looks two rows back.
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	prevMin := 0
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		rowMin := i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
			rowMin = min(rowMin, cur[j])
		}
		// A cell builds on the row above or, for a swap, the one above
		// that: once two rows are past limit, every later one is too.
		if rowMin > limit && prevMin > limit {
			return limit + 1
		}
		prevMin = rowMin
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
