package e2e

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volrep/volrep/array/export"
	"github.com/volrep/volrep/internal/testenv"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30
)

// TestNBDQemuImgRoundTrip writes a 256 MiB random image into a 1 GiB
// volume with qemu-img convert, reads the whole volume back with nbdcopy,
// and checks the image came back byte for byte, the rest reads as zeros,
// and the block status map shows the unwritten tail as a hole.
func TestNBDQemuImgRoundTrip(t *testing.T) {
	qemuImg, nbdcopy := tool(t, "qemu-img"), tool(t, "nbdcopy")
	tool(t, "nbdinfo")
	d := NewDaemon(t)
	d.Start()
	c := driverClient(t, d)
	createVolume(t, c, "img", 1)
	a := attach(t, c, "img", "host-1", "")

	dir := t.TempDir()
	src, out := filepath.Join(dir, "src.raw"), filepath.Join(dir, "out.raw")
	const size = 256 << 20
	randomFile(t, src, size, 1)
	run(t, false, qemuImg, "convert", "-n", "-f", "raw", "-O", "raw", src, a.URI())
	run(t, false, nbdcopy, a.URI(), out)

	if got := fileSize(t, out); got != gib {
		t.Fatalf("nbdcopy read %d bytes, want the volume's %d", got, gib)
	}
	if want, got := sha256Range(t, src, 0, size), sha256Range(t, out, 0, size); got != want {
		t.Fatalf("sha256 of the first 256 MiB read back = %s, written %s", got, want)
	}
	assertZeros(t, out, size)
	assertMap(t, nbdMap(t, a.URI()), []mapExtent{
		{0, size, 0, "data"},
		{size, gib - size, 3, "hole,zero"},
	})
}

// ioWrite is one qemu-io write (or, with zero, write -z) in a test.
type ioWrite struct {
	pat      byte
	off, len int64
	zero     bool
}

