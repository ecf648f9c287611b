// Package metrics is volrepd's Prometheus instrumentation: replica lag and
// RPO, bytes replicated, per-RPC latency, backend up/down, the NBD and
// iSCSI data paths, and the Go and process collectors, served on [volrep]
// metrics_listen at /metrics.
//
// Everything hangs off one Registry, built by New; the daemon feeds it
// through small hooks (Replicas, ReplicationCycle, the gRPC interceptors,
// SetBackendUp, DataPath) so that no other package depends on Prometheus.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/server"
)

const namespace = "volrep"

// Transfer directions, the values of the direction label.
const (
	Sent     = "sent"
	Received = "received"
)

// rpcBuckets span volrep's calls: sub-millisecond lookups up to
// replicating a snapshot with wait, which can take minutes.
var rpcBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Registry holds volrepd's metrics. Its methods are safe for concurrent
// use.
type Registry struct {
	reg       *prometheus.Registry
	transfer  *prometheus.CounterVec
	cycles    *prometheus.CounterVec
	rpc       *prometheus.HistogramVec
	backendUp *prometheus.GaugeVec
	reloads   *prometheus.CounterVec
	reloadOK  prometheus.Gauge
	podStates *prometheus.CounterVec
	replicas  *replicaCollector
	dataPath  *dataPathCollector

	mu        sync.Mutex
	lastTotal map[[2]string]int64 // (array, replica) → TotalBytesSent at its last cycle
}

// New returns a registry with every volrep metric and the Go and process
// collectors registered.
func New() *Registry {
	r := &Registry{
		reg: prometheus.NewRegistry(),
		transfer: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "transfer_bytes_total",
			Help: "Replication bytes sent to or received from peer arrays, as they crossed the wire (after compression).",
		}, []string{"array", "direction"}),
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "replication_cycles_total",
			Help: "Finished replication cycles by result (ok or error).",
		}, []string{"array", "replica", "result"}),
		rpc: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "grpc_request_duration_seconds",
			Help:    "Time gRPC calls took in the handler, by server (driver or array NAME), full method and status code.",
			Buckets: rpcBuckets,
		}, []string{"server", "method", "code"}),
		backendUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "backend_up",
			Help: "1 when the driver backend is up, 0 when it is down (volrep backend list shows why).",
		}, []string{"backend"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "config_reloads_total",
			Help: "Configuration reloads (SIGHUP) by result: ok, or failed when the file could not be read and the previous configuration stayed.",
		}, []string{"result"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_last_reload_successful",
			Help: "1 when the last configuration load (start or SIGHUP) read the file, 0 when it failed.",
		}),
		podStates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "pod_state_changes_total",
			Help: "Changes of a sync pod's state at this array, by the state entered: online, resyncing, degraded (carrying on without the peer) or stopped_by_mediator.",
		}, []string{"array", "pod", "state"}),
		replicas:  newReplicaCollector(),
		dataPath:  newDataPathCollector(),
		lastTotal: map[[2]string]int64{},
	}
	r.reloadOK.Set(1)
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.transfer, r.cycles, r.rpc, r.backendUp, r.reloads, r.reloadOK, r.podStates, r.replicas, r.dataPath,
	)
	return r
}

// Prometheus returns the underlying registry, to register more collectors
// or to gather in tests.
func (r *Registry) Prometheus() *prometheus.Registry { return r.reg }

// Handler serves the registry in the Prometheus exposition formats. A
// collector that fails (a replica list that times out) leaves its metrics
// out of that scrape; the rest is still served, and
// promhttp_metric_handler_errors_total counts the failure.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		Registry:      r.reg,
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// AddSent counts n replication bytes array sent to a peer.
func (r *Registry) AddSent(arrayName string, n int64) { r.addTransfer(arrayName, Sent, n) }

// AddReceived counts n replication bytes array received from a peer.
func (r *Registry) AddReceived(arrayName string, n int64) { r.addTransfer(arrayName, Received, n) }

func (r *Registry) addTransfer(arrayName, direction string, n int64) {
	// A counter's Add panics on a negative value; nothing to count anyway.
	if n <= 0 {
		return
	}
	r.transfer.WithLabelValues(arrayName, direction).Add(float64(n))
}

// ReplicationCycle returns a function for the replication engine's
// Options.OnCycle on array arrayName. It counts each cycle by result and
// adds the bytes the cycle shipped to volrep_transfer_bytes_total{direction="sent"}.
//
// The bytes come from the growth of the replica's TotalBytesSent, so a
// cycle that shipped nothing adds nothing. The first cycle seen for a
// replica has no earlier total to compare with: it counts LastSyncBytes
// when it succeeded (the bytes of that cycle) and nothing when it failed.
func (r *Registry) ReplicationCycle(arrayName string) func(array.Replica, error) {
	return func(rep array.Replica, err error) {
		result := "ok"
		if err != nil {
			result = "error"
		}
		r.cycles.WithLabelValues(arrayName, rep.Name, result).Inc()

		key := [2]string{arrayName, rep.Name}
		r.mu.Lock()
		last, seen := r.lastTotal[key]
		if !seen {
			last = rep.TotalBytesSent
			if err == nil {
				last -= rep.LastSyncBytes
			}
		}
		r.lastTotal[key] = rep.TotalBytesSent
		r.mu.Unlock()
		r.AddSent(arrayName, rep.TotalBytesSent-last)
	}
}

// Replicas makes every scrape report the replicas list returns for array
// arrayName (the engine's ListReplicas(ctx, "")), so lag is as of the
// scrape, not as of the last cycle. Calling it again for the same array
// replaces the function; nil removes it.
func (r *Registry) Replicas(arrayName string, list func(context.Context) ([]array.Replica, error)) {
	r.replicas.set(arrayName, list)
}

// PodState returns the replication engine's Options.OnPodState for an
// array: it counts every change of a pod's state.
func (r *Registry) PodState(arrayName string) func(pod, state string) {
	return func(pod, state string) { r.podStates.WithLabelValues(arrayName, pod, state).Inc() }
}

// SetBackendUp records whether driver backend is up; call it from the
// driver's Options.OnState, and once per backend at start.
func (r *Registry) SetBackendUp(backend string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	r.backendUp.WithLabelValues(backend).Set(v)
}

// ForgetBackend drops a backend that a reload removed.
func (r *Registry) ForgetBackend(backend string) { r.backendUp.DeleteLabelValues(backend) }

// ConfigReloaded counts a reload and records whether it read the file.
func (r *Registry) ConfigReloaded(ok bool) {
	result, v := "ok", 1.0
	if !ok {
		result, v = "failed", 0
	}
	r.reloads.WithLabelValues(result).Inc()
	r.reloadOK.Set(v)
}

// Serve serves reg's metrics at http://addr/metrics until ctx ends, then
// shuts down, giving scrapes in flight a few seconds. It returns nil after
// such a stop, and the error if it cannot listen or serving fails.
func Serve(ctx context.Context, addr string, reg *Registry) error {
	lis, err := server.Listen(ctx, addr)
	if err != nil {
		return fmt.Errorf("metrics_listen: %w", err)
	}
	return ServeListener(ctx, lis, reg)
}

// ServeListener is Serve on a listener the caller opened; it closes lis.
func ServeListener(ctx context.Context, lis net.Listener, reg *Registry) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", reg.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Scrapes still running after the grace period are cut off.
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}
