package driver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/errdefs"
)

// iSCSI attachments, as Pure's iSCSI driver makes them: the connector's
// initiator is a host on the array serving the volume (one the driver
// creates, or the host the initiator already belongs to), and the volume
// is connected to that host as a LUN of the array's target.

// ISCSITarget is the iSCSI part of a ConnectionInfo.
type ISCSITarget struct {
	// Paths has one entry per portal of the array's target.
	Paths []ISCSIPath
	// Multipath is whether the connector asked for every path.
	Multipath bool
	// CHAPUser and CHAPSecret are what the host's login presents at every
	// path: a pod peer's host has the serving array's (podPeerPaths).
	CHAPUser, CHAPSecret string
	// WWN is "3" and the LUN's NAA 6 designator, as Pure reports it.
	WWN string
	// HostName is the array's host the initiator belongs to.
	HostName string
}

// ISCSIPath is one portal ("host:port") of a target and the LUN behind it.
type ISCSIPath struct {
	Portal string
	IQN    string
	LUN    int64
}

// Labels on the hosts the driver creates. Only those hosts are deleted
// with their last connection; a host an operator made is left alone.
const (
	labelHostCreator = "volrep.created_by"
	hostCreator      = "volrep-driver"
	// labelConnectorHost is the connector's host name, which a
	// TerminateConnection without an initiator matches.
	labelConnectorHost = "cinder.connector_host"
)

// maxHostBase bounds the part of a host name taken from the connector, so
// that a suffix still fits the array's name limit.
const maxHostBase = 100

// protocol is how the backend attaches volumes: volrep_protocol, or when
// it is unset iSCSI if the primary array serves it (NBD otherwise). The
// answer is cached; refresh asks again.
func (b *Backend) protocol(ctx context.Context, refresh bool) (string, error) {
	if b.cfg.Protocol != "" {
		return b.cfg.Protocol, nil
	}
	b.mu.RLock()
	p := b.autoProtocol
	b.mu.RUnlock()
	// The primary decides. Failed over, the choice made before stands (the
	// primary may be gone, and asking it would stall every stats poll);
	// with none, the array serving the backend decides.
	failedOver := b.failedOver()
	if p != "" && (!refresh || failedOver) {
		return p, nil
	}
	a := b.primary.Array
	if failedOver {
		a = b.activeArray()
	}
	p, err := probeISCSI(ctx, a)
	if err != nil {
		if cached := b.cachedProtocol(); cached != "" {
			return cached, nil
		}
		return "", err
	}
	b.mu.Lock()
	if b.autoProtocol != p {
		b.log.Info("attachment protocol chosen", "protocol", p, "volrep_protocol", "unset")
	}
	b.autoProtocol = p
	b.mu.Unlock()
	return p, nil
}

