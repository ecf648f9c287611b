package main

import (
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/service"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/server"
)

// startArray serves a real engine's array API on loopback.
func startArray(t *testing.T) (string, *store.Store) {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{Name: "a1", ISCSIPortals: []string{"127.0.0.1:3260", "127.0.0.2:3260"}})
	if err != nil {
		t.Fatal(err)
	}
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
