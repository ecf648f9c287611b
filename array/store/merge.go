package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array/bitmap"
)

// collect finishes what a crash interrupted: layers nobody uses are
// deleted, anonymous layers with one child are merged, and files no layer
// names are removed.
func (s *Store) collect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.layers {
		if _, ok := s.layers[l.id]; !ok {
			continue // merged away while collecting an earlier one
		}
		if err := s.collectLayer(ctx, l); err != nil {
			return err
		}
	}
	known := map[string]bool{}
	for _, l := range s.layers {
		known[l.file] = true
	}
	dir := filepath.Join(s.dir, "layers")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".dat") && !known[e.Name()] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// collectLayer deletes or merges l if no volume or snapshot needs it as
// it is. Called with s.mu held.
func (s *Store) collectLayer(ctx context.Context, l *layer) error {
	for l != nil {
		if l.volume || l.snaps > 0 || l.staging {
			return nil
		}
		switch len(l.children) {
		case 0:
			if err := s.update(func(tx *bolt.Tx) error { return deleteLayerRec(tx, l.id) }); err != nil {
				return err
			}
			delete(s.layers, l.id)
			s.dropLayerFile(l)
			p := l.parent
			if p != nil {
				delete(p.children, l)
			}
			l = p
		case 1:
			var c *layer
			for c = range l.children {
			}
			return s.merge(ctx, l, c)
		default:
			return nil // still the base of several clones
		}
	}
	return nil
}

// merge folds the anonymous layer p into its only child c, copying
// whichever side holds fewer blocks. Every step keeps the view of c and of
// everything above it unchanged, so a crash at any point leaves a
// consistent store that collect finishes on the next start.
func (s *Store) merge(ctx context.Context, p, c *layer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// A writable child changes under us; hold I/O off for the whole merge.
	// A frozen child is stable, so only the final swap excludes I/O.
	if !c.frozen {
		s.io.Lock()
		defer s.io.Unlock()
	}
	if m, ok := cheapMerge(p, c); ok {
		s.io.Lock()
		defer s.io.Unlock()
		return s.finishMerge(m.p, m.c, m.file, m.f, m.present, m.zero)
	}
	c.mu.RLock()
	covered := c.present.Clone()
	covered.Or(c.zero)
	childCost := covered.Count()
	c.mu.RUnlock()
	p.mu.RLock()
	fromParent := p.present.Clone()
	fromParent.AndNot(covered)
	zeroFromParent := p.zero.Clone()
	zeroFromParent.AndNot(covered)
	p.mu.RUnlock()

	if fromParent.Count() <= childCost {
		return s.mergeIntoChild(p, c, fromParent, zeroFromParent)
	}
	return s.mergeIntoParent(p, c)
}

// mergeIntoChild copies p's blocks that c lacks into c's file.
func (s *Store) mergeIntoChild(p, c *layer, blocks, zeros *bitmap.Bitmap) error {
	pf, cf, err := mergeFiles(p, c)
	if err != nil {
		return err
	}
	blocks.Runs(0, ^uint64(0), func(lo, hi uint64) bool {
		err = copyRange(cf, pf, int64(lo)*bs, int64(hi-lo)*bs)
		return err == nil
	})
	if err != nil {
		return fmt.Errorf("merging layer %d into %d: %w", p.id, c.id, err)
	}
	if err := fdatasync(cf); err != nil {
		return err
	}
	if c.frozen {
		s.io.Lock()
		defer s.io.Unlock()
	}
	c.mu.Lock()
	present, zero := c.present.Clone(), c.zero.Clone()
	present.Or(blocks)
	zero.Or(zeros)
	c.mu.Unlock()
	return s.finishMerge(p, c, c.file, cf, present, zero)
}

