package store

import "context"

// Resizer is a Mirror that keeps its copy's size: a sync peer's copy must
// grow before the volume does here, or the first write to the new range
// could not be mirrored.
type Resizer interface {
	// Resize grows the copy to size bytes. It is called with no store lock
	// held and may wait on the network; an error fails the extend.
	Resize(ctx context.Context, size int64) error
}

// growMirror grows the copy of volume's mirror, if it keeps one, to size:
// the mirror a client's change would go through, so a pod's copy that is
// carried here has its say too.
func (s *Store) growMirror(ctx context.Context, volume string, size int64) error {
	v, err := s.lookup(ctx, volume)
	if err != nil {
		return err
	}
	s.io.RLock()
	_, m := v.route(fromClient)
	cur := v.rec.Size
	s.io.RUnlock()
	if r, ok := m.(Resizer); ok && size > cur {
		return r.Resize(ctx, size)
	}
	return nil
}
