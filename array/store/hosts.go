package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

// Hosts and their connections are the array's LUN masking, as on a
// FlashArray: a host is one or more initiator IQNs with the CHAP secret
// their logins must present, and a connection maps a volume (or a
// snapshot, read-only) to a host as a LUN of the array's one iSCSI target.

var (
	bucketHosts       = []byte("hosts")
	bucketConnections = []byte("connections")
)

const (
	// firstLUN is where a host's LUNs start, as on a FlashArray.
	firstLUN = 1
	// maxLUN is the highest LUN SAM's flat space addressing can carry.
	maxLUN = 16383
	// chapSecretLen is 16 characters: RFC 7143 asks for secrets of at
	// least 12 bytes, and Microsoft's initiator takes at most 16.
	chapSecretLen = 16
)

type hostRec struct {
	Name         string            `json:"name"`
	IQNs         []string          `json:"iqns"`
	Secret       string            `json:"secret"`
	MutualSecret string            `json:"mutual_secret,omitempty"`
	Created      time.Time         `json:"created"`
	Labels       map[string]string `json:"labels,omitempty"`
	// PreferredArrays: array.Host.PreferredArrays.
	PreferredArrays []string `json:"preferred_arrays,omitempty"`
}

type connRec struct {
	Host     string    `json:"host"`
	Volume   string    `json:"volume"`
	Snapshot string    `json:"snapshot,omitempty"`
	LUN      int64     `json:"lun"`
	Created  time.Time `json:"created"`
}

func (r connRec) key() []byte { return []byte(r.Host + "\x00" + r.Volume + "\x00" + r.Snapshot) }

type host struct {
	rec   hostRec
	conns map[connKey]*conn
	// pref is where rec.PreferredArrays place this array, read without
	// the store's lock on every SCSI command (Handle.Path).
	pref atomic.Uint32
}

// Where a host's preferred arrays place this array.
const (
	// prefNone: no preference; a pod's copy reports its own state.
	prefNone uint32 = iota
	// prefHere: the host prefers this array.
	prefHere
	// prefElsewhere: the host prefers only other arrays.
	prefElsewhere
)

// newHost returns the in-memory host of r.
func (s *Store) newHost(r hostRec) *host {
	h := &host{rec: r, conns: map[connKey]*conn{}}
	h.pref.Store(s.prefOf(r.PreferredArrays))
	return h
}

func (s *Store) prefOf(arrays []string) uint32 {
	switch {
	case len(arrays) == 0:
		return prefNone
	case slices.Contains(arrays, s.opts.Name):
		return prefHere
	}
	return prefElsewhere
}

// forHost is a pod copy's path state as one host should see it: while
// both arrays take I/O, its preferred arrays are optimized and the others
// not. A state that takes none is kept, so a stopped side stays
// unavailable whatever the host prefers, and so is the only side that
// takes I/O: a host must not be steered off its one working path.
func (h *host) forHost(p array.Path) array.Path {
	if p.Alone || (p.State != array.PathOptimized && p.State != array.PathNonOptimized) {
		return p
	}
	switch h.pref.Load() {
	case prefHere:
		return array.Path{State: array.PathOptimized, Preferred: true}
	case prefElsewhere:
		return array.Path{State: array.PathNonOptimized}
	}
	return p
}

type connKey struct{ volume, snapshot string }

// conn is a connection; I/O through a handle opened for it checks its
// grant, so disconnecting ends the I/O of sessions already open.
type conn struct {
	rec connRec
	grant
}

func (s *Store) loadHosts(tx *bolt.Tx) error {
	hb, err := tx.CreateBucketIfNotExists(bucketHosts)
	if err != nil {
		return err
	}
	cb, err := tx.CreateBucketIfNotExists(bucketConnections)
	if err != nil {
		return err
	}
	if err := hb.ForEach(func(_, v []byte) error {
		var r hostRec
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		h := s.newHost(r)
		s.hosts[r.Name] = h
		for _, iqn := range r.IQNs {
			s.initiators[array.ISCSINameKey(iqn)] = h
		}
		return nil
	}); err != nil {
		return err
	}
	return cb.ForEach(func(_, v []byte) error {
		var r connRec
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		h := s.hosts[r.Host]
		if h == nil {
			return fmt.Errorf("connection of %s to host %s: the host is missing", r.Volume, r.Host)
		}
		h.conns[connKey{r.Volume, r.Snapshot}] = &conn{rec: r, grant: grant{readOnly: r.Snapshot != ""}}
		return nil
	})
}

