package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
	"github.com/volrep/volrep/server"
)

// TestOnlineExtendISCSI extends a volume through the driver while qemu-io
// holds an iSCSI session on it: the session's next command gets the unit
// attention CAPACITY DATA HAS CHANGED (qemu retries it, and the command
// succeeds), a new session's READ CAPACITY reports the new size, and the
// stats say online_extend_support. (TestRevertOverNBD checks that an NBD
// client sees the new size when it reconnects.)
func TestOnlineExtendISCSI(t *testing.T) {
	qemuIO := tool(t, "qemu-io")
	d := NewDaemon(t)
	portal := freePort(t)
	d.ISCSIA = portal
	d.Start()
	c := driverClient(t, d)
	st, err := c.GetVolumeStats(t.Context(), &driverv1.GetVolumeStatsRequest{Backend: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	if !st.GetOnlineExtendSupport() {
		t.Fatal("stats do not report online_extend_support")
	}
	createVolume(t, c, "growvol", 1)
	cc, err := server.Dial(d.ArrayA, d.TokenA)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	a := client.New(cc)
	const ini = "iqn.1993-08.org.debian:01:extend"
	if _, err := a.CreateHost(t.Context(), array.HostSpec{Name: "compute-x", IQNs: []string{ini}}); err != nil {
		t.Fatal(err)
	}
	conn, err := a.ConnectVolume(t.Context(), array.ConnectionSpec{Host: "compute-x", Volume: "volume-growvol-cinder"})
	if err != nil {
		t.Fatal(err)
	}
	// qemu's own iSCSI initiator (libiscsi), with the host's CHAP.
	opts := fmt.Sprintf("driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=%s,file.target=%s,file.lun=%d,"+
		"file.user=%s,file.password=%s,file.initiator-name=%s",
		portal, conn.TargetIQN, conn.LUN, conn.CHAPUser, strings.ReplaceAll(conn.CHAPSecret, ",", ",,"), ini)
	run(t, false, qemuIO, "--image-opts", opts, "-c", "write -P 0xaa 0 64k")

	s := startInteractive(t, qemuIO, "--image-opts", opts)
	s.Send("read -P 0xaa 0 64k")
	s.WaitFor("read 65536/65536 bytes")
	if _, err := c.ExtendVolume(t.Context(), &driverv1.ExtendVolumeRequest{Backend: "demo", VolumeId: "growvol", NewSizeGb: 2}); err != nil {
		t.Fatal(err)
	}
	s.Send("read -P 0xaa 0 4k")
	s.WaitFor("read 4096/4096 bytes")
	s.Close()
	if out := s.out.String(); !strings.Contains(out, "CAPACITY_DATA_HAS_CHANGED") {
		t.Fatalf("the open session was not told the capacity changed:\n%s", out)
	}
	for _, l := range strings.Split(s.out.String(), "\n") {
		if strings.Contains(l, "CAPACITY_DATA_HAS_CHANGED") {
			t.Logf("open session: %s", l)
		}
	}
	out, _ := run(t, false, qemuIO, "--image-opts", opts, "-c", "length")
	if !strings.Contains(out, "2 GiB") {
		t.Fatalf("a new session's capacity after the extend:\n%s", out)
	}
	t.Logf("new session: %s", strings.TrimSpace(out))
}
