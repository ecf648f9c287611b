package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/errdefs"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
	"github.com/volrep/volrep/server"
)

// Doctor check results.
const (
	statusOK   = "ok"
	statusWarn = "warn"
	statusFail = "fail"
)

// doctorProbeTimeout bounds each call to one array, so that one array that
// does not answer cannot use up the whole --timeout.
const doctorProbeTimeout = 5 * time.Second

// maxClockSkew is the skew above which doctor warns: replica lag and RPO
// are measured with snapshot times taken on one array and read on another.
const maxClockSkew = 2 * time.Second

const doctorLong = `Diagnose volrepd in one command: the configuration file, the backends the
daemon runs, and the arrays and links behind them. Every problem comes with
what to do about it.

  volrep doctor --config FILE --offline
      checks the file only: every problem as FILE:LINE: message, and what
      each backend will do (san_ip, targets, protection group and pod,
      interval and retention). No daemon is needed; tokens are never shown.

  volrep doctor
      asks volrepd (--addr) for its backends and prints each one's state, the
      reason it is down, and the fix.

  volrep doctor --config FILE
      does both; the daemon's address defaults to the file's driver_listen
      and its token to driver_api_token. It also checks every array itself
      with the file's tokens: reachable, token accepted, clock skew, and
      the links of each backend's primary array.

Exit status: 0 when nothing is wrong (warnings such as clock skew do not
count), 1 when something is.`

// doctorCheck is one finding.
type doctorCheck struct {
	Area   string `json:"area"` // daemon, backend, array or link
	Name   string `json:"name"`
	Status string `json:"status"` // ok, warn or fail
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// doctorReport is everything doctor found; -o json prints it as is.
type doctorReport struct {
	Config   string           `json:"config,omitempty"`
	Problems []string         `json:"problems,omitempty"` // FILE:LINE: message
	Backends []backendSummary `json:"backends,omitempty"` // from the file
	Arrays   []arraySummary   `json:"arrays,omitempty"`   // hosted, from the file
	Daemon   string           `json:"daemon,omitempty"`   // the address asked, when online
	Checks   []doctorCheck    `json:"checks,omitempty"`
	Failures int              `json:"failures"`
	Warnings int              `json:"warnings"`
}

// backendSummary is what a backend section will do, without its tokens.
type backendSummary struct {
	Name              string          `json:"name"`
	Line              int             `json:"line"`
	VolumeBackendName string          `json:"volume_backend_name"`
	SanIP             string          `json:"san_ip"`
	TokenSet          bool            `json:"pure_api_token_set"`
	Pool              string          `json:"pool"`
	Targets           []targetSummary `json:"replication_devices,omitempty"`
	PGName            string          `json:"pure_replication_pg_name,omitempty"`
	Interval          string          `json:"replication_interval,omitempty"`
	Retention         string          `json:"retention,omitempty"`
	PodName           string          `json:"pure_replication_pod_name,omitempty"`
	SyncTimeout       string          `json:"sync_timeout,omitempty"`
	PreferredArray    string          `json:"preferred_array,omitempty"`
	Problems          int             `json:"problems"`
}

type targetSummary struct {
	BackendID string `json:"backend_id"`
	SanIP     string `json:"san_ip"`
	Type      string `json:"type"`
	TokenSet  bool   `json:"api_token_set"`
	Line      int    `json:"line"`
}

type arraySummary struct {
	Name      string `json:"name"`
	Line      int    `json:"line"`
	Listen    string `json:"listen"`
	NBDListen string `json:"nbd_listen,omitempty"`
	DataDir   string `json:"data_dir"`
	Pools     string `json:"pools"`
}

func (r *doctorReport) add(c doctorCheck) {
	switch c.Status {
	case statusFail:
		r.Failures++
	case statusWarn:
		r.Warnings++
	}
	r.Checks = append(r.Checks, c)
}

func newDoctorCmd(a *app) *cobra.Command {
	var cfgPath string
	var offline bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Diagnose the configuration, the backends, and the arrays and links behind them",
		Long:  doctorLong,
		Args:  exactIDs(0, "no arguments"),
		RunE: a.runE(func(cmd *cobra.Command, _ []string) error {
			if offline && cfgPath == "" {
				return usageErrorf("--offline checks a configuration file: give it with --config")
			}
			rep := &doctorReport{}
			var cfg *config.Config
			if cfgPath != "" {
				var err error
				if cfg, err = config.Load(cfgPath); err != nil {
					return &cliError{What: "read the configuration", Err: err}
				}
				checkConfig(rep, cfg)
			}
			if !offline {
				a.doctorTarget(cmd, cfg)
				rep.Daemon = a.addr
				if err := a.call(cmd, func(ctx context.Context, c driverv1.DriverServiceClient) error {
					checkDaemon(ctx, rep, c, cfg, a.addr)
					if cfg != nil {
						checkArrays(ctx, rep, cfg)
					}
					return nil
				}); err != nil {
					return err
				}
			}
			if err := a.printDoctor(rep); err != nil {
				return err
			}
			if rep.Failures > 0 {
				return &cliError{What: fmt.Sprintf("doctor found %d problem(s)", rep.Failures), Exit: exitGeneric}
			}
			return nil
		}),
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "volrepd's configuration file (cinder.conf syntax) to check")
	cmd.Flags().BoolVar(&offline, "offline", false, "check the --config file only; do not contact volrepd or the arrays")
	return cmd
}

