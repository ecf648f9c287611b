package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// The QoS proof: a volume type's qos_specs, given through the driver API,
// hold fio over NBD and qemu over iSCSI to the limit, while an unlimited
// volume of the same daemon runs far faster; a retype changes the limit of
// attachments that stay open.

// qosType is a volume type whose QoS (consumer back-end) caps total IOPS;
// 0 is a type without QoS.
func qosType(iops int) *driverv1.VolumeType {
	vt := &driverv1.VolumeType{Id: "type-" + strconv.Itoa(iops), Name: "qos-" + strconv.Itoa(iops)}
	if iops > 0 {
		vt.QosSpecs = map[string]string{"total_iops_sec": strconv.Itoa(iops)}
	}
	return vt
}

// fioIOPS runs fio's nbd engine on uri for 4 s, 4 KiB random reads and
// writes at iodepth 16, and returns the IOPS it measured. The first second
// (ramp_time) is not counted: it holds the one second's burst the array's
// bucket allows an idle volume.
func fioIOPS(t *testing.T, fio, uri string) float64 {
	t.Helper()
	out := filepath.Join(t.TempDir(), "fio.json")
	run(t, false, fio, "--name=qos", "--ioengine=nbd", "--uri="+uri, "--rw=randrw", "--bs=4k", "--iodepth=16",
		"--size=64m", "--runtime=3", "--ramp_time=1", "--time_based", "--randrepeat=0", "--norandommap",
		"--output-format=json", "--output="+out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Jobs []struct {
			Read, Write struct {
				IOPS float64 `json:"iops"`
			}
		} `json:"jobs"`
	}
	if err := json.Unmarshal(b, &r); err != nil || len(r.Jobs) != 1 {
		t.Fatalf("fio output: %v\n%s", err, b)
	}
	return r.Jobs[0].Read.IOPS + r.Jobs[0].Write.IOPS
}

var reBench = regexp.MustCompile(`Run completed in ([0-9.]+) seconds`)

// qemuBenchIOPS runs qemu-img bench over iSCSI (4 KiB, queue depth 16,
// O_DIRECT) for count requests and returns requests per second. A short
// run first spends the burst an idle volume's bucket holds, so the
// measured run sees the steady limit (what refills while qemu-img starts
// again and logs in is counted in).
func qemuBenchIOPS(t *testing.T, qemuImg string, lun lunOf, count int, write bool) float64 {
	t.Helper()
	args := func(n int) []string {
		a := []string{"bench", "-t", "none", "-c", strconv.Itoa(n), "-d", "16", "-s", "4096"}
		if write {
			a = append(a, "-w")
		}
		// bench takes neither --object nor --image-opts: the options go in
		// a json: filename, the CHAP secret as a plain password.
		return append(a, fmt.Sprintf(`json:{"driver":"raw","file":{"driver":"iscsi","transport":"tcp","portal":%q,"target":%q,"lun":%d,"user":%q,"password":%q,"initiator-name":%q}}`,
			lun.Portals[0], lun.TargetIQN, lun.LUN, lun.CHAPUser, lun.CHAPSecret, lun.Initiator))
	}
	run(t, false, qemuImg, args(count/4)...)
	out, _ := run(t, false, qemuImg, args(count)...)
	m := reBench.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("qemu-img bench printed no run time:\n%s", out)
	}
	secs, _ := strconv.ParseFloat(m[1], 64)
	return float64(count) / secs
}

