package e2e

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// exportName is the export of an attachment's nbd:// URI.
func (a attachment) exportName() string { return a.URI()[strings.LastIndex(a.URI(), "/")+1:] }

// setArrayKeys adds lines to [array:site-a] of d's configuration.
func setArrayKeys(t *testing.T, d *Daemon, lines ...string) {
	t.Helper()
	d.WriteConfig(d.DefaultBackend(), "")
	b, err := os.ReadFile(d.Conf)
	if err != nil {
		t.Fatal(err)
	}
	anchor := "nbd_listen = " + d.NBDA + "\n"
	if !strings.Contains(string(b), anchor) {
		t.Fatalf("no %q in the configuration", anchor)
	}
	conf := strings.Replace(string(b), anchor, anchor+strings.Join(lines, "\n")+"\n", 1)
	d.WriteRaw(conf)
}

// daemonRSS is the resident set size of the running volrepd.
func daemonRSS(t *testing.T, d *Daemon) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(d.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n << 10
		}
	}
	t.Fatal("no VmRSS for volrepd")
	return 0
}

// TestNBDPipelinedRequestsKeepDaemonRSS: one client pipelines 2M cheap
// requests (unknown commands, zero-length reads) and reads no reply until
// the daemon stops taking them. volrepd's RSS stays within 64 MB of where it
// started, and every reply then arrives.
func TestNBDPipelinedRequestsKeepDaemonRSS(t *testing.T) {
	const (
		total     = 2 << 20
		chunk     = 4096
		maxGrowth = 64 << 20
	)
	d := NewDaemon(t)
	d.Start()
	c := driverClient(t, d)
	createVolume(t, c, "pipe", 1)
	a := attach(t, c, "pipe", "host-1", "")
	n, err := dialNBD(a.Addr(), a.exportName())
	if err != nil {
		t.Fatal(err)
	}
	defer n.c.Close()
	base := daemonRSS(t, d)

	// Send until the daemon stops reading: a write that makes no progress
	// for 5 s (the old daemon took all 2M and queued their replies).
	buf := make([]byte, chunk*28)
	sent := 0
	var rest []byte // what a timed-out write left of its chunk
	for sent < total {
		for i := range chunk {
			h := buf[i*28:]
			binary.BigEndian.PutUint32(h[0:], nbdRequestMagic)
			typ := uint16(nbdCmdRead) // zero-length
			if i%2 == 0 {
				typ = 0x7f // unknown
			}
			binary.BigEndian.PutUint32(h[4:], uint32(typ))
			binary.BigEndian.PutUint64(h[8:], uint64(sent+i))
			binary.BigEndian.PutUint64(h[16:], 0)
			binary.BigEndian.PutUint32(h[24:], 0)
		}
		n.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		w, err := n.c.Write(buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("sending requests: %v", err)
			}
			rest = append(rest, buf[w:]...)
			sent += chunk
			break
		}
		sent += chunk
	}
	if g := daemonRSS(t, d) - base; g > maxGrowth {
		t.Fatalf("volrepd RSS grew by %d MB with %d requests pipelined and no reply read (limit %d MB)", g>>20, sent, maxGrowth>>20)
	}
	t.Logf("%d requests sent before the daemon stopped reading; RSS %+d KB", sent, (daemonRSS(t, d)-base)>>10)
	if sent >= total {
		t.Fatalf("volrepd read all %d requests while the client read no reply", total)
	}

	// Read every reply, sending the rest meanwhile.
	n.c.SetWriteDeadline(time.Time{})
	writerDone := make(chan struct{})
	defer func() { n.c.Close(); <-writerDone }()
	go func() {
		defer close(writerDone)
		if _, err := n.c.Write(rest); err != nil {
			return
		}
		for s := sent; s < total; s += chunk {
			for i := range chunk {
				binary.BigEndian.PutUint64(buf[i*28+8:], uint64(s+i))
			}
			if _, err := n.c.Write(buf); err != nil {
				return
			}
		}
	}()
	n.c.SetReadDeadline(time.Now().Add(5 * time.Minute))
	var rep [16]byte
	for i := range total {
		if _, err := io.ReadFull(n.r, rep[:]); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if binary.BigEndian.Uint32(rep[:]) != nbdSimpleMagic {
			t.Fatalf("reply %d: bad magic %x", i, rep)
		}
		if i%(256<<10) == 0 {
			if g := daemonRSS(t, d) - base; g > maxGrowth {
				t.Fatalf("volrepd RSS grew by %d MB while the replies were read (limit %d MB)", g>>20, maxGrowth>>20)
			}
		}
	}
}

// TestNBDConnectionCapAndIdleTimeout: with nbd_max_connections = 3, a
// fourth client is refused with a reason while the three work on; the
// driver and array APIs keep answering; a slot freed is taken by the next
// client. With nbd_idle_timeout = 1 an idle connection is closed.
func TestNBDConnectionCapAndIdleTimeout(t *testing.T) {
	d := NewDaemon(t)
	setArrayKeys(t, d, "nbd_max_connections = 3", "nbd_idle_timeout = 2")
	d.Start()
	c := driverClient(t, d)
	createVolume(t, c, "cap", 1)
	a := attach(t, c, "cap", "host-1", "")

	var held []*nbdClient
	for range 3 {
		n, err := dialNBD(a.Addr(), a.exportName())
		if err != nil {
			t.Fatal(err)
		}
		defer n.c.Close()
		held = append(held, n)
	}
	_, err := dialNBD(a.Addr(), a.exportName())
	if !errors.Is(err, errNBDRefused) || !strings.Contains(err.Error(), "too many connections") {
		t.Fatalf("fourth NBD client: %v, want a refusal that says too many connections", err)
	}
	// The daemon serves on: the held connections, the driver API, the
	// array API.
	if err := held[0].WriteAt(pattern(0xab, 4096), 0); err != nil {
		t.Fatalf("write on a held connection: %v", err)
	}
	if _, err := c.ListVolumes(t.Context(), &driverv1.ListVolumesRequest{Backend: "demo"}); err != nil {
		t.Fatalf("ListVolumes with the NBD cap reached: %v", err)
	}
	if _, err := d.Array("a").ListVolumes(t.Context(), ""); err != nil {
		t.Fatalf("array ListVolumes with the NBD cap reached: %v", err)
	}
	held[2].Close()
	var n4 *nbdClient
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n4, err = dialNBD(a.Addr(), a.exportName()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no NBD client served after one of three left: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the closed slot is freed asynchronously
	}
	defer n4.c.Close()
	got := make([]byte, 4096)
	if err := n4.ReadAt(got, 0); err != nil || got[0] != 0xab {
		t.Fatalf("read on the new connection: %v (first byte %#x)", err, got[0])
	}

	// Idle: held[1] has sent nothing since its handshake.
	held[1].c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := held[1].r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %v, want EOF when nbd_idle_timeout closes it", err)
	}
	// The close is logged as the connection ends, which the client may see
	// first: wait for the line rather than read the log at once.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(d.Logs(), "closing idle connection"); {
		if time.Now().After(deadline) {
			t.Fatalf("idle close not logged:\n%s", d.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
