package nbd

// Tests with real NBD clients (qemu-img, qemu-io, nbdcopy, nbdinfo, fio),
// run as subprocesses against a loopback listener. A missing binary skips
// its test with a loud message; install libnbd-bin, qemu-utils and fio to
// run them all.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/volrep/volrep/internal/testenv"
)

func requireTool(t *testing.T, name string) {
	t.Helper()
	testenv.Tool(t, name)
}

// runTool runs a client and returns its combined output.
func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = t.TempDir() // fio leaves verify state files in its working directory
	out, err := cmd.CombinedOutput()
	t.Logf("$ %s %s\n%s", name, strings.Join(args, " "), truncate(string(out), 4000))
	return string(out), err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "...(truncated)"
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runTool(t, name, args...)
	if err != nil {
		t.Fatalf("%s failed: %v\n%s", name, err, out)
	}
	return out
}

func fileSHA256(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func writeRandomFile(t *testing.T, size int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.img")
	if err := os.WriteFile(path, randBytes(t, size), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestQemuImgConvertThenNbdcopy(t *testing.T) {
	requireTool(t, "qemu-img")
	requireTool(t, "nbdcopy")
	const size = 64 << 20
	dev := newFileDevice(t, size)
	ex := newTestExports()
	ex.add("vol", dev, true)
	ts := startServer(t, ex, Options{})

	src := writeRandomFile(t, size)
	mustRun(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, ts.uri("vol"))
	want := fileSHA256(t, src)
	if got := fileSHA256(t, dev.path()); got != want {
		t.Fatalf("device content sha256 %x, want %x", got, want)
	}
	dst := filepath.Join(t.TempDir(), "dst.img")
	mustRun(t, "nbdcopy", ts.uri("vol"), dst)
	if got := fileSHA256(t, dst); got != want {
		t.Fatalf("nbdcopy read back sha256 %x, want %x", got, want)
	}
	s := ts.srv.Stats()
	if s.BytesWritten < size || s.BytesRead < size {
		t.Fatalf("stats: written %d read %d, want at least %d each", s.BytesWritten, s.BytesRead, size)
	}
}

func TestQemuIOUnaligned(t *testing.T) {
	requireTool(t, "qemu-io")
	ts, dev, _ := setup(t)
	cmds := []struct{ cmd, want string }{
		{"write -P 0xab 1000 3000", "wrote 3000/3000 bytes at offset 1000"},
		{"read -P 0xab 1000 3000", "read 3000/3000 bytes at offset 1000"},
		{"write -P 0xcd 4095 2", "wrote 2/2 bytes at offset 4095"},
		{"read -P 0xab 1000 3000", "read 3000/3000 bytes at offset 1000"},
		{"read -P 0 4000 95", "read 95/95 bytes at offset 4000"},
		{"read -P 0xcd 4095 2", "read 2/2 bytes at offset 4095"},
		{"write -f -P 0x11 123457 65539", "wrote 65539/65539 bytes at offset 123457"}, // FUA
		{"read -P 0x11 123457 65539", "read 65539/65539 bytes at offset 123457"},
		{"write -z 123460 1000", "wrote 1000/1000 bytes at offset 123460"}, // WRITE_ZEROES
		{"read -P 0 123460 1000", "read 1000/1000 bytes at offset 123460"},
		{"read -P 0x11 124460 64536", "read 64536/64536 bytes at offset 124460"},
		{"write -P 0x77 12000000 2097153", "wrote 2097153/2097153 bytes at offset 12000000"},
		{"discard 12582912 1048576", "discard 1048576/1048576 bytes at offset 12582912"}, // TRIM
		{"read -P 0 12582912 1048576", "read 1048576/1048576 bytes at offset 12582912"},
		{"read -P 0x77 12000000 582912", "read 582912/582912 bytes at offset 12000000"},
		{"read -P 0x77 13631488 465665", "read 465665/465665 bytes at offset 13631488"},
		{"aio_write -P 0x22 2000001 5000", ""},
		{"aio_flush", ""},
		{"flush", ""},
		{"read -P 0x22 2000001 5000", "read 5000/5000 bytes at offset 2000001"},
		{"read -P 0 16777000 216", "read 216/216 bytes at offset 16777000"}, // tail of the export
	}
	args := []string{"-f", "raw", ts.uri("disk")}
	for _, c := range cmds {
		args = append(args, "-c", c.cmd)
	}
	out := mustRun(t, "qemu-io", args...)
	for _, c := range cmds {
		if c.want != "" && !strings.Contains(out, c.want+"\n") {
			t.Errorf("qemu-io %q: output lacks %q", c.cmd, c.want)
		}
	}
	for _, bad := range []string{"failed", "error", "Error"} {
		if strings.Contains(out, bad) {
			t.Errorf("qemu-io output contains %q", bad)
		}
	}
	// Cross-check on the device file directly.
	b := make([]byte, 3000)
	if _, err := dev.f.ReadAt(b, 1000); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:3000-1], bytes.Repeat([]byte{0xab}, 2999)) {
		t.Fatal("device file lacks the 0xab pattern at 1000")
	}
	if dev.fuaWrites.Load() == 0 || dev.zeroes.Load() == 0 || dev.trims.Load() == 0 || dev.flushes.Load() == 0 {
		t.Fatalf("device saw fua writes %d zeroes %d trims %d flushes %d; qemu-io should have sent each",
			dev.fuaWrites.Load(), dev.zeroes.Load(), dev.trims.Load(), dev.flushes.Load())
	}
	// The check above can fail: a wrong pattern is reported by qemu-io.
	out, err := runTool(t, "qemu-io", "-f", "raw", ts.uri("disk"), "-c", "read -P 0xee 1000 3000")
	if err == nil || !strings.Contains(out, "Pattern verification failed") {
		t.Fatalf("qemu-io did not detect a wrong pattern (err %v)", err)
	}
}

var mapLine = regexp.MustCompile(`^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s*$`)

type mapExtent struct {
	off, length int64
	typ         int
	desc        string
}

func parseMap(t *testing.T, out string) []mapExtent {
	t.Helper()
	var ext []mapExtent
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		m := mapLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unexpected nbdinfo --map line %q", line)
		}
		off, _ := strconv.ParseInt(m[1], 10, 64)
		n, _ := strconv.ParseInt(m[2], 10, 64)
		typ, _ := strconv.Atoi(m[3])
		ext = append(ext, mapExtent{off, n, typ, m[4]})
	}
	return ext
}

