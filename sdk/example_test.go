package sdk_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/replication"
	"github.com/volrep/volrep/array/service"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/array/transfer"
	"github.com/volrep/volrep/sdk"
	"github.com/volrep/volrep/sdk/replica"
	"github.com/volrep/volrep/server"
)

// system runs a real array in a temporary directory and connects to it.
func system(name string) (*sdk.System, func()) {
	dir, err := os.MkdirTemp("", "volrep-sdk-")
	if err != nil {
		panic(err)
	}
	st, err := store.Open(dir, store.Options{Name: name})
	if err != nil {
		panic(err)
	}
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	eng, err := replication.New(ctx, st, replication.Options{Logger: log,
		Dial: func(a, t string) (*grpc.ClientConn, error) { return server.Dial(a, t) }})
	if err != nil {
		panic(err)
	}
	srv := server.New(server.Options{Name: name, Token: name + "-token", Logger: log})
	service.New(st).Register(srv.GRPC())
	service.NewReplication(eng).Register(srv.GRPC())
	service.NewOperations(eng).Register(srv.GRPC())
	ts, err := transfer.NewService(ctx, st, log, transfer.ServiceOptions{})
	if err != nil {
		panic(err)
	}
	ts.Register(srv.GRPC())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	done := make(chan struct{}, 2)
	go func() { srv.Serve(ctx, lis); done <- struct{}{} }()
	go func() { eng.Run(ctx); done <- struct{}{} }()
	s, err := sdk.Connect(lis.Addr().String(), name+"-token")
	if err != nil {
		panic(err)
	}
	return s, func() {
		s.Close()
		cancel()
		<-done
		<-done
		eng.Close()
		st.Close()
		os.RemoveAll(dir)
	}
}

type namedSnapshot struct{ name string }

func (n *namedSnapshot) Name() string { return n.name }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Seeds 000-002, "Creating Async Replicas":
//
//	pool = primary.pools.create()
//	vol = primary.volumes.create(pool=pool)
//	remote_pool = secondary.pools.create()
//	replica = primary.replicas.replicate_entity(vol, link=link, remote_pool=remote_pool)
func Example_replicateEntity() {
	ctx := context.Background()
	primary, stop1 := system("primary")
	defer stop1()
	secondary, stop2 := system("secondary")
	defer stop2()

	pool := must(primary.Pools().Create(ctx, "pool1"))
	vol := must(primary.Volumes().Create(ctx, pool, "vol1", 64<<20))
	remotePool := must(secondary.Pools().Create(ctx, "remote-pool"))
	link := must(primary.Links().Create(ctx, "link", secondary))
	r := must(primary.Replicas().ReplicateEntity(ctx, vol, link, replica.RemotePool(remotePool)))

	fmt.Println(r.IsTypeAsync(), r.Info().Mode)
	must(0, vol.Write(ctx, 0, []byte("replicated")))
	must(0, r.Sync(ctx))
	got := make([]byte, 10)
	must(0, secondary.API().ReadVolume(ctx, "vol1", 0, got))
	fmt.Println(r.State(), string(got))
	// Output:
	// true create_target
	// active replicated
}

// Seed 002, replicate_entity_use_base(local_entity, link=link,
// local_snapshot=snap, remote_snapshot=remote_snap): both sides already
// hold the snapshot, so only what changed since it is ever sent.
func Example_replicateEntityUseBase() {
	ctx := context.Background()
	primary, stop1 := system("primary")
	defer stop1()
	secondary, stop2 := system("secondary")
	defer stop2()

	pool := must(primary.Pools().Create(ctx, "pool1"))
	remotePool := must(secondary.Pools().Create(ctx, "remote-pool"))
	link := must(primary.Links().Create(ctx, "link", secondary))
	vol := must(primary.Volumes().Create(ctx, pool, "vol1", 64<<20))
	must(0, vol.Write(ctx, 0, make([]byte, 8<<20)))
	snap := must(vol.CreateSnapshot(ctx, "base"))
	// Get the base to the secondary once; it keeps the snapshot's GUID.
	must(0, snap.ReplicateTo(ctx, link, remotePool))
	remoteSnap := &namedSnapshot{"base"}

	must(0, vol.Write(ctx, 0, []byte("delta")))
	r := must(primary.Replicas().ReplicateEntityUseBase(ctx, vol, link, snap, remoteSnap))
	must(0, r.Sync(ctx))
	fmt.Println(r.Info().Mode, r.State(), r.Info().TotalBytesSent)
	// Output:
	// use_base active 4096
}

