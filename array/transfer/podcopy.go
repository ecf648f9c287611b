package transfer

import (
	"context"
	"maps"
	"slices"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/wire"
	"github.com/volrep/volrep/errdefs"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

// GetPodCopy reports a pod as this array, its non-preferred side, sees it.
func (t *Service) GetPodCopy(ctx context.Context, req *arrayv1.GetPodCopyRequest) (*arrayv1.GetPodCopyResponse, error) {
	c, err := t.PodCopy(ctx, req.GetPod())
	if err != nil {
		return nil, err
	}
	return &arrayv1.GetPodCopyResponse{Pod: wire.PodCopyToPB(c)}, nil
}

// PodCopy is GetPodCopy's answer: whether the preferred array reaches this
// array, whether the pod's copies here take writes, and this array's own
// hold at the mediator.
func (t *Service) PodCopy(ctx context.Context, pod string) (array.PodCopy, error) {
	if err := ctx.Err(); err != nil {
		return array.PodCopy{}, err
	}
	p := t.fwd.lookup(pod)
	if p == nil {
		return t.unreachedPod(ctx, pod)
	}
	p.mu.Lock()
	up, inSync, carry, claim := p.sess != nil, p.inSync, p.carry, p.claim
	c := array.PodCopy{Pod: pod, Volumes: slices.Sorted(maps.Keys(p.volumes)), SourceArrayID: p.source}
	p.mu.Unlock()
	switch {
	case carry != nil:
		c.State = array.PodCarried
		if err := carry.refusal(); err != nil {
			c.Writes, c.Message = array.WritesStopped, err.Error()
		} else {
			c.Writes, c.Message = array.WritesOnline, "this array carries the pod alone: the mediator gave it the pod's key while the preferred array was cut off from both; "+
				"the writes it takes go back to the preferred array when that is back"
		}
	case up && inSync:
		c.State, c.Writes = array.PodOnline, array.WritesOnline
		c.Message = "in sync; writes here are forwarded to the preferred array, which sequences them"
	case up:
		c.State, c.Writes = array.PodResyncing, array.WritesStopped
		c.Message = "the preferred array is bringing this array's copies in sync; writes are taken here once they are"
	default:
		c.State, c.Writes = array.PodOffline, array.WritesStopped
		c.Message = "the preferred array does not reach this array; writes fail here, reads are served, until it is back"
		if claim != nil {
			c.Message += " or the mediator gives this array the pod"
		}
	}
	if claim != nil {
		st := claim.Status()
		c.MediatorHeld, c.MediatorState = st.Held, array.MediatorHealthy
		if !st.Reachable {
			c.MediatorState = array.MediatorUnreachable
			if st.Err != nil {
				c.Message += "; the mediator: " + st.Err.Error()
			}
		}
	}
	return c, nil
}

// unreachedPod reports a pod whose preferred array has not reached this
// array since it started (say both restarted, and only this one is back):
// its copies are known by the label their transfers gave them, and take
// no writes until the preferred array is back.
func (t *Service) unreachedPod(ctx context.Context, pod string) (array.PodCopy, error) {
	vols, err := t.s.ListVolumes(ctx, "")
	if err != nil {
		return array.PodCopy{}, err
	}
	c := array.PodCopy{Pod: pod, State: array.PodOffline, Writes: array.WritesStopped,
		Message: "the preferred array has not reached this array since it started; writes fail here, reads are served, until it is back"}
	for _, v := range vols {
		if v.Labels[LabelReplica] == pod {
			c.Volumes = append(c.Volumes, v.Name)
		}
	}
	if len(c.Volumes) == 0 {
		return array.PodCopy{}, errdefs.NotFound("pod %q has no copies on this array; "+
			"the preferred array's replica (GetReplica) says why, and the link from it is where to look", pod)
	}
	return c, nil
}
