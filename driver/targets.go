package driver

import (
	"context"
	"fmt"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/config"
)

// watchTargets asks the primary how each replication_device's replica is
// doing. It remembers whether each pod is in sync, so a failover can still
// prefer a sync target after the primary is gone, and it logs each
// target's health when it changes, under backend_id, so that
// `journalctl BACKEND_ID=<id>` tells one target's story from the driver's
// side (the arrays log the same events under LINK and REPLICA).
func (b *Backend) watchTargets(ctx context.Context) {
	if b.failedOver() {
		return
	}
	for _, rd := range b.cfg.ReplicationDevices {
		name := b.pgReplica(rd.BackendID)
		if rd.Type == array.TypeSync {
			name = b.podReplica(rd.BackendID)
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		r, err := b.primary.Replication.GetReplica(cctx, name)
		cancel()
		if err != nil {
			continue // a dead primary leaves the last thing it said standing
		}
		if rd.Type == array.TypeSync {
			b.notePod(rd.BackendID, r.PeerState == array.PeerOnline)
		}
		b.noteTarget(rd, r)
	}
}

// targetProblem says what is wrong with a replica, or "" when nothing is.
func targetProblem(rd config.ReplicationDevice, r array.Replica) string {
	switch {
	case r.State == array.StateError || r.State == array.StateDegraded:
		return fmt.Sprintf("%s: %s", r.State, r.Message)
	case rd.Type == array.TypeSync && r.PeerState != array.PeerOnline:
		return fmt.Sprintf("pod peer %s", r.PeerState)
	case r.RPOState == array.RPOLagging:
		return fmt.Sprintf("lagging %s behind", r.Lag.Round(time.Second))
	}
	return ""
}

func (b *Backend) noteTarget(rd config.ReplicationDevice, r array.Replica) {
	problem := targetProblem(rd, r)
	b.mu.Lock()
	if b.targetProblem == nil {
		b.targetProblem = map[string]string{}
	}
	prev, seen := b.targetProblem[rd.BackendID]
	b.targetProblem[rd.BackendID] = problem
	b.mu.Unlock()
	switch {
	case problem == prev:
	case problem != "":
		b.log.Warn("replication target unhealthy", "backend_id", rd.BackendID, "replica", r.Name,
			"type", rd.Type, "problem", problem, "last_sync", r.LastSynchronized)
	case seen:
		b.log.Info("replication target healthy again", "backend_id", rd.BackendID, "replica", r.Name, "type", rd.Type)
	}
}
