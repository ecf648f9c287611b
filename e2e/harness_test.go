// Package e2e starts the real volrepd and drives it with the clients an
// operator would use: grpcurl, grpc-health-probe, the volrep CLI, and the
// NBD tools. Run it through `make test`, which installs those tools and
// sets VOLREP_E2E_REQUIRE=1 so a missing tool fails instead of skipping.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/internal/testenv"
	"github.com/volrep/volrep/server"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds volrepd and volrep once per test run.
func binaries(t *testing.T) (volrepd, volrep string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "volrep-e2e-bin")
		if buildErr != nil {
			return
		}
		// The daemon is built without the race detector: it is the system
		// under test here, driven at real speed; its packages run their own
		// tests with -race. VOLREP_E2E_RACE=1 builds it with -race too.
		args := []string{"build"}
		if os.Getenv("VOLREP_E2E_RACE") != "" {
			args = append(args, "-race")
		}
		for _, cmd := range []string{"volrepd", "volrep"} {
			out, err := exec.Command("go", append(args, "-o", filepath.Join(binDir, cmd), "github.com/volrep/volrep/cmd/"+cmd)...).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "volrepd"), filepath.Join(binDir, "volrep")
}

// tool finds an external client (see testenv.Tool).
func tool(t *testing.T, name string) string {
	t.Helper()
	return testenv.Tool(t, name)
}

// Daemon is one volrepd process with two arrays and the driver API.
type Daemon struct {
	t              *testing.T
	Dir, Conf      string
	DriverAddr     string
	ArrayA, ArrayB string
	NBDA, NBDB     string
	// ISCSIA is site-a's iscsi_listen, "" for none; ISCSIB is site-b's,
	// set only where a test writes site-b's section itself.
	ISCSIA, ISCSIB string
	TokenA, TokenB string
	DriverToken    string
	// ReadyService is the health service Start waits for ("backend/demo"
	// by default; "" waits for the daemon as a whole).
	ReadyService string
	readySet     bool
	// Prefix runs the daemon under another command, such as
	// "ip netns exec NS".
	Prefix []string
	// Env is added to the daemon's environment.
	Env    []string
	cmd    *exec.Cmd
	out    *testenv.Buffer
	exited chan struct{}
}

// Config holds what a test may change in the generated configuration.
type Config struct {
	*Daemon
	// Backend is the [demo] section body after san_ip and the token.
	Backend string
	// Extra is appended to the file.
	Extra string
}

const confTemplate = `[DEFAULT]
enabled_backends = demo

[volrep]
driver_listen = {{.DriverAddr}}
log_level = debug
{{- if .DriverToken}}
driver_api_token = {{.DriverToken}}
{{- end}}
state_dir = {{.Dir}}/driver

[array:site-a]
data_dir = {{.Dir}}/site-a
listen = {{.ArrayA}}
nbd_listen = {{.NBDA}}
{{- if .ISCSIA}}
iscsi_listen = {{.ISCSIA}}
{{- end}}
api_token = {{.TokenA}}

[array:site-b]
data_dir = {{.Dir}}/site-b
listen = {{.ArrayB}}
nbd_listen = {{.NBDB}}
api_token = {{.TokenB}}

[demo]
volume_backend_name = demo
san_ip = {{.ArrayA}}
pure_api_token = {{.TokenA}}
{{.Backend}}
{{.Extra}}
`

// NewDaemon prepares a daemon in a temp dir; customise then Start.
func NewDaemon(t *testing.T) *Daemon {
	return &Daemon{t: t, Dir: t.TempDir(), DriverAddr: freePort(t), ArrayA: freePort(t), ArrayB: freePort(t),
		NBDA: freePort(t), NBDB: freePort(t), TokenA: "token-a-" + t.Name(), TokenB: "token-b"}
}

// WriteConfig writes the configuration file.
func (d *Daemon) WriteConfig(backend, extra string) {
	d.t.Helper()
	var buf bytes.Buffer
	if err := template.Must(template.New("c").Parse(confTemplate)).Execute(&buf, Config{Daemon: d, Backend: backend, Extra: extra}); err != nil {
		d.t.Fatal(err)
	}
	d.Conf = filepath.Join(d.Dir, "volrep.conf")
	if err := os.WriteFile(d.Conf, buf.Bytes(), 0o600); err != nil {
		d.t.Fatal(err)
	}
}

// WriteRaw writes a configuration of the test's own.
func (d *Daemon) WriteRaw(text string) {
	d.t.Helper()
	d.Conf = filepath.Join(d.Dir, "volrep.conf")
	if err := os.WriteFile(d.Conf, []byte(text), 0o600); err != nil {
		d.t.Fatal(err)
	}
}

// WaitFor sets the health service Start waits for.
func (d *Daemon) WaitFor(service string) { d.ReadyService, d.readySet = service, true }

// DefaultBackend replicates demo to site-b asynchronously.
func (d *Daemon) DefaultBackend() string {
	return fmt.Sprintf("replication_device = backend_id:site-b,san_ip:%s,api_token:%s,type:async", d.ArrayB, d.TokenB)
}

