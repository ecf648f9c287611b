package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/volrep/volrep/array"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// recPodReleases names the pods deleted or made async here whose peer has
// not yet confirmed that it heard so. Until it does, the peer's copies
// answer as the pod's (writes refused, paths unavailable), across its
// restarts, since it keeps its own record of them; the word is owed, and
// it is delivered once the link is back, however long that takes.
const recPodReleases = "pod-releases"

type podReleaseRec struct {
	Link    string        `json:"link"`
	Timeout time.Duration `json:"timeout"`
}

// oweRelease records that pod p's peer is to be told the pod names no
// copies there. It is written before the pod stops, so a crash in between
// leaves it owed; a pod of the same name started later drops it (addPod),
// its own stream stating its copies.
func (e *Engine) oweRelease(ctx context.Context, p *pod) error {
	rec := podReleaseRec{Link: p.l.rec.Name, Timeout: p.timeout}
	if err := e.save(ctx, recPodReleases, p.name, rec); err != nil {
		return fmt.Errorf("recording that pod %s's peer is to release its copies: %w", p.name, err)
	}
	e.mu.Lock()
	e.owed[p.name] = rec
	e.mu.Unlock()
	return nil
}

// forgetRelease drops what is owed for a pod of that name, if anything.
func (e *Engine) forgetRelease(ctx context.Context, name string) error {
	// The view drops it first, so a view never shows a release the
	// records no longer hold; a failed delete puts it back.
	e.mu.Lock()
	rec, owed := e.owed[name]
	delete(e.owed, name)
	e.mu.Unlock()
	if !owed {
		return nil
	}
	if err := e.s.DeleteRecord(ctx, recPodReleases, name); err != nil {
		e.mu.Lock()
		e.owed[name] = rec
		e.mu.Unlock()
		return err
	}
	return nil
}

// loadReleases reads what is owed at startup; e.owed holds it from then
// on, alongside the records.
func (e *Engine) loadReleases(ctx context.Context) (map[string]podReleaseRec, error) {
	out := map[string]podReleaseRec{}
	err := e.s.Records(ctx, recPodReleases, "", func(k string, data []byte) error {
		var r podReleaseRec
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("record of pod %s's owed release: %w", k, err)
		}
		out[k] = r
		return nil
	})
	return out, err
}

// deliverReleases tells each connected peer that is owed it that a pod
// names no copies there any more. It runs with the link checks, on their
// goroutine, so a peer that is back hears within one check interval.
// failed holds the last error logged per pod, so a peer that keeps
// refusing (it carries the pod: it took writes this array lacks) is
// logged once, not at every check.
func (e *Engine) deliverReleases(ctx context.Context, failed map[string]string) {
	e.mu.Lock()
	owed := maps.Clone(e.owed)
	e.mu.Unlock()
	for name, rec := range owed {
		e.mu.Lock()
		running := e.pods[name] != nil
		l := e.links[rec.Link]
		e.mu.Unlock()
		if running {
			continue // its own stream states its copies
		}
		if l == nil {
			e.log.Warn("the link to a removed pod's peer was deleted, so the peer cannot be told: its copies answer as the pod's until they are promoted or deleted there",
				"pod", name, "link", rec.Link)
			delete(failed, name)
			e.dropRelease(ctx, name)
			continue
		}
		if l.view().State != array.LinkConnected {
			continue
		}
		err := e.releasePeer(ctx, l, name, rec.Timeout)
		var old *peerTooOld
		switch {
		case err == nil:
			e.log.Info("the peer released its copies of a pod removed here: they are plain replicas again", "pod", name, "link", rec.Link)
		case errors.As(err, &old):
			// A peer without forwarding keeps no copies as the pod's.
		default:
			if ctx.Err() == nil && failed[name] != err.Error() {
				failed[name] = err.Error()
				e.log.Warn("telling the peer that a pod removed here names no copies there; retrying at each link check",
					"pod", name, "link", rec.Link, "err", err)
			}
			continue
		}
		delete(failed, name)
		e.dropRelease(ctx, name)
	}
}

// owedOverLocked names, sorted, the pods whose release is owed over link.
// Called with e.mu held.
func (e *Engine) owedOverLocked(link string) []string {
	var out []string
	for pod, r := range e.owed {
		if r.Link == link {
			out = append(out, pod)
		}
	}
	slices.Sort(out)
	return out
}

func (e *Engine) dropRelease(ctx context.Context, name string) {
	if err := e.forgetRelease(ctx, name); err != nil {
		e.log.Warn("dropping a pod's delivered release; it is sent again at the next link check", "pod", name, "err", err)
	}
}

// releasePeer opens a Forward stream for the pod as its preferred array
// would, states that it names no copies, and waits for the peer to end
// the stream: the peer ends it without error only once it has applied
// the state (dropped its forwarders and its record of the copies).
func (e *Engine) releasePeer(ctx context.Context, l *link, name string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = defaultSyncTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cs, err := openPodStream(ctx, l, e.log, arrayv1.TransferService_Forward_FullMethodName, array.FeatureForwardOwnCopy, timeout,
		func(ctx context.Context) (arrayv1.TransferService_ForwardClient, error) { return l.xfer.Forward(ctx) })
	if err != nil {
		return err
	}
	msgs := []*arrayv1.ForwardRequest{
		{Msg: &arrayv1.ForwardRequest_Open{Open: &arrayv1.ForwardOpen{Pod: name, SourceArrayId: e.id, TimeoutMs: timeout.Milliseconds(), Session: rand.Uint64() | 1}}},
		{Msg: &arrayv1.ForwardRequest_State{State: &arrayv1.ForwardState{}}},
	}
	for _, m := range msgs {
		if err := cs.Send(m); err != nil {
			break // the stream's status, from Recv, says why
		}
	}
	_ = cs.CloseSend()
	for {
		if _, err := cs.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
