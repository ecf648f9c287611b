package rawstream_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/internal/netfault"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
	"github.com/volrep/volrep/server"
	"github.com/volrep/volrep/server/rawstream"
)

const (
	token  = "tok"
	echo   = "/test.Echo/Echo"
	failer = "/test.Echo/Fail"
	limit  = 1 << 20
)

type stream = grpc.BidiStreamingClient[arrayv1.MirrorRequest, arrayv1.MirrorResponse]

// serve starts a server with two methods: Echo answers each write with
// its seq and its data's length in Error (so the answer proves the data
// arrived whole), and returns nil at the client's CloseSend; Fail returns
// the error kind the first message's volume names.
func serve(t *testing.T, validate func(any) error) (addr string, handlerDone <-chan error, stop func()) {
	t.Helper()
	return serveCapped(t, validate, 0)
}

// serveCapped is serve with MaxConns set.
func serveCapped(t *testing.T, validate func(any) error, maxConns int) (addr string, handlerDone <-chan error, stop func()) {
	t.Helper()
	s := rawstream.NewServer(rawstream.Options{Logger: slog.New(slog.DiscardHandler), CheckToken: server.CheckToken(token),
		Validate: validate, MaxMsgSize: limit, MaxConns: maxConns})
	done := make(chan error, 8)
	rawstream.Register(s, echo, func(st grpc.BidiStreamingServer[arrayv1.MirrorRequest, arrayv1.MirrorResponse]) error {
		err := func() error {
			for {
				m, err := st.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				w := m.GetWrite()
				if err := st.Send(&arrayv1.MirrorResponse{Seq: w.GetSeq(), Error: string(rune('0' + len(w.GetData())%10))}); err != nil {
					return err
				}
			}
		}()
		done <- err
		return err
	})
	rawstream.Register(s, failer, func(st grpc.BidiStreamingServer[arrayv1.MirrorRequest, arrayv1.MirrorResponse]) error {
		m, err := st.Recv()
		if err != nil {
			return err
		}
		if m.GetWrite().GetVolume() == "precondition" {
			return errdefs.FailedPrecondition("pod p: carried here; take it back first")
		}
		panic("a handler bug")
	})
	addr, stop = run(t, s)
	return addr, done, stop
}

// run serves s on a loopback port until stop or the test's end.
func run(t *testing.T, s *rawstream.Server) (addr string, stop func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, lis) }()
	stop = func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return lis.Addr().String(), stop
}

func open(t *testing.T, ctx context.Context, addr, tok, method string) (stream, error) {
	return rawstream.Open[arrayv1.MirrorRequest, arrayv1.MirrorResponse](ctx, addr, tok, method, 2*time.Second, limit)
}

func write(seq uint64, n int) *arrayv1.MirrorRequest {
	return &arrayv1.MirrorRequest{Msg: &arrayv1.MirrorRequest_Write{Write: &arrayv1.MirrorWrite{Seq: seq, Volume: "v", Data: bytes.Repeat([]byte{7}, n)}}}
}

func TestMessagesArriveInOrderAndTheStreamEndsCleanly(t *testing.T) {
	addr, handlerDone, _ := serve(t, nil)
	cs, err := open(t, t.Context(), addr, token, echo)
	if err != nil {
		t.Fatal(err)
	}
	// Sends and receives run at once, as a pod's sender and receiver do.
	sizes := []int{0, 1, 4096, 300 << 10, 17}
	go func() {
		for i, n := range sizes {
			if err := cs.Send(write(uint64(i+1), n)); err != nil {
				t.Errorf("Send %d: %v", i, err)
			}
		}
		cs.CloseSend()
	}()
	for i, n := range sizes {
		r, err := cs.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if r.GetSeq() != uint64(i+1) || r.GetError() != string(rune('0'+n%10)) {
			t.Fatalf("answer %d is seq %d len-digit %q, want seq %d digit %d", i, r.GetSeq(), r.GetError(), i+1, n%10)
		}
	}
	if _, err := cs.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the handler returned nil Recv gave %v, want io.EOF", err)
	}
	if err := <-handlerDone; err != nil {
		t.Fatalf("the handler saw %v at CloseSend, want a clean end", err)
	}
}

