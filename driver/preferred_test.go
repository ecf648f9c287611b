package driver

import (
	"testing"

	"github.com/volrep/volrep/internal/etcdtest"
)

// TestPreferredArrayReachesThePod: volrep_preferred_array naming the sync
// target makes the backend's pod prefer its peer at a partition; a later
// start with the primary preferred changes the existing pod in place.
func TestPreferredArrayReachesThePod(t *testing.T) {
	ctx := t.Context()
	etcd := etcdtest.Start(t, "", "")
	peer, primary := newTestArray(t, "site-b"), newTestArray(t, "site-a")
	mediated := []string{device("site-b", peer.addr, peer, "sync"), "volrep_pod_mediator = etcd://" + etcd.Endpoint()}
	b := oneBackend(t, primary, append(mediated, "volrep_preferred_array = site-b")...)
	if _, err := b.CreateVolume(ctx, "v1", 1, syncSpecs, ""); err != nil {
		t.Fatal(err)
	}
	r, err := primary.eng.GetReplica(ctx, b.podReplica("site-b"))
	if err != nil || !r.PreferPeer {
		t.Fatalf("the pod of a backend preferring site-b: prefer_peer %v, %v", r.PreferPeer, err)
	}
	// The same backend, configured to prefer the primary again.
	b = oneBackend(t, primary, append(mediated, "volrep_preferred_array = primary")...)
	if _, err := b.CreateVolume(ctx, "v2", 1, syncSpecs, ""); err != nil {
		t.Fatal(err)
	}
	if r, err := primary.eng.GetReplica(ctx, b.podReplica("site-b")); err != nil || r.PreferPeer {
		t.Fatalf("the pod once the backend prefers its primary: prefer_peer %v, %v", r.PreferPeer, err)
	}
}
