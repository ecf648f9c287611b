package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// Defaults and environment variables of the global flags.
const (
	defaultAddr    = "127.0.0.1:7400"
	defaultTimeout = 30 * time.Second

	envAddr    = "VOLREP_ADDR"
	envToken   = "VOLREP_TOKEN"
	envBackend = "VOLREP_BACKEND"
)

// app is the state shared by every command of one invocation: the global
// flags, where output goes, and the lazily opened connection to volrepd.
// Command groups receive it and use its helpers (runE, call, backendName,
// render) so that a new group needs no plumbing of its own.
type app struct {
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	newID  func() string

	// Global flags, after the environment is applied (see applyEnv).
	addr    string
	token   string
	output  outputFormat
	timeout time.Duration
	backend string

	conn   *grpc.ClientConn
	client driverv1.DriverServiceClient
}

func newApp(stdout, stderr io.Writer, getenv func(string) string) *app {
	return &app{
		stdout:  stdout,
		stderr:  stderr,
		getenv:  getenv,
		newID:   uuid.NewString,
		addr:    defaultAddr,
		output:  outputTable,
		timeout: defaultTimeout,
	}
}

// addGlobalFlags registers the flags every command accepts.
func (a *app) addGlobalFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&a.addr, "addr", a.addr, "address of volrepd's driver API, host:port or unix:///path (env "+envAddr+")")
	// The token has no visible default so that --help never prints it.
	f.StringVar(&a.token, "token", "", "API token, sent as 'authorization: Bearer <token>' (env "+envToken+")")
	f.VarP(&a.output, "output", "o", "output format: table or json")
	f.DurationVar(&a.timeout, "timeout", a.timeout, "give up on a command after this long (0: never)")
	f.StringVarP(&a.backend, "backend", "b", "", "driver backend (cinder.conf section) to act on (env "+envBackend+"); default: the daemon's only backend")
}

// applyEnv fills each global flag the user did not set from its environment
// variable. A flag on the command line wins over the environment.
func (a *app) applyEnv(cmd *cobra.Command) {
	fromEnv := func(flag, env string, dst *string) {
		if cmd.Flags().Changed(flag) {
			return
		}
		if v := a.getenv(env); v != "" {
			*dst = v
		}
	}
	fromEnv("addr", envAddr, &a.addr)
	fromEnv("token", envToken, &a.token)
	fromEnv("backend", envBackend, &a.backend)
	// Tokens are often read from files: $(cat token) keeps no newline, but
	// an env file might.
	a.token = strings.TrimSpace(a.token)
}

// runE adapts a command body so that every error it returns is a *cliError:
// the exit code logic relies on untyped errors coming only from cobra.
func (a *app) runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		if err == nil {
			return nil
		}
		if _, ok := err.(*cliError); ok {
			return err
		}
		return &cliError{What: cmd.CommandPath(), Err: err}
	}
}

// call runs fn with a connected client and a context bounded by --timeout.
func (a *app) call(cmd *cobra.Command, fn func(ctx context.Context, c driverv1.DriverServiceClient) error) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	ctx, cancel := a.context(cmd)
	defer cancel()
	return fn(ctx, c)
}

// callBackend is call for a command about one backend: the --backend
// flag's, or the only one volrepd serves.
func (a *app) callBackend(cmd *cobra.Command, fn func(ctx context.Context, c driverv1.DriverServiceClient, backend string) error) error {
	return a.call(cmd, func(ctx context.Context, c driverv1.DriverServiceClient) error {
		backend, err := a.backendName(ctx, c)
		if err != nil {
			return err
		}
		return fn(ctx, c, backend)
	})
}

// context is the command's context, bounded by --timeout.
func (a *app) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if a.timeout > 0 {
		return context.WithTimeout(ctx, a.timeout)
	}
	return context.WithCancel(ctx)
}

// dial opens the connection to volrepd on first use. grpc.NewClient does not
// connect yet; an unreachable daemon shows up as UNAVAILABLE on the first call.
func (a *app) dial() (driverv1.DriverServiceClient, error) {
	if a.client != nil {
		return a.client, nil
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent("volrep-cli"),
	}
	if a.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken(a.token)))
	}
	conn, err := grpc.NewClient(a.addr, opts...)
	if err != nil {
		return nil, &cliError{What: fmt.Sprintf("bad --addr %q", a.addr), Err: err, Exit: exitUsage}
	}
	a.conn = conn
	a.client = driverv1.NewDriverServiceClient(conn)
	return a.client, nil
}

func (a *app) close() {
	if a.conn != nil {
		_ = a.conn.Close()
		a.conn, a.client = nil, nil
	}
}

// bearerToken sends the API token with every call as
// "authorization: Bearer <token>". volrepd listens without TLS on loopback by
// default, so the token does not require transport security.
type bearerToken string

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return false }

// backendName returns the backend to act on: --backend / VOLREP_BACKEND, or
// else the daemon's only backend.
func (a *app) backendName(ctx context.Context, c driverv1.DriverServiceClient) (string, error) {
	if a.backend != "" {
		return a.backend, nil
	}
	resp, err := listBackends(ctx, c)
	if err != nil {
		return "", rpcError("list backends (to pick the default backend)", err)
	}
	return soleBackend(resp.GetBackends(), a.addr)
}

// soleBackend picks the default backend, or explains why there is none.
func soleBackend(backends []*driverv1.Backend, addr string) (string, error) {
	switch len(backends) {
	case 1:
		return backends[0].GetName(), nil
	case 0:
		return "", &cliError{
			What: fmt.Sprintf("pick a backend: volrepd at %s serves no backends", addr),
			Exit: exitNotFound,
			Hint: "check enabled_backends in volrepd's config (journalctl -u volrepd)",
		}
	default:
		names := make([]string, len(backends))
		for i, b := range backends {
			names[i] = b.GetName()
		}
		return "", &cliError{
			What: fmt.Sprintf("pick a backend: volrepd serves %d backends (%s)", len(backends), strings.Join(names, ", ")),
			Exit: exitUsage,
			Hint: "choose one with --backend or " + envBackend,
		}
	}
}

// idArg returns the ID given as the command's only positional argument, or a
// new UUID when it is omitted or --generate-id is set. generated tells the
// caller to show the new ID.
func (a *app) idArg(args []string, generate bool, what string) (id string, generated bool, err error) {
	switch {
	case len(args) == 1 && generate:
		return "", false, usageErrorf("give a %s ID or --generate-id, not both", what)
	case len(args) == 1:
		if args[0] == "" {
			return "", false, usageErrorf("the %s ID is empty", what)
		}
		return args[0], false, nil
	default:
		return a.newID(), true, nil
	}
}

// noteGeneratedID tells the user the ID that was made up for them. Table
// output shows it in the table; JSON output keeps stdout to the response
// alone, so the ID goes to stderr.
func (a *app) noteGeneratedID(what, id string) {
	if a.output == outputJSON {
		fmt.Fprintf(a.stderr, "volrep: generated %s ID %s\n", what, id)
	}
}