func TestNbdinfoMap(t *testing.T) {
	requireTool(t, "nbdinfo")
	ts, _, _ := setup(t)
	c := connect(t, ts.addr, "disk", clientOpts{})
	if r := c.write(0, randBytes(t, 1<<20), 0); r.errno != 0 {
		t.Fatal(r.errno)
	}
	if err := c.disconnect(); err != nil {
		t.Fatal(err)
	}
	ext := parseMap(t, mustRun(t, "nbdinfo", "--map", ts.uri("disk")))
	want := []mapExtent{
		{0, 1 << 20, 0, "data"},
		{1 << 20, testSize - 1<<20, 3, "hole,zero"},
	}
	if fmt.Sprint(ext) != fmt.Sprint(want) {
		t.Fatalf("nbdinfo --map = %v, want %v", ext, want)
	}
}

func TestNbdinfoListAndRefusal(t *testing.T) {
	requireTool(t, "nbdinfo")
	dev := newFileDevice(t, testSize)
	ex := newTestExports()
	ex.add("vol-a", dev, true)
	ex.add("vol-b", dev, true)
	ex.add("unlisted-secret", dev, false)
	ts := startServer(t, ex, Options{})

	out := mustRun(t, "nbdinfo", "--list", "nbd://"+ts.addr)
	for _, name := range []string{"vol-a", "vol-b"} {
		if !strings.Contains(out, fmt.Sprintf("export=%q", name)) {
			t.Errorf("nbdinfo --list lacks %s", name)
		}
	}
	if strings.Contains(out, "unlisted-secret") {
		t.Error("nbdinfo --list reveals an export that List does not return")
	}
	// An unlisted but authorised name still works.
	if out := mustRun(t, "nbdinfo", "--size", ts.uri("unlisted-secret")); strings.TrimSpace(out) != strconv.Itoa(testSize) {
		t.Errorf("nbdinfo --size unlisted-secret = %q", out)
	}
	// An unknown name is refused and the refusal logged.
	out, err := runTool(t, "nbdinfo", ts.uri("no-such-volume"))
	if err == nil {
		t.Fatalf("nbdinfo of an unknown export succeeded:\n%s", out)
	}
	if !strings.Contains(out, "no-such-volume") {
		t.Errorf("nbdinfo error does not name the export: %s", out)
	}
	logs := ts.logs.String()
	ok := false
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "export refused") &&
			strings.Contains(line, "export=no-such-volume") && strings.Contains(line, "remote=127.0.0.1:") {
			ok = true
		}
	}
	if !ok {
		t.Fatalf("refusal not logged at warn with the remote address and export:\n%s", logs)
	}
	if ts.srv.Stats().Refusals == 0 {
		t.Fatal("refusal not counted")
	}
}

