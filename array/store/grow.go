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
	m, cur, err := s.clientMirror(ctx, volume)
	if err != nil {
		return err
	}
	if r, ok := m.(Resizer); ok && size > cur {
		return r.Resize(ctx, size)
	}
	return nil
}

// clientMirror returns the mirror a client's change to volume would go
// through (a carried pod copy's included), and the volume's size.
func (s *Store) clientMirror(ctx context.Context, volume string) (Mirror, int64, error) {
	v, err := s.lookup(ctx, volume)
	if err != nil {
		return nil, 0, err
	}
	s.io.RLock()
	defer s.io.RUnlock()
	_, m := v.route(fromClient)
	return m, v.rec.Size, nil
}
