package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/bitmap"
	"github.com/volrep/volrep/errdefs"
)

// Version is reported by Info.
const Version = "0.1.0"

// Options configure a Store.
type Options struct {
	// Name is the array's name, reported by Info.
	Name   string
	Logger *slog.Logger
	// Now is the clock; tests inject a fake one.
	Now func() time.Time
	// NBDAddress is where this array serves NBD ("host:port"); empty
	// means it does not, and CreateExport refuses.
	NBDAddress string
	// ISCSIPortals are where this array serves iSCSI ("host:port", the
	// listeners' real addresses); none means it does not, and
	// ConnectVolume refuses.
	ISCSIPortals []string
	// ISCSITargetIQN is the array's iSCSI target name; empty means
	// array.DefaultTargetIQN(Name).
	ISCSITargetIQN string
	// StreamPort is the port of the array's raw stream listener
	// (stream_listen), reported by Info; 0 means none.
	StreamPort int
	// Features, when set, replaces the protocol features Info reports
	// (array.Features): a test stands for an older array with it.
	Features *[]string
}

// Store is a local array. It is safe for concurrent use.
type Store struct {
	dir  string
	opts Options
	db   *bolt.DB
	lock *os.File
	id   string

	// mu guards the namespace (pools, volumes, snapshots, layer graph) and
	// serialises structural changes.
	mu      sync.RWMutex
	pools   map[string]*poolRec
	vols    map[string]*volume
	layers  map[uint64]*layer
	exports map[string]*export
	groups  map[string]*groupRec
	// hosts are the iSCSI hosts by name, and initiators the same hosts by
	// the array.ISCSINameKey of each of their IQNs.
	hosts      map[string]*host
	initiators map[string]*host
	// receiving holds the volumes a transfer is being staged into.
	receiving map[string]*Receiver
	// groupObserver is told when a group's membership changes.
	groupObserver atomic.Pointer[func(group string)]
	// resetWatcher applies the resets a pod's other array took (reset.go).
	resetWatcher atomic.Pointer[ResetWatcher]
	// reservationWatcher keeps the iSCSI units' persistent reservations
	// (reservation.go).
	reservationWatcher atomic.Pointer[ReservationWatcher]
	// wasClean is whether the previous run closed the store.
	wasClean bool
	// diskFull is set from the first write that finds the filesystem full
	// until a write succeeds again (space.go).
	diskFull atomic.Bool
	next     uint64

	// Layer files' directory entries are made durable lazily, by one
	// directory fsync for every layer created before it (durableEntry):
	// created counts the files created, entries how many of them are
	// known durable. entryMu lets one caller sync while others wait.
	created, entries atomic.Uint64
	entryMu          sync.Mutex
	closed           atomic.Bool

	// io is held shared by every read and write and exclusively while a
	// volume's chain changes, which makes snapshots a write barrier.
	io sync.RWMutex

	// gc batches the metadata commits of creates and deletes (commit.go).
	gc groupCommit
	// settling holds the volumes whose create or delete is being
	// committed without s.mu, by name.
	settling map[string]*settling
}

type volume struct {
	rec   volRec
	live  *layer
	snaps map[string]*snapshot
	// deleted is set under io's write lock, so I/O through a Handle that
	// outlived the volume fails instead of touching a reused layer.
	deleted bool
	// stripes serialise writes that touch the same block, so two partial
	// writes to one block cannot lose each other's read-modify-write.
	stripes [256]sync.Mutex
	// mirror, set under io's write lock, sees every client change.
	mirror Mirror
	// forward, set under io's write lock, takes the client changes of a
	// read-only copy (io.go's Forwarder).
	forward Forwarder
	// qos is the token buckets of rec.QoS, nil when unlimited; read
	// without a lock by every request of an attachment.
	qos atomic.Pointer[buckets]
	// hold, set under io's write lock, makes client writes wait (hold.go).
	hold *writeHold
}

type snapshot struct {
	rec     snapRec
	layer   *layer
	deleted bool
}

var _ array.Array = (*Store)(nil)

