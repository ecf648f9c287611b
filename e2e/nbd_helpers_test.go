package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/volrep/volrep/server"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// driverClient returns a DriverService client for d, closed at cleanup.
func driverClient(t *testing.T, d *Daemon) driverv1.DriverServiceClient {
	t.Helper()
	cc, err := server.Dial(d.DriverAddr, d.DriverToken)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return driverv1.NewDriverServiceClient(cc)
}

// createVolume creates a volume of gb GiB on the demo backend.
func createVolume(t *testing.T, c driverv1.DriverServiceClient, id string, gb int64) {
	t.Helper()
	if _, err := c.CreateVolume(t.Context(), &driverv1.CreateVolumeRequest{Backend: "demo", VolumeId: id, SizeGb: gb}); err != nil {
		t.Fatalf("CreateVolume %s: %v", id, err)
	}
}

// attachment is the data of an NBD connection_info.
type attachment map[string]string

func (a attachment) URI() string { return a["uri"] }

// Addr is host:port of the NBD server.
func (a attachment) Addr() string { return net.JoinHostPort(a["host"], a["port"]) }

// attach calls InitializeConnection for host (of a snapshot when snap is
// set) and checks the shape of the answer.
func attach(t *testing.T, c driverv1.DriverServiceClient, volume, host, snap string) attachment {
	t.Helper()
	resp, err := c.InitializeConnection(t.Context(), &driverv1.InitializeConnectionRequest{
		Backend: "demo", VolumeId: volume, Connector: &driverv1.Connector{Host: host}, SnapshotId: snap,
	})
	if err != nil {
		t.Fatalf("InitializeConnection %s (snapshot %q) for %s: %v", volume, snap, host, err)
	}
	ci := resp.GetConnectionInfo()
	a := attachment(ci.GetData())
	if ci.GetDriverVolumeType() != "nbd" || a["export_name"] == "" ||
		a.URI() != "nbd://"+a.Addr()+"/"+a["export_name"] {
		t.Fatalf("connection info = %v", ci)
	}
	if want := strconv.FormatBool(snap != ""); a["read_only"] != want {
		t.Fatalf("read_only = %q, want %s (snapshot %q)", a["read_only"], want, snap)
	}
	return a
}

// detach calls TerminateConnection; an empty host revokes every attachment.
func detach(t *testing.T, c driverv1.DriverServiceClient, volume, host, snap string) {
	t.Helper()
	req := &driverv1.TerminateConnectionRequest{Backend: "demo", VolumeId: volume, SnapshotId: snap}
	if host != "" {
		req.Connector = &driverv1.Connector{Host: host}
	}
	if _, err := c.TerminateConnection(t.Context(), req); err != nil {
		t.Fatalf("TerminateConnection %s for %q: %v", volume, host, err)
	}
}