// newCHAPSecret returns chapSecretLen random letters and digits.
func newCHAPSecret() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, 0, chapSecretLen)
	var b [64]byte
	for len(out) < chapSecretLen {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err) // crypto/rand does not fail on Linux
		}
		for _, c := range b {
			// 248 is the largest multiple of 62 below 256: no bias.
			if c < 248 && len(out) < chapSecretLen {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out)
}

func newSerial() string {
	var b [array.SerialLen]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// VolumeSerial returns a volume's serial, which its replicas take.
func (s *Store) VolumeSerial(ctx context.Context, name string) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return "", err
	}
	v, err := s.volumeLocked(name)
	if err != nil {
		return "", err
	}
	return v.rec.Serial, nil
}

// TargetIQN is the name of the array's iSCSI target.
func (s *Store) TargetIQN() string { return s.opts.ISCSITargetIQN }

// Portals are where the array serves iSCSI.
func (s *Store) Portals() []string { return slices.Clone(s.opts.ISCSIPortals) }

func (s *Store) hostOf(h *host, secrets bool) array.Host {
	out := array.Host{Name: h.rec.Name, IQNs: slices.Clone(h.rec.IQNs), MutualCHAP: h.rec.MutualSecret != "",
		CHAPUser: h.rec.Name, Created: h.rec.Created, Labels: maps.Clone(h.rec.Labels), Connections: int64(len(h.conns)),
		PreferredArrays: slices.Clone(h.rec.PreferredArrays)}
	if out.MutualCHAP {
		out.MutualCHAPUser = s.opts.ISCSITargetIQN
	}
	if secrets {
		out.CHAPSecret, out.MutualCHAPSecret = h.rec.Secret, h.rec.MutualSecret
	}
	return out
}

func (s *Store) hostLocked(name string) (*host, error) {
	h, ok := s.hosts[name]
	if !ok {
		return nil, errdefs.NotFound("host %q not found on array %s; create it with its initiator's IQN first", name, s.opts.Name)
	}
	return h, nil
}

func checkHostSpec(spec array.HostSpec) error {
	if err := array.CheckName("name", spec.Name); err != nil {
		return err
	}
	if len(spec.IQNs) == 0 {
		return errdefs.InvalidArgument("iqns", "is required; give the initiator name of the host (/etc/iscsi/initiatorname.iscsi)")
	}
	if len(spec.IQNs) > array.MaxHostIQNs {
		return errdefs.InvalidArgument("iqns", "has %d names, more than the %d a host may have", len(spec.IQNs), array.MaxHostIQNs)
	}
	if err := array.CheckCHAPSecret("chap_secret", spec.CHAPSecret); err != nil {
		return err
	}
	if err := array.CheckCHAPSecret("mutual_chap_secret", spec.MutualCHAPSecret); err != nil {
		return err
	}
	if spec.MutualCHAPSecret != "" && !spec.MutualCHAP {
		return errdefs.InvalidArgument("mutual_chap_secret", "is set but mutual_chap is not; set both or neither")
	}
	if spec.MutualCHAPSecret != "" && spec.MutualCHAPSecret == spec.CHAPSecret {
		return errdefs.InvalidArgument("mutual_chap_secret", "equals chap_secret; RFC 7143 asks for different secrets each way")
	}
	if err := array.CheckPreferredArrays("preferred_arrays", spec.PreferredArrays); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, iqn := range spec.IQNs {
		if err := array.CheckISCSIName("iqns", iqn); err != nil {
			return err
		}
		if k := array.ISCSINameKey(iqn); seen[k] {
			return errdefs.InvalidArgument("iqns", "names %s twice", array.QuoteShort(iqn))
		} else {
			seen[k] = true
		}
	}
	return nil
}