// Open opens or creates the array in dir. Only one process may hold it.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ISCSITargetIQN == "" {
		opts.ISCSITargetIQN = array.DefaultTargetIQN(opts.Name)
	}
	if err := os.MkdirAll(filepath.Join(dir, "layers"), dirMode); err != nil {
		return nil, fmt.Errorf("array data dir %s: %w", dir, err)
	}
	// Older versions made these group-readable; tighten them in place.
	for _, p := range []string{dir, filepath.Join(dir, "layers")} {
		if err := restrictMode(p, dirMode); err != nil {
			return nil, fmt.Errorf("array data dir %s: %w", dir, err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, fileMode)
	if err != nil {
		return nil, fmt.Errorf("array data dir %s: %w", dir, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, errdefs.FailedPrecondition("array data dir %s is in use by another process; stop it or use another data_dir", dir)
	}
	metaPath := filepath.Join(dir, "meta.db")
	if err := restrictMode(metaPath, fileMode); err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return nil, fmt.Errorf("array metadata %s: %w", metaPath, err)
	}
	db, err := bolt.Open(metaPath, fileMode, &bolt.Options{Timeout: time.Second})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("array metadata %s: %w", metaPath, err)
	}
	s := &Store{dir: dir, opts: opts, db: db, lock: lock,
		pools: map[string]*poolRec{}, vols: map[string]*volume{}, layers: map[uint64]*layer{},
		exports: map[string]*export{}, groups: map[string]*groupRec{},
		hosts: map[string]*host{}, initiators: map[string]*host{},
		receiving: map[string]*Receiver{}, settling: map[string]*settling{}}
	if err := s.load(); err != nil {
		s.closeFiles()
		return nil, err
	}
	if err := s.collect(context.Background()); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("array %s: finishing interrupted merges: %w", dir, err)
	}
	// The marker exists only between a Close and the next Open, so its
	// absence means the last run ended without closing the store.
	marker := filepath.Join(dir, "clean")
	if err := os.Remove(marker); err == nil {
		s.wasClean = true
	} else if !errors.Is(err, os.ErrNotExist) {
		s.closeFiles()
		return nil, err
	}
	// Layer files created by the last run may have directory entries
	// that are not durable yet (a process crash keeps them in the page
	// cache): these layers count as durable from here on.
	for _, d := range []string{dir, filepath.Join(dir, "layers")} {
		if err := syncDir(d); err != nil {
			s.closeFiles()
			return nil, err
		}
	}
	return s, nil
}

func (s *Store) load() error {
	return s.update(func(tx *bolt.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		if err := s.loadExports(tx); err != nil {
			return err
		}
		if err := s.loadGroups(tx); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if id := meta.Get(keyArrayID); id != nil {
			s.id = string(id)
		} else {
			// A new array has nothing to distrust.
			s.wasClean = true
			s.id = uuid.NewString()
			if err := meta.Put(keyArrayID, []byte(s.id)); err != nil {
				return err
			}
		}
		if v := meta.Get(keyNextLayer); v != nil {
			if err := json.Unmarshal(v, &s.next); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketPools).ForEach(func(k, v []byte) error {
			var p poolRec
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			s.pools[p.Name] = &p
			return nil
		}); err != nil {
			return err
		}
		parents := map[uint64]uint64{}
		if err := tx.Bucket(bucketLayers).ForEach(func(k, v []byte) error {
			var r layerRec
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			l, err := s.openLayer(tx, r)
			if err != nil {
				return err
			}
			s.layers[r.ID] = l
			parents[r.ID] = r.Parent
			return nil
		}); err != nil {
			return err
		}
		for id, pid := range parents {
			if pid == 0 {
				continue
			}
			p := s.layers[pid]
			if p == nil {
				return fmt.Errorf("layer %d: parent %d is missing", id, pid)
			}
			s.layers[id].parent = p
			p.children[s.layers[id]] = struct{}{}
		}
		if err := tx.Bucket(bucketVolumes).ForEach(func(k, v []byte) error {
			var r volRec
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			l := s.layers[r.Live]
			if l == nil {
				return fmt.Errorf("volume %s: layer %d is missing", r.Name, r.Live)
			}
			l.volume = true
			if !array.ValidSerial(r.Serial) {
				// Made before volumes had serials: one derived from what
				// names the volume here is as stable, though a replica made
				// before then derives a different one.
				r.Serial = array.DeriveSerial(s.id, r.Name)
			}
			vol := &volume{rec: r, live: l, snaps: map[string]*snapshot{}}
			vol.setQoS(r.QoS.qos())
			s.vols[r.Name] = vol
			return nil
		}); err != nil {
			return err
		}
		if err := s.loadReceives(tx); err != nil {
			return err
		}
		if err := s.loadHosts(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketSnapshots).ForEach(func(k, v []byte) error {
			var r snapRec
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			vol, l := s.vols[r.Volume], s.layers[r.Layer]
			if vol == nil || l == nil {
				return fmt.Errorf("snapshot %s@%s: volume or layer %d is missing", r.Volume, r.Name, r.Layer)
			}
			l.snaps++
			vol.snaps[r.Name] = &snapshot{rec: r, layer: l}
			return nil
		})
	})
}

