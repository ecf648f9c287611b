package store

import (
	"errors"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// groupCommit folds metadata changes that arrive while a transaction is
// being committed into the next transaction, so that N concurrent
// creates or deletes cost one commit (two fdatasyncs) instead of N. No
// change waits for a timer: an idle store commits at once, a busy one
// commits whatever queued during the previous commit. Every change is
// still durable before its caller returns.
//
// The caller whose change finds no commit running leads: it commits the
// queue, its own change included, then hands the lead to a waiter whose
// change is still queued. No goroutine outlives a call.
type groupCommit struct {
	mu      sync.Mutex
	queue   []*commitReq
	leading bool
	// txs counts the transactions committed, for tests and metrics.
	txs atomic.Int64
}

type commitReq struct {
	fn   func(*bolt.Tx) error
	done chan error // buffered: the result, or errLead
}

// errLead tells a waiting caller to take the lead and commit the queue.
var errLead = errors.New("store: lead the next commit")

// commit runs fn in a metadata transaction shared with other concurrent
// commits and returns once that transaction is durable. fn may run more
// than once (alone, after a shared transaction failed), so it must only
// write what it is given, never depend on what it wrote before.
func (s *Store) commit(fn func(*bolt.Tx) error) error {
	gc := &s.gc
	r := &commitReq{fn: fn, done: make(chan error, 1)}
	gc.mu.Lock()
	gc.queue = append(gc.queue, r)
	lead := !gc.leading
	gc.leading = true
	gc.mu.Unlock()
	if !lead {
		if err := <-r.done; err != errLead {
			return err
		}
	}
	// Only a leader drains the queue, so the leader's own change, queued
	// before it led, is in the batch it takes now.
	gc.mu.Lock()
	batch := gc.queue
	gc.queue = nil
	gc.mu.Unlock()
	s.commitBatch(batch)
	err := <-r.done
	gc.mu.Lock()
	if len(gc.queue) == 0 {
		gc.leading = false
	} else {
		gc.queue[0].done <- errLead
	}
	gc.mu.Unlock()
	return err
}

// commitBatch commits batch in one transaction; if that fails, each
// change is committed alone so one bad change fails only its caller.
func (s *Store) commitBatch(batch []*commitReq) {
	if len(batch) == 0 {
		return
	}
	s.gc.txs.Add(1)
	err := s.update(func(tx *bolt.Tx) error {
		for _, r := range batch {
			if err := r.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(batch) == 1 {
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	for _, r := range batch {
		s.gc.txs.Add(1)
		r.done <- s.update(r.fn)
	}
}
