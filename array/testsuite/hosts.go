package testsuite

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/errdefs"
)

const (
	iqnA = "iqn.1993-08.org.debian:01:aaaa"
	iqnB = "iqn.1993-08.org.debian:01:bbbb"
	iqnC = "iqn.2004-10.com.ubuntu:01:cccc"
)

var (
	alnum16 = regexp.MustCompile(`^[A-Za-z0-9]{16}$`)
	wwnRE   = regexp.MustCompile(`^6da7abe0[0-9a-f]{24}$`)
)

// testHosts needs an array that serves iSCSI (or says it does).
func testHosts(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	spec := array.HostSpec{Name: "h1", IQNs: []string{iqnA, iqnB}, Labels: map[string]string{"k": "v"}}
	h := mustT[array.Host](t)(a.CreateHost(ctx, spec))
	if h.Name != "h1" || len(h.IQNs) != 2 || h.CHAPUser != "h1" || h.CHAPSecret != "" || h.Labels["k"] != "v" || h.Created.IsZero() {
		t.Fatalf("CreateHost = %+v (a secret must not come back)", h)
	}
	// The same IQNs again (in another order and case) are idempotent.
	mustT[array.Host](t)(a.CreateHost(ctx, array.HostSpec{Name: "h1", IQNs: []string{strings.ToUpper(iqnB), iqnA}}))
	_, err := a.CreateHost(ctx, array.HostSpec{Name: "h1", IQNs: []string{iqnC}})
	wantKind(t, err, errdefs.KindAlreadyExists, "same host name, other IQNs")
	_, err = a.CreateHost(ctx, array.HostSpec{Name: "h2", IQNs: []string{iqnC, strings.ToUpper(iqnA)}})
	wantKind(t, err, errdefs.KindAlreadyExists, "an IQN of another host")
	if !strings.Contains(err.Error(), `"h1"`) {
		t.Fatalf("the error does not name the host that has the IQN: %v", err)
	}
	for _, bad := range []string{"", "iqn.93-08.org.debian:x", "iqn.1993-13.org.debian", "host-1", "iqn.1993-08.org.deb_ian", "eui.12"} {
		_, err = a.CreateHost(ctx, array.HostSpec{Name: "bad", IQNs: []string{bad}})
		wantKind(t, err, errdefs.KindInvalidArgument, "IQN "+bad)
	}
	_, err = a.CreateHost(ctx, array.HostSpec{Name: "bad"})
	wantKind(t, err, errdefs.KindInvalidArgument, "no IQN")
	mutual := mustT[array.Host](t)(a.CreateHost(ctx, array.HostSpec{Name: "h2", IQNs: []string{iqnC, "eui.02004567A425678D"}, MutualCHAP: true}))
	if !mutual.MutualCHAP || mutual.MutualCHAPUser == "" || mutual.MutualCHAPSecret != "" {
		t.Fatalf("mutual host = %+v", mutual)
	}

	withSecrets := mustT[array.Host](t)(a.GetHost(ctx, "h1", true))
	if !alnum16.MatchString(withSecrets.CHAPSecret) || withSecrets.MutualCHAPSecret != "" {
		t.Fatalf("GetHost with secrets = %+v", withSecrets)
	}
	m2 := mustT[array.Host](t)(a.GetHost(ctx, "h2", true))
	if !alnum16.MatchString(m2.MutualCHAPSecret) || m2.MutualCHAPSecret == m2.CHAPSecret || m2.CHAPSecret == withSecrets.CHAPSecret {
		t.Fatalf("secrets are not 16 random letters and digits each: %q %q %q", withSecrets.CHAPSecret, m2.CHAPSecret, m2.MutualCHAPSecret)
	}
	if h := mustT[array.Host](t)(a.GetHost(ctx, "h1", false)); h.CHAPSecret != "" {
		t.Fatal("GetHost without secrets returned the secret")
	}
	hosts := mustT[[]array.Host](t)(a.ListHosts(ctx))
	if len(hosts) != 2 || hosts[0].Name != "h1" || hosts[1].Name != "h2" {
		t.Fatalf("ListHosts = %+v", hosts)
	}
	for _, h := range hosts {
		if h.CHAPSecret != "" || h.MutualCHAPSecret != "" {
			t.Fatalf("ListHosts returned a secret of %s", h.Name)
		}
	}
	_, err = a.GetHost(ctx, "ghost", false)
	wantKind(t, err, errdefs.KindNotFound, "unknown host")

	testConnections(t, ctx, a, withSecrets.CHAPSecret)
}

