package client_test

import (
	"context"
	"log/slog"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/array/iscsi"
	"github.com/volrep/volrep/array/lunmap"
	"github.com/volrep/volrep/array/replication"
	"github.com/volrep/volrep/array/service"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/array/testsuite"
	"github.com/volrep/volrep/array/transfer"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
	"github.com/volrep/volrep/server"
)

const token = "s3cret-token"

// serve runs the real engine behind the real server chain on loopback.
func serve(t *testing.T) string {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{Name: "grpc", NBDAddress: "127.0.0.1:10809",
		ISCSIPortals: []string{"127.0.0.1:3260"}})
	if err != nil {
		t.Fatal(err)
	}
	target := lunmap.NewServer(st, iscsi.Options{}) // keeps the volumes' reservations
	srv := server.New(server.Options{Name: "array test", Token: token})
	service.New(st).Register(srv.GRPC())
	eng, err := replication.New(t.Context(), st, replication.Options{Dial: func(a, t string) (*grpc.ClientConn, error) { return server.Dial(a, t) }})
	if err != nil {
		t.Fatal(err)
	}
	service.NewReplication(eng).Register(srv.GRPC())
	service.NewOperations(eng).Register(srv.GRPC())
	ts, err := transfer.NewService(t.Context(), st, slog.New(slog.DiscardHandler), transfer.ServiceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ts.Register(srv.GRPC())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		target.Close()
		st.Close()
	})
	return lis.Addr().String()
}

func TestConformanceOverGRPC(t *testing.T) {
	testsuite.Run(t, func(t *testing.T) array.Array {
		cc, err := server.Dial(serve(t), token)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return client.New(cc)
	})
}

// TestAuth calls every array RPC, found from the service descriptors so a
// new RPC cannot be missed, with no token and with a wrong one.
func TestAuth(t *testing.T) {
	addr := serve(t)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	// Every service of the package, so a new service or RPC is covered
	// without touching this test.
	var methods []protoreflect.MethodDescriptor
	protoregistry.GlobalFiles.RangeFilesByPackage("volrep.array.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				methods = append(methods, sd.Methods().Get(j))
			}
		}
		return true
	})
	if len(methods) < 23 {
		t.Fatalf("found only %d methods", len(methods))
	}
	for _, m := range methods {
		full := "/" + string(m.Parent().FullName()) + "/" + string(m.Name())
		for _, tc := range []struct {
			name string
			md   metadata.MD
		}{
			{"no token", nil},
			{"wrong token", metadata.Pairs("authorization", "Bearer wrong")},
			{"not bearer", metadata.Pairs("authorization", "Basic "+token)},
		} {
			t.Run(string(m.Name())+"/"+tc.name, func(t *testing.T) {
				ctx := t.Context()
				if tc.md != nil {
					ctx = metadata.NewOutgoingContext(ctx, tc.md)
				}
				err := invoke(ctx, cc, full, m)
				if status.Code(err) != codes.Unauthenticated {
					t.Fatalf("%s with %s: got %v, want UNAUTHENTICATED", full, tc.name, err)
				}
			})
		}
	}
	// The right token gets past auth (here to a NOT_FOUND from the engine).
	ctx := metadata.NewOutgoingContext(t.Context(), metadata.Pairs("authorization", "Bearer "+token))
	_, err = arrayv1.NewVolumeServiceClient(cc).GetVolume(ctx, &arrayv1.GetVolumeRequest{Name: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("with the right token: %v, want NOT_FOUND", err)
	}
}

func invoke(ctx context.Context, cc *grpc.ClientConn, full string, m protoreflect.MethodDescriptor) error {
	req := dynamicpb.NewMessage(m.Input())
	resp := dynamicpb.NewMessage(m.Output())
	if !m.IsStreamingServer() && !m.IsStreamingClient() {
		return cc.Invoke(ctx, full, req, resp)
	}
	desc := &grpc.StreamDesc{ServerStreams: m.IsStreamingServer(), ClientStreams: m.IsStreamingClient()}
	s, err := cc.NewStream(ctx, desc, full)
	if err != nil {
		return err
	}
	// The server may refuse before reading the request, so a send error is
	// not the answer: RecvMsg returns the stream's status either way.
	_ = s.SendMsg(req)
	_ = s.CloseSend()
	return s.RecvMsg(resp)
}
