package store

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

var bucketExports = []byte("exports")

type exportRec struct {
	Name         string `json:"name"`
	Volume       string `json:"volume"`
	Snapshot     string `json:"snapshot,omitempty"`
	AttachmentID string `json:"attachment_id"`
	ReadOnly     bool   `json:"read_only,omitempty"`
	Created      int64  `json:"created"`
}

// export is an NBD attachment's authorisation.
type export struct {
	rec exportRec
	grant
}

// grant is an authorisation that I/O checks on every request, so revoking
// it (an NBD export, an iSCSI connection) ends the I/O of connections that
// were already open.
type grant struct {
	revoked  atomic.Bool
	readOnly bool
}

// ErrRevoked is in the error of I/O through a handle whose export or
// connection was revoked since it was opened.
var ErrRevoked = errors.New("revoked")

func newExportName() string {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func (s *Store) loadExports(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucketExports)
	if err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error {
		var r exportRec
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		s.exports[r.Name] = &export{rec: r, grant: grant{readOnly: r.ReadOnly}}
		return nil
	})
}

func (s *Store) exportOf(e *export) array.Export {
	out := array.Export{Name: e.rec.Name, Volume: e.rec.Volume, Snapshot: e.rec.Snapshot, AttachmentID: e.rec.AttachmentID,
		ReadOnly: e.rec.ReadOnly, Created: unixTime(e.rec.Created)}
	if host, port, err := net.SplitHostPort(s.opts.NBDAddress); err == nil {
		out.Host = host
		out.Port, _ = strconv.Atoi(port)
	}
	return out
}

// CreateExport authorises one NBD attachment of a volume or snapshot.
func (s *Store) CreateExport(ctx context.Context, spec array.ExportSpec) (array.Export, error) {
	if err := array.CheckName("attachment_id", spec.AttachmentID); err != nil {
		return array.Export{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Export{}, err
	}
	if s.opts.NBDAddress == "" {
		return array.Export{}, errdefs.FailedPrecondition("array %s serves no NBD; set nbd_listen in its [array:%s] section", s.opts.Name, s.opts.Name)
	}
	if _, err := s.volumeLocked(spec.Volume); err != nil {
		return array.Export{}, err
	}
	// A replica target's read-only flag is not baked into the grant: the
	// handle checks it at each write, so a pod's copy that takes writes
	// through its preferred array (Forwarder), or a promoted one, can.
	readOnly := spec.ReadOnly
	if spec.Snapshot != "" {
		if _, _, err := s.snapshotLocked(spec.Volume, spec.Snapshot); err != nil {
			return array.Export{}, err
		}
		readOnly = true
	}
	for _, e := range s.exports {
		if e.rec.Volume == spec.Volume && e.rec.Snapshot == spec.Snapshot && e.rec.AttachmentID == spec.AttachmentID {
			return s.exportOf(e), nil
		}
	}
	e := &export{rec: exportRec{Name: newExportName(), Volume: spec.Volume, Snapshot: spec.Snapshot,
		AttachmentID: spec.AttachmentID, ReadOnly: readOnly, Created: s.opts.Now().Unix()}, grant: grant{readOnly: readOnly}}
	if err := s.update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketExports), []byte(e.rec.Name), e.rec)
	}); err != nil {
		return array.Export{}, err
	}
	s.exports[e.rec.Name] = e
	return s.exportOf(e), nil
}

// DeleteExport revokes exports by name, or by volume and attachment.
func (s *Store) DeleteExport(ctx context.Context, name, volume, attachmentID string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	return s.revokeLocked(func(e *exportRec) bool {
		if name != "" {
			return e.Name == name
		}
		return e.Volume == volume && (attachmentID == "" || e.AttachmentID == attachmentID)
	})
}

func (s *Store) revokeLocked(match func(*exportRec) bool) (int, error) {
	var gone []*export
	for _, e := range s.exports {
		if match(&e.rec) {
			gone = append(gone, e)
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	if err := s.update(func(tx *bolt.Tx) error {
		for _, e := range gone {
			if err := tx.Bucket(bucketExports).Delete([]byte(e.rec.Name)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return 0, err
	}
	for _, e := range gone {
		e.revoked.Store(true)
		delete(s.exports, e.rec.Name)
	}
	return len(gone), nil
}

// ListExports lists exports, of one volume or of all.
func (s *Store) ListExports(ctx context.Context, volume string) ([]array.Export, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := []array.Export{}
	for _, e := range s.exports {
		if volume == "" || e.rec.Volume == volume {
			out = append(out, s.exportOf(e))
		}
	}
	slices.SortFunc(out, func(a, b array.Export) int { return strings.Compare(a.Volume+a.AttachmentID, b.Volume+b.AttachmentID) })
	return out, nil
}

// OpenExport returns a handle for an NBD connection that presented name.
// The handle stops working when the export is revoked.
func (s *Store) OpenExport(ctx context.Context, name string) (*Handle, error) {
	s.mu.RLock()
	e, ok := s.exports[name]
	s.mu.RUnlock()
	if !ok {
		return nil, errdefs.NotFound("no such export")
	}
	var h *Handle
	var err error
	if e.rec.Snapshot != "" {
		h, err = s.OpenSnapshot(ctx, e.rec.Volume, e.rec.Snapshot)
	} else {
		h, err = s.OpenVolume(ctx, e.rec.Volume)
	}
	if err != nil {
		return nil, err
	}
	h.grant = &e.grant
	return h, nil
}