func (b *Backend) cachedProtocol() string {
	if b.cfg.Protocol != "" {
		return b.cfg.Protocol
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.autoProtocol
}

// probeISCSI asks an array whether it serves iSCSI: its Info lists its
// portals when it does.
func probeISCSI(ctx context.Context, a array.Array) (string, error) {
	if a == nil {
		return "", errdefs.Unavailable("no connection to the array")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := a.Info(cctx)
	if err != nil {
		return "", err
	}
	if len(info.ISCSIPortals) > 0 {
		return config.ProtocolISCSI, nil
	}
	return config.ProtocolNBD, nil
}

// storageProtocol is Cinder's name for a protocol (constants.ISCSI).
func storageProtocol(p string) string {
	if p == config.ProtocolISCSI {
		return "iSCSI"
	}
	return config.ProtocolNBD
}

// initializeISCSI connects a volume, or a snapshot read-only, to the
// connector's host on the serving array.
func (b *Backend) initializeISCSI(ctx context.Context, volumeID, snapshotID string, c Connector) (ConnectionInfo, error) {
	if c.Initiator == "" {
		return ConnectionInfo{}, errdefs.InvalidArgument("connector.initiator",
			"is required: backend %s attaches over iSCSI (volrep_protocol); os-brick reports the host's IQN from /etc/iscsi/initiatorname.iscsi", b.cfg.Section)
	}
	spec := array.ConnectionSpec{Volume: volumeName(volumeID)}
	if snapshotID != "" {
		spec.Snapshot = snapshotName(snapshotID)
	}
	a, addr, err := b.servingArray(ctx, spec.Volume)
	if err != nil {
		return ConnectionInfo{}, err
	}
	conn, err := b.connectISCSI(ctx, a, spec, c, "")
	switch {
	case errdefs.IsNotFound(err) && snapshotID != "":
		return ConnectionInfo{}, errdefs.NotFound("snapshot %s of volume %s not found on backend %s", snapshotID, volumeID, b.cfg.Section)
	case errdefs.IsNotFound(err):
		return ConnectionInfo{}, b.volumeErr(volumeID, err)
	case err != nil:
		return ConnectionInfo{}, err
	}
	if len(conn.Portals) == 0 {
		return ConnectionInfo{}, errdefs.FailedPrecondition("the array serving backend %s at %s reports no iSCSI portal; set its iscsi_listen", b.cfg.Section, addr)
	}
	ci := iscsiConnectionInfo(conn, addr, volumeID, snapshotID, c)
	b.log.Info("volume connected", "volume", volumeID, "snapshot", snapshotID, "host", conn.Host,
		"initiator", c.Initiator, "lun", conn.LUN, "target", conn.TargetIQN, "portals", conn.Portals)
	if snapshotID == "" {
		// The serving array's paths come first: a connector without
		// multipath uses only the first path.
		ci.ISCSI.Paths = append(ci.ISCSI.Paths, b.podPeerPaths(ctx, spec.Volume, conn, c)...)
	}
	return ci, nil
}

// connectISCSI connects a volume (or snapshot) to the connector's host on
// array a, finding or creating the host; a host it creates gets
// chapSecret, or a random secret when it is empty.
func (b *Backend) connectISCSI(ctx context.Context, a array.Array, spec array.ConnectionSpec, c Connector, chapSecret string) (array.Connection, error) {
	var conn array.Connection
	var err error
	// A host the driver created can be deleted by a TerminateConnection
	// between finding it and connecting to it: find or create it again.
	for attempt := 0; ; attempt++ {
		if spec.Host, err = b.hostFor(ctx, a, c, chapSecret); err != nil {
			return array.Connection{}, err
		}
		conn, err = a.ConnectVolume(ctx, spec)
		if err == nil || !errdefs.IsNotFound(err) {
			return conn, err
		}
		if _, herr := a.GetHost(ctx, spec.Host, false); !errdefs.IsNotFound(herr) || attempt == 2 {
			return conn, err
		}
	}
}

// iscsiConnectionInfo is the connection info of a LUN on the array at
// addr (its API address).
func iscsiConnectionInfo(conn array.Connection, addr, volumeID, snapshotID string, c Connector) ConnectionInfo {
	t := &ISCSITarget{Multipath: c.Multipath, CHAPUser: conn.CHAPUser, CHAPSecret: conn.CHAPSecret, HostName: conn.Host}
	if conn.WWN != "" {
		t.WWN = "3" + strings.ToLower(conn.WWN)
	}
	t.Paths = iscsiPaths(conn, addr)
	data := map[string]string{"volume_id": volumeID, "access_mode": "rw"}
	if conn.ReadOnly {
		data["access_mode"] = "ro"
	}
	if snapshotID != "" {
		data["snapshot_id"] = snapshotID
	}
	return ConnectionInfo{DriverVolumeType: config.ProtocolISCSI, Data: data, ISCSI: t}
}

// iscsiPaths are a LUN's paths, one per portal of the array at addr (its
// API address).
func iscsiPaths(conn array.Connection, addr string) []ISCSIPath {
	apiHost, _, _ := net.SplitHostPort(addr)
	paths := make([]ISCSIPath, 0, len(conn.Portals))
	for _, p := range conn.Portals {
		paths = append(paths, ISCSIPath{Portal: reachable(p, apiHost), IQN: conn.TargetIQN, LUN: conn.LUN})
	}
	return paths
}

// reachable replaces a portal's unspecified address (a listener on every
// address) with where the driver reaches the array.
func reachable(portal, apiHost string) string {
	host, port, err := net.SplitHostPort(portal)
	if err != nil {
		return portal
	}
	if ip := net.ParseIP(host); (host == "" || (ip != nil && ip.IsUnspecified())) && apiHost != "" {
		host = apiHost
	}
	return net.JoinHostPort(host, port)
}

// hostFor returns the host the connector's initiator belongs to on the
// array, creating one named after the connector's host, with chapSecret
// (random if empty), when it has none.
func (b *Backend) hostFor(ctx context.Context, a array.Array, c Connector, chapSecret string) (string, error) {
	for attempt := 0; ; attempt++ {
		hosts, err := a.ListHosts(ctx)
		if err != nil {
			return "", err
		}
		if h, ok := hostWithIQN(hosts, c.Initiator); ok {
			return h.Name, b.matchPreference(ctx, a, h, c)
		}
		name := hostName(c.Host, c.Initiator, hosts)
		labels := map[string]string{labelHostCreator: hostCreator, labelBackend: b.cfg.Section}
		if c.Host != "" {
			labels[labelConnectorHost] = c.Host
		}
		preferred := b.preferenceFor(ctx, c)
		_, err = a.CreateHost(ctx, array.HostSpec{Name: name, IQNs: []string{c.Initiator}, Labels: labels, CHAPSecret: chapSecret, PreferredArrays: preferred})
		if err == nil {
			b.log.Info("host created", "host", name, "initiator", c.Initiator, "preferred_arrays", preferred)
			return name, nil
		}
		// Another attachment created a host for the initiator (or took the
		// name) since the list: look again.
		if !errdefs.IsAlreadyExists(err) || attempt == 2 {
			return "", err
		}
	}
}

func hostWithIQN(hosts []array.Host, iqn string) (array.Host, bool) {
	for _, h := range hosts {
		if slices.ContainsFunc(h.IQNs, func(s string) bool { return strings.EqualFold(s, iqn) }) {
			return h, true
		}
	}
	return array.Host{}, false
}

// hostName names a new host for a connector: its host name in the
// array's name charset, or when a host of that name exists (with other
// initiators) the same with a suffix taken from the initiator, which is
// the same on every attempt so concurrent attachments agree.
func hostName(connectorHost, iqn string, hosts []array.Host) string {
	base := sanitizeHostName(connectorHost)
	if base == "" {
		base = "cinder-host"
	}
	taken := func(n string) bool {
		return slices.ContainsFunc(hosts, func(h array.Host) bool { return h.Name == n })
	}
	if !taken(base) {
		return base
	}
	sum := sha256.Sum256([]byte(strings.ToLower(iqn)))
	for n := 4; ; n++ {
		name := base + "-" + hex.EncodeToString(sum[:n])
		if !taken(name) || n == len(sum) {
			return name
		}
	}
}

// sanitizeHostName folds a name into the array's name rules: letters,
// digits, '.', '_', ':' and '-', starting with a letter or digit, no "..",
// at most maxHostBase bytes.
func sanitizeHostName(s string) string {
	out := []byte(strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			r == '.', r == '_', r == ':', r == '-':
			return r
		}
		return '-'
	}, s))
	for strings.Contains(string(out), "..") {
		out = []byte(strings.ReplaceAll(string(out), "..", "."))
	}
	str := strings.TrimLeft(string(out), "._:-")
	if len(str) > maxHostBase {
		str = str[:maxHostBase]
	}
	return str
}

