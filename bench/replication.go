package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/replication"
	"github.com/volrep/volrep/array/service"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/array/transfer"
	"github.com/volrep/volrep/server"
)

// P1 and P2: snapshot replication between two arrays on this disk, over
// the real gRPC transfer path on loopback, against rsync and cp of raw
// images of the same data in the same run.
func init() {
	register("P1", "incremental-replicate", incrementalReplicate)
	register("P2", "full-replicate", fullReplicate)
}

// pair is a source array with a replication engine and a target array
// behind a gRPC server, linked as "target".
type pair struct {
	src *store.Store
	dst *store.Store
	// Loopback listeners for the two arrays' NBD, served by serveNBD.
	srcNBD, dstNBD net.Listener
	eng            *replication.Engine
	wire           *countingListener // the target's listener: every byte of the link
	stop           func()
}

// countingListener counts the bytes its connections carry each way: what
// a link put on the wire (gRPC and HTTP/2 framing, headers, CRCs and all),
// not the payload lengths the engine reports.
type countingListener struct {
	net.Listener
	in, out atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

// bytes is what crossed the listener's connections so far, both ways.
func (l *countingListener) bytes() int64 { return l.in.Load() + l.out.Load() }

type countingConn struct {
	net.Conn
	l *countingListener
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.l.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.l.out.Add(int64(n))
	return n, err
}

func newPair(ctx context.Context, env *Env, name string) (*pair, error) {
	srcDir, dstDir := filepath.Join(env.Dir, name+"-src"), filepath.Join(env.Dir, name+"-dst")
	srcNBD, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	dstNBD, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srcNBD.Close()
		return nil, err
	}
	src, err := store.Open(srcDir, store.Options{Name: name + "-src", NBDAddress: srcNBD.Addr().String()})
	if err != nil {
		return nil, err
	}
	dst, err := store.Open(dstDir, store.Options{Name: name + "-dst", NBDAddress: dstNBD.Addr().String()})
	if err != nil {
		src.Close()
		return nil, err
	}
	for _, s := range []*store.Store{src, dst} {
		if _, err := s.CreatePool(ctx, "bench"); err != nil {
			return nil, err
		}
	}
	log := slog.New(slog.DiscardHandler)
	srv := server.New(server.Options{Name: "target", Token: "bench", Logger: log})
	service.New(dst).Register(srv.GRPC())
	ts, err := transfer.NewService(ctx, dst, log, transfer.ServiceOptions{})
	if err != nil {
		src.Close()
		dst.Close()
		return nil, err
	}
	ts.Register(srv.GRPC())
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	lis := &countingListener{Listener: tcp}
	sctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(sctx, lis); close(served) }()
	stopServer := func() { cancel(); <-served }
	eng, err := replication.New(ctx, src, replication.Options{Logger: log,
		Dial: func(a, t string) (*grpc.ClientConn, error) { return server.Dial(a, t) }})
	if err != nil {
		stopServer()
		return nil, err
	}
	if _, err := eng.CreateLink(ctx, array.LinkSpec{Name: "target", Address: lis.Addr().String(), Token: "bench"}); err != nil {
		eng.Close()
		stopServer()
		return nil, err
	}
	return &pair{src: src, dst: dst, srcNBD: srcNBD, dstNBD: dstNBD, eng: eng, wire: lis, stop: func() {
		srcNBD.Close()
		dstNBD.Close()
		eng.Close()
		stopServer()
		src.Close()
		dst.Close()
		os.RemoveAll(srcDir)
		os.RemoveAll(dstDir)
	}}, nil
}

// replicate runs one snapshot replication to completion and times it.
func (p *pair) replicate(ctx context.Context, spec array.SnapshotReplicateSpec) (array.Operation, time.Duration, error) {
	spec.Link, spec.RemotePool = "target", "bench"
	start := time.Now()
	id, err := p.eng.ReplicateSnapshot(ctx, spec)
	if err != nil {
		return array.Operation{}, 0, err
	}
	var last array.Operation
	err = p.eng.WatchOperation(ctx, id, func(o array.Operation) error { last = o; return nil })
	took := time.Since(start)
	if err == nil && last.State != array.OpSucceeded {
		err = fmt.Errorf("operation %s: %s", last.State, last.Err)
	}
	return last, took, err
}

