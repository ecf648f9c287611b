package metrics

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/volrep/volrep/array"
)

// listTimeout bounds how long a scrape waits for one array's replica
// list; a stuck engine must not hang the metrics endpoint.
const listTimeout = 5 * time.Second

// replicaStates are the states volrep_replica_state always reports, so
// that each replica has one series per state and a change of state is a
// change of value rather than a series appearing.
var replicaStates = []string{array.StateInitializing, array.StateActive, array.StateSuspended, array.StateDegraded, array.StateError}

// replicaCollector reports every hosted array's replicas as they are at
// scrape time.
type replicaCollector struct {
	lag, lastBytes, lastDuration, rpoBreached, state *prometheus.Desc

	mu      sync.Mutex
	sources map[string]func(context.Context) ([]array.Replica, error) // by array name
}

func newReplicaCollector() *replicaCollector {
	labels := []string{"array", "replica"}
	desc := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "replica", name), help, append(slices.Clone(labels), extra...), nil)
	}
	return &replicaCollector{
		lag: desc("lag_seconds",
			"Age of the newest snapshot the target holds: how much would be lost if the source failed now. Absent until the first sync."),
		lastBytes:    desc("last_sync_bytes", "Bytes the last successful sync sent."),
		lastDuration: desc("last_sync_duration_seconds", "Time the last successful sync took."),
		rpoBreached:  desc("rpo_breached", "1 when the lag exceeds the replica's RPO, or it has never synced; else 0."),
		state:        desc("state", "1 for the replica's current state, 0 for the others.", "state"),
		sources:      map[string]func(context.Context) ([]array.Replica, error){},
	}
}

func (c *replicaCollector) set(arrayName string, list func(context.Context) ([]array.Replica, error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if list == nil {
		delete(c.sources, arrayName)
		return
	}
	c.sources[arrayName] = list
}

func (c *replicaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lag, c.lastBytes, c.lastDuration, c.rpoBreached, c.state} {
		ch <- d
	}
}

func (c *replicaCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	sources := maps.Clone(c.sources)
	c.mu.Unlock()
	for _, arrayName := range slices.Sorted(maps.Keys(sources)) {
		ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
		reps, err := sources[arrayName](ctx)
		cancel()
		if err != nil {
			// Fails this part of the scrape visibly instead of reporting
			// replicas as gone.
			ch <- prometheus.NewInvalidMetric(c.state, fmt.Errorf("listing the replicas of array %s: %w", arrayName, err))
			continue
		}
		for _, r := range reps {
			c.collectOne(ch, arrayName, r)
		}
	}
}

func (c *replicaCollector) collectOne(ch chan<- prometheus.Metric, arrayName string, r array.Replica) {
	gauge := func(d *prometheus.Desc, v float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{arrayName, r.Name}, extra...)...)
	}
	if !r.LastSynchronized.IsZero() {
		gauge(c.lag, r.Lag.Seconds())
	}
	gauge(c.lastBytes, float64(r.LastSyncBytes))
	gauge(c.lastDuration, r.LastSyncDuration.Seconds())
	gauge(c.rpoBreached, boolValue(r.RPOState == array.RPOLagging))
	states := replicaStates
	if !slices.Contains(states, r.State) && r.State != "" {
		// A state this package does not know yet is still shown.
		states = append(slices.Clone(states), r.State)
	}
	for _, s := range states {
		gauge(c.state, boolValue(s == r.State), s)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