// TestNBDQemuIOUnaligned writes with qemu-io at unaligned offsets and
// lengths, several straddling 4 KiB block boundaries and overlapping each
// other, then verifies every byte of the first 2 MiB with qemu-io read -P
// patterns (in a second process) and with a raw NBD client against a model.
func TestNBDQemuIOUnaligned(t *testing.T) {
	qemuIO := tool(t, "qemu-io")
	d := NewDaemon(t)
	d.Start()
	c := driverClient(t, d)
	createVolume(t, c, "unaligned", 1)
	a := attach(t, c, "unaligned", "host-1", "")

	writes := []ioWrite{
		{0x11, 1000, 5000, false},         // crosses 4096
		{0x22, 4090, 12, false},           // straddles 4096, inside the first write
		{0x33, 8191, 4098, false},         // crosses 8192 and 12288
		{0x44, 12287, 2, false},           // straddles 12288, overlaps the previous
		{0x55, mib - 7, 14, false},        // straddles 1 MiB
		{0x66, 3*4096 + 100, 300, false},  // inside one block, next to others
		{0x77, 64*kib + 511, 8195, false}, // three blocks, both ends unaligned
		{0x00, 4000, 200, true},           // write zeroes across 4096
		{0x00, 64*kib + 4000, 5000, true}, // write zeroes over a whole block and two partial ones
		{0x88, 2*mib - 4097, 4097, false}, // up to the end of the checked range
	}
	const span = 2 << 20
	model := make([]byte, span)
	var args []string
	for _, w := range writes {
		if w.zero {
			args = append(args, "-c", fmt.Sprintf("write -z %d %d", w.off, w.len))
		} else {
			args = append(args, "-c", fmt.Sprintf("write -P 0x%02x %d %d", w.pat, w.off, w.len))
		}
		copy(model[w.off:w.off+w.len], pattern(w.pat, int(w.len)))
	}
	out, _ := run(t, false, qemuIO, append([]string{"-f", "raw", a.URI()}, append(args, "-c", "flush")...)...)
	if n := strings.Count(out, "wrote "); n != len(writes) {
		t.Fatalf("qemu-io reported %d writes, want %d:\n%s", n, len(writes), out)
	}

	// Read back every run of equal bytes of the model with read -P, in a
	// new process so nothing comes from qemu's side.
	args = args[:0]
	runs := 0
	for i := 0; i < span; {
		j := i
		for j < span && model[j] == model[i] {
			j++
		}
		args = append(args, "-c", fmt.Sprintf("read -P 0x%02x %d %d", model[i], i, j-i))
		runs++
		i = j
	}
	out, err := run(t, true, qemuIO, append([]string{"-r", "-f", "raw", a.URI()}, args...)...)
	if err != nil || strings.Contains(out, "verification failed") || strings.Count(out, "read ") != runs {
		t.Fatalf("read-back of %d runs: %v\n%s", runs, err, out)
	}
	// The check can fail: a wrong pattern is reported.
	out, err = run(t, true, qemuIO, "-r", "-f", "raw", a.URI(), "-c", "read -P 0x22 4089 3")
	if err == nil || !strings.Contains(out, "Pattern verification failed") {
		t.Fatalf("a wrong pattern was not reported: %v\n%s", err, out)
	}

	// And byte for byte through an independent client.
	nc, err := dialNBD(a.Addr(), a["export_name"])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	got := make([]byte, span)
	for off := 0; off < span; off += 1 << 20 {
		if err := nc.ReadAt(got[off:off+1<<20], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if i := firstDiff(got, model); i >= 0 {
		t.Fatalf("byte %d reads %#x, want %#x", i, got[i], model[i])
	}
}

// TestNBDMapHoles checks `nbdinfo --map` against a sparse layout written
// with qemu-io: written ranges are data at 4 KiB granularity, everything
// else (including a range written and then zeroed with unmap) is a hole.
func TestNBDMapHoles(t *testing.T) {
	qemuIO := tool(t, "qemu-io")
	tool(t, "nbdinfo")
	d := NewDaemon(t)
	d.Start()
	c := driverClient(t, d)
	createVolume(t, c, "sparse", 1)
	a := attach(t, c, "sparse", "host-1", "")
	// A fresh volume is one hole.
	assertMap(t, nbdMap(t, a.URI()), []mapExtent{{0, gib, 3, "hole,zero"}})

	run(t, false, qemuIO, "-f", "raw", a.URI(),
		"-c", "write -P 1 0 1M",
		"-c", "write -P 2 512M 64K",
		"-c", fmt.Sprintf("write -P 3 %d 10", 700*mib+100), // one 4 KiB block
		"-c", fmt.Sprintf("write -P 4 %d 4096", gib-4096), // the last block
		"-c", "write -P 5 2M 1M",
		"-c", "write -z -u 2M 1M", // unmapped again
		"-c", "flush")
	assertMap(t, nbdMap(t, a.URI()), []mapExtent{
		{0, mib, 0, "data"},
		{mib, 511 * mib, 3, "hole,zero"},
		{512 * mib, 64 * kib, 0, "data"},
		{512*mib + 64*kib, 700*mib - 512*mib - 64*kib, 3, "hole,zero"},
		{700 * mib, 4 * kib, 0, "data"},
		{700*mib + 4*kib, gib - 4*kib - 700*mib - 4*kib, 3, "hole,zero"},
		{gib - 4*kib, 4 * kib, 0, "data"},
	})
}

// TestNBDSnapshotExportReadOnly attaches a snapshot: its export is
// read-only (a raw WRITE gets EPERM and changes nothing) and reads give the
// snapshot's content, not the volume's newer content.
func TestNBDSnapshotExportReadOnly(t *testing.T) {
	qemuIO := tool(t, "qemu-io")
	d := NewDaemon(t)
	d.Start()
	c := driverClient(t, d)
	createVolume(t, c, "snapvol", 1)
	vol := attach(t, c, "snapvol", "host-1", "")
	run(t, false, qemuIO, "-f", "raw", vol.URI(), "-c", "write -P 0xaa 0 1M", "-c", "write -P 0xab 5000 3", "-c", "flush")
	if _, err := c.CreateSnapshot(t.Context(), &driverv1.CreateSnapshotRequest{Backend: "demo", VolumeId: "snapvol", SnapshotId: "s1"}); err != nil {
		t.Fatal(err)
	}
	run(t, false, qemuIO, "-f", "raw", vol.URI(), "-c", "write -P 0xbb 0 1M", "-c", "flush")

	snap := attach(t, c, "snapvol", "host-1", "s1")
	if snap["export_name"] == vol["export_name"] || snap["snapshot_id"] != "s1" {
		t.Fatalf("snapshot attachment = %v, volume attachment = %v", snap, vol)
	}
	// Each export shows its own content.
	out, _ := run(t, false, qemuIO, "-r", "-f", "raw", snap.URI(),
		"-c", "read -P 0xaa 0 5000", "-c", "read -P 0xab 5000 3", "-c", "read -P 0xaa 5003 1043453", "-c", "read -P 0 1M 1M")
	if strings.Contains(out, "failed") {
		t.Fatalf("snapshot content:\n%s", out)
	}
	run(t, false, qemuIO, "-r", "-f", "raw", vol.URI(), "-c", "read -P 0xbb 0 1M")
	// qemu refuses to open it for writing: the server says read-only.
	if out, err := run(t, true, qemuIO, "-f", "raw", snap.URI(), "-c", "write -P 0xcc 0 4096"); err == nil {
		t.Fatalf("qemu-io opened the snapshot export for writing:\n%s", out)
	}

	// A client that writes anyway is refused by the server.
	nc, err := dialNBD(snap.Addr(), snap["export_name"])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.Flags&nbdFlagReadOnly == 0 {
		t.Errorf("transmission flags %#x lack NBD_FLAG_READ_ONLY", nc.Flags)
	}
	if err := nc.WriteAt(pattern(0xcc, 4096), 0); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("WRITE to the snapshot export: %v, want EPERM", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("FLUSH on the snapshot export: %v", err)
	}
	got := make([]byte, 8192)
	if err := nc.ReadAt(got, 0); err != nil {
		t.Fatalf("READ after the refused WRITE: %v", err)
	}
	want := pattern(0xaa, 8192)
	copy(want[5000:], []byte{0xab, 0xab, 0xab})
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("snapshot byte %d = %#x after a refused write, want %#x", i, got[i], want[i])
	}
}

// TestNBDAuthorization checks that only authorised export names connect,
// that refusals are logged without the name, and that TerminateConnection
// revokes a name for new connections and for connections already open,
// host by host or all at once.
func TestNBDAuthorization(t *testing.T) {
	nbdinfo, qemuIO := tool(t, "nbdinfo"), tool(t, "qemu-io")
	d := NewDaemon(t)
	d.Start()
	c := driverClient(t, d)
	createVolume(t, c, "authvol", 1)
	a1 := attach(t, c, "authvol", "host-1", "")
	a2 := attach(t, c, "authvol", "host-2", "")
	if a1["export_name"] == a2["export_name"] {
		t.Fatal("two hosts got the same export name")
	}
	if again := attach(t, c, "authvol", "host-1", ""); again["export_name"] != a1["export_name"] {
		t.Fatal("attaching the same host again changed the export name")
	}

	// A made-up name is refused, and the refusal is logged without it.
	madeUp := "madeupexportname0123456789abcdef"
	if out, err := run(t, true, nbdinfo, "nbd://"+a1.Addr()+"/"+madeUp); err == nil {
		t.Fatalf("nbdinfo connected with a made-up export name:\n%s", out)
	}
	if _, err := dialNBD(a1.Addr(), madeUp); !errors.Is(err, errNBDRefused) {
		t.Fatalf("raw client with a made-up name: %v, want a refusal", err)
	}
	// An empty name (the default export) is no way in either.
	if _, err := dialNBD(a1.Addr(), ""); !errors.Is(err, errNBDRefused) {
		t.Fatalf("raw client with the empty export name: %v, want a refusal", err)
	}
	waitFor(t, func() bool { return strings.Contains(d.Logs(), "export refused") })
	if strings.Contains(d.Logs(), madeUp) {
		t.Fatal("the log shows a refused export name in full")
	}
	if !strings.Contains(d.Logs(), export.Redact(madeUp)) {
		t.Fatalf("the refusal does not show the redacted name %q:\n%s", export.Redact(madeUp), d.Logs())
	}

	// Long-lived connections to host-1's export: a raw client and an
	// interactive qemu-io.
	raw, err := dialNBD(a1.Addr(), a1["export_name"])
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.WriteAt(pattern(0x01, 4096), 0); err != nil {
		t.Fatal(err)
	}
	qio := startInteractive(t, qemuIO, "-f", "raw", a1.URI())
	qio.Send("write -P 0x05 8192 4096")
	qio.WaitFor("wrote 4096/4096 bytes at offset 8192")
	other, err := dialNBD(a2.Addr(), a2["export_name"])
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	detach(t, c, "authvol", "host-1", "")

	// New connections with host-1's name are refused ...
	if out, err := run(t, true, nbdinfo, a1.URI()); err == nil {
		t.Fatalf("nbdinfo connected with a revoked export name:\n%s", out)
	}
	if _, err := dialNBD(a1.Addr(), a1["export_name"]); !errors.Is(err, errNBDRefused) {
		t.Fatalf("raw client with a revoked name: %v, want a refusal", err)
	}
	// ... and open ones fail their next request.
	if err := raw.WriteAt(pattern(0x02, 4096), 0); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("WRITE on a connection opened before the revocation: %v, want EPERM", err)
	}
	if err := raw.ReadAt(make([]byte, 4096), 0); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("READ on a connection opened before the revocation: %v, want EPERM", err)
	}
	qio.Send("write -P 0x06 8192 4096")
	qio.WaitFor("write failed: Operation not permitted")
	qio.Close()

	// host-2 keeps its attachment, and the refused writes changed nothing.
	if _, err := run(t, false, nbdinfo, a2.URI()); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 12288)
	if err := other.ReadAt(got, 0); err != nil {
		t.Fatalf("host-2's open connection after revoking host-1: %v", err)
	}
	want := append(append(pattern(0x01, 4096), make([]byte, 4096)...), pattern(0x05, 4096)...)
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("byte %d = %#x, want %#x", i, got[i], want[i])
	}

	// The CLI attaches a third host, then detaches every host.
	out, code := volrep(t, d, "-o", "json", "volume", "attach", "authvol", "--host", "host-3")
	if code != 0 || !strings.Contains(out, "nbd://") {
		t.Fatalf("volrep volume attach (exit %d):\n%s", code, out)
	}
	a3 := attach(t, c, "authvol", "host-3", "") // the same attachment again
	if !strings.Contains(out, a3.URI()) {
		t.Fatalf("the CLI printed a different URI than InitializeConnection returns (%s):\n%s", a3.URI(), out)
	}
	run(t, false, nbdinfo, a3.URI())
	if out, code := volrep(t, d, "volume", "detach", "authvol"); code != 0 || !strings.Contains(out, "from every host") {
		t.Fatalf("volrep volume detach (exit %d):\n%s", code, out)
	}
	for _, a := range []attachment{a2, a3} {
		if out, err := run(t, true, nbdinfo, a.URI()); err == nil {
			t.Fatalf("export still open after detaching every host:\n%s", out)
		}
	}
	if err := other.WriteAt(pattern(0x03, 512), 0); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("host-2's open connection after detaching every host: %v, want EPERM", err)
	}

	// No export name ever reaches the log in full.
	logs := d.Logs()
	for _, a := range []attachment{a1, a2, a3} {
		if strings.Contains(logs, a["export_name"]) {
			t.Fatalf("the log shows export name %s in full", a["export_name"])
		}
	}
	if n := strings.Count(logs, "export refused"); n < 6 {
		t.Fatalf("%d refusals logged, want at least 6", n)
	}
}