// volumeConnections lists the iSCSI connections of vol (and its
// snapshots): none on an array without hosts (an older volrepd) or
// without the volume.
func volumeConnections(ctx context.Context, a array.Array, vol string) ([]array.Connection, error) {
	conns, err := a.ListConnections(ctx, "", vol)
	if status.Code(err) == codes.Unimplemented || errdefs.IsNotFound(err) {
		return nil, nil
	}
	return conns, err
}

// terminateISCSI disconnects a volume (or snapshot) from the connector's
// host: the host its initiator belongs to or, without one, the hosts the
// driver created for the connector's host name; with neither, from every
// host (force detach). A host the driver created is deleted with its last
// connection.
func (b *Backend) terminateISCSI(ctx context.Context, a array.Array, vol, snap string, c Connector) error {
	conns, err := volumeConnections(ctx, a, vol)
	if err != nil {
		return err
	}
	if len(conns) == 0 {
		return nil
	}
	hosts, err := a.ListHosts(ctx)
	if err != nil {
		return err
	}
	byName := map[string]array.Host{}
	for _, h := range hosts {
		byName[h.Name] = h
	}
	mine := func(h array.Host) bool {
		switch {
		case c.Initiator != "":
			_, ok := hostWithIQN([]array.Host{h}, c.Initiator)
			return ok
		case c.Host != "":
			return h.Labels[labelHostCreator] == hostCreator && h.Labels[labelConnectorHost] == c.Host
		}
		return true
	}
	for _, cn := range conns {
		h, ok := byName[cn.Host]
		if cn.Snapshot != snap || !ok || !mine(h) {
			continue
		}
		err := a.DisconnectVolume(ctx, array.ConnectionSpec{Host: cn.Host, Volume: vol, Snapshot: snap})
		if err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		b.log.Info("volume disconnected", "volume", vol, "snapshot", snap, "host", cn.Host, "lun", cn.LUN)
		if err := b.deleteIdleHost(ctx, a, h); err != nil {
			return err
		}
	}
	return nil
}