func sameIQNs(a, b []string) bool {
	fold := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = array.ISCSINameKey(s)
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(fold(a), fold(b))
}

// CreateHost creates a host with a new CHAP secret (and, with MutualCHAP,
// a secret the array answers with). The same spec again returns the host.
func (s *Store) CreateHost(ctx context.Context, spec array.HostSpec) (array.Host, error) {
	if err := checkHostSpec(spec); err != nil {
		return array.Host{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Host{}, err
	}
	if h, ok := s.hosts[spec.Name]; ok {
		if sameIQNs(h.rec.IQNs, spec.IQNs) && (h.rec.MutualSecret != "") == spec.MutualCHAP {
			return s.hostOf(h, false), nil
		}
		return array.Host{}, errdefs.AlreadyExists("host %q already exists on array %s with IQNs [%s] (mutual CHAP %t); pick another name or delete it",
			spec.Name, s.opts.Name, strings.Join(h.rec.IQNs, ", "), h.rec.MutualSecret != "")
	}
	for _, iqn := range spec.IQNs {
		if other, ok := s.initiators[array.ISCSINameKey(iqn)]; ok {
			return array.Host{}, errdefs.AlreadyExists("initiator %s already belongs to host %q on array %s; an initiator belongs to one host: use that host or delete it",
				iqn, other.rec.Name, s.opts.Name)
		}
	}
	r := hostRec{Name: spec.Name, IQNs: slices.Clone(spec.IQNs), Secret: cmp.Or(spec.CHAPSecret, newCHAPSecret()), Created: s.opts.Now().UTC(), Labels: maps.Clone(spec.Labels),
		PreferredArrays: slices.Clone(spec.PreferredArrays)}
	if spec.MutualCHAP {
		r.MutualSecret = cmp.Or(spec.MutualCHAPSecret, newCHAPSecret())
	}
	if err := s.update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketHosts), []byte(r.Name), r)
	}); err != nil {
		return array.Host{}, err
	}
	h := s.newHost(r)
	s.hosts[r.Name] = h
	for _, iqn := range r.IQNs {
		s.initiators[array.ISCSINameKey(iqn)] = h
	}
	return s.hostOf(h, false), nil
}

// SetHostPreferredArrays replaces a host's preferred arrays. Sessions
// open on its LUNs report the new ALUA states from their next command.
func (s *Store) SetHostPreferredArrays(ctx context.Context, name string, arrays []string) (array.Host, error) {
	if err := array.CheckPreferredArrays("preferred_arrays", arrays); err != nil {
		return array.Host{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Host{}, err
	}
	h, err := s.hostLocked(name)
	if err != nil {
		return array.Host{}, err
	}
	r := h.rec
	r.PreferredArrays = slices.Clone(arrays)
	if len(r.PreferredArrays) == 0 {
		r.PreferredArrays = nil
	}
	if err := s.update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketHosts), []byte(r.Name), r)
	}); err != nil {
		return array.Host{}, err
	}
	h.rec = r
	h.pref.Store(s.prefOf(r.PreferredArrays))
	return s.hostOf(h, false), nil
}

// GetHost returns a host, with its secrets when asked.
func (s *Store) GetHost(ctx context.Context, name string, secrets bool) (array.Host, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return array.Host{}, err
	}
	h, err := s.hostLocked(name)
	if err != nil {
		return array.Host{}, err
	}
	return s.hostOf(h, secrets), nil
}