// TestNBDMultiConn copies 256 MiB in and out with nbdcopy over four
// connections at once and checks the checksums.
func TestNBDMultiConn(t *testing.T) {
	nbdcopy := tool(t, "nbdcopy")
	d := NewDaemon(t)
	d.Start()
	c := driverClient(t, d)
	createVolume(t, c, "multi", 1)
	a := attach(t, c, "multi", "host-1", "")
	dir := t.TempDir()
	src, out := filepath.Join(dir, "src.raw"), filepath.Join(dir, "out.raw")
	const size = 256 << 20
	randomFile(t, src, size, 2)

	before := strings.Count(d.Logs(), "nbd: export attached")
	run(t, false, nbdcopy, "--connections=4", "--threads=4", "--flush", src, a.URI())
	run(t, false, nbdcopy, "--connections=4", "--threads=4", a.URI(), out)
	if n := strings.Count(d.Logs(), "nbd: export attached") - before; n < 8 {
		t.Fatalf("%d connections attached for two 4-connection copies, want at least 8", n)
	}
	if want, got := sha256Range(t, src, 0, size), sha256Range(t, out, 0, size); got != want {
		t.Fatalf("sha256 read back over 4 connections = %s, written %s", got, want)
	}
	assertZeros(t, out, size)
}

// TestNBDCrashAfterFlush writes with qemu-io, flushes, SIGKILLs volrepd,
// restarts it, and reads everything back through the same URI.
func TestNBDCrashAfterFlush(t *testing.T) {
	qemuIO, nbdcopy := tool(t, "qemu-io"), tool(t, "nbdcopy")
	d := NewDaemon(t)
	d.Start()
	c := driverClient(t, d)
	createVolume(t, c, "crash", 1)
	a := attach(t, c, "crash", "host-1", "")
	run(t, false, qemuIO, "-f", "raw", a.URI(),
		"-c", "write -P 0x5a 0 64M",
		"-c", fmt.Sprintf("write -P 0xa5 %d 5000", 64*mib+1000),
		"-c", fmt.Sprintf("write -P 0x3c %d 3", 300*mib-1),
		"-c", "flush")
	d.Kill()
	d.Start()

	if again := attach(t, c, "crash", "host-1", ""); again.URI() != a.URI() {
		t.Fatalf("the attachment changed across the restart: %s, was %s", again.URI(), a.URI())
	}
	dir := t.TempDir()
	out, want := filepath.Join(dir, "out.raw"), filepath.Join(dir, "want.raw")
	run(t, false, nbdcopy, a.URI(), out)
	model := make([]byte, 301*mib)
	copy(model, pattern(0x5a, int(64*mib)))
	copy(model[64*mib+1000:], pattern(0xa5, 5000))
	copy(model[300*mib-1:], pattern(0x3c, 3))
	if err := os.WriteFile(want, model, 0o600); err != nil {
		t.Fatal(err)
	}
	if sha256Range(t, out, 0, int64(len(model))) != sha256Range(t, want, 0, int64(len(model))) {
		f, _ := os.Open(out)
		got := make([]byte, len(model))
		io.ReadFull(f, got)
		f.Close()
		i := firstDiff(got, model)
		t.Fatalf("flushed data lost after SIGKILL: byte %d reads %#x, want %#x", i, got[i], model[i])
	}
	assertZeros(t, out, int64(len(model)))
}

