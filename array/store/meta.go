package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array/bitmap"
)

var (
	bucketMeta      = []byte("meta")
	bucketPools     = []byte("pools")
	bucketVolumes   = []byte("volumes")
	bucketSnapshots = []byte("snapshots")
	bucketLayers    = []byte("layers")
	bucketBits      = []byte("bits")

	keyArrayID   = []byte("array_id")
	keyNextLayer = []byte("next_layer")
)

const (
	kindPresent byte = 'p'
	kindZero    byte = 'z'
)

type poolRec struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

type volRec struct {
	Name     string            `json:"name"`
	Pool     string            `json:"pool"`
	Size     int64             `json:"size"`
	Live     uint64            `json:"live"`
	Created  time.Time         `json:"created"`
	Source   string            `json:"source,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	ReadOnly bool              `json:"read_only,omitempty"`
	// Serial is the volume's SCSI identity (array.NAA): 24 hex digits
	// given at creation and carried to its replicas.
	Serial string `json:"serial,omitempty"`
	// QoS is the limit on the volume's attachments (qos.go); a replica
	// target is created without one.
	QoS *qosRec `json:"qos,omitempty"`
}

type snapRec struct {
	Volume  string            `json:"volume"`
	Name    string            `json:"name"`
	GUID    string            `json:"guid"`
	Size    int64             `json:"size"`
	Layer   uint64            `json:"layer"`
	Created time.Time         `json:"created"`
	Labels  map[string]string `json:"labels,omitempty"`
}

type layerRec struct {
	ID     uint64 `json:"id"`
	Parent uint64 `json:"parent,omitempty"`
	File   string `json:"file"`
	Frozen bool   `json:"frozen,omitempty"`
}

func u64key(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func snapKey(volume, name string) []byte { return []byte(volume + "\x00" + name) }

// putNextLayer records that layer ids up to id are taken. Commits are
// batched without s.mu (commit.go), so a later commit may carry a lower
// id than one before it: the record only ever grows.
func putNextLayer(tx *bolt.Tx, id uint64) error {
	b := tx.Bucket(bucketMeta)
	var cur uint64
	if v := b.Get(keyNextLayer); v != nil {
		if err := json.Unmarshal(v, &cur); err != nil {
			return fmt.Errorf("meta %s: %w", keyNextLayer, err)
		}
	}
	return putJSON(b, keyNextLayer, max(cur, id))
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func createBuckets(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketMeta, bucketPools, bucketVolumes, bucketSnapshots, bucketLayers, bucketBits} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// putChunks stores the named chunks of a layer's bitmaps; an empty chunk is
// deleted so that the store holds only what is allocated.
func putChunks(tx *bolt.Tx, id uint64, kind byte, bm *bitmap.Bitmap, chunks []uint32) error {
	lb, err := tx.Bucket(bucketBits).CreateBucketIfNotExists(u64key(id))
	if err != nil {
		return err
	}
	for _, ci := range chunks {
		key := chunkKey(kind, ci)
		data := bm.MarshalChunk(ci)
		if data == nil {
			if err := lb.Delete(key); err != nil {
				return err
			}
			continue
		}
		if err := lb.Put(key, data); err != nil {
			return err
		}
	}
	return nil
}

// chunkSet is a marshalled copy of dirty chunks, taken under the layer's
// lock and written to bbolt after the data is synced.
type chunkSet struct {
	kind   byte
	chunks []uint32
	data   [][]byte
}

func putChunkSet(tx *bolt.Tx, id uint64, cs chunkSet) error {
	lb, err := tx.Bucket(bucketBits).CreateBucketIfNotExists(u64key(id))
	if err != nil {
		return err
	}
	for i, ci := range cs.chunks {
		key := chunkKey(cs.kind, ci)
		if cs.data[i] == nil {
			if err := lb.Delete(key); err != nil {
				return err
			}
			continue
		}
		if err := lb.Put(key, cs.data[i]); err != nil {
			return err
		}
	}
	return nil
}

func chunkKey(kind byte, ci uint32) []byte {
	k := make([]byte, 5)
	k[0] = kind
	binary.BigEndian.PutUint32(k[1:], ci)
	return k
}

func loadBitmaps(tx *bolt.Tx, id uint64) (present, zero *bitmap.Bitmap, err error) {
	present, zero = bitmap.New(), bitmap.New()
	lb := tx.Bucket(bucketBits).Bucket(u64key(id))
	if lb == nil {
		return present, zero, nil
	}
	err = lb.ForEach(func(k, v []byte) error {
		if len(k) != 5 {
			return fmt.Errorf("layer %d: bad bitmap key %x", id, k)
		}
		ci := binary.BigEndian.Uint32(k[1:])
		switch k[0] {
		case kindPresent:
			return present.UnmarshalChunk(ci, v)
		case kindZero:
			return zero.UnmarshalChunk(ci, v)
		}
		return fmt.Errorf("layer %d: bad bitmap kind %q", id, k[0])
	})
	present.TakeDirty()
	zero.TakeDirty()
	return present, zero, err
}

func deleteLayerRec(tx *bolt.Tx, id uint64) error {
	if err := tx.Bucket(bucketLayers).Delete(u64key(id)); err != nil {
		return err
	}
	bits := tx.Bucket(bucketBits)
	if bits.Bucket(u64key(id)) != nil {
		return bits.DeleteBucket(u64key(id))
	}
	return nil
}

// rewriteBitmaps replaces every stored chunk of a layer.
func rewriteBitmaps(tx *bolt.Tx, id uint64, present, zero *bitmap.Bitmap) error {
	bits := tx.Bucket(bucketBits)
	if bits.Bucket(u64key(id)) != nil {
		if err := bits.DeleteBucket(u64key(id)); err != nil {
			return err
		}
	}
	if err := putChunks(tx, id, kindPresent, present, present.AllChunks()); err != nil {
		return err
	}
	return putChunks(tx, id, kindZero, zero, zero.AllChunks())
}
