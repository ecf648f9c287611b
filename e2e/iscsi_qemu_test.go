package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/internal/testenv"
)

// needQemuISCSI finds qemu-img and qemu-io and qemu's iSCSI driver.
func needQemuISCSI(t *testing.T) (qemuImg, qemuIO string) {
	t.Helper()
	qemuImg, qemuIO = tool(t, "qemu-img"), tool(t, "qemu-io")
	if _, err := os.Stat(qemuBlockISCSI); err != nil {
		testenv.Skip(t, "qemu's iSCSI block driver %s is missing; `make deps` installs qemu-block-extra", qemuBlockISCSI)
	}
	return qemuImg, qemuIO
}

// nbdExport makes an NBD export of volume and returns its URI.
func nbdExport(t *testing.T, a array.Array, volume string) string {
	t.Helper()
	e, err := a.CreateExport(t.Context(), array.ExportSpec{Volume: volume, AttachmentID: "e2e-" + volume})
	if err != nil {
		t.Fatalf("CreateExport %s: %v", volume, err)
	}
	return fmt.Sprintf("nbd://%s:%d/%s", e.Host, e.Port, e.Name)
}

// reMapLine is one line of nbdinfo --map: offset, length, type, description.
var reMapLine = regexp.MustCompile(`(?m)^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\S+)`)

// holeCovers reports whether nbdinfo --map lists [off, off+n) as a hole.
func holeCovers(mapOut string, off, n int64) bool {
	for _, m := range reMapLine.FindAllStringSubmatch(mapOut, -1) {
		o, _ := strconv.ParseInt(m[1], 10, 64)
		l, _ := strconv.ParseInt(m[2], 10, 64)
		if strings.Contains(m[4], "hole") && o <= off && off+n <= o+l {
			return true
		}
	}
	return false
}

// TestISCSIQemuConvertCompareNBD copies 256 MiB of random data into a LUN
// with qemu-img convert over iscsi:// with the host's CHAP credentials,
// compares it back over iSCSI, reads the same volume over NBD and finds the
// same bytes, then discards a range with qemu-io over iSCSI, which NBD's
// block status then reports as a hole.
func TestISCSIQemuConvertCompareNBD(t *testing.T) {
	qemuImg, qemuIO := needQemuISCSI(t)
	nbdcopy, nbdinfo := tool(t, "nbdcopy"), tool(t, "nbdinfo")
	const size = 256 << 20
	d := startISCSIDaemon(t, 2)
	a := d.Array("a")
	lun := hostWithLUN(t, a, "qemu-host", []string{"iqn.2026-12.io.volrep.e2e:qemu"}, "qv", "", size)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	randomFile(t, src, size, 7)

	obj, target := lun.QemuTarget()
	start := time.Now()
	run(t, false, qemuImg, "convert", "-n", "-f", "raw", "-W", "-m", "16", "--object", obj, "--target-image-opts", src, target)
	t.Logf("qemu-img convert of %d MiB over iSCSI took %v", size>>20, time.Since(start))
	out, _ := run(t, false, qemuImg, append([]string{"compare", "--object", obj, "--image-opts", "driver=raw,file.driver=file,file.filename=" + src}, lun.QemuArgs()[2:]...)...)
	if !strings.Contains(out, "Images are identical") {
		t.Fatalf("qemu-img compare over iSCSI: %s", out)
	}
	uri := nbdExport(t, a, "qv")
	back := filepath.Join(dir, "back.raw")
	run(t, false, nbdcopy, uri, back)
	if sha256Range(t, back, 0, size) != sha256Range(t, src, 0, size) {
		t.Fatal("the bytes read over NBD differ from what qemu-img wrote over iSCSI")
	}

	const off, n = 64 << 20, 8 << 20
	out, _ = run(t, false, qemuIO, append(lun.QemuArgs(), "-c", fmt.Sprintf("discard %d %d", off, n))...)
	if !strings.Contains(out, fmt.Sprintf("discard %d/%d bytes at offset %d", n, n, off)) {
		t.Fatalf("qemu-io discard over iSCSI:\n%s", out)
	}
	mapOut, _ := run(t, false, nbdinfo, "--map", uri)
	if !holeCovers(mapOut, off, n) {
		t.Fatalf("nbdinfo --map does not show the range discarded over iSCSI [%d, %d) as a hole:\n%s", off, off+n, mapOut)
	}
	if holeCovers(mapOut, 0, 1<<20) {
		t.Fatalf("nbdinfo --map shows written data as a hole:\n%s", mapOut)
	}
}

// TestISCSIReadOnlySnapshotLUN connects a snapshot: writes over iSCSI get
// DATA PROTECT / WRITE PROTECTED, qemu refuses to open it read-write,
// libiscsi's ReadOnly suite (which skips on a writable LUN) does not fail,
// and
// the snapshot still reads its data.
func TestISCSIReadOnlySnapshotLUN(t *testing.T) {
	_, qemuIO := needQemuISCSI(t)
	d := startISCSIDaemon(t, 1)
	a := d.Array("a")
	const ini = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
	rw := hostWithLUN(t, a, "ro-host", []string{ini, ini + "-2"}, "rov", "", 16<<20)
	run(t, false, qemuIO, append(rw.QemuArgs(), "-c", "write -P 0x5a 0 1M")...)
	if _, err := a.CreateSnapshot(t.Context(), "rov", "s1", nil); err != nil {
		t.Fatal(err)
	}
	ro := hostWithLUN(t, a, "ro-host", []string{ini, ini + "-2"}, "rov", "s1", 0)
	if !ro.ReadOnly || ro.LUN == rw.LUN {
		t.Fatalf("the snapshot's connection is not a read-only LUN of its own: %+v", ro.Connection)
	}

	c := dialISCSI(t, ro.Portals[0])
	c.mustLogin(ro, false)
	r := c.mustDo(uint64(ro.LUN), cdbWrite10(0, 1), 512, bytes.Repeat([]byte{1}, 512))
	if r.status != 2 || r.key != 0x7 || r.asc != 0x2700 {
		t.Fatalf("WRITE(10) to the snapshot's LUN: %v, want CHECK CONDITION DATA PROTECT/WRITE PROTECTED (7/2700)", r)
	}
	if r := c.mustDo(uint64(ro.LUN), cdbRead10(0, 8), 4096, nil); r.status != 0 || !bytes.Equal(r.data, bytes.Repeat([]byte{0x5a}, 4096)) {
		t.Fatalf("READ(10) of the snapshot's LUN: %v", r)
	}
	out, err := run(t, true, qemuIO, append(ro.QemuArgs(), "-c", "write -P 1 0 4k")...)
	if err == nil && !strings.Contains(strings.ToLower(out), "write protected") && !strings.Contains(out, "Permission denied") {
		t.Fatalf("qemu-io wrote to a read-only LUN:\n%s", out)
	}
	res := runSuite(t, "LINUX.ReadOnly", ini, ro.URL())
	// ReadOnlySBC checks the write commands before it reaches ORWRITE,
	// which volrep does not implement, and skips there.
	if res.Ran == 0 || res.Failed != 0 {
		t.Fatalf("libiscsi's ReadOnly suite on the snapshot's LUN: %d ran, %d failed %v, skipped %v", res.Ran, res.Failed, res.Failures, res.Skipped)
	}
	t.Logf("LINUX.ReadOnly on the snapshot's LUN: %d/%d passed, skipped %v", res.Passed, res.Ran, res.Skipped)
}
