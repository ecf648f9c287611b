package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"github.com/volrep/volrep/errdefs/errgrpc"
)

// Dial returns a client connection to addr ("host:port") with volrep's
// defaults: 16 MiB messages, the bearer token on every call (when token is
// not empty), and interceptors that turn every returned status back into
// an errdefs error (errgrpc.FromStatus). opts are applied last and may override.
//
// The transport is plaintext: volrep's APIs are meant for loopback and lab
// networks, and the token travels in the clear. TLS transport credentials
// can be passed in opts (grpc.WithTransportCredentials) when an API has to
// cross an untrusted network; a per-RPC credential without transport
// security is allowed here on purpose.
//
// Like grpc.NewClient, Dial does not connect; the first call does.
func Dial(addr, token string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(DefaultMaxMsgSize),
			grpc.MaxCallSendMsgSize(DefaultMaxMsgSize),
		),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: DefaultKeepalive, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
		grpc.WithInitialWindowSize(windowSize),
		grpc.WithInitialConnWindowSize(2 * windowSize),
		grpc.WithReadBufferSize(socketBuffer),
		grpc.WithWriteBufferSize(socketBuffer),
		grpc.WithChainUnaryInterceptor(UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(StreamClientInterceptor()),
	}
	if token != "" {
		base = append(base, grpc.WithPerRPCCredentials(bearerCreds{token: token}))
	}
	cc, err := grpc.NewClient(addr, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return cc, nil
}

// bearerCreds sends "authorization: Bearer <token>" with every call.
type bearerCreds struct{ token string }

func (c bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + c.token}, nil
}

// RequireTransportSecurity is false: see Dial.
func (bearerCreds) RequireTransportSecurity() bool { return false }

// String keeps the token out of any accidental %v.
func (bearerCreds) String() string { return "Bearer <redacted>" }

// GoString keeps the token out of any accidental %#v.
func (bearerCreds) GoString() string { return "server.bearerCreds{<redacted>}" }

// UnaryClientInterceptor applies errgrpc.FromStatus to every error a unary call
// returns, so callers can use errdefs.IsNotFound and friends.
func UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return errgrpc.FromStatus(invoker(ctx, method, req, reply, cc, opts...))
	}
}

// StreamClientInterceptor applies errgrpc.FromStatus to every error a streaming
// call returns: opening the stream, Header, SendMsg, RecvMsg and CloseSend.
// io.EOF passes through unchanged.
func StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, errgrpc.FromStatus(err)
		}
		return &errClientStream{ClientStream: cs}, nil
	}
}

type errClientStream struct{ grpc.ClientStream }

func (s *errClientStream) Header() (metadata.MD, error) {
	h, err := s.ClientStream.Header()
	return h, errgrpc.FromStatus(err)
}

func (s *errClientStream) SendMsg(m any) error { return errgrpc.FromStatus(s.ClientStream.SendMsg(m)) }

func (s *errClientStream) RecvMsg(m any) error { return errgrpc.FromStatus(s.ClientStream.RecvMsg(m)) }

func (s *errClientStream) CloseSend() error { return errgrpc.FromStatus(s.ClientStream.CloseSend()) }

// Reconnect asks cc for a connection attempt now. A channel that failed
// also has its reconnect backoff cut short; at any other time that would
// race grpc-go's own subchannel creation (ResetConnectBackoff ranges over
// the channel's connection map without its lock, as of grpc v1.85), and
// only a failed channel has a backoff to cut.
func Reconnect(cc *grpc.ClientConn) {
	if cc.GetState() == connectivity.TransientFailure {
		cc.ResetConnectBackoff()
	}
	cc.Connect()
}
