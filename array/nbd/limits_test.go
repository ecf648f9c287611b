package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connectNoReader performs the handshake like connect but starts no reply
// reader: the test reads (or does not read) replies itself.
func connectNoReader(t *testing.T, addr, name string) *rawClient {
	t.Helper()
	c := dialRaw(t, addr)
	c.sendClientFlags(flagCFixedNewstyle | flagCNoZeroes)
	if _, r := c.option(optGo, infoGoData(name)); r.typ != repAck {
		t.Fatalf("NBD_OPT_GO %q: reply %#x", name, r.typ)
	}
	c.nc.SetDeadline(time.Time{})
	return c
}

// processRSS returns the resident set size of this process, from
// /proc/self/status.
func processRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

func heapInuse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// TestPipelinedRequestsWithoutReadingAreBounded: a client pipelines 2M
// cheap requests (unknown commands and zero-length reads, which take no
// payload budget) and reads no reply. The server must stop reading once
// MaxQueuedRequests are queued, instead of queueing replies without end,
// and the memory of this process (server and client alike) must stay
// within 64 MB of where it started, then while every reply is read.
func TestPipelinedRequestsWithoutReadingAreBounded(t *testing.T) {
	const (
		total     = 2 << 20
		chunk     = 4096
		maxGrowth = 64 << 20
		unknown   = 0x7f
	)
	var maxQueued atomic.Int64
	paused := make(chan struct{}, 1)
	testHookQueueFull = func(q int64) {
		for {
			m := maxQueued.Load()
			if q <= m || maxQueued.CompareAndSwap(m, q) {
				break
			}
		}
		select {
		case paused <- struct{}{}:
		default:
		}
	}
	t.Cleanup(func() { testHookQueueFull = nil })
	ts, _, _ := setup(t) // hook set first: connections read it
	c := connectNoReader(t, ts.addr, "disk")

	debug.FreeOSMemory()
	baseRSS, baseHeap := processRSS(t), heapInuse()
	checkMemory := func(when string) {
		t.Helper()
		if d := heapInuse() - baseHeap; d > maxGrowth {
			t.Fatalf("%s: heap grew by %d MB (limit %d MB)", when, d>>20, maxGrowth>>20)
		}
		if d := processRSS(t) - baseRSS; d > maxGrowth {
			t.Fatalf("%s: RSS grew by %d MB (limit %d MB)", when, d>>20, maxGrowth>>20)
		}
	}

	// The writer's result; closed when it has ended.
	var writeErr error
	written := make(chan struct{})
	go func() {
		defer close(written)
		buf := make([]byte, chunk*requestHeaderLen)
		for sent := 0; sent < total; sent += chunk {
			for i := range chunk {
				h := buf[i*requestHeaderLen:]
				binary.BigEndian.PutUint32(h[0:], requestMagic)
				binary.BigEndian.PutUint16(h[4:], 0)
				typ := uint16(cmdRead) // zero-length
				if i%2 == 0 {
					typ = unknown
				}
				binary.BigEndian.PutUint16(h[6:], typ)
				binary.BigEndian.PutUint64(h[8:], uint64(sent+i))
				binary.BigEndian.PutUint64(h[16:], 0)
				binary.BigEndian.PutUint32(h[24:], 0)
			}
			if _, err := c.nc.Write(buf); err != nil {
				writeErr = err
				return
			}
		}
	}()
	t.Cleanup(func() { c.nc.Close(); <-written })

	select {
	case <-paused:
	case <-written:
		// The server read everything: show what that costs, then fail.
		waitFor(t, "the server to read every request", func() bool { return ts.srv.Stats().Requests >= total })
		checkMemory("after the server read every request")
		t.Fatalf("the server read all %d requests (write: %v) while the client read no reply", total, writeErr)
	case <-time.After(2 * time.Minute):
		t.Fatal("the server neither stopped reading nor read every request")
	}
	checkMemory("while the server waits for the client to read")
	if got := ts.srv.Stats().Requests; got >= total {
		t.Fatalf("server read %d requests before pausing", got)
	}

	seen := make([]uint64, total/64)
	var rep [simpleReplyLen]byte
	for n := range total {
		if _, err := io.ReadFull(c.br, rep[:]); err != nil {
			t.Fatalf("reading reply %d: %v", n, err)
		}
		if m := binary.BigEndian.Uint32(rep[:]); m != simpleReplyMagic {
			t.Fatalf("reply %d: magic %#x", n, m)
		}
		h := binary.BigEndian.Uint64(rep[8:])
		if h >= total || seen[h/64]&(1<<(h%64)) != 0 {
			t.Fatalf("reply %d: unexpected or repeated handle %d", n, h)
		}
		seen[h/64] |= 1 << (h % 64)
		want := uint32(0)
		if h%2 == 0 {
			want = errInval
		}
		if e := binary.BigEndian.Uint32(rep[4:]); e != want {
			t.Fatalf("reply to request %d: error %d, want %d", h, e, want)
		}
		if n%(256<<10) == 0 {
			checkMemory("while the client reads replies")
		}
	}
	<-written
	if writeErr != nil {
		t.Fatalf("sending requests: %v", writeErr)
	}
	checkMemory("after every reply")
	if m := maxQueued.Load(); m > defaultMaxQueuedRequests {
		t.Fatalf("%d replies queued, over the bound of %d", m, defaultMaxQueuedRequests)
	}
	t.Logf("heap %+d KB, RSS %+d KB after %d requests; at most %d replies queued",
		(heapInuse()-baseHeap)>>10, (processRSS(t)-baseRSS)>>10, total, maxQueued.Load())
}