// randomFile writes size pseudo-random bytes (from seed) to path.
func randomFile(t *testing.T, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 1})
	buf := make([]byte, 1<<20)
	w := bufio.NewWriterSize(f, 4<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		r.Read(buf)
		w.Write(buf[:min(left, int64(len(buf)))])
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// sha256Range hashes length bytes of path from off.
func sha256Range(t *testing.T, path string, off, length int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(f, off, length))
	if err != nil || n != length {
		t.Fatalf("hash %s [%d, +%d): read %d bytes: %v", path, off, length, n, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// assertZeros fails unless path holds only zero bytes from off to its end.
func assertZeros(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	at := off
	for {
		n, err := f.ReadAt(buf, at)
		for j, b := range buf[:n] {
			if b != 0 {
				t.Fatalf("%s: byte %#x at offset %d; want zeros from %d to the end", path, b, at+int64(j), off)
			}
		}
		at += int64(n)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// fileSize returns the size of path.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// mapExtent is one line of `nbdinfo --map`.
type mapExtent struct {
	Off, Len int64
	Type     int
	Desc     string
}

// nbdMap runs `nbdinfo --map` on uri and parses its lines:
//
//	offset  length  type  description
func nbdMap(t *testing.T, uri string) []mapExtent {
	t.Helper()
	out, _ := run(t, false, tool(t, "nbdinfo"), "--map", uri)
	var exts []mapExtent
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			t.Fatalf("nbdinfo --map line %q: want offset, length, type, description\n%s", line, out)
		}
		var e mapExtent
		var err1, err2, err3 error
		e.Off, err1 = strconv.ParseInt(f[0], 10, 64)
		e.Len, err2 = strconv.ParseInt(f[1], 10, 64)
		e.Type, err3 = strconv.Atoi(f[2])
		e.Desc = strings.Join(f[3:], " ")
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatalf("nbdinfo --map line %q: %v", line, err)
		}
		exts = append(exts, e)
	}
	return exts
}

// runStdin is run with input on stdin.
func runStdin(t *testing.T, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// nbdClient is a minimal NBD client written from the protocol document:
// fixed newstyle handshake, NBD_OPT_GO, simple replies, one request at a
// time. Unlike qemu or libnbd it sends whatever it is told (for example a
// WRITE to a read-only export), so tests can check what the server does.
type nbdClient struct {
	c      net.Conn
	r      *bufio.Reader
	Size   uint64
	Flags  uint16
	handle uint64
}

// NBD protocol constants used by nbdClient.
const (
	nbdMagic         = 0x4e42444d41474943 // "NBDMAGIC"
	nbdIHaveOpt      = 0x49484156454f5054 // "IHAVEOPT"
	nbdOptReplyMagic = 0x3e889045565a9
	nbdOptGo         = 7
	nbdRepAck        = 1
	nbdRepInfo       = 3
	nbdRepFlagError  = 1 << 31
	nbdInfoExport    = 0
	nbdRequestMagic  = 0x25609513
	nbdSimpleMagic   = 0x67446698
	nbdCmdRead       = 0
	nbdCmdWrite      = 1
	nbdCmdDisc       = 2
	nbdCmdFlush      = 3
	nbdFlagReadOnly  = 1 << 1
)

// errNBDRefused is returned by dialNBD when the server refuses the export.
var errNBDRefused = errors.New("nbd: export refused")

// dialNBD connects to addr and asks for export name.
func dialNBD(addr, name string) (*nbdClient, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	n := &nbdClient{c: c, r: bufio.NewReader(c)}
	if err := n.handshake(name); err != nil {
		c.Close()
		return nil, err
	}
	return n, nil
}

func (n *nbdClient) handshake(name string) error {
	n.c.SetDeadline(time.Now().Add(10 * time.Second))
	defer n.c.SetDeadline(time.Time{})
	var hello [18]byte
	if _, err := io.ReadFull(n.r, hello[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint64(hello[0:]) != nbdMagic || binary.BigEndian.Uint64(hello[8:]) != nbdIHaveOpt {
		return fmt.Errorf("nbd: bad greeting %x", hello)
	}
	// NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES
	var req []byte
	req = binary.BigEndian.AppendUint32(req, 1|2)
	req = binary.BigEndian.AppendUint64(req, nbdIHaveOpt)
	req = binary.BigEndian.AppendUint32(req, nbdOptGo)
	req = binary.BigEndian.AppendUint32(req, uint32(4+len(name)+2))
	req = binary.BigEndian.AppendUint32(req, uint32(len(name)))
	req = append(req, name...)
	req = binary.BigEndian.AppendUint16(req, 0) // no information requests
	if _, err := n.c.Write(req); err != nil {
		return err
	}
	for {
		var h [20]byte
		if _, err := io.ReadFull(n.r, h[:]); err != nil {
			return err
		}
		if binary.BigEndian.Uint64(h[0:]) != nbdOptReplyMagic {
			return fmt.Errorf("nbd: bad option reply magic %x", h[:8])
		}
		typ, length := binary.BigEndian.Uint32(h[12:]), binary.BigEndian.Uint32(h[16:])
		data := make([]byte, length)
		if _, err := io.ReadFull(n.r, data); err != nil {
			return err
		}
		switch {
		case typ&nbdRepFlagError != 0:
			return fmt.Errorf("%w (reply %#x: %s)", errNBDRefused, typ, data)
		case typ == nbdRepInfo && len(data) >= 12 && binary.BigEndian.Uint16(data) == nbdInfoExport:
			n.Size = binary.BigEndian.Uint64(data[2:])
			n.Flags = binary.BigEndian.Uint16(data[10:])
		case typ == nbdRepAck:
			return nil
		}
	}
}

// do sends one request and waits for its simple reply. A non-zero NBD
// error comes back as a syscall.Errno.
func (n *nbdClient) do(cmd uint16, off uint64, length uint32, payload, into []byte) error {
	n.handle++
	var req []byte
	req = binary.BigEndian.AppendUint32(req, nbdRequestMagic)
	req = binary.BigEndian.AppendUint16(req, 0)
	req = binary.BigEndian.AppendUint16(req, cmd)
	req = binary.BigEndian.AppendUint64(req, n.handle)
	req = binary.BigEndian.AppendUint64(req, off)
	req = binary.BigEndian.AppendUint32(req, length)
	req = append(req, payload...)
	n.c.SetDeadline(time.Now().Add(30 * time.Second))
	defer n.c.SetDeadline(time.Time{})
	if _, err := n.c.Write(req); err != nil {
		return err
	}
	var h [16]byte
	if _, err := io.ReadFull(n.r, h[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(h[0:]) != nbdSimpleMagic || binary.BigEndian.Uint64(h[8:]) != n.handle {
		return fmt.Errorf("nbd: unexpected reply %x", h)
	}
	if e := binary.BigEndian.Uint32(h[4:]); e != 0 {
		return syscall.Errno(e) // NBD error values are Linux errno values
	}
	if into != nil {
		_, err := io.ReadFull(n.r, into)
		return err
	}
	return nil
}

func (n *nbdClient) WriteAt(p []byte, off int64) error {
	return n.do(nbdCmdWrite, uint64(off), uint32(len(p)), p, nil)
}

func (n *nbdClient) ReadAt(p []byte, off int64) error {
	return n.do(nbdCmdRead, uint64(off), uint32(len(p)), nil, p)
}

func (n *nbdClient) Flush() error { return n.do(nbdCmdFlush, 0, 0, nil, nil) }

// Close sends NBD_CMD_DISC and closes the connection.
func (n *nbdClient) Close() error {
	var req []byte
	req = binary.BigEndian.AppendUint32(req, nbdRequestMagic)
	req = binary.BigEndian.AppendUint32(req, nbdCmdDisc) // flags 0, type DISC
	req = append(req, make([]byte, 20)...)
	n.c.Write(req)
	return n.c.Close()
}

// pattern returns n bytes of b.
func pattern(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