func (s *Store) openLayer(tx *bolt.Tx, r layerRec) (*layer, error) {
	present, zero, err := loadBitmaps(tx, r.ID)
	if err != nil {
		return nil, err
	}
	l := s.layerOf(r, present, zero)
	flags := os.O_RDWR
	if !present.Empty() {
		flags |= os.O_CREATE // a layer with blocks has a file
	}
	f, err := os.OpenFile(l.path, flags, fileMode)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return l, nil // a layer never written has no file yet (layer.writable)
	case err != nil:
		return nil, err
	}
	l.fd.Store(f)
	return l, nil
}

// layerOf is the in-memory layer of record r, without its file.
func (s *Store) layerOf(r layerRec, present, zero *bitmap.Bitmap) *layer {
	return &layer{id: r.ID, file: r.File, path: filepath.Join(s.dir, "layers", r.File), created: &s.created,
		frozen: r.Frozen, present: present, zero: zero, children: map[*layer]struct{}{}}
}

// newLayer creates an empty layer file and its record inside tx. The caller
// links it into the in-memory graph after the transaction commits.
func (s *Store) newLayer(tx *bolt.Tx, parent *layer) (*layer, error) {
	s.next++
	if err := putNextLayer(tx, s.next); err != nil {
		return nil, err
	}
	r := layerRec{ID: s.next, File: layerFile(s.next)}
	if parent != nil {
		r.Parent = parent.id
	}
	if err := putJSON(tx.Bucket(bucketLayers), u64key(r.ID), r); err != nil {
		return nil, err
	}
	// A new layer holds no blocks and has no file yet, under a name no
	// file has had: nothing to load or open (openLayer would look for
	// both, a metadata lookup and a failing openat for each of a group's
	// thousand new layers). The file is created by the layer's first
	// write (layer.writable).
	l := s.layerOf(r, bitmap.New(), bitmap.New())
	l.parent = parent
	return l, nil
}

// layerFile names the file of layer id: unique even if an id were
// reused after a crash.
func layerFile(id uint64) string {
	return fmt.Sprintf("%016x-%s.dat", id, uuid.NewString()[:8])
}

// durableEntry makes l's directory entry durable, which must happen
// before a transaction commits bitmaps naming l's blocks. One directory
// fsync covers every layer created before it, so creating volumes costs
// no directory fsync and a burst of first flushes shares one.
func (s *Store) durableEntry(l *layer) error {
	if l.gen.Load() <= s.entries.Load() {
		return nil
	}
	s.entryMu.Lock()
	defer s.entryMu.Unlock()
	if l.gen.Load() <= s.entries.Load() {
		return nil
	}
	upTo := s.created.Load()
	if err := syncDir(filepath.Join(s.dir, "layers")); err != nil {
		return err
	}
	s.entries.Store(upTo)
	return nil
}

func (s *Store) dropLayerFile(l *layer) {
	l.closeFile()
	if err := os.Remove(filepath.Join(s.dir, "layers", l.file)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.opts.Logger.Warn("removing layer file", "layer", l.id, "err", err)
	}
}

func unixTime(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

// The data directory is the array's alone: meta.db holds the peer arrays'
// API tokens (links must dial with them) and the layers hold tenants' data,
// so nothing in it is readable by the group or others.
const (
	dirMode  os.FileMode = 0o700
	fileMode os.FileMode = 0o600
)

// restrictMode removes permission bits beyond want from path; it never
// widens a mode an operator made stricter.
func restrictMode(path string, want os.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&^want == 0 {
		return nil
	}
	return os.Chmod(path, fi.Mode().Perm()&want)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Close flushes every volume and releases the data directory.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	// Wait for in-flight I/O; later I/O sees closed and fails.
	s.io.Lock()
	defer s.io.Unlock()
	var errs []error
	for _, v := range s.vols {
		if h := v.hold; h != nil {
			s.releaseLocked(v, h) // held writes now find the store closed
		}
		errs = append(errs, s.flushLayer(v.live))
	}
	errs = append(errs, s.closeFiles())
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.dir, "clean"), nil, fileMode); err != nil {
		return err
	}
	return syncDir(s.dir)
}