// assertMap compares nbdinfo --map output, with adjacent extents of the
// same type merged, to want.
func assertMap(t *testing.T, got, want []mapExtent) {
	t.Helper()
	var merged []mapExtent
	for _, e := range got {
		if n := len(merged); n > 0 && merged[n-1].Type == e.Type && merged[n-1].Off+merged[n-1].Len == e.Off {
			merged[n-1].Len += e.Len
			continue
		}
		merged = append(merged, e)
	}
	if fmt.Sprint(merged) != fmt.Sprint(want) {
		t.Fatalf("nbdinfo --map:\n got %v\nwant %v", merged, want)
	}
}

// firstDiff returns the first index where a and b differ, or -1.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// interactive is a client process driven through its stdin.
type interactive struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *testenv.Buffer
	done  chan struct{}
}

// startInteractive starts name with a pipe on stdin; it is killed at
// cleanup if still running.
func startInteractive(t *testing.T, name string, args ...string) *interactive {
	t.Helper()
	p := &interactive{t: t, cmd: exec.Command(name, args...), out: &testenv.Buffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *interactive) Send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("%s: %v\n%s", line, err, p.out)
	}
}

// WaitFor waits until the output contains s.
func (p *interactive) WaitFor(s string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.out.String(), s) {
		if time.Now().After(deadline) {
			p.t.Fatalf("waiting for %q in the output of %s:\n%s", s, p.cmd.Path, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close ends the session (quit) and waits for the process.
func (p *interactive) Close() {
	p.Send("quit")
	p.stdin.Close()
	<-p.done
}