func TestReadOnlyExportQemuIO(t *testing.T) {
	requireTool(t, "qemu-io")
	dev := newFileDevice(t, testSize)
	if _, err := dev.f.WriteAt(bytes.Repeat([]byte{0x5a}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	dev.ro = true
	ex := newTestExports()
	ex.add("ro", dev, true)
	ts := startServer(t, ex, Options{})

	// qemu sees NBD_FLAG_READ_ONLY; with auto-read-only it opens the
	// image read-only and the write fails.
	out, err := runTool(t, "qemu-io", "--image-opts",
		"driver=raw,file.driver=nbd,file.host=127.0.0.1,file.port="+ts.port+",file.export=ro,auto-read-only=on",
		"-c", "write -P 0x55 0 4096")
	if err == nil && !strings.Contains(out, "failed") {
		t.Fatalf("write to a read-only export succeeded:\n%s", out)
	}
	if !strings.Contains(out, "read-only") && !strings.Contains(out, "Operation not permitted") &&
		!strings.Contains(out, "Permission denied") {
		t.Fatalf("write failure does not say why:\n%s", out)
	}
	// Reads work.
	out = mustRun(t, "qemu-io", "-r", "-f", "raw", ts.uri("ro"), "-c", "read -P 0x5a 0 4096", "-c", "read -P 0 4096 4096")
	if !strings.Contains(out, "read 4096/4096 bytes at offset 0\n") || !strings.Contains(out, "read 4096/4096 bytes at offset 4096\n") {
		t.Fatalf("reads from the read-only export failed:\n%s", out)
	}
	if dev.writes.Load() != 0 {
		t.Fatal("a write reached the read-only device")
	}
	// The server itself answers a write with EPERM (a client ignoring
	// the flag; see also TestReadOnlyRaw).
	c := connect(t, ts.addr, "ro", clientOpts{})
	if r := c.write(0, make([]byte, 512), 0); r.errno != errPerm {
		t.Fatalf("raw write: errno %d, want EPERM", r.errno)
	}
}

func TestNbdcopyMultiConn(t *testing.T) {
	requireTool(t, "nbdcopy")
	const size = 64 << 20
	dev := newFileDevice(t, size)
	ex := newTestExports()
	ex.add("vol", dev, true)
	ts := startServer(t, ex, Options{})

	// Garbage on the device, so that the source's holes must be zeroed.
	c := connect(t, ts.addr, "vol", clientOpts{})
	junk := bytes.Repeat([]byte{0xee}, 1<<20)
	for off := 0; off < size; off += len(junk) {
		if r := c.write(uint64(off), junk, 0); r.errno != 0 {
			t.Fatal(r.errno)
		}
	}
	if err := c.disconnect(); err != nil {
		t.Fatal(err)
	}

	// A sparse source: data in two ranges, holes elsewhere.
	src := filepath.Join(t.TempDir(), "src.img")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.WriteAt(randBytes(t, 16<<20), 0)
	f.WriteAt(randBytes(t, 8<<20+12345), 40<<20)
	f.Close()
	want := fileSHA256(t, src)

	before := ts.srv.Stats().ConnectionsAccepted
	mustRun(t, "nbdcopy", "--connections=4", "--threads=4", src, ts.uri("vol"))
	if got := fileSHA256(t, dev.path()); got != want {
		t.Fatal("device differs from the source after nbdcopy --connections=4")
	}
	if n := ts.srv.Stats().ConnectionsAccepted - before; n < 4 {
		t.Fatalf("nbdcopy used %d connections, want >= 4 (is CAN_MULTI_CONN advertised?)", n)
	}
	if dev.zeroes.Load() == 0 {
		t.Error("nbdcopy zeroed the holes without WRITE_ZEROES")
	}

	before = ts.srv.Stats().ConnectionsAccepted
	dst := filepath.Join(t.TempDir(), "dst.img")
	mustRun(t, "nbdcopy", "--connections=4", "--threads=4", ts.uri("vol"), dst)
	if got := fileSHA256(t, dst); got != want {
		t.Fatal("nbdcopy --connections=4 read back differs")
	}
	if n := ts.srv.Stats().ConnectionsAccepted - before; n < 4 {
		t.Fatalf("nbdcopy used %d connections for reading, want >= 4", n)
	}
	if s := ts.srv.Stats(); s.Errors != 0 {
		t.Fatalf("%d requests failed", s.Errors)
	}
}

func TestFioVerify(t *testing.T) {
	requireTool(t, "fio")
	out, _ := runTool(t, "fio", "--enghelp")
	if !regexp.MustCompile(`(?m)^\s*nbd\s*$`).MatchString(out) {
		testenv.Skip(t, "this fio has no nbd engine (it needs libnbd); install Debian's fio")
	}
	ts, dev, _ := setup(t)
	out = mustRun(t, "fio", "--name=verify", "--ioengine=nbd", "--uri="+ts.uri("disk"),
		"--rw=randwrite", "--bs=4k", "--size=8M", "--iodepth=32", "--verify=crc32c",
		"--do_verify=1", "--verify_fatal=1")
	if strings.Contains(out, "verify:") && strings.Contains(out, "bad") {
		t.Fatalf("fio verification failed:\n%s", out)
	}
	if !strings.Contains(out, "err= 0") {
		t.Fatalf("fio reported errors:\n%s", out)
	}
	if dev.writes.Load() < 2048 || dev.reads.Load() < 2048 {
		t.Fatalf("device saw %d writes %d reads, want >= 2048 each", dev.writes.Load(), dev.reads.Load())
	}
}

// TestUnixSocket serves over a Unix socket (writev works on any
// connection) and checks it with nbdinfo and nbdcopy.
func TestUnixSocket(t *testing.T) {
	requireTool(t, "nbdinfo")
	requireTool(t, "nbdcopy")
	dev := newFileDevice(t, testSize)
	ex := newTestExports()
	ex.add("disk", dev, true)
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ex, Options{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), lis) }()
	defer func() {
		srv.Close()
		<-done
	}()
	uri := "nbd+unix:///disk?socket=" + sock
	if out := mustRun(t, "nbdinfo", "--size", uri); strings.TrimSpace(out) != strconv.Itoa(testSize) {
		t.Fatalf("nbdinfo --size over a Unix socket = %q", out)
	}
	src := writeRandomFile(t, testSize)
	mustRun(t, "nbdcopy", src, uri)
	if fileSHA256(t, dev.path()) != fileSHA256(t, src) {
		t.Fatal("nbdcopy over a Unix socket: device differs from source")
	}
}