func testConnections(t *testing.T, ctx context.Context, a array.Array, secret string) {
	mConn := mustT[array.Connection](t)
	v1 := mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "lv1", Pool: "p1", SizeBytes: mib}))
	v2 := mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "lv2", Pool: "p1", SizeBytes: mib}))
	mVol(t)(a.CreateVolume(ctx, array.VolumeSpec{Name: "lv3", Pool: "p1", SizeBytes: mib}))
	if !wwnRE.MatchString(v1.WWN) || v1.WWN == v2.WWN {
		t.Fatalf("WWNs %q and %q: want distinct NAA 6 designators with volrep's OUI", v1.WWN, v2.WWN)
	}
	if got := mVol(t)(a.GetVolume(ctx, "lv1")); got.WWN != v1.WWN {
		t.Fatalf("the WWN changed from %s to %s", v1.WWN, got.WWN)
	}
	mSnap(t)(a.CreateSnapshot(ctx, "lv1", "ls", nil))

	c1 := mConn(a.ConnectVolume(ctx, array.ConnectionSpec{Host: "h1", Volume: "lv1"}))
	if c1.LUN != 1 || c1.ReadOnly || c1.TargetIQN == "" || len(c1.Portals) == 0 || c1.WWN != v1.WWN ||
		c1.CHAPUser != "h1" || c1.CHAPSecret != secret || c1.Host != "h1" || c1.Volume != "lv1" {
		t.Fatalf("ConnectVolume = %+v", c1)
	}
	if err := array.CheckIQN("target_iqn", c1.TargetIQN); err != nil {
		t.Fatal(err)
	}
	if info := mInfo(t)(a.Info(ctx)); info.ISCSITargetIQN != c1.TargetIQN || !slices.Equal(info.ISCSIPortals, c1.Portals) {
		t.Fatalf("Info says target %q portals %v; the connection says %q %v", info.ISCSITargetIQN, info.ISCSIPortals, c1.TargetIQN, c1.Portals)
	}
	if again := mConn(a.ConnectVolume(ctx, array.ConnectionSpec{Host: "h1", Volume: "lv1"})); again.LUN != 1 {
		t.Fatalf("connecting again moved the LUN to %d", again.LUN)
	}
	cs := mConn(a.ConnectVolume(ctx, array.ConnectionSpec{Host: "h1", Volume: "lv1", Snapshot: "ls"}))
	if cs.LUN != 2 || !cs.ReadOnly || !wwnRE.MatchString(cs.WWN) || cs.WWN == v1.WWN {
		t.Fatalf("snapshot connection = %+v", cs)
	}
	if c := mConn(a.ConnectVolume(ctx, array.ConnectionSpec{Host: "h1", Volume: "lv2"})); c.LUN != 3 {
		t.Fatalf("third LUN = %d", c.LUN)
	}
	// Each host numbers its own LUNs.
	if c := mConn(a.ConnectVolume(ctx, array.ConnectionSpec{Host: "h2", Volume: "lv1"})); c.LUN != 1 || c.MutualCHAPSecret == "" {
		t.Fatalf("h2's connection = %+v", c)
	}
	_, err := a.ConnectVolume(ctx, array.ConnectionSpec{Host: "ghost", Volume: "lv1"})
	wantKind(t, err, errdefs.KindNotFound, "connect to an unknown host")
	_, err = a.ConnectVolume(ctx, array.ConnectionSpec{Host: "h1", Volume: "nope"})
	wantKind(t, err, errdefs.KindNotFound, "connect an unknown volume")
	_, err = a.ConnectVolume(ctx, array.ConnectionSpec{Host: "h1", Volume: "lv1", Snapshot: "nope"})
	wantKind(t, err, errdefs.KindNotFound, "connect an unknown snapshot")

	list := mustT[[]array.Connection](t)(a.ListConnections(ctx, "h1", ""))
	if len(list) != 3 || list[0].LUN != 1 || list[1].LUN != 2 || list[2].LUN != 3 || list[2].Volume != "lv2" {
		t.Fatalf("ListConnections(h1) = %+v", list)
	}
	if c1.Path != nil {
		t.Fatalf("ConnectVolume reported an ALUA state %+v; only ListConnections does", c1.Path)
	}
	for _, c := range list {
		// An unreplicated volume and a snapshot are served here alone.
		if c.Path == nil || *c.Path != (array.Path{State: array.PathOptimized}) {
			t.Fatalf("ListConnections: %s LUN %d reports path %+v, want active/optimized", c.Host, c.LUN, c.Path)
		}
		if c.CHAPSecret != "" || c.MutualCHAPSecret != "" {
			t.Fatal("ListConnections returned a secret")
		}
	}
	if l := mustT[[]array.Connection](t)(a.ListConnections(ctx, "", "lv1")); len(l) != 3 || l[0].Host != "h1" || l[2].Host != "h2" {
		t.Fatalf("ListConnections(lv1) = %+v", l)
	}
	if h := mustT[array.Host](t)(a.GetHost(ctx, "h1", false)); h.Connections != 3 {
		t.Fatalf("h1 has %d connections, want 3", h.Connections)
	}

	// A connected volume is not deleted: the error names the hosts.
	err = a.DeleteVolume(ctx, "lv2")
	wantKind(t, err, errdefs.KindFailedPrecondition, "delete a connected volume")
	if !strings.Contains(err.Error(), "h1") {
		t.Fatalf("the error does not name the host: %v", err)
	}
	// The lowest free LUN is reused.
	ok(t, a.DisconnectVolume(ctx, array.ConnectionSpec{Host: "h1", Volume: "lv1"}))
	wantKind(t, a.DisconnectVolume(ctx, array.ConnectionSpec{Host: "h1", Volume: "lv1"}), errdefs.KindNotFound, "disconnect twice")
	if c := mConn(a.ConnectVolume(ctx, array.ConnectionSpec{Host: "h1", Volume: "lv3"})); c.LUN != 1 {
		t.Fatalf("LUN after a disconnect = %d, want 1", c.LUN)
	}
	// A replica target maps read-only.
	ok(t, a.SetReadOnly(ctx, "lv3", true))
	if l := mustT[[]array.Connection](t)(a.ListConnections(ctx, "h1", "lv3")); len(l) != 1 || !l[0].ReadOnly {
		t.Fatalf("replica target connection = %+v", l)
	}
	// Deleting a snapshot disconnects it.
	ok(t, a.DeleteSnapshot(ctx, "lv1", "ls"))
	if l := mustT[[]array.Connection](t)(a.ListConnections(ctx, "h1", "")); len(l) != 2 {
		t.Fatalf("after deleting the snapshot: %+v", l)
	}

	err = a.DeleteHost(ctx, "h1", false)
	wantKind(t, err, errdefs.KindFailedPrecondition, "delete a host with connections")
	ok(t, a.DeleteHost(ctx, "h1", true))
	_, err = a.GetHost(ctx, "h1", false)
	wantKind(t, err, errdefs.KindNotFound, "deleted host")
	ok(t, a.DeleteVolume(ctx, "lv2"))
	// Its IQNs are free for a new host.
	mustT[array.Host](t)(a.CreateHost(ctx, array.HostSpec{Name: "h3", IQNs: []string{iqnA}}))
	wantKind(t, a.DeleteHost(ctx, "ghost", false), errdefs.KindNotFound, "delete an unknown host")
}

