package main

import (
	"encoding/json"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/iscsi"
	"github.com/volrep/volrep/array/lunmap"
	"github.com/volrep/volrep/array/service"
	"github.com/volrep/volrep/array/store"
	arrayv1 "github.com/volrep/volrep/proto/volrep/array/v1"
	"github.com/volrep/volrep/server"
)

// startArray serves a real engine's array API on loopback.
func startArray(t *testing.T) (string, *store.Store) {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{Name: "a1", ISCSIPortals: []string{"127.0.0.1:3260", "127.0.0.2:3260"}})
	if err != nil {
		t.Fatal(err)
	}
	target := lunmap.NewServer(st, iscsi.Options{}) // keeps the LUNs' reservations, as in volrepd
	srv := server.New(server.Options{Name: "array a1", Token: "arr-token"})
	service.New(st).Register(srv.GRPC())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx := t.Context()
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		target.Close()
		st.Close()
	})
	if _, err := st.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVolume(ctx, array.VolumeSpec{Name: "vol-1", Pool: "p", SizeBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	return lis.Addr().String(), st
}

func TestHostCommands(t *testing.T) {
	addr, st := startArray(t)
	env := map[string]string{envArrayAddr: addr, envArrayToken: "arr-token"}
	const ini = "iqn.1993-08.org.debian:01:8f3e2a"

	r := volrep(t, env, "host", "create", "compute-1", "--iqn", ini)
	if r.code != 0 || !strings.Contains(r.stdout, ini) || !strings.Contains(r.stdout, "chap_user") {
		t.Fatalf("host create: %+v", r)
	}
	// The same initiator for another host is refused, naming the owner.
	r = volrep(t, env, "host", "create", "compute-2", "--iqn", ini)
	if r.code == 0 || !strings.Contains(r.stderr, "compute-1") || !strings.Contains(r.stderr, "ALREADY_EXISTS") {
		t.Fatalf("second host with the IQN: %+v", r)
	}
	r = volrep(t, nil, "host", "list", "--array", addr, "--array-token", "wrong")
	if r.code == 0 || !strings.Contains(r.stderr, "UNAUTHENTICATED") {
		t.Fatalf("wrong token: %+v", r)
	}

	r = volrep(t, env, "volume", "attach", "vol-1", "--protocol", "iscsi", "--initiator", ini)
	h, err := st.GetHost(t.Context(), "compute-1", true)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := st.GetVolume(t.Context(), "vol-1")
	for _, want := range []string{"iqn.2026-12.io.volrep:a1", "127.0.0.1:3260,127.0.0.2:3260", "target_lun          1",
		"auth_username       compute-1", "auth_password       " + h.CHAPSecret, v.WWN} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("attach output lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
	// An initiator without a host gets one made for it.
	const other = "iqn.2004-10.com.ubuntu:01:77aa"
	r = volrep(t, env, "-o", "json", "volume", "attach", "vol-1", "--protocol", "iscsi", "--initiator", other, "--host", "backup-1")
	var resp struct {
		Connection struct {
			Host       string `json:"host"`
			ChapSecret string `json:"chap_secret"`
			Lun        string `json:"lun"`
		} `json:"connection"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || resp.Connection.Lun != "1" || resp.Connection.ChapSecret == "" || resp.Connection.Host != "backup-1" {
		t.Fatalf("attach -o json = %q (%v), stderr %s", r.stdout, err, r.stderr)
	}
	if hs, _ := st.ListHosts(t.Context()); len(hs) != 2 || hs[0].Name != "backup-1" {
		t.Fatalf("hosts = %+v", hs)
	}

	// host list shows hosts, IQNs and LUNs, never a secret.
	r = volrep(t, env, "host", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "compute-1") || !strings.Contains(r.stdout, "vol-1") || strings.Contains(r.stdout, h.CHAPSecret) {
		t.Fatalf("host list:\n%s%s", r.stdout, r.stderr)
	}
	r = volrep(t, env, "-o", "json", "host", "list")
	var list struct {
		Hosts       []map[string]any `json:"hosts"`
		Connections []map[string]any `json:"connections"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Hosts) != 2 || len(list.Connections) != 2 || strings.Contains(r.stdout, h.CHAPSecret) {
		t.Fatalf("host list -o json = %s (%v)", r.stdout, err)
	}

	r = volrep(t, env, "host", "delete", "compute-1")
	if r.code == 0 || !strings.Contains(r.stderr, "FAILED_PRECONDITION") {
		t.Fatalf("deleting a connected host: %+v", r)
	}
	r = volrep(t, env, "volume", "detach", "vol-1", "--protocol", "iscsi", "--initiator", ini)
	if r.code != 0 || !strings.Contains(r.stdout, "disconnected volume") {
		t.Fatalf("detach: %+v", r)
	}
	r = volrep(t, env, "host", "delete", "compute-1")
	if r.code != 0 {
		t.Fatalf("host delete: %+v", r)
	}
	r = volrep(t, env, "host", "delete", "backup-1", "--force")
	if r.code != 0 {
		t.Fatalf("host delete --force: %+v", r)
	}
	if hs, _ := st.ListHosts(t.Context()); len(hs) != 0 {
		t.Fatalf("hosts left: %+v", hs)
	}
}

func TestHostPreferredArrays(t *testing.T) {
	addr, st := startArray(t)
	env := map[string]string{envArrayAddr: addr, envArrayToken: "arr-token"}
	const ini = "iqn.1993-08.org.debian:01:b1"
	preferred := func() []string {
		t.Helper()
		h, err := st.GetHost(t.Context(), "compute-b1", false)
		if err != nil {
			t.Fatal(err)
		}
		return h.PreferredArrays
	}

	r := volrep(t, env, "-o", "json", "host", "create", "compute-b1", "--iqn", ini, "--preferred-array", "site-b", "--preferred-array", "a1")
	var created struct {
		Host struct {
			PreferredArrays []string `json:"preferred_arrays"`
		} `json:"host"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &created); r.code != 0 || err != nil || !slices.Equal(created.Host.PreferredArrays, []string{"site-b", "a1"}) {
		t.Fatalf("host create --preferred-array -o json = %+v (%v)", r, err)
	}
	if got := preferred(); !slices.Equal(got, []string{"site-b", "a1"}) {
		t.Fatalf("after create: preferred arrays %q", got)
	}

	// The array's own name draws no warning; a name that is neither it
	// nor a linked array's (this array has no links) is set, with one.
	r = volrep(t, env, "host", "set-preferred-arrays", "compute-b1", "a1")
	if r.code != 0 || strings.Contains(r.stderr, "warning") {
		t.Fatalf("set-preferred-arrays to the array itself: %+v", r)
	}
	r = volrep(t, env, "host", "set-preferred-arrays", "compute-b1", "site-c")
	if got := tableRow(r.stdout, "preferred_arrays"); r.code != 0 || !slices.Equal(got, []string{"preferred_arrays", "site-c"}) {
		t.Fatalf("set-preferred-arrays: %+v", r)
	}
	if !strings.Contains(r.stderr, `warning: array "site-c" is neither this array nor one it has a link to (a1)`) {
		t.Fatalf("set-preferred-arrays to an unknown array warns of nothing: %q", r.stderr)
	}
	if got := preferred(); !slices.Equal(got, []string{"site-c"}) {
		t.Fatalf("after set: preferred arrays %q", got)
	}
	r = volrep(t, env, "host", "list")
	if got := tableRow(r.stdout, "compute-b1"); r.code != 0 || !slices.Equal(tableRow(r.stdout, "HOST"), []string{"HOST", "IQNS", "PREFERRED", "LUN", "VOLUME", "ACCESS", "ALUA"}) ||
		!slices.Equal(got, []string{"compute-b1", ini, "site-c", "-", "-", "-", "-"}) {
		t.Fatalf("host list:\n%s%s", r.stdout, r.stderr)
	}
	// A connected host's rows carry it too, with the ALUA state the array
	// reports to the host: an unreplicated volume's only path is optimized,
	// whatever the host prefers.
	r = volrep(t, env, "volume", "attach", "vol-1", "--protocol", "iscsi", "--initiator", ini)
	if r.code != 0 {
		t.Fatalf("attach: %+v", r)
	}
	r = volrep(t, env, "host", "list")
	if got := tableRow(r.stdout, "compute-b1"); r.code != 0 || !slices.Equal(got, []string{"compute-b1", ini, "site-c", "1", "vol-1", "rw", "active/optimized"}) {
		t.Fatalf("host list with a connection:\n%s%s", r.stdout, r.stderr)
	}

	// No ARRAY clears the preference.
	r = volrep(t, env, "host", "set-preferred-arrays", "compute-b1")
	if got := tableRow(r.stdout, "preferred_arrays"); r.code != 0 || !slices.Equal(got, []string{"preferred_arrays", "-"}) {
		t.Fatalf("clearing: %+v", r)
	}
	if got := preferred(); len(got) != 0 {
		t.Fatalf("after clearing: preferred arrays %q", got)
	}
	r = volrep(t, env, "-o", "json", "host", "list")
	if r.code != 0 || strings.Contains(r.stdout, "preferred_arrays") {
		t.Fatalf("host list -o json after clearing: %+v", r)
	}

	// The array refuses a bad list as a usage error and keeps the host's.
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"host", "set-preferred-arrays", "compute-b1", "bad name!"}, "preferred_arrays"},
		{[]string{"host", "set-preferred-arrays", "compute-b1", "site-b", "site-b"}, "twice"},
		{[]string{"host", "set-preferred-arrays", "compute-b1", "s1", "s2", "s3", "s4", "s5"}, "more than the 4"},
		{[]string{"host", "create", "compute-b2", "--iqn", "iqn.1993-08.org.debian:01:b2", "--preferred-array", "bad name!"}, "preferred_arrays"},
		{[]string{"host", "create", "compute-b2", "--iqn", "iqn.1993-08.org.debian:01:b2", "--preferred-array", "a1", "--preferred-array", "a1"}, "twice"},
	} {
		r := volrep(t, env, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "INVALID_ARGUMENT") || !strings.Contains(r.stderr, "preferred_arrays") || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("%q: exit %d, want %d; stderr:\n%s", tc.args, r.code, exitUsage, r.stderr)
		}
	}
	if got := preferred(); len(got) != 0 {
		t.Fatalf("after refused changes: preferred arrays %q", got)
	}
	if hs, _ := st.ListHosts(t.Context()); len(hs) != 1 {
		t.Fatalf("hosts = %+v", hs)
	}

	r = volrep(t, env, "host", "set-preferred-arrays", "no-such-host", "site-b")
	if r.code != exitNotFound || !strings.Contains(r.stderr, "NOT_FOUND") || !strings.Contains(r.stderr, "no-such-host") || !strings.Contains(r.stderr, "'volrep host list'") {
		t.Fatalf("unknown host: %+v", r)
	}
	r = volrep(t, env, "host", "set-preferred-arrays")
	if r.code != exitUsage || !strings.Contains(r.stderr, "takes a host name") {
		t.Fatalf("no host name: %+v", r)
	}
}

// tableRow returns the cells of the table line whose first cell is first.
func tableRow(out, first string) []string {
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == first {
			return f
		}
	}
	return nil
}

// TestHostReservations: host reservations reads a volume's persistent
// reservations from the array and --clear clears them; a volume whose
// hosts can have none here is refused, saying why. Registrations come
// from hosts over SCSI (array/iscsi tests them); their table is checked
// from the API's message.
func TestHostReservations(t *testing.T) {
	addr, st := startArray(t)
	env := map[string]string{envArrayAddr: addr, envArrayToken: "arr-token"}
	for _, args := range [][]string{{"host", "reservations", "vol-1"}, {"host", "reservations", "vol-1", "--clear"}} {
		r := volrep(t, env, args...)
		if r.code != 0 || !regexp.MustCompile(`(?m)^reservation +none$`).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^registrations +none$`).MatchString(r.stdout) {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	r := volrep(t, env, "-o", "json", "host", "reservations", "vol-1")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "{}" { // every field is zero, so protojson leaves it out
		t.Fatalf("-o json: %+v", r)
	}
	r = volrep(t, env, "host", "reservations", "vol-9")
	if r.code == 0 || !strings.Contains(r.stderr, "NOT_FOUND") || !strings.Contains(r.stderr, `reservations of volume "vol-9"`) {
		t.Fatalf("a missing volume: %+v", r)
	}
	if err := st.SetReadOnly(t.Context(), "vol-1", true); err != nil {
		t.Fatal(err)
	}
	r = volrep(t, env, "host", "reservations", "vol-1", "--clear")
	if r.code == 0 || !strings.Contains(r.stderr, "FAILED_PRECONDITION") || !strings.Contains(r.stderr, "replica target") {
		t.Fatalf("clearing a replica target's: %+v", r)
	}

	var out strings.Builder
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', 0)
	reservationsTable(tw, "vol-1", &arrayv1.VolumeReservations{Generation: 3, Type: arrayv1.ReservationType_RESERVATION_TYPE_WRITE_EXCLUSIVE,
		Registrations: []*arrayv1.Registration{
			{InitiatorPort: "iqn.1993-08.org.debian:01:8f3e2a,i,0x023d00000001", Target: "iqn.2026-12.io.volrep:a1", RelativeTargetPort: 1, Key: 0xa1, Holder: true},
			{InitiatorPort: "iqn.1993-08.org.debian:01:8f3e2a,i,0x023d00000002", Target: "iqn.2026-12.io.volrep:a2", RelativeTargetPort: 2, Key: 0xa1},
		}})
	tw.Flush()
	var lines []string
	for _, l := range strings.Split(out.String(), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	for _, want := range []string{"generation 3", "reservation write-exclusive",
		"iqn.1993-08.org.debian:01:8f3e2a,i,0x023d00000001 iqn.2026-12.io.volrep:a1 1 0xa1 yes",
		"iqn.1993-08.org.debian:01:8f3e2a,i,0x023d00000002 iqn.2026-12.io.volrep:a2 2 0xa1 no"} {
		if !slices.Contains(lines, want) {
			t.Errorf("the table lacks %q:\n%s", want, out.String())
		}
	}
}