// doctorTarget points the client at the daemon the file describes, unless
// the user named one: --addr or VOLREP_ADDR, --token or VOLREP_TOKEN.
func (a *app) doctorTarget(cmd *cobra.Command, cfg *config.Config) {
	if cfg == nil {
		return
	}
	if !cmd.Flags().Changed("addr") && a.getenv(envAddr) == "" && cfg.Daemon.DriverListen != "" {
		a.addr = dialable(cfg.Daemon.DriverListen)
	}
	if a.token == "" {
		a.token = cfg.Daemon.DriverAPIToken.Reveal()
	}
}

// dialable turns a listen address into one to connect to: a daemon
// listening on every interface is reached on loopback.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// ---- the file ----

func checkConfig(rep *doctorReport, cfg *config.Config) {
	rep.Config = cfg.File
	for _, p := range cfg.Problems {
		rep.Problems = append(rep.Problems, p.String())
	}
	rep.Failures += len(cfg.Problems)
	for _, b := range cfg.Backends {
		s := backendSummary{Name: b.Section, Line: b.Line, VolumeBackendName: b.VolumeBackendName, SanIP: b.SanIP,
			TokenSet: b.APIToken != "", Pool: b.Pool, Problems: len(b.Problems)}
		for _, d := range b.ReplicationDevices {
			s.Targets = append(s.Targets, targetSummary{BackendID: d.BackendID, SanIP: d.SanIP, Type: d.Type, TokenSet: d.APIToken != "", Line: d.Line})
		}
		if len(b.AsyncTargets()) > 0 {
			s.PGName = b.PGName
			s.Interval = shortDuration(b.ReplicaInterval)
			s.Retention = fmt.Sprintf("all for %s, then %d a day for %d days", shortDuration(b.RetentionShortTerm), b.RetentionPerDay, b.RetentionDays)
		}
		if len(b.SyncTargets()) > 0 {
			s.PodName = b.PodName
			s.SyncTimeout = shortDuration(b.SyncTimeout)
			s.PreferredArray = b.PreferredArray
		}
		rep.Backends = append(rep.Backends, s)
	}
	checkPodNames(rep, cfg)
	for _, ar := range cfg.Arrays {
		rep.Arrays = append(rep.Arrays, arraySummary{Name: ar.Name, Line: ar.Line, Listen: ar.Listen, NBDListen: ar.NBDListen,
			DataDir: ar.DataDir, Pools: strings.Join(ar.Pools, ",")})
	}
}

