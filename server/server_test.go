package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/errdefs/errgrpc"
	"github.com/volrep/volrep/errdefs/errgrpc/errgrpctest"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
)

const testToken = "tok-3f9a1c-very-secret"

func TestErrorKindsOverTheWire(t *testing.T) {
	h := start(t, Options{Name: "test", Token: testToken})
	for i, tc := range errgrpctest.Cases {
		h.vols.setErr(fmt.Sprintf("kind-%d", i), tc.Err)
	}
	h.vols.setErr("status", status.Error(codes.PermissionDenied, "status passes through"))
	c := h.client(t, testToken)
	// A raw client without the FromStatus interceptor sees the codes.
	raw, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearerCreds{token: testToken}))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rc := arrayv1.NewVolumeServiceClient(raw)

	for i, tc := range errgrpctest.Cases {
		t.Run(tc.Code.String(), func(t *testing.T) {
			req := &arrayv1.GetVolumeRequest{Name: fmt.Sprintf("kind-%d", i)}
			_, rerr := rc.GetVolume(testCtx(t), req)
			if st := status.Convert(rerr); st.Code() != tc.Code || st.Message() != tc.Err.Error() {
				t.Fatalf("raw: %v %q, want %v %q", st.Code(), st.Message(), tc.Code, tc.Err.Error())
			}
			_, err := c.GetVolume(testCtx(t), req)
			var e *errdefs.Error
			if !errors.As(err, &e) {
				t.Fatalf("client error %T %v is not an errdefs error", err, err)
			}
			if e.Kind != tc.Kind || e.Error() != tc.Err.Error() || e.Field != tc.Field {
				t.Fatalf("got kind %v msg %q field %q, want %v %q %q", e.Kind, e.Error(), e.Field, tc.Kind, tc.Err.Error(), tc.Field)
			}
			if status.Code(err) != tc.Code {
				t.Fatalf("status.Code on the client error = %v, want %v", status.Code(err), tc.Code)
			}
		})
	}
	_, err = c.GetVolume(testCtx(t), &arrayv1.GetVolumeRequest{Name: "status"})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "status passes through") {
		t.Fatalf("status error from handler: %v", err)
	}
	if !errdefs.IsNotFound(func() error {
		_, err := c.GetVolume(testCtx(t), &arrayv1.GetVolumeRequest{Name: "kind-0"})
		return err
	}()) {
		t.Fatal("errdefs.IsNotFound is false across the wire")
	}
}