// image fills a volume and a raw file with the same pseudo-random data.
func image(ctx context.Context, s *store.Store, vol, file string, size int64) error {
	if _, err := s.CreateVolume(ctx, array.VolumeSpec{Name: vol, Pool: "bench", SizeBytes: size}); err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{7}).Read(buf)
	for off := int64(0); off < size; off += int64(len(buf)) {
		for b := 0; b < len(buf); b += 4096 {
			binary.LittleEndian.PutUint64(buf[b:], uint64(off)+uint64(b))
		}
		if err := s.WriteVolume(ctx, vol, off, buf, false); err != nil {
			return err
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			return err
		}
	}
	if err := s.FlushVolume(ctx, vol); err != nil {
		return err
	}
	return f.Sync()
}

func benchSize(env *Env) int64 {
	if env.Quick {
		return 512 << 20
	}
	return 4 << 30
}

// incrementalReplicate changes 1% of a 4 GiB volume's 64 KiB blocks and
// times the incremental SnapshotReplicate against rsync of the same two
// raw images.
func incrementalReplicate(ctx context.Context, env *Env) ([]Row, error) {
	p, err := newPair(ctx, env, "p1")
	if err != nil {
		return nil, err
	}
	defer p.stop()
	size := benchSize(env)
	srcImg, dstDir := filepath.Join(env.Dir, "p1-src.img"), filepath.Join(env.Dir, "p1-rsync")
	defer os.Remove(srcImg)
	defer os.RemoveAll(dstDir)
	if err := image(ctx, p.src, "vol", srcImg, size); err != nil {
		return nil, err
	}
	if _, err := p.src.CreateSnapshot(ctx, "vol", "s1", nil); err != nil {
		return nil, err
	}
	if _, _, err := p.replicate(ctx, array.SnapshotReplicateSpec{Volume: "vol", Snapshot: "s1"}); err != nil {
		return nil, err
	}
	os.MkdirAll(dstDir, 0o755)
	dstImg := filepath.Join(dstDir, "p1-src.img")
	if out, err := exec.CommandContext(ctx, "cp", srcImg, dstImg).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("cp: %v %s", err, out)
	}
	// The copy is from an hour ago, as a real previous sync would be; with
	// both stamped in the same second rsync would skip the file unread.
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(dstImg, hourAgo, hourAgo); err != nil {
		return nil, err
	}
	// Change 1% of the 64 KiB blocks, the same ones in the volume and the file.
	const blk = 64 << 10
	r := rand.New(rand.NewPCG(1, 1))
	f, err := os.OpenFile(srcImg, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	changed := map[int64]bool{}
	for int64(len(changed)) < size/blk/100 {
		changed[r.Int64N(size/blk)] = true
	}
	data := bytes.Repeat([]byte{0x5a}, blk)
	for b := range changed {
		binary.LittleEndian.PutUint64(data, uint64(b))
		if err := p.src.WriteVolume(ctx, "vol", b*blk, data, false); err != nil {
			return nil, err
		}
		if _, err := f.WriteAt(data, b*blk); err != nil {
			return nil, err
		}
	}
	f.Sync()
	f.Close()
	if _, err := p.src.CreateSnapshot(ctx, "vol", "s2", nil); err != nil {
		return nil, err
	}
	syscall.Sync()
	wireBefore := p.wire.bytes()
	op, took, err := p.replicate(ctx, array.SnapshotReplicateSpec{Volume: "vol", Snapshot: "s2"})
	if err != nil {
		return nil, err
	}
	wire := p.wire.bytes() - wireBefore
	if !op.Result.Incremental {
		return nil, fmt.Errorf("P1 replication was not incremental")
	}
	syscall.Sync()
	start := time.Now()
	if out, err := exec.CommandContext(ctx, "rsync", "--inplace", "--no-whole-file", srcImg, dstDir+"/").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("rsync: %v %s", err, out)
	}
	rsyncTook := time.Since(start)
	changedBytes := int64(len(changed)) * blk
	return []Row{
		{ID: "P1", Name: "incremental-replicate", Volrep: took.Seconds(), Baseline: rsyncTook.Seconds(), Unit: "s",
			Note: fmt.Sprintf("%d GiB volume, 1%% of 64 KiB blocks changed; baseline rsync --inplace --no-whole-file; goal >= 40x", size>>30)},
		{ID: "P1w", Name: "incremental-wire-bytes", Volrep: float64(wire) / mib, Baseline: float64(changedBytes) / mib,
			Unit: "MiB", Note: fmt.Sprintf("bytes the link's TCP connection carried both ways during the transfer (the engine counted %.2f MiB of payload) vs bytes changed; goal <= 1.1x (ratio >= 0.91)", float64(op.Result.BytesSent)/mib)},
	}, nil
}

