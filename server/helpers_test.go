package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/volrep/volrep/internal/testenv"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testVolumes is a canned VolumeService: GetVolume returns errs[name] if
// set, "panic" panics, "slow" blocks until release is closed (or its
// context ends). It is plumbing for the tests, not a storage engine.
type testVolumes struct {
	arrayv1.UnimplementedVolumeServiceServer
	mu      sync.Mutex
	errs    map[string]error
	calls   atomic.Int64
	entered chan struct{} // receives one value when a "slow" call starts
	left    chan error    // receives what each "slow" call returns, when it does
	release chan struct{} // closing it lets "slow" calls finish
}

const panicValue = "secret-panic-value-8d1f"

func newTestVolumes() *testVolumes {
	return &testVolumes{
		errs:    map[string]error{},
		entered: make(chan struct{}, 16),
		left:    make(chan error, 16),
		release: make(chan struct{}),
	}
}

// setErr makes calls naming name fail with err.
func (s *testVolumes) setErr(name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs[name] = err
}

func (s *testVolumes) errFor(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errs[name]
}

func (s *testVolumes) GetVolume(ctx context.Context, req *arrayv1.GetVolumeRequest) (*arrayv1.GetVolumeResponse, error) {
	s.calls.Add(1)
	switch req.GetName() {
	case "panic":
		panic(panicValue)
	case "slow":
		s.entered <- struct{}{}
		select {
		case <-s.release:
			s.left <- nil
		case <-ctx.Done():
			s.left <- ctx.Err()
			return nil, ctx.Err()
		}
	}
	if err := s.errFor(req.GetName()); err != nil {
		return nil, err
	}
	return &arrayv1.GetVolumeResponse{Volume: &arrayv1.Volume{Name: req.GetName(), SizeBytes: 4096}}, nil
}

func (s *testVolumes) CreateVolume(_ context.Context, req *arrayv1.CreateVolumeRequest) (*arrayv1.CreateVolumeResponse, error) {
	s.calls.Add(1)
	return &arrayv1.CreateVolumeResponse{Volume: &arrayv1.Volume{Name: req.GetName(), SizeBytes: req.GetSizeBytes()}}, nil
}

func (s *testVolumes) DiffSnapshots(req *arrayv1.DiffSnapshotsRequest, stream arrayv1.VolumeService_DiffSnapshotsServer) error {
	s.calls.Add(1)
	for i := range int64(3) {
		if err := stream.Send(&arrayv1.DiffSnapshotsResponse{Extents: []*arrayv1.Extent{{Offset: i * 4096, Length: 4096}}}); err != nil {
			return err
		}
	}
	switch req.GetSnapshot() {
	case "panic":
		panic(panicValue)
	}
	return s.errFor(req.GetSnapshot())
}

// logBuffer holds a server's JSON log lines.
type logBuffer struct{ testenv.Buffer }

// records parses the JSON log lines.
func (b *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader([]byte(b.String())))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// finished returns the "finished call" records.
func (b *logBuffer) finished(t *testing.T) []map[string]any {
	var out []map[string]any
	for _, r := range b.records(t) {
		if r["msg"] == "finished call" {
			out = append(out, r)
		}
	}
	return out
}

type harness struct {
	addr string
	vols *testVolumes
	logs *logBuffer
	srv  *Server
	stop context.CancelFunc
	done chan error
}

// start serves a Server with the test services on a loopback port. The
// server is stopped at the end of the test.
func start(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{vols: newTestVolumes(), logs: &logBuffer{}, done: make(chan error, 1)}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h.srv = New(opts)
	arrayv1.RegisterVolumeServiceServer(h.srv.GRPC(), h.vols)
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	lis, err := Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = lis.Addr().String()
	go func() { h.done <- h.srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.vols.release:
		default:
			close(h.vols.release)
		}
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return h
}

// client dials the harness with token and returns a VolumeService client.
func (h *harness) client(t *testing.T, token string, opts ...grpc.DialOption) arrayv1.VolumeServiceClient {
	t.Helper()
	cc, err := Dial(h.addr, token, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return arrayv1.NewVolumeServiceClient(cc)
}

// conn dials the harness and returns the connection.
func (h *harness) conn(t *testing.T, token string) *grpc.ClientConn {
	t.Helper()
	cc, err := Dial(h.addr, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// drain reads a DiffSnapshots stream to its end and returns the error that
// ended it (nil for a clean end) and the number of messages.
func drain(stream grpc.ServerStreamingClient[arrayv1.DiffSnapshotsResponse]) (int, error) {
	n := 0
	for {
		_, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		n++
	}
}
