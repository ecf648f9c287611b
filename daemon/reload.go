package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"

	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/driver"
	"github.com/volrep/volrep/logging"
	"github.com/volrep/volrep/metrics"
	"github.com/volrep/volrep/server"
)

// reloader applies a re-read configuration to a running daemon, with
// systemd's notify-reload protocol around it.
type reloader struct {
	opts    Options
	driver  *driver.Driver
	health  *server.Server
	reg     *metrics.Registry
	running *config.Config
	// driverAPI is whether the driver API was opened at start.
	driverAPI bool
}

// reload re-reads the file and re-converges the backends. What it cannot
// apply without a restart (listen addresses, hosted arrays) is named in
// the log, and the daemon keeps running the old values for those.
func (r *reloader) reload(ctx context.Context) {
	log := r.opts.Logger
	if err := server.NotifyReloading(); err != nil {
		log.Warn("sd_notify RELOADING failed", "err", err)
	}
	defer func() {
		if err := server.NotifyReady(); err != nil {
			log.Warn("sd_notify READY failed", "err", err)
		}
	}()
	log.Info("reloading configuration", "file", r.running.File)
	next, err := r.opts.Load()
	if r.reg != nil {
		r.reg.ConfigReloaded(err == nil)
	}
	if err != nil {
		log.Error("configuration reload failed; the previous configuration stays in force", "file", r.running.File, "err", err)
		return
	}
	logProblems(log, next)
	for _, change := range needsRestart(r.running, next) {
		log.Warn("configuration change needs a restart of volrepd to take effect", "change", change)
	}
	if !r.driverAPI && len(next.Backends) > 0 {
		log.Warn("configuration change needs a restart of volrepd to take effect: the driver API was not opened at start (no backends, no driver_listen), so no client can reach the backends added",
			"change", "[DEFAULT] enabled_backends")
	}
	if r.opts.Level != nil {
		if lv, err := logging.ParseLevel(next.Daemon.LogLevel); err == nil {
			r.opts.Level.Set(lv)
		}
	}
	res, err := r.driver.Reload(ctx, next.Backends)
	if err != nil {
		log.Error("configuration reload interrupted", "err", err)
		return
	}
	for _, name := range res.Removed {
		r.health.SetServingStatus("backend/"+name, false)
		if r.reg != nil {
			r.reg.ForgetBackend(name)
		}
	}
	// What is applied becomes the running configuration; what needs a
	// restart stays as it was, so it is named again on the next reload.
	applied := *next
	applied.Daemon, applied.Arrays = r.running.Daemon, r.running.Arrays
	applied.Daemon.LogLevel = next.Daemon.LogLevel
	r.running = &applied
	log.Info("configuration reloaded", "file", next.File, "problems", len(next.Problems),
		"added", res.Added, "changed", res.Changed, "removed", res.Removed, "unchanged", res.Unchanged)
}

func logProblems(log *slog.Logger, cfg *config.Config) {
	for _, p := range cfg.Problems {
		log.Error("config problem", "file", p.File, "line", p.Line, "section", p.Section, "key", p.Key, "problem", p.Message)
	}
}

// needsRestart lists the changes from cur to next that a reload does not
// apply: the [volrep] listeners and the arrays this process hosts, whose
// open volumes and exports cannot be moved under their clients.
func needsRestart(cur, next *config.Config) []string {
	var out []string
	a, b := cur.Daemon, next.Daemon
	for _, f := range []struct {
		key      string
		from, to any
	}{
		{"driver_listen", a.DriverListen, b.DriverListen},
		{"driver_api_token", a.DriverAPIToken, b.DriverAPIToken},
		{"metrics_listen", a.MetricsListen, b.MetricsListen},
		{"log_format", a.LogFormat, b.LogFormat},
		{"state_dir", a.StateDir, b.StateDir},
	} {
		if f.from != f.to {
			out = append(out, fmt.Sprintf("[volrep] %s", f.key))
		}
	}
	old := map[string]config.Array{}
	for _, x := range cur.Arrays {
		old[x.Name] = x
	}
	for _, x := range next.Arrays {
		prev, ok := old[x.Name]
		delete(old, x.Name)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("[array:%s] added", x.Name))
		case !sameArray(prev, x):
			out = append(out, fmt.Sprintf("[array:%s] changed", x.Name))
		}
	}
	for name := range old {
		out = append(out, fmt.Sprintf("[array:%s] removed", name))
	}
	return out
}

func sameArray(a, b config.Array) bool {
	if len(a.Problems) > 0 || len(b.Problems) > 0 {
		return len(a.Problems) == len(b.Problems)
	}
	a.Line, b.Line = 0, 0
	return reflect.DeepEqual(a, b)
}