// fullReplicate times force_full_copy of a fully written 4 GiB volume
// against cp of a raw image of the same size on the same disk, each made
// durable (fsync) before the clock stops, as the receiver's commit is.
func fullReplicate(ctx context.Context, env *Env) ([]Row, error) {
	p, err := newPair(ctx, env, "p2")
	if err != nil {
		return nil, err
	}
	defer p.stop()
	size := benchSize(env)
	srcImg, copyImg := filepath.Join(env.Dir, "p2-src.img"), filepath.Join(env.Dir, "p2-copy.img")
	defer os.Remove(srcImg)
	defer os.Remove(copyImg)
	if err := image(ctx, p.src, "vol", srcImg, size); err != nil {
		return nil, err
	}
	if _, err := p.src.CreateSnapshot(ctx, "vol", "s1", nil); err != nil {
		return nil, err
	}
	nbdSrc := serveNBD(ctx, p.src, p.srcNBD)
	defer nbdSrc.stop()
	nbdDst := serveNBD(ctx, p.dst, p.dstNBD)
	defer nbdDst.stop()
	from, err := nbdSrc.export(ctx, array.ExportSpec{Volume: "vol", Snapshot: "s1", ReadOnly: true, AttachmentID: "p2n-src"})
	if err != nil {
		return nil, err
	}
	var volrep, cp, nbdcopy []time.Duration
	for i := 0; i < 3; i++ {
		// Start each from a clean page cache writeback state, so neither
		// pays for the other's dirty pages.
		syscall.Sync()
		_, took, err := p.replicate(ctx, array.SnapshotReplicateSpec{Volume: "vol", Snapshot: "s1", RemoteVolume: fmt.Sprintf("copy%d", i), ForceFull: true})
		if err != nil {
			return nil, err
		}
		volrep = append(volrep, took)
		syscall.Sync()
		start := time.Now()
		if out, err := exec.CommandContext(ctx, "sh", "-c", `cp "$1" "$2" && sync "$2"`, "cp", srcImg, copyImg).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("cp: %v %s", err, out)
		}
		cp = append(cp, time.Since(start))
		os.Remove(copyImg)

		// What an operator would do by hand: nbdcopy from the source
		// snapshot's export into a new volume's export on the target.
		name := fmt.Sprintf("nbdcopy%d", i)
		if _, err := p.dst.CreateVolume(ctx, array.VolumeSpec{Name: name, Pool: "bench", SizeBytes: size}); err != nil {
			return nil, err
		}
		to, err := nbdDst.export(ctx, array.ExportSpec{Volume: name, AttachmentID: "p2n-dst"})
		if err != nil {
			return nil, err
		}
		syscall.Sync()
		start = time.Now()
		if out, err := exec.CommandContext(ctx, "nbdcopy", "--flush", from, to).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("nbdcopy: %v %s", err, out)
		}
		nbdcopy = append(nbdcopy, time.Since(start))
		if i == 0 {
			if err := sameContent(ctx, p.src, "vol", "s1", p.dst, name, size); err != nil {
				return nil, fmt.Errorf("nbdcopy's copy: %w", err)
			}
		}
		if err := p.dst.DeleteVolume(ctx, name); err != nil {
			return nil, err
		}
	}
	return []Row{{ID: "P2", Name: "full-replicate", Volrep: median(volrep).Seconds(), Baseline: median(cp).Seconds(), Unit: "s",
		Note: fmt.Sprintf("%d GiB fully written, force_full_copy vs cp+fsync, median of 3; goal volrep <= 1.25x cp (ratio >= 0.8)", size>>30)},
		{ID: "P2n", Name: "full-replicate-vs-nbdcopy", Volrep: median(volrep).Seconds(), Baseline: median(nbdcopy).Seconds(), Unit: "s",
			Note: fmt.Sprintf("the same force_full_copy runs vs nbdcopy --flush from the source snapshot's NBD export to a new volume's export on the target array (data compared), interleaved, median of 3; goal ratio >= 1.0")}}, nil
}