// deleteIdleHost deletes a host the driver created once nothing is
// connected to it, as Pure's driver does, unless it has preferred arrays
// the operator set (keepIdleHost).
// The array refuses while a connection remains, so an attachment racing
// in keeps its host.
func (b *Backend) deleteIdleHost(ctx context.Context, a array.Array, h array.Host) error {
	if h.Labels[labelHostCreator] != hostCreator {
		return nil
	}
	now, err := a.GetHost(ctx, h.Name, false)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil || now.Connections > 0 {
		return err
	}
	// Preferred arrays the operator set (volrep host
	// set-preferred-arrays) would go with the host, and the next attach
	// would get the arrays' own ALUA states back.
	if b.keepIdleHost(now) {
		b.log.Info("host kept without connections: it has preferred arrays that volrep_host_preferred_arrays does not set", "host", h.Name, "preferred_arrays", now.PreferredArrays)
		return nil
	}
	err = a.DeleteHost(ctx, h.Name, false)
	switch {
	case err == nil:
		b.log.Info("host deleted with its last connection", "host", h.Name)
	case errdefs.IsNotFound(err), errdefs.IsFailedPrecondition(err):
		err = nil
	}
	return err
}

// peerTimeout bounds what an attachment or detachment waits for a pod's
// peer array: its paths are extra, and a peer that does not answer must
// not stall Cinder's attach or detach.
const peerTimeout = 5 * time.Second

// podPeerPaths gives a pod volume uniform access, as Pure's ActiveCluster
// does: it connects the volume's copy at each sync target to the
// connector's host too and returns those paths, to follow the serving
// array's. The copy has the volume's serial, so both arrays present one
// LUN identity (WWN) and the host's multipath merges their paths; each
// array's ALUA state tells the host which paths are optimized, and the
// peer forwards its writes to the preferred array while the pod is in
// sync. Always, not only for a multipath connector, as Pure does: without
// multipath os-brick uses the first path, the serving array's.
//
// A peer that cannot be reached (or has no copy yet) costs only its
// paths: the attachment goes on with the serving array's, and a warning
// says why, because an attach must not fail while the peer is down.
// Failed over, the pod no longer mirrors and the active array alone
// serves the volume.
//
// os-brick logs in at every path with the one CHAP pair of the connection
// info, the serving array's: the host at the peer must have the same, so
// the driver creates it with that secret, and leaves out the peer's paths
// of a host that exists there with another.
func (b *Backend) podPeerPaths(ctx context.Context, vol string, local array.Connection, c Connector) []ISCSIPath {
	peers := b.podPeers()
	if b.failedOver() || len(peers) == 0 {
		return nil
	}
	_, group, err := b.protectionOf(ctx, vol)
	if err != nil {
		b.log.Warn("could not tell whether the volume is in the pod; attached at the serving array only", "volume", vol, "err", err)
		return nil
	}
	if group != b.cfg.PodName {
		return nil
	}
	var out []ISCSIPath
	for _, id := range peers {
		paths, err := b.peerPaths(ctx, id, vol, local, c)
		if err != nil {
			b.log.Warn("pod volume attached without its peer's paths; attach it again once the peer answers",
				"volume", vol, "backend_id", id, "host", c.Host, "initiator", c.Initiator, "err", err)
			continue
		}
		out = append(out, paths...)
	}
	return out
}

