// Package sdk is a Go SDK for volrep arrays whose calls read like
// InfiniSDK's Python:
//
//	pool, _ := primary.Pools().Create(ctx, "pool1")
//	vol, _ := primary.Volumes().Create(ctx, pool, "vol1", 1<<30)
//	remotePool, _ := secondary.Pools().Create(ctx, "remote-pool")
//	link, _ := primary.Links().Create(ctx, "to-secondary", secondary)
//	r, _ := primary.Replicas().ReplicateEntity(ctx, vol, link, replica.RemotePool(remotePool))
//	_ = r.ChangeTypeToSync(ctx)
package sdk

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/sdk/replica"
	"github.com/volrep/volrep/server"
)

// System is one array, as InfiniSDK's InfiniBox object.
type System struct {
	Address string
	token   string
	cc      *grpc.ClientConn
	a       array.Array
	r       array.Replication
}

// Connect reaches the array API at address with its token. Like
// grpc.NewClient it does not connect until the first call.
func Connect(address, token string) (*System, error) {
	cc, err := server.Dial(address, token)
	if err != nil {
		return nil, err
	}
	return &System{Address: address, token: token, cc: cc, a: client.New(cc), r: client.NewReplication(cc)}, nil
}

// Close releases the connection.
func (s *System) Close() error { return s.cc.Close() }

// API returns the array's storage API, for calls the SDK does not wrap.
func (s *System) API() array.Array { return s.a }

// Pools is the system's pools.
func (s *System) Pools() Pools { return Pools{s} }

// Volumes is the system's volumes.
func (s *System) Volumes() Volumes { return Volumes{s} }

// ConsGroups is the system's consistency groups.
func (s *System) ConsGroups() ConsGroups { return ConsGroups{s} }

// Links is the system's links to peer systems.
func (s *System) Links() Links { return Links{s} }

// Replicas is InfiniSDK's ReplicaBinder for this system.
func (s *System) Replicas() *replica.Binder { return replica.NewBinder(s.r) }

// Pool is a pool.
type Pool struct{ name string }

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Pools creates and finds pools.
type Pools struct{ s *System }

// Create creates a pool (or returns the existing one).
func (p Pools) Create(ctx context.Context, name string) (*Pool, error) {
	if _, err := p.s.a.CreatePool(ctx, name); err != nil {
		return nil, err
	}
	return &Pool{name}, nil
}

// Volume is a volume on a system.
type Volume struct {
	s    *System
	name string
}

// Name returns the volume's name.
func (v *Volume) Name() string { return v.name }

// EntityName and EntityKind make a volume replicable.
func (v *Volume) EntityName() string { return v.name }
func (v *Volume) EntityKind() string { return array.KindVolume }

// Volumes creates volumes.
type Volumes struct{ s *System }

// Create creates a thin volume in pool.
func (vs Volumes) Create(ctx context.Context, pool *Pool, name string, size int64) (*Volume, error) {
	if _, err := vs.s.a.CreateVolume(ctx, array.VolumeSpec{Name: name, Pool: pool.Name(), SizeBytes: size}); err != nil {
		return nil, err
	}
	return &Volume{vs.s, name}, nil
}

// Get returns an existing volume.
func (vs Volumes) Get(ctx context.Context, name string) (*Volume, error) {
	if _, err := vs.s.a.GetVolume(ctx, name); err != nil {
		return nil, err
	}
	return &Volume{vs.s, name}, nil
}

// SetQoS limits the I/O of the volume's attachments (NBD and iSCSI
// together) per second; the zero QoS removes the limit. Open attachments
// are held to it from their next request.
func (v *Volume) SetQoS(ctx context.Context, q array.QoS) error {
	_, err := v.s.a.SetVolumeQoS(ctx, v.name, q)
	return err
}

// QoS returns the volume's limit (the zero QoS when it has none).
func (v *Volume) QoS(ctx context.Context) (array.QoS, error) {
	a, err := v.s.a.GetVolume(ctx, v.name)
	return a.QoS, err
}

// Snapshot is a snapshot of a volume.
type Snapshot struct {
	Volume *Volume
	name   string
	GUID   string
}

// Name returns the snapshot's name.
func (s *Snapshot) Name() string { return s.name }

// CreateSnapshot snapshots the volume.
func (v *Volume) CreateSnapshot(ctx context.Context, name string) (*Snapshot, error) {
	sn, err := v.s.a.CreateSnapshot(ctx, v.name, name, nil)
	if err != nil {
		return nil, err
	}
	return &Snapshot{v, name, sn.GUID}, nil
}

// Write writes p at off; Read fills p from off.
func (v *Volume) Write(ctx context.Context, off int64, p []byte) error {
	return v.s.a.WriteVolume(ctx, v.name, off, p, true)
}

func (v *Volume) Read(ctx context.Context, off int64, p []byte) error {
	return v.s.a.ReadVolume(ctx, v.name, off, p)
}

// ConsGroup is a consistency group.
type ConsGroup struct {
	s    *System
	name string
}

// EntityName and EntityKind make a group replicable.
func (g *ConsGroup) EntityName() string { return g.name }
func (g *ConsGroup) EntityKind() string { return array.KindGroup }

// Add puts volumes in the group.
func (g *ConsGroup) Add(ctx context.Context, vols ...*Volume) error {
	names := make([]string, len(vols))
	for i, v := range vols {
		names[i] = v.name
	}
	_, err := g.s.a.AddMembers(ctx, g.name, names)
	return err
}

// ConsGroups creates consistency groups.
type ConsGroups struct{ s *System }

// Create creates a consistency group in pool.
func (cs ConsGroups) Create(ctx context.Context, pool *Pool, name string) (*ConsGroup, error) {
	if _, err := cs.s.a.CreateGroup(ctx, name, pool.Name(), nil); err != nil {
		return nil, err
	}
	return &ConsGroup{cs.s, name}, nil
}

// Link is a link to a peer system.
type Link struct{ name string }

// Name returns the link's name.
func (l *Link) Name() string { return l.name }

// Links creates links.
type Links struct{ s *System }

// Create links this system to remote, with remote's address and token.
func (ls Links) Create(ctx context.Context, name string, remote *System) (*Link, error) {
	if _, err := ls.s.r.CreateLink(ctx, array.LinkSpec{Name: name, Address: remote.Address, Token: remote.token}); err != nil {
		return nil, err
	}
	return &Link{name}, nil
}

// ReplicateTo sends the snapshot over link into remotePool (a delta when
// the remote already holds an older snapshot of the volume) and waits
// until it has arrived.
func (s *Snapshot) ReplicateTo(ctx context.Context, link *Link, remotePool *Pool) error {
	r := s.Volume.s.r
	id, err := r.ReplicateSnapshot(ctx, array.SnapshotReplicateSpec{Volume: s.Volume.name, Snapshot: s.name, Link: link.Name(), RemotePool: remotePool.Name()})
	if err != nil {
		return err
	}
	var last array.Operation
	if err := r.WatchOperation(ctx, id, func(o array.Operation) error { last = o; return nil }); err != nil {
		return err
	}
	if last.State != array.OpSucceeded {
		return fmt.Errorf("replicating %s@%s: %s: %s", s.Volume.name, s.name, last.State, last.Err)
	}
	return nil
}