// Seed 001, _existing_target: a full copy onto a remote volume of the
// same size that already exists.
func Example_replicateEntityExistingTarget() {
	ctx := context.Background()
	primary, stop1 := system("primary")
	defer stop1()
	secondary, stop2 := system("secondary")
	defer stop2()

	pool := must(primary.Pools().Create(ctx, "pool1"))
	remotePool := must(secondary.Pools().Create(ctx, "remote-pool"))
	link := must(primary.Links().Create(ctx, "link", secondary))
	vol := must(primary.Volumes().Create(ctx, pool, "vol1", 64<<20))
	must(0, vol.Write(ctx, 4096, []byte("copied over")))
	target := must(secondary.Volumes().Create(ctx, remotePool, "formatted-target", 64<<20))

	r := must(primary.Replicas().ReplicateEntityExistingTarget(ctx, vol, link, replica.RemoteEntity(target)))
	must(0, r.Sync(ctx))
	got := make([]byte, 11)
	must(0, target.Read(ctx, 4096, got))
	fmt.Println(r.Info().Mode, r.State(), string(got))
	// Output:
	// existing_target active copied over
}

// Seeds 000-002, "Replicating Consistency Groups":
//
//	cg = primary.cons_groups.create(pool=pool)
//	replica = primary.replicas.replicate_cons_group(cg, link=link, remote_pool=remote_pool)
func Example_replicateConsGroup() {
	ctx := context.Background()
	primary, stop1 := system("primary")
	defer stop1()
	secondary, stop2 := system("secondary")
	defer stop2()

	pool := must(primary.Pools().Create(ctx, "pool1"))
	remotePool := must(secondary.Pools().Create(ctx, "remote-pool"))
	link := must(primary.Links().Create(ctx, "link", secondary))
	cg := must(primary.ConsGroups().Create(ctx, pool, "cg1"))
	a := must(primary.Volumes().Create(ctx, pool, "a", 64<<20))
	b := must(primary.Volumes().Create(ctx, pool, "b", 64<<20))
	must(0, cg.Add(ctx, a, b))
	must(0, a.Write(ctx, 0, []byte("aaaa")))
	must(0, b.Write(ctx, 0, []byte("bbbb")))

	r := must(primary.Replicas().ReplicateConsGroup(ctx, cg, link, replica.RemotePool(remotePool)))
	must(0, r.Sync(ctx))
	for _, name := range []string{"a", "b"} {
		snaps := must(secondary.API().ListSnapshots(ctx, name))
		got := make([]byte, 4)
		must(0, secondary.API().ReadSnapshot(ctx, name, snaps[len(snaps)-1].Name, 0, got))
		fmt.Println(name, string(got), strings.HasPrefix(snaps[len(snaps)-1].Name, r.Info().Name+"."))
	}
	// Output:
	// a aaaa true
	// b bbbb true
}

// A volume's QoS limit, as an array enforces it on every attachment.
func ExampleVolume_SetQoS() {
	ctx := context.Background()
	sys, stop := system("qos")
	defer stop()
	vol := must(sys.Volumes().Create(ctx, must(sys.Pools().Create(ctx, "pool1")), "vol1", 64<<20))
	must(0, vol.SetQoS(ctx, array.QoS{TotalIOPS: 500, WriteBytesPerSec: 10 << 20}))
	q := must(vol.QoS(ctx))
	fmt.Println(q.TotalIOPS, q.WriteBytesPerSec)
	must(0, vol.SetQoS(ctx, array.QoS{}))
	fmt.Println(must(vol.QoS(ctx)).IsZero())
	// Output:
	// 500 10485760
	// true
}