// mergeIntoParent copies c's blocks over p's file, which then becomes c's.
func (s *Store) mergeIntoParent(p, c *layer) error {
	c.mu.RLock()
	cp, cz := c.present.Clone(), c.zero.Clone()
	c.mu.RUnlock()
	pf, cf, err := mergeFiles(p, c)
	if err != nil {
		return err
	}
	cp.Runs(0, ^uint64(0), func(lo, hi uint64) bool {
		err = copyRange(pf, cf, int64(lo)*bs, int64(hi-lo)*bs)
		return err == nil
	})
	if err == nil {
		cz.Runs(0, ^uint64(0), func(lo, hi uint64) bool {
			err = punchHole(pf, int64(lo)*bs, int64(hi-lo)*bs)
			return err == nil
		})
	}
	if err != nil {
		return fmt.Errorf("merging layer %d into %d: %w", c.id, p.id, err)
	}
	if err := fdatasync(pf); err != nil {
		return err
	}
	if c.frozen {
		s.io.Lock()
		defer s.io.Unlock()
	}
	p.mu.RLock()
	present, zero := p.present.Clone(), p.zero.Clone()
	p.mu.RUnlock()
	present.AndNot(cz)
	present.Or(cp)
	zero.AndNot(cp)
	zero.Or(cz)
	oldFile, oldF := c.file, cf
	if err := s.finishMerge(p, c, p.file, pf, present, zero); err != nil {
		return err
	}
	oldF.Close()
	if err := os.Remove(filepath.Join(s.dir, "layers", oldFile)); err != nil {
		s.opts.Logger.Warn("removing merged layer file", "file", oldFile, "err", err)
	}
	return nil
}

// mergeFiles gives both layers of a merge a file (a layer never written
// has none yet), so the merge can move either file into c.
func mergeFiles(p, c *layer) (pf, cf *os.File, err error) {
	if pf, err = p.writable(); err != nil {
		return nil, nil, err
	}
	if cf, err = c.writable(); err != nil {
		return nil, nil, err
	}
	return pf, cf, nil
}

// finishMerge commits c with its new file and bitmaps in place of p and c.
// Called with I/O excluded.
func (s *Store) finishMerge(p, c *layer, file string, f *os.File, present, zero *bitmap.Bitmap) error {
	for _, l := range []*layer{p, c} {
		if err := s.durableEntry(l); err != nil {
			return err
		}
	}
	m := plannedMerge{p: p, c: c, file: file, f: f, present: present, zero: zero}
	if err := s.update(m.put); err != nil {
		return err
	}
	s.applyMerge(m)
	return nil
}

// plannedMerge is a merge whose data is in place: what is left is to
// record it (put) and to apply it in memory (applyMerge).
type plannedMerge struct {
	p, c          *layer
	file          string
	f             *os.File
	present, zero *bitmap.Bitmap
}

func (m plannedMerge) put(tx *bolt.Tx) error {
	r := layerRec{ID: m.c.id, File: m.file, Frozen: m.c.frozen}
	if m.p.parent != nil {
		r.Parent = m.p.parent.id
	}
	if err := putJSON(tx.Bucket(bucketLayers), u64key(m.c.id), r); err != nil {
		return err
	}
	if err := rewriteBitmaps(tx, m.c.id, m.present, m.zero); err != nil {
		return err
	}
	return deleteLayerRec(tx, m.p.id)
}

// cheapMerge plans folding the anonymous layer p into its only child c
// when one of them holds nothing, so no block moves and no file is
// written: the merge is metadata only. ok is false when it needs data
// moved (merge does it).
func cheapMerge(p, c *layer) (m plannedMerge, ok bool) {
	if !c.frozen {
		return m, false // a writable child could take a write meanwhile
	}
	switch {
	case p.empty():
		c.mu.RLock()
		defer c.mu.RUnlock()
		return plannedMerge{p: p, c: c, file: c.file, f: c.data(), present: c.present.Clone(), zero: c.zero.Clone()}, true
	case c.empty():
		p.mu.RLock()
		defer p.mu.RUnlock()
		return plannedMerge{p: p, c: c, file: p.file, f: p.data(), present: p.present.Clone(), zero: p.zero.Clone()}, true
	}
	return m, false
}

// applyMerge makes a recorded merge true in memory. Called with s.mu held
// and I/O excluded.
func (s *Store) applyMerge(m plannedMerge) {
	p, c, file, f, present, zero := m.p, m.c, m.file, m.f, m.present, m.zero
	present.TakeDirty()
	zero.TakeDirty()
	c.mu.Lock()
	c.present, c.zero = present, zero
	c.mu.Unlock()
	keepParentFile := f == p.data()
	c.file, c.path = file, filepath.Join(s.dir, "layers", file)
	c.fd.Store(f)
	c.parent = p.parent
	if p.parent != nil {
		delete(p.parent.children, p)
		p.parent.children[c] = struct{}{}
	}
	delete(s.layers, p.id)
	if !keepParentFile {
		s.dropLayerFile(p)
	}
}