// checkPodNames finds backends of the file that stretch pods of one name
// to one sync target from different primary arrays. A pod name is one pod
// per array, so the target takes the first pod to reach it and refuses
// the other's, whose hosts then cannot write at the target. (Backends of
// other files are found online, by asking the target: checkPodCopy.)
func checkPodNames(rep *doctorReport, cfg *config.Config) {
	type stretch struct {
		backend config.Backend
		device  config.ReplicationDevice
	}
	first := map[[2]string]stretch{} // target address, pod name → first backend
	for _, b := range cfg.Backends {
		for _, d := range b.SyncTargets() {
			key := [2]string{d.SanIP, b.PodOf(d.BackendID)}
			f, seen := first[key]
			if !seen {
				first[key] = stretch{b, d}
				continue
			}
			if f.backend.SanIP == b.SanIP {
				continue // one primary array: one pod
			}
			rep.add(doctorCheck{Area: "pod", Name: fmt.Sprintf("[%s] pod %s at replication_device %s", b.Section, key[1], d.BackendID), Status: statusFail,
				Detail: fmt.Sprintf("[%s] (line %d) stretches a pod of the same name to the same array %s from another primary array (%s, not %s): "+
					"a pod name is one pod per array, so that array takes the first pod to reach it and refuses the other's, whose hosts cannot write there",
					f.backend.Section, f.device.Line, d.SanIP, f.backend.SanIP, b.SanIP),
				Fix: fmt.Sprintf("set pure_replication_pod_name in [%s] (%s:%d) or in [%s] to a name of its own", b.Section, cfg.File, b.Line, f.backend.Section)})
		}
	}
}

// shortDuration prints 3600s as "1h" rather than "1h0m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ---- the daemon ----

func checkDaemon(ctx context.Context, rep *doctorReport, c driverv1.DriverServiceClient, cfg *config.Config, addr string) {
	cctx, cancel := context.WithTimeout(ctx, doctorProbeTimeout)
	defer cancel()
	resp, err := listBackends(cctx, c)
	if err != nil {
		st, _ := grpcStatus(err)
		detail := err.Error()
		fix := "is volrepd running? systemctl status volrepd; journalctl -u volrepd"
		if st != nil {
			detail = fmt.Sprintf("%s (%s)", oneLine(st.Message()), codeName(st.Code()))
			if h := hintFor(st, addr); h != "" {
				fix = h
			}
		}
		rep.add(doctorCheck{Area: "daemon", Name: "volrepd at " + addr, Status: statusFail, Detail: "ListBackends failed: " + detail, Fix: fix})
		return
	}
	rep.add(doctorCheck{Area: "daemon", Name: "volrepd at " + addr, Status: statusOK, Detail: fmt.Sprintf("answers; %d backend(s)", len(resp.GetBackends()))})
	running := map[string]bool{}
	for _, b := range resp.GetBackends() {
		running[b.GetName()] = true
		name := "[" + b.GetName() + "]"
		if b.GetUp() {
			rep.add(doctorCheck{Area: "backend", Name: name, Status: statusOK,
				Detail: fmt.Sprintf("up; active %s; targets %s", dash(b.GetActiveBackendId()), targetsCell(b.GetReplicationTargets()))})
			continue
		}
		status, fix := backendFix(b.GetReason())
		rep.add(doctorCheck{Area: "backend", Name: name, Status: status, Detail: "down: " + b.GetReason(), Fix: fix})
	}
	if cfg != nil {
		for _, b := range cfg.Backends {
			if !running[b.Section] {
				rep.add(doctorCheck{Area: "backend", Name: "[" + b.Section + "]", Status: statusWarn,
					Detail: fmt.Sprintf("in %s but not run by volrepd at %s", cfg.File, addr),
					Fix:    "volrepd runs another configuration: restart it with this file (systemctl restart volrepd)"})
			}
		}
	}
}

// locationRe finds the FILE:LINE a reason starts with, or the one it
// quotes in parentheses, as the driver writes them.
var locationRe = regexp.MustCompile(`(?:^|\(|, )([^\s(),]+:\d+)(?::|\))`)

// backendFix suggests what to do about a down backend from its reason.
func backendFix(reason string) (status, fix string) {
	loc := "the line the reason names"
	if m := locationRe.FindStringSubmatch(reason); m != nil {
		loc = m[1]
	}
	switch {
	case reason == "starting":
		return statusWarn, "the backend is still starting; run volrep doctor again in a few seconds"
	case strings.Contains(reason, "unknown key") && strings.Contains(reason, "did you mean"):
		return statusFail, fmt.Sprintf("fix the key at %s and send SIGHUP (systemctl reload volrepd)", loc)
	case strings.Contains(reason, "rejected the token"):
		return statusFail, fmt.Sprintf("check the token (%s): it must equal the array's api_token", loc)
	case strings.Contains(reason, "unreachable"):
		return statusFail, "check the array is running and reachable from this host"
	case locationRe.MatchString(reason):
		return statusFail, fmt.Sprintf("fix the configuration at %s and send SIGHUP (systemctl reload volrepd)", loc)
	}
	return statusFail, "see journalctl -u volrepd"
}