// testHostPreferredArrays: a host's preferred arrays are set at creation,
// replaced and cleared; a host that exists keeps its own on a repeated
// create; names are checked.
func testHostPreferredArrays(t *testing.T, a array.Array) {
	ctx := setup(t, a)
	h := mustT[array.Host](t)(a.CreateHost(ctx, array.HostSpec{Name: "h1", IQNs: []string{iqnA}, PreferredArrays: []string{"site-b"}}))
	if !slices.Equal(h.PreferredArrays, []string{"site-b"}) {
		t.Fatalf("CreateHost with a preferred array = %+v", h)
	}
	h = mustT[array.Host](t)(a.CreateHost(ctx, array.HostSpec{Name: "h1", IQNs: []string{iqnA}, PreferredArrays: []string{"site-a"}}))
	if !slices.Equal(h.PreferredArrays, []string{"site-b"}) {
		t.Fatalf("creating an existing host again changed its preferred arrays: %+v", h)
	}
	h = mustT[array.Host](t)(a.SetHostPreferredArrays(ctx, "h1", []string{"site-a", "site-c"}))
	if !slices.Equal(h.PreferredArrays, []string{"site-a", "site-c"}) {
		t.Fatalf("SetHostPreferredArrays = %+v", h)
	}
	got := mustT[array.Host](t)(a.GetHost(ctx, "h1", false))
	if !slices.Equal(got.PreferredArrays, []string{"site-a", "site-c"}) {
		t.Fatalf("GetHost after SetHostPreferredArrays = %+v", got)
	}
	hosts := mustT[[]array.Host](t)(a.ListHosts(ctx))
	if len(hosts) != 1 || !slices.Equal(hosts[0].PreferredArrays, got.PreferredArrays) {
		t.Fatalf("ListHosts = %+v", hosts)
	}
	if h = mustT[array.Host](t)(a.SetHostPreferredArrays(ctx, "h1", nil)); len(h.PreferredArrays) != 0 {
		t.Fatalf("clearing the preferred arrays left %v", h.PreferredArrays)
	}
	for _, bad := range [][]string{{"site-a", "site-a"}, {"bad name"}, {""}, {"a", "b", "c", "d", "e"}} {
		_, err := a.SetHostPreferredArrays(ctx, "h1", bad)
		wantKind(t, err, errdefs.KindInvalidArgument, "preferred arrays "+strings.Join(bad, ","))
		if !strings.Contains(err.Error(), "preferred_arrays") {
			t.Errorf("the error does not name the field: %v", err)
		}
		_, err = a.CreateHost(ctx, array.HostSpec{Name: "h2", IQNs: []string{iqnB}, PreferredArrays: bad})
		wantKind(t, err, errdefs.KindInvalidArgument, "a new host preferring "+strings.Join(bad, ","))
	}
	_, err := a.SetHostPreferredArrays(ctx, "nobody", []string{"site-a"})
	wantKind(t, err, errdefs.KindNotFound, "an unknown host")
}