// TestMaxConnectionsRefusal: a client over the cap gets NBD_REP_ERR_POLICY
// with a reason and is closed; one using NBD_OPT_EXPORT_NAME is closed. The
// refused take no slot, and a client that comes after one has left is
// served.
func TestMaxConnectionsRefusal(t *testing.T) {
	dev := newFileDevice(t, testSize)
	ex := newTestExports()
	ex.add("disk", dev, true)
	ts := startServer(t, ex, Options{MaxConnections: 2})
	c1 := connect(t, ts.addr, "disk", clientOpts{})
	c2 := connect(t, ts.addr, "disk", clientOpts{})

	for range 3 {
		over := dialRaw(t, ts.addr)
		over.sendClientFlags(flagCFixedNewstyle | flagCNoZeroes)
		over.sendOpt(optGo, infoGoData("disk"))
		r, err := over.readOptReply()
		if err != nil {
			t.Fatalf("client over the cap got no answer: %v", err)
		}
		if r.typ != repErrPolicy || !strings.Contains(string(r.data), "too many connections") ||
			!strings.Contains(string(r.data), "at most 2") {
			t.Fatalf("client over the cap: reply %#x %q, want NBD_REP_ERR_POLICY saying why", r.typ, r.data)
		}
		expectClosed(t, over)
	}
	old := dialRaw(t, ts.addr)
	old.sendClientFlags(flagCFixedNewstyle)
	old.sendOpt(optExportName, []byte("disk"))
	expectClosed(t, old)
	if s := ts.srv.Stats(); s.ConnectionsRejected != 4 || s.ConnectionsActive != 2 {
		t.Fatalf("rejected %d active %d, want 4 and 2", s.ConnectionsRejected, s.ConnectionsActive)
	}
	if !strings.Contains(ts.logs.String(), "too many connections") {
		t.Fatalf("refusal not logged:\n%s", ts.logs.String())
	}

	// The connections within the cap still work, and a slot freed is
	// taken by the next client.
	if r := c2.do(cmdFlush, 0, 0, 0, nil, nil); r.errno != 0 {
		t.Fatalf("flush on a connection within the cap: errno %d", r.errno)
	}
	if err := c1.disconnect(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first connection to end", func() bool { return ts.srv.Stats().ConnectionsActive == 1 })
	c3 := connect(t, ts.addr, "disk", clientOpts{})
	if r := c3.write(0, []byte("after"), 0); r.errno != 0 {
		t.Fatalf("write on the connection that took the freed slot: errno %d", r.errno)
	}
}

// TestMaxConnectionsFlood: clients over the cap that hang in the refusal
// hold at most maxRefusing goroutines; the rest are closed before the
// greeting, and the server keeps serving the clients within the cap.
func TestMaxConnectionsFlood(t *testing.T) {
	dev := newFileDevice(t, testSize)
	ex := newTestExports()
	ex.add("disk", dev, true)
	ts := startServer(t, ex, Options{MaxConnections: 1})
	c := connect(t, ts.addr, "disk", clientOpts{})
	base := runtime.NumGoroutine()
	const flood = 100
	var greeted, closed int
	for range flood {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(nc, make([]byte, 18)); err == nil {
			greeted++ // then silence: the refusal waits for an option
		} else {
			closed++
		}
	}
	if greeted > maxRefusing || greeted == 0 || closed != flood-greeted {
		t.Fatalf("%d of %d clients over the cap greeted, %d closed; want 1..%d greeted, the rest closed",
			greeted, flood, closed, maxRefusing)
	}
	if n := runtime.NumGoroutine() - base; n > maxRefusing+2 {
		t.Fatalf("%d more goroutines during the flood, want at most %d", n, maxRefusing+2)
	}
	if r := c.write(0, []byte("during the flood"), 0); r.errno != 0 {
		t.Fatalf("write during the flood: errno %d", r.errno)
	}
	if s := ts.srv.Stats(); s.ConnectionsRejected != flood || s.ConnectionsActive != 1 {
		t.Fatalf("rejected %d active %d", s.ConnectionsRejected, s.ConnectionsActive)
	}
}

// TestIdleConnectionGoroutines: an idle connection after the handshake
// holds its reader and no idle workers beyond those it has needed.
func TestIdleConnectionGoroutines(t *testing.T) {
	ts, _, _ := setup(t)
	base := runtime.NumGoroutine()
	const conns = 50
	for range conns {
		c := connect(t, ts.addr, "disk", clientOpts{})
		if r := c.do(cmdFlush, 0, 0, 0, nil, nil); r.errno != 0 {
			t.Fatalf("flush: errno %d", r.errno)
		}
	}
	// Per connection: the test's reply reader, the server's reader, and the
	// one worker the FLUSH needed (not Workers of them).
	if n := runtime.NumGoroutine() - base; n > 3*conns {
		t.Fatalf("%d idle connections hold %d goroutines, want at most %d", conns, n, 3*conns)
	}
}

// gatedFlushDevice is a memDevice whose Flush waits for the test.
type gatedFlushDevice struct {
	*memDevice
	entered chan struct{}
	release chan struct{}
}

func (d gatedFlushDevice) Flush(ctx context.Context) error {
	d.entered <- struct{}{}
	select {
	case <-d.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// TestIdleTimeout: a connection with no request for IdleTimeout is closed,
// and counted; one whose request takes longer than that is not idle, and
// its idle time runs from the reply.
func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	dev := gatedFlushDevice{&memDevice{data: make([]byte, 1<<20)}, make(chan struct{}, 1), make(chan struct{})}
	ex := newTestExports()
	ex.add("disk", dev, true)
	ts := startServer(t, ex, Options{IdleTimeout: idle})

	t.Run("idle", func(t *testing.T) {
		c := connect(t, ts.addr, "disk", clientOpts{})
		if r := c.write(0, []byte("x"), 0); r.errno != 0 {
			t.Fatalf("write: errno %d", r.errno)
		}
		last := time.Now()
		select {
		case <-c.readerDone:
		case <-time.After(20 * idle):
			t.Fatalf("connection idle for %v not closed (idle timeout %v)", 20*idle, idle)
		}
		if d := time.Since(last); d < idle {
			t.Fatalf("connection closed %v after its last reply, before the idle timeout %v", d, idle)
		}
		waitFor(t, "the idle close to be counted", func() bool { return ts.srv.Stats().ConnectionsIdle == 1 })
		if !strings.Contains(ts.logs.String(), "closing idle connection") {
			t.Fatalf("idle close not logged:\n%s", ts.logs.String())
		}
	})

	t.Run("slow request", func(t *testing.T) {
		c := connect(t, ts.addr, "disk", clientOpts{})
		flush := c.send(cmdFlush, 0, 0, 0, nil, nil)
		<-dev.entered
		// Three idle timeouts with the FLUSH in progress: not idle.
		select {
		case <-c.readerDone:
			t.Fatal("connection closed while a request was in progress")
		case <-time.After(3 * idle):
		}
		close(dev.release)
		if c.wait(flush); flush.errno != 0 {
			t.Fatalf("flush: errno %d", flush.errno)
		}
		replied := time.Now()
		select {
		case <-c.readerDone:
		case <-time.After(20 * idle):
			t.Fatal("connection not closed after the slow request")
		}
		if d := time.Since(replied); d < idle*9/10 {
			t.Fatalf("connection closed %v after the reply, before the idle timeout %v", d, idle)
		}
	})

	t.Run("stalled payload", func(t *testing.T) {
		// A WRITE header and half its payload, then nothing: idle too.
		c := connectNoReader(t, ts.addr, "disk")
		var h [requestHeaderLen]byte
		binary.BigEndian.PutUint32(h[0:], requestMagic)
		binary.BigEndian.PutUint16(h[6:], cmdWrite)
		binary.BigEndian.PutUint32(h[24:], 8192)
		if _, err := c.nc.Write(append(h[:], make([]byte, 4096)...)); err != nil {
			t.Fatal(err)
		}
		c.nc.SetReadDeadline(time.Now().Add(20 * idle))
		if _, err := c.br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("stalled client: read %v, want EOF from the idle close", err)
		}
	})
}

// TestIdleTimeoutClientNotReading: a client that sends requests but takes
// no reply for the idle timeout is dropped, so that it cannot hold a
// connection slot forever.
func TestIdleTimeoutClientNotReading(t *testing.T) {
	const idle = 300 * time.Millisecond
	dev := &memDevice{data: make([]byte, 4<<20)}
	ex := newTestExports()
	ex.add("disk", dev, true)
	ts := startServer(t, ex, Options{IdleTimeout: idle})
	c := connectNoReader(t, ts.addr, "disk")
	if tc, ok := c.nc.(*net.TCPConn); ok {
		tc.SetReadBuffer(4096)
	}
	// 4 MiB READs until the server stops taking them: their replies fill
	// every buffer on the way.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w := bufio.NewWriter(c.nc)
		var h [requestHeaderLen]byte
		binary.BigEndian.PutUint32(h[0:], requestMagic)
		binary.BigEndian.PutUint16(h[6:], cmdRead)
		binary.BigEndian.PutUint32(h[24:], 4<<20)
		for i := 0; ; i++ {
			binary.BigEndian.PutUint64(h[8:], uint64(i))
			w.Write(h[:])
			if w.Flush() != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { c.nc.Close(); wg.Wait() })
	waitFor(t, "the server to drop the client that reads nothing", func() bool {
		return ts.srv.Stats().ConnectionsActive == 0
	})
}
