package driver

import (
	"context"
	"slices"
	"time"

	"github.com/volrep/volrep/driver/extraspecs"
)

// Version is the driver version reported in stats.
const Version = "1.0.0"

// Stats is get_volume_stats' answer.
type Stats struct {
	VolumeBackendName          string
	VendorName                 string
	DriverVersion              string
	StorageProtocol            string
	TotalCapacityGB            float64
	FreeCapacityGB             float64
	ProvisionedCapacityGB      float64
	ThinProvisioning           bool
	ReplicationEnabled         bool
	ReplicationTargets         []string
	ReplicationType            []string
	ReplicationCount           int64
	ActiveBackendID            string
	ConsistentGroupSnapshot    bool
	ConsistentGroupReplication bool
	ReservedPercentage         int64
	MaxOverSubscriptionRatio   float64
	// OnlineExtend: an attached volume can grow (NBD clients see the
	// new size when they reconnect, iSCSI sessions get CAPACITY DATA HAS
	// CHANGED), and its replicas grow with it.
	OnlineExtend bool
	// QoS: the array enforces a volume type's qos_specs (driver/qos.go).
	QoS bool
	// Multiattach: a volume may be attached read-write to several hosts
	// at once; each host has its own export or LUN, and detaching one
	// revokes only that one.
	Multiattach bool
	Up          bool
	Reason      string
	at          time.Time
}

// statsTTL bounds how stale cached stats may be when the caller does not
// ask for a refresh; Cinder polls every minute.
const statsTTL = 30 * time.Second

// GetVolumeStats reports capacity and capabilities. A down backend still
// answers, with Up false and the reason, as Cinder expects from a
// periodic poll.
func (b *Backend) GetVolumeStats(ctx context.Context, refresh bool) (Stats, error) {
	b.mu.RLock()
	cached := b.stats
	b.mu.RUnlock()
	if cached != nil && !refresh && b.opts.Now().Sub(cached.at) < statsTTL {
		return *cached, nil
	}
	st := b.capabilities()
	if err := b.ready(); err != nil {
		st.Reason = b.State().Reason
		return st, nil
	}
	p, err := b.protocol(ctx, true)
	if err != nil {
		return Stats{}, err
	}
	st.StorageProtocol = storageProtocol(p)
	a := b.activeArray()
	info, err := a.Info(ctx)
	if err != nil {
		return Stats{}, err
	}
	vols, err := a.ListVolumes(ctx, b.cfg.Pool)
	if err != nil {
		return Stats{}, err
	}
	st.Up = true
	st.TotalCapacityGB = float64(info.CapacityBytes) / gib
	st.FreeCapacityGB = float64(info.FreeBytes) / gib
	for _, v := range vols {
		st.ProvisionedCapacityGB += float64(v.SizeBytes) / gib
	}
	st.at = b.opts.Now()
	b.mu.Lock()
	b.stats = &st
	b.mu.Unlock()
	return st, nil
}

// capabilities are the parts of the stats that follow from configuration.
func (b *Backend) capabilities() Stats {
	st := Stats{
		VolumeBackendName: b.cfg.VolumeBackendName, VendorName: "volrep", DriverVersion: Version,
		StorageProtocol: storageProtocol(b.cachedProtocol()), ThinProvisioning: true, ConsistentGroupSnapshot: true, OnlineExtend: true, QoS: true, Multiattach: true,
		ActiveBackendID: b.State().ActiveBackendID, ReservedPercentage: int64(b.cfg.ReservedPercentage),
		MaxOverSubscriptionRatio: b.cfg.MaxOverSubscriptionRatio,
	}
	if st.MaxOverSubscriptionRatio == 0 {
		st.MaxOverSubscriptionRatio = 20
	}
	for _, rd := range b.cfg.ReplicationDevices {
		st.ReplicationTargets = append(st.ReplicationTargets, rd.BackendID)
		if !slices.Contains(st.ReplicationType, rd.Type) {
			st.ReplicationType = append(st.ReplicationType, rd.Type)
		}
	}
	slices.Sort(st.ReplicationType)
	st.ReplicationCount = int64(len(st.ReplicationTargets))
	st.ReplicationEnabled = st.ReplicationCount > 0
	st.ConsistentGroupReplication = slices.Contains(st.ReplicationType, extraspecs.Async)
	return st
}