// Start runs volrepd and waits until the driver API answers health checks
// (when DriverAddr is set).
func (d *Daemon) Start() {
	d.t.Helper()
	if d.Conf == "" {
		d.WriteConfig(d.DefaultBackend(), "")
	}
	volrepd, _ := binaries(d.t)
	d.out = &testenv.Buffer{}
	args := append(append([]string{}, d.Prefix...), volrepd, "--config", d.Conf)
	conf, err := os.ReadFile(d.Conf)
	if err != nil {
		d.t.Fatal(err)
	}
	var files []*os.File
	if len(d.Prefix) == 0 {
		files = handOver(d.t, string(conf))
	}
	if len(files) > 0 {
		// LISTEN_PID must be volrepd's own pid: the shell's, which exec keeps.
		args = append([]string{"sh", "-c", fmt.Sprintf(`LISTEN_PID=$$ LISTEN_FDS=%d exec "$0" "$@"`, len(files))}, args...)
	}
	d.cmd = exec.Command(args[0], args[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.Env = append(os.Environ(), d.Env...)
	d.cmd.ExtraFiles = files
	err = d.cmd.Start()
	for _, f := range files {
		f.Close() // the child has its own
	}
	if err != nil {
		d.t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.exited) }()
	d.t.Cleanup(d.Stop)
	d.learnPortZero()
	if d.DriverAddr != "" { // a process with arrays only has no driver API to ask
		d.waitServing()
	}
	handedOver(string(conf))
}

// announced matches volrepd's start-up lines that name a bound address.
var announced = regexp.MustCompile(`(?m)^volrepd: (?:array (\S+) (API|NBD)|driver API) on (\S+)`)

// learnPortZero replaces each of the daemon's addresses configured with
// port 0 by the address volrepd announces it bound.
func (d *Daemon) learnPortZero() {
	d.t.Helper()
	fields := map[string]*string{"driver": &d.DriverAddr,
		"site-a API": &d.ArrayA, "site-a NBD": &d.NBDA, "site-b API": &d.ArrayB, "site-b NBD": &d.NBDB}
	missing := map[string]*string{}
	for k, p := range fields {
		if strings.HasSuffix(*p, ":0") {
			missing[k] = p
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(missing) > 0 {
		for _, m := range announced.FindAllStringSubmatch(d.out.String(), -1) {
			k := "driver"
			if m[1] != "" {
				k = m[1] + " " + m[2]
			}
			if p, ok := missing[k]; ok {
				*p = m[3]
				delete(missing, k)
			}
		}
		select {
		case <-d.exited:
			d.t.Fatalf("volrepd exited during start-up:\n%s", d.out)
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("volrepd did not announce the addresses it bound for %v:\n%s", slices.Collect(maps.Keys(missing)), d.out)
		}
		if len(missing) > 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (d *Daemon) waitServing() {
	d.t.Helper()
	cc, err := server.Dial(d.DriverAddr, d.DriverToken)
	if err != nil {
		d.t.Fatal(err)
	}
	defer cc.Close()
	h := grpc_health_v1.NewHealthClient(cc)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			d.t.Fatalf("volrepd exited during start-up:\n%s", d.out)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		svc := "backend/demo"
		if d.readySet {
			svc = d.ReadyService
		}
		r, err := h.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: svc})
		cancel()
		if err == nil && r.GetStatus() == grpc_health_v1.HealthCheckResponse_SERVING {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("volrepd did not become ready:\n%s", d.out)
}

// Stop sends SIGTERM and waits for a clean exit.
func (d *Daemon) Stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("volrepd did not stop on SIGTERM within 20s:\n%s", d.out)
	}
}

// Kill sends SIGKILL: the crash tests' power cut.
func (d *Daemon) Kill() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

// Logs returns everything the daemon printed.
func (d *Daemon) Logs() string { return d.out.String() }

// Array returns a client for site-a ("a") or site-b ("b").
func (d *Daemon) Array(which string) array.Array {
	d.t.Helper()
	cc, err := server.Dial(d.arrayAPI(which))
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { cc.Close() })
	return client.New(cc)
}

// arrayAPI is the address and token of array which's API ("a" or "b").
func (d *Daemon) arrayAPI(which string) (addr, token string) {
	if which == "b" {
		return d.ArrayB, d.TokenB
	}
	return d.ArrayA, d.TokenA
}

// PodCopy asks array which ("a" or "b") how it sees pod, as its
// non-preferred side (GetPodCopy).
func (d *Daemon) PodCopy(which, pod string) (array.PodCopy, error) {
	d.t.Helper()
	cc, err := server.Dial(d.arrayAPI(which))
	if err != nil {
		return array.PodCopy{}, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(d.t.Context(), 5*time.Second)
	defer cancel()
	return client.NewReplication(cc).GetPodCopy(ctx, pod)
}

// run executes a command and returns its combined output, failing the test
// on a non-zero exit unless allowFail.
func run(t *testing.T, allowFail bool, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil && !allowFail {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), err
}