// ---- the arrays ----

// arrayProbe is what one array said when doctor asked it directly.
type arrayProbe struct {
	info     array.Info
	skew     time.Duration
	err      error
	links    []array.Link
	linksErr error
	pod      array.PodCopy // at a sync target: its copy of the backend's pod
	podErr   error
}

// probeArray asks the array at addr who it is, with links for its links,
// and with a pod name how it holds that pod. The skew is the array's
// clock minus ours at the middle of the call, which cancels the network
// delay out.
func probeArray(ctx context.Context, addr, token string, links bool, pod string) arrayProbe {
	cc, err := server.Dial(addr, token)
	if err != nil {
		return arrayProbe{err: err}
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, doctorProbeTimeout)
	defer cancel()
	start := time.Now()
	info, err := client.New(cc).Info(ctx)
	took := time.Since(start)
	if err != nil {
		return arrayProbe{err: err}
	}
	p := arrayProbe{info: info, skew: info.Now.Sub(start.Add(took / 2))}
	if links {
		p.links, p.linksErr = client.NewReplication(cc).ListLinks(ctx)
	}
	if pod != "" {
		p.pod, p.podErr = client.NewReplication(cc).GetPodCopy(ctx, pod)
	}
	return p
}

// arrayRef is one array a backend uses, as the file describes it.
type arrayRef struct {
	backend  config.Backend
	role     string // "primary array" or "replication_device ID"
	addrKey  string // the config key of the address
	tokenKey string
	addr     string
	token    string
	line     int
	primary  bool
	sync     bool   // a sync replication_device: the pods' peer array
	pod      string // the pod a sync replication_device holds copies of
}

func checkArrays(ctx context.Context, rep *doctorReport, cfg *config.Config) {
	var refs []arrayRef
	primaryOf := map[string]int{} // backend section → its primary's ref
	for _, b := range cfg.Backends {
		primaryOf[b.Section] = len(refs)
		refs = append(refs, arrayRef{backend: b, role: "primary array", addrKey: "san_ip", tokenKey: "pure_api_token",
			addr: b.SanIP, token: b.APIToken.Reveal(), line: b.Line, primary: true})
		for _, d := range b.ReplicationDevices {
			r := arrayRef{backend: b, role: "replication_device " + d.BackendID, addrKey: "san_ip",
				tokenKey: "api_token", addr: d.SanIP, token: d.APIToken.Reveal(), line: d.Line, sync: d.Type == "sync"}
			if r.sync {
				r.pod = b.PodOf(d.BackendID)
			}
			refs = append(refs, r)
		}
	}
	// Probe concurrently: an array that does not answer costs its timeout
	// once, not once per array after it.
	probes := make([]arrayProbe, len(refs))
	var wg sync.WaitGroup
	for i, r := range refs {
		if r.addr == "" || r.token == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			probes[i] = probeArray(ctx, r.addr, r.token, r.primary, r.pod)
		}()
	}
	wg.Wait()
	for i, r := range refs {
		checkArray(rep, cfg.File, r, probes[i])
	}
	for i, r := range refs {
		if r.sync && probes[i].err == nil {
			checkPodCopy(rep, cfg.File, r, probes[i], probes[primaryOf[r.backend.Section]])
		}
	}
	// Links after every array, so each area prints as one block.
	for i, r := range refs {
		if r.primary && r.addr != "" && r.token != "" && probes[i].err == nil {
			checkLinks(rep, fmt.Sprintf("%s:%d", cfg.File, r.line), r, probes[i])
		}
	}
}