func TestStreamErrorsAndSuccess(t *testing.T) {
	h := start(t, Options{Token: testToken})
	h.vols.setErr("gone", errdefs.NotFound("snapshot gone not found"))
	c := h.client(t, testToken)

	stream, err := c.DiffSnapshots(testCtx(t), &arrayv1.DiffSnapshotsRequest{Volume: "v", Snapshot: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := drain(stream); err != nil || n != 3 {
		t.Fatalf("clean stream: %d messages, %v", n, err)
	}

	stream, err = c.DiffSnapshots(testCtx(t), &arrayv1.DiffSnapshotsRequest{Volume: "v", Snapshot: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := drain(stream); !errdefs.IsNotFound(err) || n != 3 || err.Error() != "snapshot gone not found" {
		t.Fatalf("failing stream: %d messages, %v", n, err)
	}
}

func TestAuth(t *testing.T) {
	h := start(t, Options{Token: testToken})
	cases := []struct {
		name  string
		token string
		code  codes.Code
		msg   string
	}{
		{"no token", "", codes.Unauthenticated, MsgMissingToken},
		{"wrong token", "not-the-token", codes.Unauthenticated, MsgInvalidToken},
		{"token prefix", testToken[:len(testToken)-1], codes.Unauthenticated, MsgInvalidToken},
		{"right token", testToken, codes.OK, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.vols.calls.Load()
			c := h.client(t, tc.token)
			_, err := c.GetVolume(testCtx(t), &arrayv1.GetVolumeRequest{Name: "v1"})
			if status.Code(err) != tc.code {
				t.Fatalf("code %v (%v), want %v", status.Code(err), err, tc.code)
			}
			if tc.code != codes.OK {
				if !errdefs.IsUnauthenticated(err) || err.Error() != tc.msg {
					t.Fatalf("error %q, want unauthenticated %q", err, tc.msg)
				}
				if h.vols.calls.Load() != before {
					t.Fatal("the handler ran for an unauthenticated call")
				}
				// Streams are guarded too.
				stream, err := c.DiffSnapshots(testCtx(t), &arrayv1.DiffSnapshotsRequest{Volume: "v", Snapshot: "s"})
				if err == nil {
					_, err = drain(stream)
				}
				if !errdefs.IsUnauthenticated(err) {
					t.Fatalf("stream: %v, want unauthenticated", err)
				}
			}
		})
	}

	t.Run("malformed header", func(t *testing.T) {
		c := h.client(t, "", grpc.WithPerRPCCredentials(rawAuth("Basic "+testToken)))
		_, err := c.GetVolume(testCtx(t), &arrayv1.GetVolumeRequest{Name: "v1"})
		if !errdefs.IsUnauthenticated(err) || err.Error() != MsgBadAuthz {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("health and reflection are exempt", func(t *testing.T) {
		cc := h.conn(t, "")
		resp, err := healthpb.NewHealthClient(cc).Check(testCtx(t), &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health without token: %v %v", resp, err)
		}
		rs, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.Send(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
		}); err != nil {
			t.Fatal(err)
		}
		r, err := rs.Recv()
		if err != nil {
			t.Fatalf("reflection without token: %v", err)
		}
		found := false
		for _, s := range r.GetListServicesResponse().GetService() {
			if s.GetName() == "volrep.array.v1.VolumeService" {
				found = true
			}
		}
		if !found {
			t.Fatalf("reflection does not list the VolumeService: %v", r)
		}
		_ = rs.CloseSend()
	})

	t.Run("no token configured", func(t *testing.T) {
		open := start(t, Options{})
		_, err := open.client(t, "").GetVolume(testCtx(t), &arrayv1.GetVolumeRequest{Name: "v1"})
		if err != nil {
			t.Fatalf("server without a token refused a call: %v", err)
		}
	})
}

// rawAuth sends an arbitrary authorization header.
type rawAuth string

func (a rawAuth) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": string(a)}, nil
}
func (rawAuth) RequireTransportSecurity() bool { return false }

func TestPanicBecomesInternal(t *testing.T) {
	h := start(t, Options{Token: testToken})
	c := h.client(t, testToken)

	_, err := c.GetVolume(testCtx(t), &arrayv1.GetVolumeRequest{Name: "panic"})
	if status.Code(err) != codes.Internal || err.Error() != MsgInternal {
		t.Fatalf("unary panic: %v %q", status.Code(err), err)
	}
	if strings.Contains(err.Error(), panicValue) {
		t.Fatal("the panic value reached the client")
	}

	stream, err := c.DiffSnapshots(testCtx(t), &arrayv1.DiffSnapshotsRequest{Volume: "v", Snapshot: "panic"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = drain(stream)
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), panicValue) {
		t.Fatalf("stream panic: %v", err)
	}

	// The server is still up.
	if _, err := c.GetVolume(testCtx(t), &arrayv1.GetVolumeRequest{Name: "v1"}); err != nil {
		t.Fatalf("call after the panic: %v", err)
	}

	var panics int
	for _, r := range h.logs.records(t) {
		if r["msg"] != "panic in gRPC handler" {
			continue
		}
		panics++
		if r["level"] != "ERROR" || r["panic"] != panicValue {
			t.Errorf("panic record: %v", r)
		}
		if st, _ := r["stack"].(string); !strings.Contains(st, "testVolumes)") {
			t.Errorf("panic record has no stack of the handler: %q", st)
		}
	}
	if panics != 2 {
		t.Fatalf("%d panic records, want 2:\n%s", panics, h.logs.String())
	}
}

// TestPanicOutsideRecoveryIsCaught: an extra interceptor that panics runs
// outside the recovery interceptor; the error mapping still catches it.
func TestPanicOutsideRecoveryIsCaught(t *testing.T) {
	h := start(t, Options{ExtraUnary: []grpc.UnaryServerInterceptor{
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if r, ok := req.(*arrayv1.GetVolumeRequest); ok && r.GetName() == "boom" {
				panic(panicValue)
			}
			return handler(ctx, req)
		},
	}})
	c := h.client(t, "")
	_, err := c.GetVolume(testCtx(t), &arrayv1.GetVolumeRequest{Name: "boom"})
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), panicValue) {
		t.Fatalf("got %v", err)
	}
	if _, err := c.GetVolume(testCtx(t), &arrayv1.GetVolumeRequest{Name: "v1"}); err != nil {
		t.Fatal(err)
	}
}

func TestValidationFailure(t *testing.T) {
	h := start(t, Options{Token: testToken})
	c := h.client(t, testToken)
	raw := arrayv1.NewVolumeServiceClient(h.conn(t, testToken))

	_, err := c.CreateVolume(testCtx(t), &arrayv1.CreateVolumeRequest{Name: "v1", Pool: "p1", SizeBytes: 1000})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("got %v, want invalid argument", err)
	}
	var e *errdefs.Error
	if !errors.As(err, &e) || e.Field != "size_bytes" || !strings.HasPrefix(e.Error(), "size_bytes: ") ||
		!strings.Contains(e.Error(), "4096") {
		t.Fatalf("error %#v does not name size_bytes and the block size", err)
	}
	_, err = raw.CreateVolume(testCtx(t), &arrayv1.CreateVolumeRequest{Name: "v1", Pool: "p1", SizeBytes: 1000})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code %v", st.Code())
	}
	if f := fieldOf(errgrpc.FromStatus(st.Err())); f != "size_bytes" {
		t.Fatalf("BadRequest field %q, details %v", f, st.Details())
	}
	if _, ok := st.Details()[0].(*errdetails.BadRequest); !ok {
		t.Fatalf("detail %T", st.Details()[0])
	}
	if n := h.vols.calls.Load(); n != 0 {
		t.Fatalf("handler ran %d times for invalid requests", n)
	}

	// Server-streaming requests are validated too.
	stream, err := c.DiffSnapshots(testCtx(t), &arrayv1.DiffSnapshotsRequest{Snapshot: "s"})
	if err == nil {
		_, err = drain(stream)
	}
	if !errors.As(err, &e) || e.Kind != errdefs.KindInvalidArgument || e.Field != "volume" {
		t.Fatalf("stream validation: %#v", err)
	}

	// A valid request passes.
	if _, err := c.CreateVolume(testCtx(t), &arrayv1.CreateVolumeRequest{Name: "v1", Pool: "p1", SizeBytes: 8192}); err != nil {
		t.Fatal(err)
	}
}