// ListHosts lists the hosts by name, without secrets.
func (s *Store) ListHosts(ctx context.Context) ([]array.Host, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make([]array.Host, 0, len(s.hosts))
	for _, h := range s.hosts {
		out = append(out, s.hostOf(h, false))
	}
	slices.SortFunc(out, func(a, b array.Host) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteHost deletes a host. With connections it refuses, unless force,
// which disconnects them in the same transaction.
func (s *Store) DeleteHost(ctx context.Context, name string, force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	h, err := s.hostLocked(name)
	if err != nil {
		return err
	}
	if len(h.conns) > 0 && !force {
		return errdefs.FailedPrecondition("host %q has %d connections (%s); disconnect them first, or delete it with force",
			name, len(h.conns), connList(h, 5))
	}
	if err := s.update(func(tx *bolt.Tx) error {
		for _, c := range h.conns {
			if err := tx.Bucket(bucketConnections).Delete(c.rec.key()); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketHosts).Delete([]byte(name))
	}); err != nil {
		return err
	}
	for _, c := range h.conns {
		c.revoked.Store(true)
	}
	delete(s.hosts, name)
	for _, iqn := range h.rec.IQNs {
		delete(s.initiators, array.ISCSINameKey(iqn))
	}
	return nil
}

// connList names up to n of a host's connections for a message.
func connList(h *host, n int) string {
	cs := slices.SortedFunc(maps.Values(h.conns), func(a, b *conn) int { return int(a.rec.LUN - b.rec.LUN) })
	var parts []string
	for _, c := range cs[:min(n, len(cs))] {
		parts = append(parts, fmt.Sprintf("%s at LUN %d", refOf(c.rec.Volume, c.rec.Snapshot), c.rec.LUN))
	}
	if len(cs) > n {
		parts = append(parts, "…")
	}
	return strings.Join(parts, ", ")
}

func refOf(volume, snapshot string) string {
	if snapshot != "" {
		return volume + "@" + snapshot
	}
	return volume
}

func (s *Store) connectionOf(c *conn) array.Connection {
	out := array.Connection{Host: c.rec.Host, Volume: c.rec.Volume, Snapshot: c.rec.Snapshot, LUN: c.rec.LUN,
		ReadOnly: c.rec.Snapshot != "", TargetIQN: s.opts.ISCSITargetIQN, Portals: s.Portals(), Created: c.rec.Created}
	if v, ok := s.vols[c.rec.Volume]; ok {
		out.ReadOnly = out.ReadOnly || v.rec.ReadOnly
		out.WWN = array.WWN(unitSerial(v, v.snaps[c.rec.Snapshot]))
	}
	return out
}

// unitSerial is the serial of the logical unit that serves volume v, or
// its snapshot sn when sn is not nil: a connected snapshot has an
// identity of its own, derived from its volume's serial and its GUID,
// which its replicas keep. Called with s.mu held.
func unitSerial(v *volume, sn *snapshot) string {
	if sn == nil {
		return v.rec.Serial
	}
	return array.DeriveSerial(v.rec.Serial, sn.rec.GUID)
}

func checkConnectionSpec(spec array.ConnectionSpec) error {
	if err := array.CheckName("host", spec.Host); err != nil {
		return err
	}
	if err := array.CheckName("volume", spec.Volume); err != nil {
		return err
	}
	if spec.Snapshot != "" {
		return array.CheckName("snapshot", spec.Snapshot)
	}
	return nil
}

// ConnectVolume maps a volume or snapshot to a host at the host's lowest
// free LUN. Connecting it again returns the same LUN.
func (s *Store) ConnectVolume(ctx context.Context, spec array.ConnectionSpec) (array.Connection, error) {
	if err := checkConnectionSpec(spec); err != nil {
		return array.Connection{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return array.Connection{}, err
	}
	if len(s.opts.ISCSIPortals) == 0 {
		return array.Connection{}, errdefs.FailedPrecondition("array %s serves no iSCSI; set iscsi_listen in its [array:%s] section", s.opts.Name, s.opts.Name)
	}
	h, err := s.hostLocked(spec.Host)
	if err != nil {
		return array.Connection{}, err
	}
	if _, err := s.volumeLocked(spec.Volume); err != nil {
		return array.Connection{}, err
	}
	if spec.Snapshot != "" {
		if _, _, err := s.snapshotLocked(spec.Volume, spec.Snapshot); err != nil {
			return array.Connection{}, err
		}
	}
	if c, ok := h.conns[connKey{spec.Volume, spec.Snapshot}]; ok {
		return s.withSecrets(s.connectionOf(c), h), nil
	}
	used := map[int64]bool{}
	for _, c := range h.conns {
		used[c.rec.LUN] = true
	}
	lun := int64(firstLUN)
	for used[lun] {
		lun++
	}
	if lun > maxLUN {
		return array.Connection{}, errdefs.ResourceExhausted("host %q has every LUN from %d to %d in use; disconnect a volume first", spec.Host, firstLUN, maxLUN)
	}
	c := &conn{rec: connRec{Host: spec.Host, Volume: spec.Volume, Snapshot: spec.Snapshot, LUN: lun, Created: s.opts.Now().UTC()},
		grant: grant{readOnly: spec.Snapshot != ""}}
	if err := s.update(func(tx *bolt.Tx) error {
		return putJSON(tx.Bucket(bucketConnections), c.rec.key(), c.rec)
	}); err != nil {
		return array.Connection{}, err
	}
	h.conns[connKey{spec.Volume, spec.Snapshot}] = c
	return s.withSecrets(s.connectionOf(c), h), nil
}

func (s *Store) withSecrets(c array.Connection, h *host) array.Connection {
	hv := s.hostOf(h, true)
	c.CHAPUser, c.CHAPSecret, c.MutualCHAPUser, c.MutualCHAPSecret = hv.CHAPUser, hv.CHAPSecret, hv.MutualCHAPUser, hv.MutualCHAPSecret
	return c
}

// DisconnectVolume unmaps a volume or snapshot from a host; sessions that
// have the LUN open fail their next command on it.
func (s *Store) DisconnectVolume(ctx context.Context, spec array.ConnectionSpec) error {
	if err := checkConnectionSpec(spec); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	h, err := s.hostLocked(spec.Host)
	if err != nil {
		return err
	}
	c, ok := h.conns[connKey{spec.Volume, spec.Snapshot}]
	if !ok {
		return errdefs.NotFound("%s is not connected to host %q on array %s", refOf(spec.Volume, spec.Snapshot), spec.Host, s.opts.Name)
	}
	return s.disconnectLocked([]*conn{c})
}

func (s *Store) disconnectLocked(cs []*conn) error {
	if len(cs) == 0 {
		return nil
	}
	if err := s.update(func(tx *bolt.Tx) error {
		for _, c := range cs {
			if err := tx.Bucket(bucketConnections).Delete(c.rec.key()); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for _, c := range cs {
		c.revoked.Store(true)
		delete(s.hosts[c.rec.Host].conns, connKey{c.rec.Volume, c.rec.Snapshot})
	}
	return nil
}

// connectionsLocked returns the connections that match, by host and LUN.
func (s *Store) connectionsLocked(match func(*connRec) bool) []*conn {
	var out []*conn
	for _, h := range s.hosts {
		for _, c := range h.conns {
			if match(&c.rec) {
				out = append(out, c)
			}
		}
	}
	slices.SortFunc(out, func(a, b *conn) int {
		if n := strings.Compare(a.rec.Host, b.rec.Host); n != 0 {
			return n
		}
		return int(a.rec.LUN - b.rec.LUN)
	})
	return out
}

// ListConnections lists connections of a host, a volume, both, or all,
// each with the ALUA state its host is told now.
func (s *Store) ListConnections(ctx context.Context, host, volume string) ([]array.Connection, error) {
	out, luns, err := s.listConnections(ctx, host, volume)
	if err != nil {
		return nil, err
	}
	// The states come from the volumes' mirrors, which take locks of their
	// own: asked without the store's.
	for i, l := range luns {
		p := array.Path{State: array.PathOptimized}
		if l.v != nil {
			p = s.pathOf(l.v, l.h)
		}
		out[i].Path = &p
	}
	return out, nil
}

// connectedLUN is what a connection's ALUA state depends on: the volume
// (nil for a snapshot) and the host.
type connectedLUN struct {
	v *volume
	h *host
}

func (s *Store) listConnections(ctx context.Context, host, volume string) ([]array.Connection, []connectedLUN, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, nil, err
	}
	if host != "" {
		if _, err := s.hostLocked(host); err != nil {
			return nil, nil, err
		}
	}
	if volume != "" {
		if _, err := s.volumeLocked(volume); err != nil {
			return nil, nil, err
		}
	}
	out := []array.Connection{}
	var luns []connectedLUN
	for _, c := range s.connectionsLocked(func(r *connRec) bool {
		return (host == "" || r.Host == host) && (volume == "" || r.Volume == volume)
	}) {
		out = append(out, s.connectionOf(c))
		l := connectedLUN{h: s.hosts[c.rec.Host]}
		if c.rec.Snapshot == "" {
			l.v = s.vols[c.rec.Volume]
		}
		luns = append(luns, l)
	}
	return out, luns, nil
}

// refuseConnected keeps a connected volume from being deleted, as a
// FlashArray does: the hosts must disconnect it first.
func (s *Store) refuseConnected(volume string) error {
	cs := s.connectionsLocked(func(r *connRec) bool { return r.Volume == volume && r.Snapshot == "" })
	if len(cs) == 0 {
		return nil
	}
	var hosts []string
	for _, c := range cs {
		hosts = append(hosts, fmt.Sprintf("%s (LUN %d)", c.rec.Host, c.rec.LUN))
	}
	return errdefs.FailedPrecondition("volume %q is connected to %d host(s): %s; disconnect it from them first",
		volume, len(hosts), strings.Join(hosts, ", "))
}

// disconnectSnapshotLocked unmaps a snapshot that is being deleted: its
// deletion is often the array's own (replication retention), which a
// mapping must not stall.
func (s *Store) disconnectSnapshotLocked(volume, snapshot string) error {
	return s.disconnectLocked(s.connectionsLocked(func(r *connRec) bool { return r.Volume == volume && r.Snapshot == snapshot }))
}

// Initiator is what the iSCSI target server learns of an initiator: the
// host it belongs to, with its secrets, and its LUNs.
type Initiator struct {
	Host array.Host
	LUNs []int64
}

// LookupInitiator finds the host an initiator name belongs to; ok is
// false for an initiator no host has.
func (s *Store) LookupInitiator(ctx context.Context, iqn string) (Initiator, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return Initiator{}, false, err
	}
	h, ok := s.initiators[array.ISCSINameKey(iqn)]
	if !ok {
		return Initiator{}, false, nil
	}
	out := Initiator{Host: s.hostOf(h, true)}
	for _, c := range h.conns {
		out.LUNs = append(out.LUNs, c.rec.LUN)
	}
	slices.Sort(out.LUNs)
	return out, true, nil
}

// OpenLUN returns a handle on what lun of the initiator's host maps, with
// the serial that is its SCSI identity. Disconnecting it fails the
// handle's I/O with ErrRevoked. No such LUN is NOT_FOUND.
func (s *Store) OpenLUN(ctx context.Context, iqn string, lun int64) (*Handle, string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, "", err
	}
	h, ok := s.initiators[array.ISCSINameKey(iqn)]
	if !ok {
		return nil, "", errdefs.NotFound("initiator %s belongs to no host", iqn)
	}
	for _, c := range h.conns {
		if c.rec.LUN != lun {
			continue
		}
		v, err := s.volumeLocked(c.rec.Volume)
		if err != nil {
			return nil, "", err
		}
		hd := &Handle{s: s, v: v, grant: &c.grant, host: h}
		if c.rec.Snapshot != "" {
			_, sn, err := s.snapshotLocked(c.rec.Volume, c.rec.Snapshot)
			if err != nil {
				return nil, "", err
			}
			hd.snap = sn
		}
		return hd, unitSerial(v, hd.snap), nil
	}
	return nil, "", errdefs.NotFound("LUN %d is not mapped to host %q", lun, h.rec.Name)
}
