// Package retention decides which snapshots a protection group keeps:
// every snapshot younger than AllFor, then PerDay snapshots a day for Days
// days, spread evenly, as Pure's protection groups do.
package retention

import (
	"time"

	"github.com/volrep/volrep/array"
)

// Window is how far back a policy keeps anything.
func Window(p array.Retention) time.Duration {
	w := p.AllFor
	if p.PerDay > 0 && p.Days > 0 {
		w += time.Duration(p.Days) * 24 * time.Hour
	}
	return w
}

// Keep reports, for snapshots taken at times, which ones the policy keeps
// at now. The newest is always kept, so replication always has a base.
//
// Past AllFor, each day is cut into PerDay equal slots aligned to UTC
// midnight, and the oldest snapshot of each slot is kept while it is
// inside the window. Slots are fixed
// in absolute time, so a snapshot kept once stays kept until it leaves the
// window: retention never deletes a snapshot it would want back later.
func Keep(times []time.Time, now time.Time, p array.Retention) []bool {
	keep := make([]bool, len(times))
	newest := -1
	var slotLen int64
	if p.PerDay > 0 {
		slotLen = int64(24*time.Hour/time.Second) / int64(p.PerDay)
	}
	oldestInSlot := map[int64]int{}
	for i, t := range times {
		if newest < 0 || t.After(times[newest]) {
			newest = i
		}
		if now.Sub(t) <= p.AllFor {
			keep[i] = true
		}
		if slotLen > 0 {
			slot := floorDiv(t.Unix(), slotLen)
			if j, ok := oldestInSlot[slot]; !ok || t.Before(times[j]) {
				oldestInSlot[slot] = i
			}
		}
	}
	// A slot is represented by its oldest snapshot while that one is in
	// the window; once it ages out the slot keeps nothing, so a younger
	// slot-mate is never resurrected as its stand-in.
	for _, i := range oldestInSlot {
		if now.Sub(times[i]) <= Window(p) {
			keep[i] = true
		}
	}
	if newest >= 0 {
		keep[newest] = true
	}
	return keep
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) {
		q--
	}
	return q
}
