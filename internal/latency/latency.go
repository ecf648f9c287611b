// Package latency counts how long a data path's commands take, per kind
// of command, in fixed buckets. Observing is two atomic adds and takes no
// lock, so the NBD and iSCSI servers count every command; Prometheus
// reads the counts as histograms at scrape time (package metrics).
package latency

import (
	"sync/atomic"
	"time"
)

// Op is the kind of a command.
type Op uint8

const (
	Read  Op = iota
	Write    // writes, zeroing and compare-and-write
	Flush    // NBD FLUSH, SCSI SYNCHRONIZE CACHE
	Other    // everything else: TEST UNIT READY, INQUIRY, TRIM, …
	NumOps
)

var opNames = [NumOps]string{"read", "write", "flush", "other"}

// String is the op's metric label value.
func (o Op) String() string {
	if o < NumOps {
		return opNames[o]
	}
	return "unknown"
}

// Bounds are the buckets' upper bounds: from a page-cache hit on a fast
// host (25 µs) to a command stuck behind a sync timeout (10 s).
var Bounds = [...]time.Duration{
	25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 10 * time.Second,
}

// Histograms counts each op's durations. The zero value is ready.
type Histograms struct {
	ops [NumOps]histogram
}

type histogram struct {
	buckets [len(Bounds) + 1]atomic.Uint64 // the last: longer than every bound
	sum     atomic.Int64                   // nanoseconds
}

// Observe counts one command of op that took d.
func (hs *Histograms) Observe(op Op, d time.Duration) {
	if op >= NumOps {
		op = Other
	}
	i := 0
	for i < len(Bounds) && d > Bounds[i] {
		i++
	}
	h := &hs.ops[op]
	h.buckets[i].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot is one op's counts: Buckets[i] the commands that took longer
// than Bounds[i-1] and at most Bounds[i] (the last, longer than every
// bound), and the sum of their durations.
type Snapshot struct {
	Buckets [len(Bounds) + 1]uint64
	Sum     time.Duration
}

// Count is how many commands the snapshot counts.
func (s Snapshot) Count() uint64 {
	var n uint64
	for _, b := range s.Buckets {
		n += b
	}
	return n
}

// Snapshot reads every op's counts. Each counter is read atomically, not
// all of them at one instant: a scrape may see a command in its bucket
// and not yet in the sum, which Prometheus tolerates.
func (hs *Histograms) Snapshot() [NumOps]Snapshot {
	var out [NumOps]Snapshot
	for op := range hs.ops {
		h := &hs.ops[op]
		for i := range h.buckets {
			out[op].Buckets[i] = h.buckets[i].Load()
		}
		out[op].Sum = time.Duration(h.sum.Load())
	}
	return out
}

// Counts is each op's count, indexed by Op.
func Counts(s [NumOps]Snapshot) [NumOps]uint64 {
	var out [NumOps]uint64
	for op := range s {
		out[op] = s[op].Count()
	}
	return out
}
