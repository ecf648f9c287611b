package main

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/volrep/volrep/array"
)

// P8: scale. One replication cycle of a protection group of 1,000 volumes
// in which 10 changed 1 MiB each, against the same cycle of a group of 10
// volumes with the same changes: a cycle's cost should follow what
// changed, not how many volumes the group holds.
func init() {
	register("P8", "pg-cycle-scale", pgCycleScale)
}

func pgCycleScale(ctx context.Context, env *Env) ([]Row, error) {
	big := 1000
	if env.Quick {
		big = 200
	}
	small, err := pgCycle(ctx, env, "p8s", 10)
	if err != nil {
		return nil, err
	}
	large, err := pgCycle(ctx, env, "p8l", big)
	if err != nil {
		return nil, err
	}
	if large.sent != small.sent {
		return nil, fmt.Errorf("the cycles sent %d and %d bytes for the same changes", small.sent, large.sent)
	}
	return []Row{{ID: "P8", Name: "pg-cycle-scale", Volrep: large.took.Seconds(), Baseline: small.took.Seconds(), Unit: "s",
		Note: fmt.Sprintf("one cycle of a %d-volume protection group vs a 10-volume one, 10 volumes x 1 MiB changed in each (%d bytes sent by each cycle, median of 3); goal ratio >= 0.5", big, large.sent)}}, nil
}

type cycleResult struct {
	took time.Duration
	sent int64
}

// pgCycle replicates a protection group of n 64 MiB volumes, then times
// three cycles that each follow a 1 MiB change to 10 of them.
func pgCycle(ctx context.Context, env *Env, name string, n int) (cycleResult, error) {
	p, err := newPair(ctx, env, name)
	if err != nil {
		return cycleResult{}, err
	}
	defer p.stop()
	rctx, stopRun := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { p.eng.Run(rctx); close(ran) }()
	defer func() { stopRun(); <-ran }()
	members := make([]string, n)
	for i := range members {
		members[i] = fmt.Sprintf("v%04d", i)
		if _, err := p.src.CreateVolume(ctx, array.VolumeSpec{Name: members[i], Pool: "bench", SizeBytes: 64 << 20}); err != nil {
			return cycleResult{}, err
		}
	}
	if _, err := p.src.CreateGroup(ctx, "pg", "bench", nil); err != nil {
		return cycleResult{}, err
	}
	if _, err := p.src.AddMembers(ctx, "pg", members); err != nil {
		return cycleResult{}, err
	}
	if _, err := p.eng.ReplicateEntity(ctx, array.ReplicaSpec{Name: "pg.target", Kind: array.KindGroup, Local: "pg",
		Link: "target", RemotePool: "bench", Interval: time.Hour}); err != nil {
		return cycleResult{}, err
	}
	// The first cycle (everything) is not timed.
	if _, err := p.eng.SyncReplica(ctx, "pg.target", true); err != nil {
		return cycleResult{}, err
	}
	var times []float64
	var sent int64
	data := bytes.Repeat([]byte{0x5a}, 1<<20)
	for round := range 3 {
		for i := range 10 {
			data[0] = byte(round*10 + i)
			if err := p.src.WriteVolume(ctx, members[i*n/10], int64(round)<<20, data, false); err != nil {
				return cycleResult{}, err
			}
		}
		start := time.Now()
		r, err := p.eng.SyncReplica(ctx, "pg.target", true)
		if err != nil {
			return cycleResult{}, err
		}
		times = append(times, time.Since(start).Seconds())
		if r.LastSyncBytes < 10<<20 {
			return cycleResult{}, fmt.Errorf("a cycle after 10 MiB of changes sent %d bytes", r.LastSyncBytes)
		}
		// The changed members' bytes are on the target (not timed): the
		// row measured a real cycle, not one that skipped them.
		got := make([]byte, len(data))
		for i := range 10 {
			data[0] = byte(round*10 + i)
			if err := p.dst.ReadVolume(ctx, members[i*n/10], int64(round)<<20, got); err != nil {
				return cycleResult{}, err
			}
			if !bytes.Equal(got, data) {
				return cycleResult{}, fmt.Errorf("cycle %d: the target's copy of %s lacks its change", round, members[i*n/10])
			}
		}
		sent = r.LastSyncBytes
	}
	return cycleResult{took: time.Duration(medianF(times) * float64(time.Second)), sent: sent}, nil
}