func (s *Store) closeFiles() error {
	for _, l := range s.layers {
		l.closeFile()
	}
	err := s.db.Close()
	s.lock.Close()
	return err
}

func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return errdefs.Unavailable("array %s is shutting down", s.opts.Name)
	}
	return nil
}

// WasClean reports whether the previous run closed the store cleanly;
// after a crash, layers above the engine re-check what they cannot trust.
func (s *Store) WasClean() bool { return s.wasClean }

// ObserveGroups registers fn to be told, outside any lock, whenever a
// consistency group's membership changes.
func (s *Store) ObserveGroups(fn func(group string)) { s.groupObserver.Store(&fn) }

func (s *Store) groupChanged(group string) {
	if fn := s.groupObserver.Load(); fn != nil {
		(*fn)(group)
	}
}

// Dir returns the data directory.
func (s *Store) Dir() string { return s.dir }

// Info describes the array and the space left on its filesystem.
func (s *Store) Info(ctx context.Context) (array.Info, error) {
	if err := ctx.Err(); err != nil {
		return array.Info{}, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.dir, &st); err != nil {
		return array.Info{}, err
	}
	info := array.Info{
		Name: s.opts.Name, ID: s.id, Version: Version,
		CapacityBytes: int64(st.Blocks) * st.Bsize,
		FreeBytes:     int64(st.Bavail) * st.Bsize,
		Now:           s.opts.Now(), BlockSize: bs,
		ISCSIPortals: slices.Clone(s.opts.ISCSIPortals),
		StreamPort:   s.opts.StreamPort,
		Features:     array.Features(),
	}
	if s.opts.Features != nil {
		info.Features = slices.Clone(*s.opts.Features)
	}
	if len(info.ISCSIPortals) > 0 {
		info.ISCSITargetIQN = s.opts.ISCSITargetIQN
	}
	return info, nil
}

// CreatePool creates a pool; an existing one is returned as is.
func (s *Store) CreatePool(ctx context.Context, name string) (array.Pool, error) {
	if err := array.CheckName("pool", name); err != nil {
		return array.Pool{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Pool{}, err
	}
	if p, ok := s.pools[name]; ok {
		return s.poolOf(p), nil
	}
	p := &poolRec{Name: name, Created: s.opts.Now().UTC()}
	if err := s.update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketPools), []byte(name), p)
	}); err != nil {
		return array.Pool{}, err
	}
	s.pools[name] = p
	return s.poolOf(p), nil
}

func (s *Store) poolOf(p *poolRec) array.Pool {
	n := int64(0)
	for _, v := range s.vols {
		if v.rec.Pool == p.Name {
			n++
		}
	}
	return array.Pool{Name: p.Name, Created: p.Created, VolumeCount: n}
}

// GetPool returns a pool.
func (s *Store) GetPool(ctx context.Context, name string) (array.Pool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return array.Pool{}, err
	}
	p, ok := s.pools[name]
	if !ok {
		return array.Pool{}, s.noPool(name)
	}
	return s.poolOf(p), nil
}

func (s *Store) noPool(name string) error {
	names := make([]string, 0, len(s.pools))
	for n := range s.pools {
		names = append(names, n)
	}
	slices.Sort(names)
	return errdefs.NotFound("pool %q not found on array %s; existing pools: [%s]; create it first", name, s.opts.Name, strings.Join(names, ", "))
}

// ListPools lists pools by name.
func (s *Store) ListPools(ctx context.Context) ([]array.Pool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make([]array.Pool, 0, len(s.pools))
	for _, p := range s.pools {
		out = append(out, s.poolOf(p))
	}
	slices.SortFunc(out, func(a, b array.Pool) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeletePool deletes an empty pool.
func (s *Store) DeletePool(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	p, ok := s.pools[name]
	if !ok {
		return s.noPool(name)
	}
	if n := s.poolOf(p).VolumeCount; n > 0 {
		return errdefs.FailedPrecondition("pool %q holds %d volumes; delete them first", name, n)
	}
	for vol, st := range s.settling {
		if st.pool == name {
			return errdefs.Aborted("volume %q of pool %q is being created or deleted; try again", vol, name)
		}
	}
	if err := s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketPools).Delete([]byte(name)) }); err != nil {
		return err
	}
	delete(s.pools, name)
	return nil
}
