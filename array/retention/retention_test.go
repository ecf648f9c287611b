package retention

import (
	"testing"
	"time"

	"github.com/volrep/volrep/array"
)

var t0 = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

func hourly(n int) []time.Time {
	ts := make([]time.Time, n)
	for k := range ts {
		ts[k] = t0.Add(time.Duration(k) * time.Hour)
	}
	return ts
}

func kept(keep []bool) map[int]bool {
	m := map[int]bool{}
	for i, k := range keep {
		if k {
			m[i] = true
		}
	}
	return m
}

// TestSeedPolicyWeek is seed 003's default: keep all for 4 hours, then 3 a
// day for 7 days, with hourly snapshots for a week. By hand: the newest 5
// (ages 0..4 h, inclusive) and, from each 8-hour slot starting at 00:00,
// 08:00 and 16:00 UTC, its first snapshot: k = 0, 8, ..., 160.
func TestSeedPolicyWeek(t *testing.T) {
	ts := hourly(168)
	now := ts[167]
	got := kept(Keep(ts, now, array.Retention{AllFor: 4 * time.Hour, PerDay: 3, Days: 7}))
	want := map[int]bool{163: true, 164: true, 165: true, 166: true, 167: true}
	for k := 0; k <= 160; k += 8 {
		want[k] = true
	}
	if len(got) != len(want) {
		t.Fatalf("kept %d snapshots %v, want %d %v", len(got), got, len(want), want)
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("snapshot %d not kept; kept %v", k, got)
		}
	}
}

func TestWindowEnds(t *testing.T) {
	ts := hourly(24 * 10) // ten days
	now := ts[len(ts)-1]
	p := array.Retention{AllFor: time.Hour, PerDay: 1, Days: 2}
	got := kept(Keep(ts, now, p))
	// All for 1 h: the newest two. Then one a day (the midnight one) for
	// two days past that hour: days 8 and 9 start at k=192 and k=216.
	want := map[int]bool{238: true, 239: true, 192: true, 216: true}
	if len(got) != len(want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("kept %v, want %v", got, want)
		}
	}
}

// TestStable checks that retention never deletes what it would keep later:
// applying it every hour gives the same result as applying it once.
func TestStable(t *testing.T) {
	p := array.Retention{AllFor: 4 * time.Hour, PerDay: 3, Days: 7}
	ts := hourly(200)
	alive := map[int]bool{}
	for k := range ts {
		alive[k] = true
		var idx []int
		var times []time.Time
		for i := 0; i <= k; i++ {
			if alive[i] {
				idx = append(idx, i)
				times = append(times, ts[i])
			}
		}
		for j, keep := range Keep(times, ts[k], p) {
			if !keep {
				delete(alive, idx[j])
			}
		}
	}
	once := kept(Keep(ts, ts[199], p))
	if len(once) != len(alive) {
		t.Fatalf("hourly application kept %d, one-shot %d", len(alive), len(once))
	}
	for k := range once {
		if !alive[k] {
			t.Fatalf("snapshot %d deleted early but wanted at the end", k)
		}
	}
}

func TestNewestAlwaysKept(t *testing.T) {
	ts := hourly(3)
	got := Keep(ts, ts[2].Add(1000*time.Hour), array.Retention{})
	if got[0] || got[1] || !got[2] {
		t.Fatalf("Keep = %v", got)
	}
	if len(Keep(nil, t0, array.Retention{})) != 0 {
		t.Fatal("Keep of nothing")
	}
}