func TestGracefulStop(t *testing.T) {
	h := start(t, Options{Token: testToken})
	c := h.client(t, testToken)

	result := make(chan error, 1)
	go func() {
		_, err := c.GetVolume(context.Background(), &arrayv1.GetVolumeRequest{Name: "slow"})
		result <- err
	}()
	<-h.vols.entered
	h.stop()

	// Serve waits for the call in flight.
	select {
	case err := <-h.done:
		t.Fatalf("Serve returned (%v) with a call in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	// New calls are refused meanwhile (the listener is closed).
	hc := healthpb.NewHealthClient(h.conn(t, ""))
	if _, err := hc.Check(testCtx(t), &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("a new call succeeded during graceful stop")
	}

	close(h.vols.release)
	if err := <-result; err != nil {
		t.Fatalf("in-flight call failed: %v", err)
	}
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
		h.done <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the last call finished")
	}
}

func TestStopTimeoutCutsOffCalls(t *testing.T) {
	h := start(t, Options{StopTimeout: 300 * time.Millisecond})
	c := h.client(t, "")
	result := make(chan error, 1)
	go func() {
		_, err := c.GetVolume(context.Background(), &arrayv1.GetVolumeRequest{Name: "slow"})
		result <- err
	}()
	<-h.vols.entered
	began := time.Now()
	h.stop()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
		h.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after StopTimeout")
	}
	if d := time.Since(began); d < 300*time.Millisecond {
		t.Fatalf("Serve returned after %v, before the stop timeout", d)
	}
	if err := <-result; err == nil {
		t.Fatal("the cut-off call succeeded")
	}
	if !strings.Contains(h.logs.String(), "graceful stop timed out") {
		t.Fatal("no log about the timed-out graceful stop")
	}
}

