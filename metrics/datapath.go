package metrics

import (
	"cmp"
	"maps"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/volrep/volrep/internal/latency"
)

// Data path protocols, the values of the protocol label.
const (
	NBD   = "nbd"
	ISCSI = "iscsi"
)

// DataPathStats is what an array's NBD or iSCSI server has counted since
// it started (its Stats), as the daemon hands it over.
type DataPathStats struct {
	ConnectionsActive   int64
	ConnectionsAccepted int64
	Commands            int64 // NBD requests or SCSI commands received
	Errors              int64 // answered with an NBD error or CHECK CONDITION
	BytesRead           int64 // data sent to clients
	BytesWritten        int64 // data received from clients and written
	// TaskManagement and Resets are iSCSI's: the Task Management
	// Function Requests answered (a host sends them when its commands
	// time out), and the logical unit resets applied.
	TaskManagement int64
	Resets         int64
	// Conflicts are iSCSI commands answered RESERVATION CONFLICT: a
	// host that a cluster fenced (or one outside it) still sending I/O.
	Conflicts int64
	// Latency is how long commands took at the array, by kind.
	Latency [latency.NumOps]latency.Snapshot
}

// dataPathCollector reports each hosted array's NBD and iSCSI servers as
// they are at scrape time.
type dataPathCollector struct {
	connections, accepted, commands, errors, read, written, tmfs, resets, conflicts *prometheus.Desc
	duration                                                                        *prometheus.Desc

	mu      sync.Mutex
	sources map[[2]string]func() DataPathStats // (array, protocol) → its server's Stats
}

func newDataPathCollector() *dataPathCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "datapath", name), help, []string{"array", "protocol"}, nil)
	}
	return &dataPathCollector{
		connections: desc("connections", "Client connections open now."),
		accepted:    desc("connections_accepted_total", "Client connections accepted."),
		commands:    desc("commands_total", "NBD requests or SCSI commands received."),
		errors:      desc("errors_total", "Commands answered with an NBD error or a SCSI CHECK CONDITION (unit attentions included)."),
		read:        desc("read_bytes_total", "Data bytes sent to clients."),
		written:     desc("written_bytes_total", "Data bytes received from clients and written."),
		tmfs: desc("task_management_total",
			"iSCSI Task Management Function Requests answered (ABORT TASK, LOGICAL UNIT RESET, ...): hosts send them when commands time out; the journal names each."),
		resets: desc("resets_total",
			"iSCSI logical unit resets applied: by a host here (one per unit for a TARGET WARM RESET) or taken at a pod's other array."),
		conflicts: desc("reservation_conflicts_total",
			"iSCSI commands answered RESERVATION CONFLICT: a host outside a persistent reservation, a fenced cluster node say, still sending I/O."),
		duration: prometheus.NewDesc(prometheus.BuildFQName(namespace, "datapath", "command_duration_seconds"),
			"How long NBD requests and SCSI commands took at the array, by kind (read, write, flush, other): from when a command and its data were in to when its answer was queued, so the array's time (a sync write's round trip to its pod's peer included) and not the network's to the host.",
			[]string{"array", "protocol", "op"}, nil),
		sources: map[[2]string]func() DataPathStats{},
	}
}

func (c *dataPathCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connections, c.accepted, c.commands, c.errors, c.read, c.written, c.tmfs, c.resets, c.conflicts, c.duration} {
		ch <- d
	}
}

func (c *dataPathCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	sources := maps.Clone(c.sources)
	c.mu.Unlock()
	keys := slices.SortedFunc(maps.Keys(sources), func(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	for _, k := range keys {
		st := sources[k]()
		metric := func(d *prometheus.Desc, t prometheus.ValueType, v int64) {
			ch <- prometheus.MustNewConstMetric(d, t, float64(v), k[0], k[1])
		}
		metric(c.connections, prometheus.GaugeValue, st.ConnectionsActive)
		metric(c.accepted, prometheus.CounterValue, st.ConnectionsAccepted)
		metric(c.commands, prometheus.CounterValue, st.Commands)
		metric(c.errors, prometheus.CounterValue, st.Errors)
		metric(c.read, prometheus.CounterValue, st.BytesRead)
		metric(c.written, prometheus.CounterValue, st.BytesWritten)
		for op, h := range st.Latency {
			ch <- prometheus.MustNewConstHistogram(c.duration, h.Count(), h.Sum.Seconds(), cumulative(h), k[0], k[1], latency.Op(op).String())
		}
		if k[1] == ISCSI {
			metric(c.tmfs, prometheus.CounterValue, st.TaskManagement)
			metric(c.resets, prometheus.CounterValue, st.Resets)
			metric(c.conflicts, prometheus.CounterValue, st.Conflicts)
		}
	}
}

// cumulative is h's buckets as Prometheus counts them: each bound's
// count includes every shorter one's.
func cumulative(h latency.Snapshot) map[float64]uint64 {
	out := make(map[float64]uint64, len(latency.Bounds))
	var n uint64
	for i, b := range latency.Bounds {
		n += h.Buckets[i]
		out[b.Seconds()] = n
	}
	return out
}

// DataPath makes every scrape report the counts stats returns for an
// array's NBD or iSCSI server (protocol NBD or ISCSI); nil stops it.
func (r *Registry) DataPath(arrayName, protocol string, stats func() DataPathStats) {
	r.dataPath.mu.Lock()
	defer r.dataPath.mu.Unlock()
	if stats == nil {
		delete(r.dataPath.sources, [2]string{arrayName, protocol})
		return
	}
	r.dataPath.sources[[2]string{arrayName, protocol}] = stats
}
