package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/errdefs"
	"github.com/volrep/volrep/errdefs/errgrpc"
	"github.com/volrep/volrep/validation/arrayapi"
	"github.com/volrep/volrep/validation/driverapi"
)

// Messages a client sees; tests and documentation refer to them.
const (
	MsgMissingToken = "missing authorization: send the metadata header 'authorization: Bearer <api token>'"
	MsgInvalidToken = "invalid token"
	MsgBadAuthz     = "malformed authorization: send the metadata header 'authorization: Bearer <api token>'"
	MsgInternal     = "internal error; see the daemon log"
)

// The interceptor chain, outermost first:
//
//	logging → error mapping → auth → validation → extra → recovery → handler
//
// Logging is outermost so it sees the final code; error mapping turns every
// handler, auth and validation error into a status through errgrpc.ToStatus;
// recovery is innermost so a panic anywhere in the handler becomes INTERNAL
// before anything else sees it. The error mapping recovers too, for panics
// in the interceptors between them.

func unaryChain(log *slog.Logger, token string, extra []grpc.UnaryServerInterceptor) []grpc.UnaryServerInterceptor {
	c := []grpc.UnaryServerInterceptor{
		logging.UnaryServerInterceptor(slogAdapter(log), loggingOptions()...),
		unaryErrorMapping(log),
	}
	if token != "" {
		c = append(c, selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(bearerAuth(token)), selector.MatchFunc(needsAuth)))
	}
	c = append(c, unaryValidation())
	c = append(c, extra...)
	c = append(c, recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(recoverHandler(log))))
	return c
}

func streamChain(log *slog.Logger, token string, extra []grpc.StreamServerInterceptor) []grpc.StreamServerInterceptor {
	c := []grpc.StreamServerInterceptor{
		logging.StreamServerInterceptor(slogAdapter(log), loggingOptions()...),
		streamErrorMapping(log),
	}
	if token != "" {
		c = append(c, selector.StreamServerInterceptor(auth.StreamServerInterceptor(bearerAuth(token)), selector.MatchFunc(needsAuth)))
	}
	c = append(c, streamValidation())
	c = append(c, extra...)
	c = append(c, recovery.StreamServerInterceptor(recovery.WithRecoveryHandlerContext(recoverHandler(log))))
	return c
}

// ---- logging ----

// slogAdapter lets the middleware's logging interceptor write to slog.
func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// loggingOptions logs one record per finished call, with grpc.service,
// grpc.method, grpc.code, grpc.time_ms and peer.address. Requests,
// responses and metadata are never logged, so tokens cannot leak.
func loggingOptions() []logging.Option {
	return []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(codeToLevel),
	}
}

// codeToLevel: success is debug, client mistakes are info, conditions an
// operator may need to act on are warn, server faults are error.
func codeToLevel(c codes.Code) logging.Level {
	switch c {
	case codes.OK:
		return logging.LevelDebug
	case codes.Canceled, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.OutOfRange:
		return logging.LevelInfo
	case codes.Unauthenticated, codes.PermissionDenied, codes.FailedPrecondition, codes.Aborted,
		codes.ResourceExhausted, codes.DeadlineExceeded, codes.Unavailable, codes.Unimplemented:
		return logging.LevelWarn
	default: // Internal, Unknown, DataLoss
		return logging.LevelError
	}
}

// ---- error mapping ----

// The error-mapping interceptors also recover panics, as a last line for
// code that runs outside the recovery interceptor (auth, request validation,
// the extra interceptors): no panic may take the daemon down.

func unaryErrorMapping(log *slog.Logger) grpc.UnaryServerInterceptor {
	onPanic := recoverHandler(log)
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				resp, err = nil, onPanic(ctx, p)
			}
		}()
		resp, err = handler(ctx, req)
		if err != nil {
			return nil, errgrpc.ToStatus(err)
		}
		return resp, nil
	}
}

func streamErrorMapping(log *slog.Logger) grpc.StreamServerInterceptor {
	onPanic := recoverHandler(log)
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = onPanic(ss.Context(), p)
			}
		}()
		return errgrpc.ToStatus(handler(srv, ss))
	}
}

// ---- auth ----

// needsAuth exempts health checks and server reflection, so load balancers,
// systemd probes and grpcurl can use them without the token.
func needsAuth(_ context.Context, c interceptors.CallMeta) bool {
	return c.Service != "grpc.health.v1.Health" && !strings.HasPrefix(c.Service, "grpc.reflection.")
}

// bearerAuth checks "authorization: Bearer <token>" in constant time. It
// compares SHA-256 digests so that neither the content nor the length of
// the expected token shows in the timing.
func bearerAuth(token string) auth.AuthFunc {
	check := CheckToken(token)
	return func(ctx context.Context) (context.Context, error) {
		vals := metadata.ValueFromIncomingContext(ctx, "authorization")
		if len(vals) == 0 || strings.TrimSpace(vals[0]) == "" {
			return nil, errdefs.Unauthenticated("%s", MsgMissingToken)
		}
		scheme, got, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return nil, errdefs.Unauthenticated("%s", MsgBadAuthz)
		}
		if err := check(strings.TrimSpace(got)); err != nil {
			return nil, err
		}
		return ctx, nil
	}
}

// CheckToken returns a check of a presented token against token, for the
// transports that carry it outside gRPC metadata (server/rawstream).
func CheckToken(token string) func(got string) error {
	want := sha256.Sum256([]byte(token))
	return func(got string) error {
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			return errdefs.Unauthenticated("%s", MsgInvalidToken)
		}
		return nil
	}
}

// ---- validation ----

// validators check the requests of the two APIs; each reports whether it
// knows the request's type. Messages of other services (health,
// reflection) have nothing to check.
var validators = []func(req any) (handled bool, err error){arrayapi.Check, driverapi.Check}

// Validate checks req before its handler runs. The error keeps its
// errdefs kind and field, so the error-mapping interceptor turns it into
// INVALID_ARGUMENT with a google.rpc.BadRequest detail naming the field.
func Validate(req any) error {
	for _, check := range validators {
		handled, err := check(req)
		if !handled {
			continue
		}
		if err != nil && !errdefs.IsInvalidArgument(err) {
			return errdefs.WithKind(errdefs.KindInvalidArgument, err)
		}
		return err
	}
	return nil
}

func unaryValidation() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := Validate(req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// streamValidation checks each message a stream receives, as the handler
// reads it: a server-streaming RPC's single request, and every message of
// a client stream.
func streamValidation() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &validatingStream{ServerStream: ss})
	}
}

type validatingStream struct{ grpc.ServerStream }

func (s *validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return Validate(m)
}

// ---- recovery ----

// recoverHandler logs the panic with its stack at error level and gives the
// client a fixed message: the panic value never leaves the daemon.
func recoverHandler(log *slog.Logger) recovery.RecoveryHandlerFuncContext {
	return func(ctx context.Context, p any) error {
		full, _ := grpc.Method(ctx)
		service, method := splitMethod(full)
		log.ErrorContext(ctx, "panic in gRPC handler",
			logging.ServiceFieldKey, service,
			logging.MethodFieldKey, method,
			"panic", fmt.Sprint(p),
			"stack", string(debug.Stack()))
		return status.Error(codes.Internal, MsgInternal)
	}
}

// splitMethod splits "/pkg.Service/Method" into its service and method.
func splitMethod(full string) (service, method string) {
	service, method, ok := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	if !ok {
		return "unknown", "unknown"
	}
	return service, method
}
