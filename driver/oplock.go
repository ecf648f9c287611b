package driver

import (
	"sync"

	"github.com/volrep/volrep/errdefs"
)

// opLocks refuses a second operation on an object while one is in flight,
// as ABORTED, rather than queueing it: the volume manager retries, and a
// queued delete behind a slow create helps nobody.
type opLocks struct {
	mu   sync.Mutex
	held map[string]string // object → operation holding it
}

func (o *opLocks) acquire(object, op string) (func(), error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.held == nil {
		o.held = map[string]string{}
	}
	if cur, ok := o.held[object]; ok {
		return nil, errdefs.Aborted("%s is busy with %s; retry when it finishes", object, cur)
	}
	o.held[object] = op
	return func() {
		o.mu.Lock()
		delete(o.held, object)
		o.mu.Unlock()
	}, nil
}

// holder returns the operation holding object, if any.
func (o *opLocks) holder(object string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	op, ok := o.held[object]
	return op, ok
}