func checkArray(rep *doctorReport, file string, r arrayRef, p arrayProbe) {
	where := fmt.Sprintf("%s:%d", file, r.line)
	name := fmt.Sprintf("[%s] %s", r.backend.Section, r.role)
	if r.addr != "" {
		name += " at " + r.addr
	}
	switch {
	case r.addr == "" || r.token == "":
		rep.add(doctorCheck{Area: "array", Name: name, Status: statusFail,
			Detail: fmt.Sprintf("not checked: %s or %s is missing", r.addrKey, r.tokenKey),
			Fix:    fmt.Sprintf("set them in [%s] (%s)", r.backend.Section, where)})
		return
	case errdefs.IsUnauthenticated(p.err):
		rep.add(doctorCheck{Area: "array", Name: name, Status: statusFail,
			Detail: fmt.Sprintf("rejected the token (UNAUTHENTICATED): %s", errMessage(p.err)),
			Fix:    fmt.Sprintf("check the token: %s of the %s in [%s] (%s) must equal the array's api_token", r.tokenKey, r.role, r.backend.Section, where)})
		return
	case errdefs.IsUnavailable(p.err) || errdefs.Is(p.err, errdefs.KindDeadlineExceeded):
		rep.add(doctorCheck{Area: "array", Name: name, Status: statusFail,
			Detail: "unreachable: " + errMessage(p.err),
			Fix:    fmt.Sprintf("check the array is running and reachable from this host, and %s in [%s] (%s)", r.addrKey, r.backend.Section, where)})
		return
	case p.err != nil:
		rep.add(doctorCheck{Area: "array", Name: name, Status: statusFail, Detail: errMessage(p.err), Fix: "see the array's log (journalctl -u volrepd on its host)"})
		return
	}
	c := doctorCheck{Area: "array", Name: name, Status: statusOK,
		Detail: fmt.Sprintf("array %s answers, token accepted; clock skew %s", p.info.Name, formatSkew(p.skew))}
	if p.skew > maxClockSkew || p.skew < -maxClockSkew {
		c.Status = statusWarn
		c.Fix = "synchronise the clocks of this host and the array (chrony, NTP): replication lag and RPO are computed from them"
	}
	rep.add(c)
	if !r.sync {
		return
	}
	for _, f := range syncPeerFeatures {
		if !p.info.Has(f.name) {
			rep.add(doctorCheck{Area: "array", Name: name, Status: statusWarn,
				Detail: fmt.Sprintf("array %s (volrep %s) lacks the protocol feature %q: %s", p.info.Name, p.info.Version, f.name, f.without),
				Fix:    "upgrade volrep on that array to the primary array's version"})
		}
	}
}

// syncPeerFeatures are the protocol features a pod's peer needs, and what
// its pods do without each.
var syncPeerFeatures = []struct{ name, without string }{
	// The primary would forward to it unsafely, so it forwards nothing.
	{array.FeatureForwardOwnCopy, "the pods' copies there take no client writes, which go to the primary array instead"},
	// The two arrays cannot keep one set, so neither offers any.
	{array.FeatureReservations, "the pods' volumes have no SCSI persistent reservations at either array, so a cluster cannot fence its nodes through them"},
}

// checkPodCopy reports how a sync target holds its backend's pod. A pod
// name is one pod per array: a target that holds the name for another
// primary array (another backend, in this file or another cloud's, with
// the same pod name and target) refuses this backend's pod, so its hosts
// cannot write at the target.
func checkPodCopy(rep *doctorReport, file string, r arrayRef, p, primary arrayProbe) {
	name := fmt.Sprintf("[%s] pod %s at %s", r.backend.Section, r.pod, r.role)
	c := doctorCheck{Area: "pod", Name: name, Status: statusOK}
	switch {
	case errdefs.IsNotFound(p.podErr):
		c.Detail = "no copies there yet: the pod has no volumes, or its first copy is still on its way"
	case status.Code(p.podErr) == codes.Unimplemented:
		c.Status, c.Detail = statusWarn, fmt.Sprintf("array %s (volrep %s) cannot say how it holds the pod", p.info.Name, p.info.Version)
		c.Fix = "upgrade volrep on that array to the primary array's version"
	case p.podErr != nil:
		c.Status, c.Detail = statusFail, "GetPodCopy failed: "+errMessage(p.podErr)
		c.Fix = "see the array's log (journalctl -u volrepd on its host)"
	case p.pod.SourceArrayID != "" && primary.err == nil && primary.info.ID != "" && p.pod.SourceArrayID != primary.info.ID:
		c.Status = statusFail
		c.Detail = fmt.Sprintf("array %s holds pod %s for array %s, not for this backend's primary array %s (%s): a pod name is one pod per array, "+
			"so it refuses this backend's pod, and hosts cannot write this backend's pod volumes there",
			p.info.Name, r.pod, p.pod.SourceArrayID, primary.info.Name, primary.info.ID)
		c.Fix = fmt.Sprintf("set pure_replication_pod_name in [%s] (%s:%d) to a name no other backend replicating to array %s uses",
			r.backend.Section, file, r.backend.Line, p.info.Name)
	default:
		c.Detail = fmt.Sprintf("array %s holds %d of its copies: %s, writes %s", p.info.Name, len(p.pod.Volumes), p.pod.State, p.pod.Writes)
		if p.pod.SourceArrayID == "" {
			c.Detail += "; whose pod it is there is not known (no stream from the primary array since that array started, or an older volrep)"
		}
	}
	rep.add(c)
}