func TestHandlerErrorsKeepTheirKindAndPanicsEndOnlyTheStream(t *testing.T) {
	addr, _, _ := serve(t, nil)
	cs, err := open(t, t.Context(), addr, token, failer)
	if err != nil {
		t.Fatal(err)
	}
	m := write(1, 0)
	m.GetWrite().Volume = "precondition"
	cs.Send(m)
	_, err = cs.Recv()
	if !errdefs.IsFailedPrecondition(err) || !bytes.Contains([]byte(err.Error()), []byte("take it back first")) {
		t.Fatalf("Recv = %v, want the handler's FAILED_PRECONDITION with its message", err)
	}
	cs, err = open(t, t.Context(), addr, token, failer)
	if err != nil {
		t.Fatal(err)
	}
	cs.Send(write(1, 0))
	if _, err = cs.Recv(); errdefs.KindOf(err) != errdefs.KindUnknown || bytes.Contains([]byte(err.Error()), []byte("a handler bug")) {
		t.Fatalf("after a panic Recv = %v (%v), want INTERNAL without the panic's text", err, errdefs.KindOf(err))
	}
	// The server still serves.
	if cs, err = open(t, t.Context(), addr, token, echo); err != nil {
		t.Fatal(err)
	}
	cs.Send(write(9, 3))
	if r, err := cs.Recv(); err != nil || r.GetSeq() != 9 {
		t.Fatalf("after a panic elsewhere: %v %v", r, err)
	}
}

func TestOpenRefusesABadTokenAnUnknownMethodAndAPortThatIsNotRaw(t *testing.T) {
	addr, _, _ := serve(t, nil)
	if _, err := open(t, t.Context(), addr, "wrong", echo); !errdefs.IsUnauthenticated(err) {
		t.Fatalf("a wrong token: %v, want UNAUTHENTICATED", err)
	}
	if _, err := open(t, t.Context(), addr, token, "/test.Echo/Nope"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("an unknown method: %v, want FAILED_PRECONDITION", err)
	}
	// A gRPC server closes the connection on the hello: the caller must
	// learn that at once (it then uses gRPC), not after its timeout.
	gs := server.New(server.Options{Logger: slog.New(slog.DiscardHandler)})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go gs.Serve(ctx, lis)
	start := time.Now()
	if _, err := open(t, t.Context(), lis.Addr().String(), token, echo); !errdefs.IsUnavailable(err) || time.Since(start) > time.Second {
		t.Fatalf("a gRPC port: %v after %s, want UNAVAILABLE at once", err, time.Since(start))
	}
	// And a client that sends no hello is closed by the server.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 64)); err == nil || n != 0 {
		t.Fatalf("a connection without the hello got %d bytes and %v; want it closed", n, err)
	}
}

func TestEveryReceivedMessageIsValidated(t *testing.T) {
	addr, handlerDone, _ := serve(t, func(m any) error {
		if m.(*arrayv1.MirrorRequest).GetWrite().GetVolume() == "bad name" {
			return errdefs.InvalidArgument("write.volume", "is not a valid name")
		}
		return nil
	})
	cs, err := open(t, t.Context(), addr, token, echo)
	if err != nil {
		t.Fatal(err)
	}
	cs.Send(write(1, 1))
	if _, err := cs.Recv(); err != nil {
		t.Fatal(err)
	}
	m := write(2, 1)
	m.GetWrite().Volume = "bad name"
	cs.Send(m)
	_, err = cs.Recv()
	if !errdefs.IsInvalidArgument(err) || !bytes.Contains([]byte(err.Error()), []byte("write.volume")) {
		t.Fatalf("Recv = %v, want INVALID_ARGUMENT naming write.volume", err)
	}
	if err := <-handlerDone; !errdefs.IsInvalidArgument(err) {
		t.Fatalf("the handler's Recv gave %v, want the validation error", err)
	}
}

func TestOversizedMessagesAreRefusedBeforeTheyAreSent(t *testing.T) {
	addr, _, _ := serve(t, nil)
	cs, err := open(t, t.Context(), addr, token, echo)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Send(write(1, limit+1)); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Send over the limit: %v, want INVALID_ARGUMENT", err)
	}
	cs.Send(write(2, 5))
	if r, err := cs.Recv(); err != nil || r.GetSeq() != 2 {
		t.Fatalf("the stream after a refused message: %v %v, want it still working", r, err)
	}
}

