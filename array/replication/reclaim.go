package replication

import (
	"context"

	"github.com/volrep/volrep/array/bitmap"
	"github.com/volrep/volrep/array/transfer"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// reclaim takes the pod back from a peer that carried it alone while
// this array was cut off from both the peer and the mediator: the blocks
// the peer changed, and those this copy marked dirty (changed here but
// never acknowledged), come from the peer's copy. A member the peer did
// not carry sends nothing, and keeps its dirty blocks for the resync.
func (p *pod) reclaim(ctx context.Context) (int64, error) {
	byRemote := map[string]*podMember{}
	vols := map[string][]*arrayv1.Extent{}
	p.mu.Lock()
	for _, m := range p.members {
		if !m.ready {
			continue
		}
		byRemote[m.remote] = m
		var ext []*arrayv1.Extent
		m.dirty.Runs(0, ^uint64(0), func(lo, hi uint64) bool {
			ext = append(ext, &arrayv1.Extent{Offset: int64(lo) * bs, Length: int64(hi-lo) * bs})
			return true
		})
		vols[m.remote] = ext
	}
	p.mu.Unlock()
	touched := map[*podMember]bool{}
	n, err := transfer.ReclaimFrom(ctx, p.l.xfer, transfer.ReclaimTarget{Pod: p.name, SourceArrayID: p.e.id, Volumes: vols, Timeout: p.timeout,
		Apply: func(ctx context.Context, volume string, off int64, data []byte) error {
			m := byRemote[volume]
			touched[m] = true
			return p.e.s.ApplyReclaimed(ctx, m.local, off, data)
		},
		Flush: func(ctx context.Context) error {
			for m := range touched {
				if err := p.e.s.ApplyMirroredFlush(ctx, m.local); err != nil {
					return err
				}
			}
			return nil
		},
		Done: func(context.Context) error {
			// Where this copy was dirty it now holds the peer's blocks.
			p.mu.Lock()
			for m := range touched {
				m.dirty, m.dirtyChanged = bitmap.New(), true
			}
			p.mu.Unlock()
			return p.persistDirty()
		}})
	if err != nil {
		return n, err
	}
	p.e.log.Info("pod taken back from its peer, which carried it alone while this array was cut off", "pod", p.name, "bytes", n)
	return n, nil
}