// checkLinks reports the primary array's links: each async
// replication_device needs one, connected, named by its backend_id.
func checkLinks(rep *doctorReport, where string, r arrayRef, p arrayProbe) {
	prefix := fmt.Sprintf("[%s] primary %s: link ", r.backend.Section, p.info.Name)
	if p.linksErr != nil {
		rep.add(doctorCheck{Area: "link", Name: prefix + "list", Status: statusFail, Detail: "ListLinks failed: " + errMessage(p.linksErr)})
		return
	}
	ours := map[string]config.ReplicationDevice{}
	for _, d := range r.backend.AsyncTargets() {
		ours[d.BackendID] = d
	}
	seen := map[string]bool{}
	for _, l := range p.links {
		seen[l.Name] = true
		d, isOurs := ours[l.Name]
		c := doctorCheck{Area: "link", Name: prefix + l.Name + " -> " + l.Address, Status: statusOK}
		switch l.State {
		case array.LinkConnected:
			c.Detail = fmt.Sprintf("connected to array %s; clock skew %s", l.RemoteArrayName, formatSkew(l.ClockSkew))
			if l.ClockSkew > maxClockSkew || l.ClockSkew < -maxClockSkew {
				c.Status = statusWarn
				c.Fix = "synchronise the clocks of the two arrays (chrony, NTP)"
			}
		case array.LinkUnauthorized:
			c.Status, c.Detail = statusFail, "the peer rejected the link's token (UNAUTHENTICATED): "+l.LastError
			c.Fix = "check the token of the replication_device this link serves"
			if isOurs {
				c.Fix = fmt.Sprintf("check the token: api_token of replication_device %s in [%s] (%s:%d)", d.BackendID, r.backend.Section, fileOf(where), d.Line)
			}
		default:
			c.Status, c.Detail = statusFail, l.State+": "+l.LastError
			c.Fix = "check the peer array is running and reachable from the primary array (not only from this host)"
		}
		if !isOurs && c.Status == statusFail {
			// Someone else's link: worth showing, not this backend's failure.
			c.Status = statusWarn
		}
		if owed := l.PodsOwedRelease; len(owed) > 0 {
			// The peer's copies of these removed pods still refuse writes
			// as the pod's: a warning, however the link is.
			c.Detail += fmt.Sprintf("; the peer has yet to release its copies of removed pod(s) %s, which refuse writes until it does", strings.Join(owed, ", "))
			if c.Status == statusOK {
				c.Status = statusWarn
				c.Fix = "the primary array tells the peer at its next link check; if it keeps failing, journalctl -u volrepd says why " +
					"(a peer that carries the pod refuses: promote or delete those copies there)"
			}
		}
		rep.add(c)
	}
	for id, d := range ours {
		if !seen[id] {
			rep.add(doctorCheck{Area: "link", Name: prefix + id, Status: statusFail,
				Detail: fmt.Sprintf("missing: replication_device %s has no link on the primary array yet", id),
				Fix: fmt.Sprintf("volrepd makes it once it reaches replication_device %s (%s:%d) with its token: see that array's check above, and journalctl -u volrepd",
					id, fileOf(where), d.Line)})
		}
	}
}

func fileOf(where string) string {
	if i := strings.LastIndex(where, ":"); i >= 0 {
		return where[:i]
	}
	return where
}

func formatSkew(d time.Duration) string {
	d = d.Round(time.Millisecond)
	if d < 0 {
		return "-" + (-d).String()
	}
	return "+" + d.String()
}

