package latency

import (
	"sync"
	"testing"
	"time"
)

// TestObserveBuckets: a duration lands in the first bucket whose bound it
// does not exceed (a bound itself included), past the last in the
// overflow bucket, and each op counts apart.
func TestObserveBuckets(t *testing.T) {
	var hs Histograms
	hs.Observe(Read, 10*time.Microsecond)
	hs.Observe(Read, 25*time.Microsecond)
	hs.Observe(Read, 26*time.Microsecond)
	hs.Observe(Write, time.Minute)
	hs.Observe(Op(200), time.Millisecond)
	s := hs.Snapshot()
	if s[Read].Buckets[0] != 2 || s[Read].Buckets[1] != 1 || s[Read].Count() != 3 || s[Read].Sum != 61*time.Microsecond {
		t.Errorf("reads: %+v", s[Read])
	}
	if s[Write].Buckets[len(Bounds)] != 1 || s[Write].Count() != 1 {
		t.Errorf("a write longer than every bound: %+v", s[Write])
	}
	if s[Other].Buckets[5] != 1 || s[Flush].Count() != 0 {
		t.Errorf("an unknown op counts as other (1 ms, bucket 5): other %+v, flush %+v", s[Other], s[Flush])
	}
	for i := 1; i < len(Bounds); i++ {
		if Bounds[i] <= Bounds[i-1] {
			t.Fatalf("bounds not increasing at %d: %v", i, Bounds)
		}
	}
}

// TestObserveConcurrently: counts from many goroutines add up.
func TestObserveConcurrently(t *testing.T) {
	var hs Histograms
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				hs.Observe(Write, time.Duration(i)*time.Microsecond)
			}
		}()
	}
	wg.Wait()
	if n := hs.Snapshot()[Write].Count(); n != 8000 {
		t.Fatalf("count %d, want 8000", n)
	}
}

func BenchmarkObserve(b *testing.B) {
	var hs Histograms
	for b.Loop() {
		hs.Observe(Write, 120*time.Microsecond)
	}
}

// BenchmarkObserveSince is what a served command pays: two clock reads
// and an Observe.
func BenchmarkObserveSince(b *testing.B) {
	var hs Histograms
	for b.Loop() {
		began := time.Now()
		hs.Observe(Write, time.Since(began))
	}
}