func TestServeReturnsListenerError(t *testing.T) {
	s := New(Options{})
	lis, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = lis.Close()
	if err := s.Serve(context.Background(), lis); err == nil {
		t.Fatal("Serve on a closed listener returned nil")
	}
}

func TestHealthServingStatus(t *testing.T) {
	h := start(t, Options{Token: testToken})
	hc := healthpb.NewHealthClient(h.conn(t, ""))
	const svc = "volrep.array.v1.VolumeService"
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := hc.Check(testCtx(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus()
	}
	h.srv.SetServingStatus(svc, true)
	if got := check(); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("status %v", got)
	}
	h.srv.SetServingStatus(svc, false)
	if got := check(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("status %v", got)
	}
}

func TestLogging(t *testing.T) {
	h := start(t, Options{Name: "array site-a", Token: testToken})
	h.vols.setErr("missing", errdefs.NotFound("volume missing not found"))
	h.vols.setErr("broken", errors.New("disk on fire"))
	good := h.client(t, testToken)
	bad := h.client(t, "wrong-token-7a7a")

	calls := []struct {
		c     arrayv1.VolumeServiceClient
		name  string
		code  string
		level string
	}{
		{good, "v1", "OK", "DEBUG"},
		{good, "missing", "NotFound", "INFO"},
		{good, "broken", "Internal", "ERROR"},
		{bad, "v1", "Unauthenticated", "WARN"},
	}
	for _, call := range calls {
		_, _ = call.c.GetVolume(testCtx(t), &arrayv1.GetVolumeRequest{Name: call.name})
	}
	stream, err := good.DiffSnapshots(testCtx(t), &arrayv1.DiffSnapshotsRequest{Volume: "v", Snapshot: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := drain(stream); err != nil {
		t.Fatal(err)
	}

	// The server logs after it has answered; wait for the records.
	var recs []map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs = h.logs.finished(t)
		if len(recs) >= len(calls)+1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(recs) != len(calls)+1 {
		t.Fatalf("%d finished-call records, want %d:\n%s", len(recs), len(calls)+1, h.logs.String())
	}
	for i, call := range calls {
		r := recs[i]
		if r["grpc.service"] != "volrep.array.v1.VolumeService" || r["grpc.method"] != "GetVolume" ||
			r["grpc.code"] != call.code || r["level"] != call.level || r["server"] != "array site-a" {
			t.Errorf("record %d = %v, want GetVolume %s at %s", i, r, call.code, call.level)
		}
		for _, k := range []string{"grpc.time_ms", "peer.address"} {
			if _, ok := r[k]; !ok {
				t.Errorf("record %d has no %s: %v", i, k, r)
			}
		}
	}
	if r := recs[len(calls)]; r["grpc.method"] != "DiffSnapshots" || r["grpc.code"] != "OK" {
		t.Errorf("stream record = %v", r)
	}
	out := h.logs.String()
	for _, secret := range []string{testToken, "wrong-token-7a7a"} {
		if strings.Contains(out, secret) {
			t.Errorf("the log holds %q:\n%s", secret, out)
		}
	}
}

func TestDialRedactsToken(t *testing.T) {
	c := bearerCreds{token: testToken}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c)} {
		if strings.Contains(s, testToken) {
			t.Fatalf("token printed: %s", s)
		}
	}
	md, err := c.GetRequestMetadata(context.Background())
	if err != nil || md["authorization"] != "Bearer "+testToken {
		t.Fatalf("metadata %v %v", md, err)
	}
	if _, err := Dial("dns:///%zz", ""); err == nil {
		t.Fatal("Dial accepted a malformed target")
	}
}
