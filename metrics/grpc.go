package metrics

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/errdefs/errgrpc"
)

// The interceptors are meant for server.Options.ExtraUnary and
// ExtraStream, which run inside the chain's error mapping: handlers
// return errdefs errors there, so the code is computed with the same
// errgrpc.ToStatus the chain applies afterwards. Calls that auth or
// validation reject never reach them and are not timed.

// UnaryServerInterceptor times unary calls into
// volrep_grpc_request_duration_seconds{server=serverName}.
func (r *Registry) UnaryServerInterceptor(serverName string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		r.observe(serverName, info.FullMethod, err, time.Since(start))
		return resp, err
	}
}

// StreamServerInterceptor times streaming calls, from open to the
// handler's return, into volrep_grpc_request_duration_seconds.
func (r *Registry) StreamServerInterceptor(serverName string) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		r.observe(serverName, info.FullMethod, err, time.Since(start))
		return err
	}
}

func (r *Registry) observe(serverName, method string, err error, took time.Duration) {
	code := "OK"
	if err != nil {
		code = status.Code(errgrpc.ToStatus(err)).String()
	}
	r.rpc.WithLabelValues(serverName, method, code).Observe(took.Seconds())
}