func TestQoSIOPSOverNBDAndISCSI(t *testing.T) {
	fio := tool(t, "fio")
	qemuImg, _ := needQemuISCSI(t)
	d := startISCSIDaemon(t, 1)
	c := driverClient(t, d)
	a := d.Array("a")
	ctx := t.Context()
	for id, iops := range map[string]int{"qos-free": 0, "qos-500": 500} {
		if _, err := c.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "demo", VolumeId: id, SizeGb: 1,
			VolumeType: qosType(iops)}); err != nil {
			t.Fatalf("CreateVolume %s: %v", id, err)
		}
	}
	v, err := a.GetVolume(ctx, "volume-qos-500-cinder")
	if err != nil || v.QoS.TotalIOPS != 500 {
		t.Fatalf("the array's volume: %+v, %v; want total IOPS 500", v.QoS, err)
	}

	// NBD: fio on both volumes in the same run.
	free := fioIOPS(t, fio, nbdExport(t, a, "volume-qos-free-cinder"))
	limited := fioIOPS(t, fio, nbdExport(t, a, "volume-qos-500-cinder"))
	t.Logf("fio over NBD: %.0f IOPS without QoS, %.0f IOPS at total_iops_sec=500", free, limited)
	if limited > 550 || limited < 250 {
		t.Fatalf("fio over NBD at total_iops_sec=500 measured %.0f IOPS, want at most 550 (and not starved)", limited)
	}
	if free < 2*limited {
		t.Fatalf("fio over NBD without QoS measured %.0f IOPS, want at least twice the limited %.0f", free, limited)
	}

	// iSCSI: the same volume's limit holds through a LUN.
	lun := hostWithLUN(t, a, "qos-host", []string{"iqn.2026-12.io.volrep.e2e:qos"}, "volume-qos-500-cinder", "", 0)
	got := qemuBenchIOPS(t, qemuImg, lun, 2000, false)
	t.Logf("qemu-img bench over iSCSI at total_iops_sec=500: %.0f IOPS", got)
	if got > 550 || got < 250 {
		t.Fatalf("qemu-img bench over iSCSI at total_iops_sec=500 measured %.0f IOPS, want at most 550", got)
	}

	// Retype to 200 while attached: an NBD connection opened before the
	// retype, kept open across it, is held to the new limit from its next
	// requests; so are new fio and qemu runs on the same export and LUN.
	uri := nbdExport(t, a, "volume-qos-500-cinder") // the same export as before: CreateExport is idempotent
	addr, name := uri[len("nbd://"):strings.LastIndex(uri, "/")], uri[strings.LastIndex(uri, "/")+1:]
	nc, err := dialNBD(addr, name)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// heldRate spends the bucket's burst (n requests), then measures n
	// more, one at a time, on the open connection.
	heldRate := func(n int) float64 {
		t.Helper()
		buf := make([]byte, 4096)
		var start time.Time
		for i := range 2 * n {
			if i == n {
				start = time.Now()
			}
			if err := nc.ReadAt(buf, int64(i%4096)*4096); err != nil {
				t.Fatal(err)
			}
		}
		return float64(n) / time.Since(start).Seconds()
	}
	before := heldRate(500)
	if _, err := c.Retype(ctx, &driverv1.RetypeRequest{Backend: "demo", VolumeId: "qos-500", NewType: qosType(200)}); err != nil {
		t.Fatalf("Retype to total_iops_sec=200: %v", err)
	}
	during := heldRate(200)
	t.Logf("one NBD connection kept open: %.0f IOPS before the retype, %.0f IOPS after it (total_iops_sec 500 -> 200)", before, during)
	if before > 550 || before < 250 || during > 220 || during < 100 {
		t.Fatalf("an open NBD connection measured %.0f IOPS at 500 and %.0f after the retype to 200", before, during)
	}
	after := fioIOPS(t, fio, uri)
	t.Logf("fio over NBD after a retype to total_iops_sec=200: %.0f IOPS", after)
	if after > 220 || after < 100 {
		t.Fatalf("after a retype to 200 fio measured %.0f IOPS, want at most 220", after)
	}
	got = qemuBenchIOPS(t, qemuImg, lun, 800, true)
	t.Logf("qemu-img bench (writes) over iSCSI after the retype: %.0f IOPS", got)
	if got > 220 || got < 100 {
		t.Fatalf("after a retype to 200 qemu-img bench over iSCSI measured %.0f IOPS, want at most 220", got)
	}

	// And a retype to a type without QoS lifts the limit.
	if _, err := c.Retype(ctx, &driverv1.RetypeRequest{Backend: "demo", VolumeId: "qos-500", NewType: qosType(0)}); err != nil {
		t.Fatal(err)
	}
	lifted := fioIOPS(t, fio, uri)
	t.Logf("fio over NBD with the limit lifted: %.0f IOPS", lifted)
	if lifted < 2*500 {
		t.Fatalf("with the limit lifted fio measured %.0f IOPS, want far above 500", lifted)
	}

	// A bad spec is refused, naming the key, and creates nothing.
	bad := qosType(0)
	bad.QosSpecs = map[string]string{"total_iops_sec": "many"}
	_, err = c.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "demo", VolumeId: "qos-bad", SizeGb: 1, VolumeType: bad})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "qos_specs.total_iops_sec") {
		t.Fatalf("CreateVolume with total_iops_sec=many: %v, want InvalidArgument naming qos_specs.total_iops_sec", err)
	}
	if _, err := a.GetVolume(ctx, "volume-qos-bad-cinder"); err == nil {
		t.Fatal("a create refused for its QoS specs left a volume on the array")
	}
}
