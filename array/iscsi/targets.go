package iscsi

import (
	"context"
	"errors"
)

// Targets is where the array authorises initiators: which targets an
// initiator may discover and log into, with which CHAP credentials, and
// which LUNs its sessions see. The server calls it on every login, every
// SendTargets, every REPORT LUNS and whenever a command names a LUN the
// session has not opened, so a change (a new mapping, an unmapping, a
// host's new secret) applies to open sessions without a new login.
type Targets interface {
	// Discover returns the targets initiator may see in a SendTargets
	// discovery session, with their portals. A discovery session is
	// authenticated with DiscoveryAuth first.
	Discover(ctx context.Context, initiator string) ([]Target, error)
	// DiscoveryAuth returns the credentials a discovery session of
	// initiator must present (a zero Auth for none).
	DiscoveryAuth(ctx context.Context, initiator string) (Auth, error)
	// Login returns the credentials initiator must present to log into
	// target, or ErrUnknownInitiator / ErrUnknownTarget.
	Login(ctx context.Context, initiator, target string) (Auth, error)
	// LUNs returns the LUNs initiator sees on target, ascending.
	LUNs(ctx context.Context, initiator, target string) ([]uint64, error)
	// Open returns the device behind lun for initiator on target, or
	// ErrNotMapped.
	Open(ctx context.Context, initiator, target string, lun uint64) (Device, error)
}

// Target is one iSCSI target and the portals it is reached through.
type Target struct {
	// Name is the target's IQN.
	Name string
	// Portals are "host:port,tpgt" (a SendTargets TargetAddress).
	Portals []string
}

// Auth is what a login must present. A zero Auth means no authentication
// (AuthMethod=None). With User set the initiator must answer a CHAP
// challenge for User/Secret; with MutualUser set as well, the target
// answers the initiator's challenge with MutualUser/MutualSecret.
type Auth struct {
	User         string
	Secret       string
	MutualUser   string
	MutualSecret string
}

// Errors from Targets that choose the login status.
var (
	// ErrUnknownInitiator: login reject, status 02/01 (authentication
	// failure) — the same answer as a wrong secret, so a probe learns
	// nothing about which initiators exist.
	ErrUnknownInitiator = errors.New("iscsi: initiator not authorised")
	// ErrUnknownTarget: login reject, status 02/03 (not found).
	ErrUnknownTarget = errors.New("iscsi: no such target")
)