// peerPaths connects the pod's copy of vol at sync target id to the
// connector's host, if it is the pod's copy with the serving array's LUN
// identity, and returns its paths.
func (b *Backend) peerPaths(ctx context.Context, id, vol string, local array.Connection, c Connector) ([]ISCSIPath, error) {
	t, ok := b.targets[id]
	if !ok || t.Array == nil {
		return nil, errdefs.Unavailable("no connection to replication target %s", id)
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	v, err := t.Array.GetVolume(ctx, vol)
	if err != nil {
		return nil, err
	}
	if !b.copyOn(id, v.Labels[labelReplicaOf]) {
		return nil, errdefs.FailedPrecondition("volume %s at replication target %s is not the pod's copy (labelled %s=%q)", vol, id, labelReplicaOf, v.Labels[labelReplicaOf])
	}
	// Paths with another identity would be another disk to the host, not
	// another way to this one.
	if !strings.EqualFold(v.WWN, local.WWN) {
		return nil, errdefs.FailedPrecondition("volume %s at replication target %s has WWN %s, the serving array's has %s", vol, id, v.WWN, local.WWN)
	}
	// os-brick logs in at every path with the one CHAP pair of the
	// connection info: a host the driver creates at the peer gets the
	// serving array's secret.
	conn, err := b.connectISCSI(ctx, t.Array, array.ConnectionSpec{Volume: vol}, c, local.CHAPSecret)
	if err != nil {
		return nil, err
	}
	if conn.CHAPSecret != local.CHAPSecret || conn.CHAPUser != local.CHAPUser {
		// The host was there before, with a secret of its own: its logins
		// at the peer would fail. Leave nothing behind.
		if err := b.terminateISCSI(ctx, t.Array, vol, "", c); err != nil {
			b.log.Warn("a connection at the peer remains", "volume", vol, "backend_id", id, "err", err)
		}
		return nil, errdefs.FailedPrecondition("host %s at replication target %s has another CHAP name or secret than host %s at the serving array, "+
			"and an initiator presents one at every path; delete the host at the target once it has no connections (the next attach creates it with the serving array's secret)", conn.Host, id, local.Host)
	}
	if len(conn.Portals) == 0 {
		return nil, errdefs.FailedPrecondition("replication target %s at %s reports no iSCSI portal; set its iscsi_listen", id, b.addrOf(id))
	}
	b.log.Info("pod volume connected at its peer too", "volume", vol, "backend_id", id, "host", conn.Host,
		"initiator", c.Initiator, "lun", conn.LUN, "target", conn.TargetIQN, "portals", conn.Portals)
	return iscsiPaths(conn, b.addrOf(id)), nil
}

// terminatePodPeers disconnects a volume from the connector's host at
// each sync target, where podPeerPaths connected it. A peer that cannot be
// reached does not block the detach: its connection stays behind until a
// later detach of the volume (or a force detach) reaches it, and the
// warning says so.
func (b *Backend) terminatePodPeers(ctx context.Context, vol string, c Connector) {
	if b.failedOver() {
		return
	}
	for _, id := range b.podPeers() {
		t, ok := b.targets[id]
		if !ok || t.Array == nil {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, peerTimeout)
		err := b.terminateISCSI(pctx, t.Array, vol, "", c)
		cancel()
		if err != nil {
			b.log.Warn("pod volume detached at the serving array, but a connection at the peer, if it has one, remains; detach it again once the peer answers",
				"volume", vol, "backend_id", id, "host", c.Host, "initiator", c.Initiator, "err", err)
		}
	}
}

// podPeers are the backend_ids of the sync targets. It reads only the
// replication devices, which never change, not the whole configuration
// (SyncTargets copies it), whose schedule an update may be writing.
func (b *Backend) podPeers() []string {
	var ids []string
	for _, rd := range b.cfg.ReplicationDevices {
		if rd.Type == array.TypeSync {
			ids = append(ids, rd.BackendID)
		}
	}
	return ids
}
