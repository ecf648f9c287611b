package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// TestConcurrentCreatesShareOneCommit: creates that queue while a commit
// is in flight are committed together in one transaction, and every one
// of them is on disk after a reopen.
func TestConcurrentCreatesShareOneCommit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, Options{Name: "batch"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	if _, err := s.CreatePool(ctx, "cinder"); err != nil {
		t.Fatal(err)
	}
	// Pretend a commit is in flight, so the creates queue behind it.
	s.gc.mu.Lock()
	s.gc.leading = true
	s.gc.mu.Unlock()
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.CreateVolume(ctx, array.VolumeSpec{Name: fmt.Sprintf("v%02d", i), Pool: "cinder", SizeBytes: 1 << 20})
			errs <- err
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.gc.mu.Lock()
		queued := len(s.gc.queue)
		s.gc.mu.Unlock()
		if queued == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d creates queued for the commit", queued, n)
		}
	}
	// The same name, while its create is being committed, waits for it.
	same := make(chan error, 1)
	go func() {
		_, err := s.CreateVolume(ctx, array.VolumeSpec{Name: "v00", Pool: "cinder", SizeBytes: 2 << 20})
		same <- err
	}()
	before := s.gc.txs.Load()
	s.gc.mu.Lock()
	s.gc.queue[0].done <- errLead // the "commit in flight" ends
	s.gc.mu.Unlock()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := s.gc.txs.Load() - before; got != 1 {
		t.Fatalf("%d queued creates took %d transactions; want 1", n, got)
	}
	if err := <-same; err == nil {
		t.Fatal("creating v00 again with another size while its first create was committing succeeded; want ALREADY_EXISTS")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, Options{Name: "batch"}); err != nil {
		t.Fatal(err)
	}
	vols, err := s.ListVolumes(ctx, "cinder")
	if err != nil || len(vols) != n {
		t.Fatalf("after reopening: %d volumes (%v); want %d", len(vols), err, n)
	}
	// Layer ids stay unique across the batch and the reopen.
	v, err := s.CreateVolume(ctx, array.VolumeSpec{Name: "after", Pool: "cinder", SizeBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range s.vols {
		if w.rec.Name != v.Name && w.live.id == s.vols["after"].live.id {
			t.Fatalf("volume %s shares layer %d with the new volume", w.rec.Name, w.live.id)
		}
	}
}

// TestCommitBatchFailureIsolated: one change that fails in a shared
// transaction fails only its own caller.
func TestCommitBatchFailureIsolated(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Name: "isolated"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bad := errors.New("bad change")
	put := func(k string) func(*bolt.Tx) error {
		return func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte(k), []byte("x")) }
	}
	reqs := []*commitReq{
		{fn: put("k1"), done: make(chan error, 1)},
		{fn: func(*bolt.Tx) error { return bad }, done: make(chan error, 1)},
		{fn: put("k2"), done: make(chan error, 1)},
	}
	s.commitBatch(reqs)
	if err := <-reqs[1].done; !errors.Is(err, bad) {
		t.Fatalf("the bad change: %v", err)
	}
	for _, r := range []*commitReq{reqs[0], reqs[2]} {
		if err := <-r.done; err != nil {
			t.Fatalf("a good change failed with the bad one: %v", err)
		}
	}
	s.db.View(func(tx *bolt.Tx) error {
		for _, k := range []string{"k1", "k2"} {
			if tx.Bucket(bucketMeta).Get([]byte(k)) == nil {
				t.Errorf("%s was not committed", k)
			}
		}
		return nil
	})
}

// TestCreateDeleteSameNamesConcurrently: creates and deletes racing on
// the same names leave the namespace and the disk agreeing.
func TestCreateDeleteSameNamesConcurrently(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, Options{Name: "race"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePool(ctx, "cinder"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				name := fmt.Sprintf("v%d", (w+i)%5)
				if i%2 == 0 {
					if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: name, Pool: "cinder", SizeBytes: 1 << 20}); err != nil {
						t.Error(err)
					}
				} else if err := s.DeleteVolume(ctx, name); err != nil && !errdefs.IsNotFound(err) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	live, err := s.ListVolumes(ctx, "cinder")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{Name: "race"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	again, err := s2.ListVolumes(ctx, "cinder")
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != len(again) {
		t.Fatalf("%d volumes before the reopen, %d after", len(live), len(again))
	}
	for i := range live {
		if live[i].Name != again[i].Name {
			t.Fatalf("before the reopen %v, after %v", live, again)
		}
	}
	if len(s2.layers) != len(again) {
		t.Fatalf("%d layers for %d volumes after the reopen: a deleted volume's layer was kept or a live one lost", len(s2.layers), len(again))
	}
}

// TestSettlingNameIsTaken: while a create's commit runs without s.mu,
// no clone, rename or pool delete can take its name or its pool.
func TestSettlingNameIsTaken(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{Name: "settling"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []string{"cinder", "spare"} {
		if _, err := s.CreatePool(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: "src", Pool: "cinder", SizeBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSnapshot(ctx, "src", "s1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: "other", Pool: "cinder", SizeBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	s.gc.mu.Lock()
	s.gc.leading = true // a commit "in flight": the create below queues
	s.gc.mu.Unlock()
	created := make(chan error, 1)
	go func() {
		_, err := s.CreateVolume(ctx, array.VolumeSpec{Name: "x", Pool: "spare", SizeBytes: 1 << 20})
		created <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.gc.mu.Lock()
		queued := len(s.gc.queue)
		s.gc.mu.Unlock()
		if queued == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the create never queued")
		}
	}
	_, err = s.CloneSnapshot(ctx, array.CloneSpec{Volume: "src", Snapshot: "s1", Name: "x"})
	if !errdefs.IsAborted(err) {
		t.Fatalf("cloning onto a name being created: %v; want ABORTED", err)
	}
	_, err = s.RenameVolume(ctx, "other", "x", nil)
	if !errdefs.IsAborted(err) {
		t.Fatalf("renaming onto a name being created: %v; want ABORTED", err)
	}
	if err := s.DeletePool(ctx, "spare"); !errdefs.IsAborted(err) {
		t.Fatalf("deleting the pool of a volume being created: %v; want ABORTED", err)
	}
	s.gc.mu.Lock()
	s.gc.queue[0].done <- errLead
	s.gc.mu.Unlock()
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetVolume(ctx, "x"); err != nil || v.Pool != "spare" || v.Source != "" {
		t.Fatalf("the created volume: %+v, %v", v, err)
	}
}