// errMessage is an error's message without gRPC's "rpc error: code = ..."
// wrapping, on one line.
func errMessage(err error) string {
	if st, ok := grpcStatus(err); ok {
		return oneLine(st.Message())
	}
	return oneLine(err.Error())
}

// ---- output ----

func (a *app) printDoctor(rep *doctorReport) error {
	if a.output == outputJSON {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return &cliError{What: "encode the report as JSON", Err: err}
		}
		if _, err := a.stdout.Write(append(b, '\n')); err != nil {
			return &cliError{What: "write output", Err: err}
		}
		return nil
	}
	w := a.stdout
	if rep.Config != "" {
		fmt.Fprintf(w, "Configuration %s\n", rep.Config)
		if len(rep.Problems) == 0 {
			fmt.Fprintln(w, "  no problems")
		}
		for _, p := range rep.Problems {
			fmt.Fprintln(w, "  "+p)
		}
		for _, b := range rep.Backends {
			printBackendSummary(w, b)
		}
		for _, ar := range rep.Arrays {
			fmt.Fprintf(w, "\nArray [array:%s] (line %d), hosted by this volrepd\n", ar.Name, ar.Line)
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			row(tw, "  listen", dash(ar.Listen))
			row(tw, "  nbd_listen", dash(ar.NBDListen))
			row(tw, "  data_dir", dash(ar.DataDir))
			row(tw, "  pools", dash(ar.Pools))
			tw.Flush()
		}
	}
	area := ""
	for _, c := range rep.Checks {
		if c.Area != area {
			area = c.Area
			fmt.Fprintf(w, "\n%s\n", areaTitles[area])
		}
		fmt.Fprintf(w, "  %-6s %s: %s\n", strings.ToUpper(c.Status), c.Name, oneLine(c.Detail))
		if c.Fix != "" {
			fmt.Fprintf(w, "         fix: %s\n", c.Fix)
		}
	}
	fmt.Fprintf(w, "\n%s\n", summaryLine(rep))
	return nil
}

var areaTitles = map[string]string{
	"daemon":  "Daemon",
	"backend": "Backends (as volrepd reports them)",
	"array":   "Arrays (checked from this host with the file's tokens)",
	"link":    "Links of the primary arrays",
	"pod":     "Pods at their sync targets",
}

func printBackendSummary(w io.Writer, b backendSummary) {
	fmt.Fprintf(w, "\nBackend [%s] (line %d)", b.Name, b.Line)
	if b.Problems > 0 {
		fmt.Fprintf(w, ": %d problem(s) above; volrepd keeps it down", b.Problems)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	token := "pure_api_token set"
	if !b.TokenSet {
		token = "pure_api_token MISSING"
	}
	row(tw, "  volume_backend_name", dash(b.VolumeBackendName))
	row(tw, "  san_ip", dash(b.SanIP)+" ("+token+")")
	row(tw, "  pool", dash(b.Pool))
	if len(b.Targets) == 0 {
		row(tw, "  replication_device", "none")
	}
	for _, t := range b.Targets {
		tok := "api_token set"
		if !t.TokenSet {
			tok = "api_token MISSING"
		}
		row(tw, "  replication_device", fmt.Sprintf("%s: %s %s (%s, line %d)", dash(t.BackendID), dash(t.Type), dash(t.SanIP), tok, t.Line))
	}
	if b.PGName != "" {
		row(tw, "  protection group", fmt.Sprintf("%s: every %s; keep %s", b.PGName, b.Interval, b.Retention))
	}
	if b.PodName != "" {
		row(tw, "  pod", fmt.Sprintf("%s: sync timeout %s; preferred array %s", b.PodName, b.SyncTimeout, b.PreferredArray))
	}
	tw.Flush()
}

func summaryLine(rep *doctorReport) string {
	switch {
	case rep.Failures == 0 && rep.Warnings == 0 && rep.Daemon == "":
		return "The file is fine. Only the file was checked (--offline)."
	case rep.Failures == 0 && rep.Warnings == 0:
		return "Everything checked is fine."
	case rep.Failures == 0:
		return fmt.Sprintf("No problems; %d warning(s).", rep.Warnings)
	}
	return fmt.Sprintf("%d problem(s), %d warning(s).", rep.Failures, rep.Warnings)
}