func TestEndingEitherSideEndsTheOther(t *testing.T) {
	addr, handlerDone, stop := serve(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cs, err := open(t, ctx, addr, token, echo)
	if err != nil {
		t.Fatal(err)
	}
	cs.Send(write(1, 1))
	if _, err := cs.Recv(); err != nil {
		t.Fatal(err)
	}
	// The caller's context ends: its Recv ends with it, and the handler's
	// Recv sees the connection go.
	recvd := make(chan error, 1)
	go func() { _, err := cs.Recv(); recvd <- err }()
	cancel()
	if err := <-recvd; !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv after cancel: %v, want context.Canceled", err)
	}
	select {
	case err := <-handlerDone:
		if !errdefs.IsUnavailable(err) {
			t.Fatalf("the handler ended with %v, want UNAVAILABLE (its caller is gone)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not end after its caller went")
	}
	// The server stops: an open stream's Recv ends, not hangs.
	cs, err = open(t, t.Context(), addr, token, echo)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, err := cs.Recv(); recvd <- err }()
	stop()
	select {
	case err := <-recvd:
		if err == nil {
			t.Fatal("Recv returned a message after the server stopped")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv hangs after the server stopped")
	}
	if _, err := open(t, t.Context(), addr, token, echo); !errdefs.IsUnavailable(err) {
		t.Fatalf("open after the stop: %v, want UNAVAILABLE", err)
	}
}

// TestConnectionsBeyondTheCapWaitForOneToEnd: with MaxConns connections
// open, another is not served (its open times out) until one ends; the
// open ones are not disturbed.
func TestConnectionsBeyondTheCapWaitForOneToEnd(t *testing.T) {
	addr, done, _ := serveCapped(t, nil, 2)
	ctx := t.Context()
	var open2 []stream
	for i := range 2 {
		st, err := open(t, ctx, addr, token, echo)
		if err != nil {
			t.Fatalf("stream %d of 2: %v", i, err)
		}
		open2 = append(open2, st)
	}
	_, err := rawstream.Open[arrayv1.MirrorRequest, arrayv1.MirrorResponse](ctx, addr, token, echo, 300*time.Millisecond, limit)
	if err == nil {
		t.Fatal("a third stream was served with MaxConns 2")
	}
	for i, st := range open2 {
		if err := st.Send(write(uint64(i+1), 3)); err != nil {
			t.Fatal(err)
		}
		if r, err := st.Recv(); err != nil || r.GetSeq() != uint64(i+1) {
			t.Fatalf("stream %d with the cap reached: %v %v", i, r, err)
		}
	}
	if err := open2[0].CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The connection closes after the handler returns: the next open may
	// race it, so it is given the client's usual timeout.
	st, err := open(t, ctx, addr, token, echo)
	if err != nil {
		t.Fatalf("a stream after one of the two ended: %v", err)
	}
	if err := st.Send(write(9, 1)); err != nil {
		t.Fatal(err)
	}
	if r, err := st.Recv(); err != nil || r.GetSeq() != 9 {
		t.Fatalf("the stream opened after one ended: %v %v", r, err)
	}
}

// A handler's Send that blocks because its peer stopped reading (cut off,
// or hung while its kernel still answers TCP) fails once SendTimeout has
// passed, rather than after TCP's retransmissions or never.
func TestABlockedSendFailsAfterTheSendTimeout(t *testing.T) {
	const flood = "/test.Echo/Flood"
	s := rawstream.NewServer(rawstream.Options{Logger: slog.New(slog.DiscardHandler), MaxMsgSize: limit, SendTimeout: time.Second})
	ended := make(chan error, 1)
	rawstream.Register(s, flood, func(st grpc.BidiStreamingServer[arrayv1.MirrorRequest, arrayv1.MirrorResponse]) error {
		err := func() error {
			if _, err := st.Recv(); err != nil {
				return err
			}
			big := &arrayv1.MirrorResponse{Error: strings.Repeat("x", 256<<10)}
			for {
				if err := st.Send(big); err != nil {
					return err
				}
			}
		}()
		ended <- err
		return err
	})
	addr, _ := run(t, s)
	px := netfault.New(t, addr)
	cs, err := open(t, t.Context(), px.Addr(), token, flood)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Send(write(1, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Recv(); err != nil {
		t.Fatal(err)
	}
	px.Freeze()
	frozen := time.Now()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the handler ended without an error")
		}
		t.Logf("the blocked Send failed %v after the freeze: %v", time.Since(frozen).Round(time.Millisecond), err)
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's Send still blocks 10s after its peer stopped reading (SendTimeout 1s)")
	}
}
