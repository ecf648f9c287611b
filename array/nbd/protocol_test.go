package nbd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/volrep/volrep/internal/latency"
)

const testSize = 16 << 20

// setup starts a server with one listed read-write export "disk" over a
// fileDevice.
func setup(t testing.TB) (*testServer, *fileDevice, *testExports) {
	t.Helper()
	dev := newFileDevice(t, testSize)
	ex := newTestExports()
	ex.add("disk", dev, true)
	return startServer(t, ex, Options{}), dev, ex
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// expectClosed asserts that the server closes the connection.
func expectClosed(t *testing.T, c *rawClient) {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	_, err := io.ReadFull(c.br, b[:])
	if err == nil || !(errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset")) {
		t.Fatalf("connection still open (read: %v), want it closed by the server", err)
	}
}

func TestGreetingAndBadClientFlags(t *testing.T) {
	ts, _, _ := setup(t)
	c := dialRaw(t, ts.addr)
	if c.serverFlags != flagFixedNewstyle|flagNoZeroes {
		t.Fatalf("handshake flags %#x, want FIXED_NEWSTYLE|NO_ZEROES", c.serverFlags)
	}
	c.sendClientFlags(flagCFixedNewstyle | 1<<7)
	expectClosed(t, c)
}

func TestNonFixedClientMayOnlyExportName(t *testing.T) {
	ts, _, _ := setup(t)
	c := dialRaw(t, ts.addr)
	c.sendClientFlags(0)
	c.sendOpt(optList, nil)
	expectClosed(t, c)
}

func TestOptions(t *testing.T) {
	dev := newFileDevice(t, testSize)
	ex := newTestExports()
	ex.add("disk", describedDevice{dev}, true)
	ex.add("hidden", dev, false)
	ts := startServer(t, ex, Options{})
	c := dialRaw(t, ts.addr)
	c.sendClientFlags(flagCFixedNewstyle | flagCNoZeroes)

	t.Run("unknown option", func(t *testing.T) {
		_, r := c.option(77, []byte("x"))
		if r.typ != repErrUnsup {
			t.Fatalf("unknown option: reply %#x, want NBD_REP_ERR_UNSUP", r.typ)
		}
		_, r = c.option(optStartTLS, nil)
		if r.typ != repErrUnsup {
			t.Fatalf("STARTTLS: reply %#x, want NBD_REP_ERR_UNSUP", r.typ)
		}
	})
	t.Run("list", func(t *testing.T) {
		infos, r := c.option(optList, nil)
		if r.typ != repAck {
			t.Fatalf("LIST final reply %#x", r.typ)
		}
		var names []string
		for _, i := range infos {
			if i.typ != repServer {
				t.Fatalf("LIST reply type %d", i.typ)
			}
			n := binary.BigEndian.Uint32(i.data)
			names = append(names, string(i.data[4:4+n]))
		}
		if !slices.Equal(names, []string{"disk"}) {
			t.Fatalf("LIST = %q, want only the listed export [disk]", names)
		}
		_, r = c.option(optList, []byte("junk"))
		if r.typ != repErrInvalid {
			t.Fatalf("LIST with data: %#x, want ERR_INVALID", r.typ)
		}
	})
	t.Run("info", func(t *testing.T) {
		infos, r := c.option(optInfo, infoGoData("disk", infoName, infoDescription, infoBlockSize))
		if r.typ != repAck {
			t.Fatalf("INFO final %#x", r.typ)
		}
		size, flags := parseInfoExport(t, infos)
		if size != testSize {
			t.Fatalf("size %d", size)
		}
		want := uint16(flagHasFlags | flagSendFlush | flagSendFUA | flagSendTrim | flagSendWriteZeroes |
			flagSendFastZero | flagCanMultiConn | flagSendCache)
		if flags != want {
			t.Fatalf("transmission flags %#x, want %#x", flags, want)
		}
		got := map[uint16][]byte{}
		for _, i := range infos {
			got[binary.BigEndian.Uint16(i.data)] = i.data[2:]
		}
		bs := got[infoBlockSize]
		if len(bs) != 12 || binary.BigEndian.Uint32(bs) != 1 || binary.BigEndian.Uint32(bs[4:]) != 4096 ||
			binary.BigEndian.Uint32(bs[8:]) != 32<<20 {
			t.Fatalf("NBD_INFO_BLOCK_SIZE = %x, want 1/4096/32MiB", bs)
		}
		if string(got[infoName]) != "disk" {
			t.Fatalf("NBD_INFO_NAME = %q", got[infoName])
		}
		if string(got[infoDescription]) != "a test disk" {
			t.Fatalf("NBD_INFO_DESCRIPTION = %q", got[infoDescription])
		}
		// An unlisted export can still be opened by name.
		if _, r := c.option(optInfo, infoGoData("hidden")); r.typ != repAck {
			t.Fatalf("INFO hidden: %#x", r.typ)
		}
		if ex.opens.Load() != ex.releases.Load() {
			t.Fatalf("INFO left %d devices open", ex.opens.Load()-ex.releases.Load())
		}
	})
	t.Run("info unknown export", func(t *testing.T) {
		infos, r := c.option(optInfo, infoGoData("nope"))
		if r.typ != repErrUnknown || len(infos) != 0 {
			t.Fatalf("INFO nope: %d infos, final %#x, want NBD_REP_ERR_UNKNOWN", len(infos), r.typ)
		}
		logs := ts.logs.String()
		if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "export=nope") ||
			!strings.Contains(logs, "remote="+c.nc.LocalAddr().String()) {
			t.Fatalf("refusal not logged at warn with remote and export:\n%s", logs)
		}
		if ts.srv.Stats().Refusals != 1 {
			t.Fatalf("refusals = %d", ts.srv.Stats().Refusals)
		}
	})
	t.Run("malformed info", func(t *testing.T) {
		d := infoGoData("disk")
		binary.BigEndian.PutUint32(d, 1000)
		if _, r := c.option(optInfo, d); r.typ != repErrInvalid {
			t.Fatalf("INFO with bad name length: %#x", r.typ)
		}
		if _, r := c.option(optGo, append(infoGoData("disk"), 0)); r.typ != repErrInvalid {
			t.Fatalf("GO with trailing byte: %#x", r.typ)
		}
	})
	t.Run("meta context before structured replies", func(t *testing.T) {
		if _, r := c.option(optListMetaContext, metaData("disk")); r.typ != repErrInvalid {
			t.Fatalf("LIST_META_CONTEXT before structured replies: %#x", r.typ)
		}
	})
	t.Run("structured replies", func(t *testing.T) {
		if _, r := c.option(optStructuredReply, nil); r.typ != repAck {
			t.Fatalf("STRUCTURED_REPLY: %#x", r.typ)
		}
		if _, r := c.option(optStructuredReply, nil); r.typ != repErrInvalid {
			t.Fatalf("second STRUCTURED_REPLY: %#x, want ERR_INVALID", r.typ)
		}
		infos, _ := c.option(optInfo, infoGoData("disk"))
		if _, flags := parseInfoExport(t, infos); flags&flagSendDF == 0 {
			t.Fatalf("flags %#x lack SEND_DF after structured replies", flags)
		}
	})
	t.Run("meta contexts", func(t *testing.T) {
		for _, q := range [][]string{nil, {"base:"}, {"base:allocation"}, {"qemu:dirty-bitmap:x", "base:allocation"}} {
			infos, r := c.option(optListMetaContext, metaData("disk", q...))
			if r.typ != repAck || len(infos) != 1 || string(infos[0].data[4:]) != metaBaseAllocation {
				t.Fatalf("LIST_META_CONTEXT %q: %v %#x", q, infos, r.typ)
			}
		}
		infos, r := c.option(optListMetaContext, metaData("disk", "x-other:thing"))
		if r.typ != repAck || len(infos) != 0 {
			t.Fatalf("LIST_META_CONTEXT of unknown namespace: %v %#x", infos, r.typ)
		}
		infos, r = c.option(optSetMetaContext, metaData("disk", "base:"))
		if r.typ != repAck || len(infos) != 0 {
			t.Fatalf("SET_META_CONTEXT base: must select nothing: %v", infos)
		}
		infos, r = c.option(optSetMetaContext, metaData("disk", "base:allocation"))
		if r.typ != repAck || len(infos) != 1 || binary.BigEndian.Uint32(infos[0].data) == 0 {
			t.Fatalf("SET_META_CONTEXT: %v %#x", infos, r.typ)
		}
		if _, r := c.option(optSetMetaContext, []byte{0, 0, 0, 9}); r.typ != repErrInvalid {
			t.Fatalf("malformed SET_META_CONTEXT: %#x", r.typ)
		}
	})
	t.Run("abort", func(t *testing.T) {
		if _, r := c.option(optAbort, nil); r.typ != repAck {
			t.Fatalf("ABORT: %#x", r.typ)
		}
		expectClosed(t, c)
	})
}

func TestExportName(t *testing.T) {
	for _, noZeroes := range []bool{false, true} {
		t.Run(fmt.Sprintf("noZeroes=%v", noZeroes), func(t *testing.T) {
			ts, dev, _ := setup(t)
			c := dialRaw(t, ts.addr)
			cf := uint32(flagCFixedNewstyle)
			if noZeroes {
				cf |= flagCNoZeroes
			}
			c.sendClientFlags(cf)
			c.sendOpt(optExportName, []byte("disk"))
			n := 10
			if !noZeroes {
				n += 124
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(c.br, b); err != nil {
				t.Fatal(err)
			}
			if size := binary.BigEndian.Uint64(b); size != testSize {
				t.Fatalf("size %d", size)
			}
			if f := binary.BigEndian.Uint16(b[8:]); f&flagHasFlags == 0 || f&flagReadOnly != 0 {
				t.Fatalf("flags %#x", f)
			}
			if !bytes.Equal(b[10:], make([]byte, n-10)) {
				t.Fatal("padding is not zeroes")
			}
			c.size = testSize
			c.start()
			data := randBytes(t, 8192)
			if r := c.write(4096, data, 0); r.errno != 0 {
				t.Fatalf("write: errno %d", r.errno)
			}
			got := make([]byte, len(data))
			if r := c.read(4096, got, 0); r.errno != 0 || !bytes.Equal(got, data) {
				t.Fatalf("read back: errno %d equal %v", r.errno, bytes.Equal(got, data))
			}
			if dev.writes.Load() != 1 {
				t.Fatalf("device saw %d writes", dev.writes.Load())
			}
			if err := c.disconnect(); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		ts, _, _ := setup(t)
		c := dialRaw(t, ts.addr)
		c.sendClientFlags(flagCFixedNewstyle)
		c.sendOpt(optExportName, []byte("secret-guess"))
		expectClosed(t, c)
		if logs := ts.logs.String(); !strings.Contains(logs, "export=secret-guess") || !strings.Contains(logs, "level=WARN") {
			t.Fatalf("refusal not logged:\n%s", logs)
		}
	})
}

func TestLogNameRedacts(t *testing.T) {
	dev := newFileDevice(t, testSize)
	ex := newTestExports()
	ex.add("vol1", dev, true)
	ts := startServer(t, ex, Options{LogName: func(n string) string {
		name, _, _ := strings.Cut(n, "?")
		return name
	}})
	c := dialRaw(t, ts.addr)
	c.sendClientFlags(flagCFixedNewstyle)
	if _, r := c.option(optGo, infoGoData("vol1?token=hunter2")); r.typ != repErrUnknown {
		t.Fatalf("GO: %#x, want ERR_UNKNOWN", r.typ)
	}
	logs := ts.logs.String()
	if strings.Contains(logs, "hunter2") || !strings.Contains(logs, "export=vol1") {
		t.Fatalf("logs not redacted by LogName:\n%s", logs)
	}
}

func TestOutOfRangeRead(t *testing.T) {
	for _, structured := range []bool{false, true} {
		t.Run(fmt.Sprintf("structured=%v", structured), func(t *testing.T) {
			ts, _, _ := setup(t)
			c := connect(t, ts.addr, "disk", clientOpts{structured: structured})
			buf := make([]byte, 8192)
			r := c.read(testSize-4096, buf, 0)
			if r.errno != errInval {
				t.Fatalf("read past the end: errno %d, want EINVAL", r.errno)
			}
			if structured && (len(r.chunks) != 1 || r.chunks[0] != replyTypeError || r.msg == "") {
				t.Fatalf("chunks %v msg %q, want one NBD_REPLY_TYPE_ERROR with a message", r.chunks, r.msg)
			}
			if r := c.read(1<<63, buf, 0); r.errno != errInval {
				t.Fatalf("read at 2^63: errno %d", r.errno)
			}
			// The connection is still usable.
			data := randBytes(t, 4096)
			if r := c.write(testSize-4096, data, 0); r.errno != 0 {
				t.Fatalf("write after error: %d", r.errno)
			}
			if r := c.read(testSize-4096, buf[:4096], 0); r.errno != 0 || !bytes.Equal(buf[:4096], data) {
				t.Fatalf("read after error: errno %d", r.errno)
			}
			c.checkProto()
			if err := c.disconnect(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	ts, dev, _ := setup(t)
	c := connect(t, ts.addr, "disk", clientOpts{structured: true})
	data := randBytes(t, 8192)
	if r := c.write(testSize-4096, data, 0); r.errno != errNoSpc {
		t.Fatalf("write past the end: errno %d, want ENOSPC", r.errno)
	}
	if r := c.do(cmdWriteZeroes, 0, testSize-4096, 8192, nil, nil); r.errno != errNoSpc {
		t.Fatalf("write zeroes past the end: errno %d, want ENOSPC", r.errno)
	}
	if r := c.do(cmdTrim, 0, testSize, 1, nil, nil); r.errno != errInval {
		t.Fatalf("trim past the end: errno %d, want EINVAL", r.errno)
	}
	if r := c.write(0, data, cmdFlagDF); r.errno != errInval {
		t.Fatalf("write with DF flag: errno %d, want EINVAL", r.errno)
	}
	if r := c.do(42, 0, 0, 0, nil, nil); r.errno != errInval {
		t.Fatalf("unknown command: errno %d, want EINVAL", r.errno)
	}
	big := make([]byte, MaxRequestSize+1)
	if r := c.write(0, big, 0); r.errno != errInval {
		t.Fatalf("33 MiB write: errno %d, want EINVAL", r.errno)
	}
	if r := c.read(0, big, 0); r.errno != errInval {
		t.Fatalf("33 MiB read: errno %d, want EINVAL", r.errno)
	}
	if dev.writes.Load() != 0 {
		t.Fatalf("invalid writes reached the device %d times", dev.writes.Load())
	}
	// Device errors are EIO and leave the connection usable.
	dev.failWrites.Store(true)
	if r := c.write(0, data, 0); r.errno != errIO {
		t.Fatalf("failing device write: errno %d, want EIO", r.errno)
	}
	dev.failWrites.Store(false)
	dev.failReads.Store(true)
	if r := c.read(0, data, 0); r.errno != errIO || r.chunks[0] != replyTypeError {
		t.Fatalf("failing device read: errno %d chunks %v, want EIO error chunk", r.errno, r.chunks)
	}
	dev.failReads.Store(false)
	if r := c.write(0, data, 0); r.errno != 0 {
		t.Fatalf("write after errors: %d", r.errno)
	}
	got := make([]byte, len(data))
	if r := c.read(0, got, 0); r.errno != 0 || !bytes.Equal(got, data) {
		t.Fatalf("read after errors: errno %d", r.errno)
	}
	if !strings.Contains(ts.logs.String(), "injected write failure") {
		t.Fatalf("device error not logged:\n%s", ts.logs.String())
	}
	c.checkProto()
	if s := ts.srv.Stats(); s.Errors != 9 {
		t.Fatalf("Stats.Errors = %d, want 9", s.Errors)
	}
}

func TestFUA(t *testing.T) {
	ts, dev, _ := setup(t)
	c := connect(t, ts.addr, "disk", clientOpts{})
	data := randBytes(t, 4096)
	if r := c.write(0, data, 0); r.errno != 0 {
		t.Fatal(r.errno)
	}
	if dev.fuaWrites.Load() != 0 {
		t.Fatal("plain write reached the device with fua")
	}
	if r := c.write(4096, data, cmdFlagFUA); r.errno != 0 {
		t.Fatal(r.errno)
	}
	if dev.writes.Load() != 2 || dev.fuaWrites.Load() != 1 {
		t.Fatalf("writes %d fua %d, want 2 and 1", dev.writes.Load(), dev.fuaWrites.Load())
	}
	if r := c.do(cmdTrim, cmdFlagFUA, 0, 4096, nil, nil); r.errno != 0 || dev.fuaTrims.Load() != 1 {
		t.Fatalf("FUA trim: errno %d, device fua trims %d", r.errno, dev.fuaTrims.Load())
	}
	if r := c.do(cmdWriteZeroes, cmdFlagFUA|cmdFlagNoHole, 4096, 4096, nil, nil); r.errno != 0 ||
		dev.fuaZeroes.Load() != 1 || dev.noHoleZeroes.Load() != 1 {
		t.Fatalf("FUA NO_HOLE zeroes: errno %d, fua %d nohole %d", r.errno, dev.fuaZeroes.Load(), dev.noHoleZeroes.Load())
	}
	if r := c.do(cmdFlush, 0, 0, 0, nil, nil); r.errno != 0 || dev.flushes.Load() != 1 {
		t.Fatalf("flush: errno %d, device flushes %d", r.errno, dev.flushes.Load())
	}
	// FUA on a read is accepted and ignored.
	if r := c.read(0, data, cmdFlagFUA); r.errno != 0 {
		t.Fatalf("read with FUA: %d", r.errno)
	}
}

func TestWriteZeroesAndTrim(t *testing.T) {
	dev := newFileDevice(t, testSize)
	ex := newTestExports()
	ex.add("disk", fastZeroDevice{dev}, true)
	ts := startServer(t, ex, Options{})
	c := connect(t, ts.addr, "disk", clientOpts{structured: true, meta: true})
	data := bytes.Repeat([]byte{0xcd}, 1<<20)
	if r := c.write(0, data, 0); r.errno != 0 {
		t.Fatal(r.errno)
	}
	got := make([]byte, len(data))
	check := func(off int, wantZero bool) {
		t.Helper()
		if r := c.read(uint64(off), got[:65536], 0); r.errno != 0 {
			t.Fatal(r.errno)
		}
		allZero := bytes.Equal(got[:65536], make([]byte, 65536))
		if allZero != wantZero {
			t.Fatalf("at %d: zero=%v, want %v", off, allZero, wantZero)
		}
	}
	dev.fastZero.Store(false)
	if r := c.do(cmdWriteZeroes, cmdFlagFastZero, 0, 65536, nil, nil); r.errno != errNotSup {
		t.Fatalf("FAST_ZERO on a slow device: errno %d, want ENOTSUP", r.errno)
	}
	check(0, false) // untouched
	dev.fastZero.Store(true)
	if r := c.do(cmdWriteZeroes, cmdFlagFastZero, 0, 65536, nil, nil); r.errno != 0 {
		t.Fatalf("FAST_ZERO: errno %d", r.errno)
	}
	check(0, true)
	if r := c.do(cmdWriteZeroes, cmdFlagNoHole, 65536, 65536, nil, nil); r.errno != 0 {
		t.Fatal(r.errno)
	}
	check(65536, true)
	if r := c.do(cmdTrim, 0, 131072, 65536, nil, nil); r.errno != 0 {
		t.Fatal(r.errno)
	}
	check(131072, true)
	check(196608, false)
	// Punched ranges show up as holes, NO_HOLE zeroes as allocated zeroes
	// or data depending on the file system; the data after is data.
	r := c.do(cmdBlockStatus, 0, 0, 1<<20, nil, nil)
	if r.errno != 0 {
		t.Fatal(r.errno)
	}
	if r.descs[0] != [2]uint32{65536, stateHole | stateZero} {
		t.Fatalf("first extent %v, want 64KiB hole|zero", r.descs[0])
	}
	last := r.descs[len(r.descs)-1]
	if last[1] != 0 {
		t.Fatalf("last extent %v, want data", last)
	}
}

func TestBlockStatus(t *testing.T) {
	ts, dev, _ := setup(t)
	c := connect(t, ts.addr, "disk", clientOpts{structured: true, meta: true})
	if c.metaID == 0 {
		t.Fatal("no context ID")
	}
	if r := c.write(0, randBytes(t, 1<<20), 0); r.errno != 0 {
		t.Fatal(r.errno)
	}
	if r := c.write(8<<20, randBytes(t, 1<<20), 0); r.errno != 0 {
		t.Fatal(r.errno)
	}
	r := c.do(cmdBlockStatus, 0, 0, testSize, nil, nil)
	if r.errno != 0 || r.ctxID != c.metaID || len(r.chunks) != 1 || r.chunks[0] != replyTypeBlockStatus {
		t.Fatalf("block status: errno %d ctx %d chunks %v", r.errno, r.ctxID, r.chunks)
	}
	want := [][2]uint32{
		{1 << 20, 0},
		{7 << 20, stateHole | stateZero},
		{1 << 20, 0},
		{7 << 20, stateHole | stateZero},
	}
	if !slices.Equal(r.descs, want) {
		t.Fatalf("extents %v, want %v", r.descs, want)
	}
	r = c.do(cmdBlockStatus, cmdFlagReqOne, 512<<10, 4<<20, nil, nil)
	if r.errno != 0 || !slices.Equal(r.descs, [][2]uint32{{512 << 10, 0}}) {
		t.Fatalf("REQ_ONE: %v", r.descs)
	}
	r = c.do(cmdBlockStatus, 0, 2<<20, 1000, nil, nil)
	if r.errno != 0 || !slices.Equal(r.descs, [][2]uint32{{1000, stateHole | stateZero}}) {
		t.Fatalf("short query in a hole: %v", r.descs)
	}
	if r := c.do(cmdBlockStatus, 0, testSize-10, 11, nil, nil); r.errno != errInval {
		t.Fatalf("block status past the end: errno %d", r.errno)
	}
	if dev.blockStatusReq.Load() != 3 {
		t.Fatalf("device BlockStatus calls %d, want 3", dev.blockStatusReq.Load())
	}
	c.checkProto()

	// Without a metadata context BLOCK_STATUS is EINVAL.
	c2 := connect(t, ts.addr, "disk", clientOpts{structured: true})
	if r := c2.do(cmdBlockStatus, 0, 0, 4096, nil, nil); r.errno != errInval {
		t.Fatalf("block status without context: errno %d", r.errno)
	}
	// A context selected for another export does not carry over.
	c3 := dialRaw(t, ts.addr)
	c3.sendClientFlags(flagCFixedNewstyle | flagCNoZeroes)
	c3.option(optStructuredReply, nil)
	c3.structured = true
	c3.option(optSetMetaContext, metaData("other", metaBaseAllocation))
	if _, r := c3.option(optGo, infoGoData("disk")); r.typ != repAck {
		t.Fatalf("GO: %#x", r.typ)
	}
	c3.start()
	if r := c3.do(cmdBlockStatus, 0, 0, 4096, nil, nil); r.errno != errInval {
		t.Fatalf("block status with a context for another export: errno %d", r.errno)
	}
}

func TestStructuredRead(t *testing.T) {
	ts, _, _ := setup(t)
	c := connect(t, ts.addr, "disk", clientOpts{structured: true})
	if c.tflags&flagSendDF == 0 {
		t.Fatal("SEND_DF not advertised with structured replies")
	}
	data := randBytes(t, 300000)
	if r := c.write(12345, data, 0); r.errno != 0 {
		t.Fatal(r.errno)
	}
	got := make([]byte, len(data))
	r := c.read(12345, got, cmdFlagDF)
	if r.errno != 0 || !bytes.Equal(got, data) || r.dataN != len(data) {
		t.Fatalf("structured read: errno %d, %d bytes, equal %v", r.errno, r.dataN, bytes.Equal(got, data))
	}
	if !slices.Equal(r.chunks, []uint16{replyTypeOffsetData}) {
		t.Fatalf("chunks %v, want one OFFSET_DATA", r.chunks)
	}
	// A zero-length read is answered with a lone NONE chunk.
	if r := c.read(0, nil, 0); r.errno != 0 || !slices.Equal(r.chunks, []uint16{replyTypeNone}) {
		t.Fatalf("empty read: %d %v", r.errno, r.chunks)
	}
	c.checkProto()
}

func TestReadOnlyRaw(t *testing.T) {
	dev := newFileDevice(t, testSize)
	dev.ro = true
	ex := newTestExports()
	ex.add("ro", dev, true)
	ts := startServer(t, ex, Options{})
	c := connect(t, ts.addr, "ro", clientOpts{structured: true})
	if c.tflags&flagReadOnly == 0 || c.tflags&(flagSendTrim|flagSendWriteZeroes) != 0 {
		t.Fatalf("flags %#x: want READ_ONLY without TRIM/WRITE_ZEROES", c.tflags)
	}
	if r := c.write(0, make([]byte, 4096), 0); r.errno != errPerm {
		t.Fatalf("write: errno %d, want EPERM", r.errno)
	}
	if r := c.do(cmdTrim, 0, 0, 4096, nil, nil); r.errno != errPerm {
		t.Fatalf("trim: errno %d, want EPERM", r.errno)
	}
	if r := c.do(cmdWriteZeroes, 0, 0, 4096, nil, nil); r.errno != errPerm {
		t.Fatalf("write zeroes: errno %d, want EPERM", r.errno)
	}
	buf := make([]byte, 4096)
	if r := c.read(0, buf, 0); r.errno != 0 {
		t.Fatalf("read: errno %d", r.errno)
	}
	if dev.writes.Load()+dev.trims.Load()+dev.zeroes.Load() != 0 {
		t.Fatal("writes reached a read-only device")
	}
}

func TestDisconnect(t *testing.T) {
	ts, dev, ex := setup(t)
	c := connect(t, ts.addr, "disk", clientOpts{})
	// A write in flight when DISC arrives is still done and answered.
	data := randBytes(t, 1<<20)
	cl := c.send(cmdWrite, 0, 0, uint32(len(data)), data, nil)
	if err := c.disconnect(); err != nil {
		t.Fatal(err)
	}
	if cl.errno != 0 {
		t.Fatalf("write sent before DISC: errno %d", cl.errno)
	}
	if dev.writes.Load() != 1 {
		t.Fatal("write before DISC not done")
	}
	waitFor(t, "connection to end and release its device", func() bool {
		return ts.srv.Stats().ConnectionsActive == 0 && ex.releases.Load() == ex.opens.Load()
	})
}

func TestBadRequestMagicDropsConnection(t *testing.T) {
	ts, _, _ := setup(t)
	c := connect(t, ts.addr, "disk", clientOpts{})
	c.nc.Write(make([]byte, 28))
	select {
	case <-c.readerDone:
	case <-time.After(5 * time.Second):
		t.Fatal("server kept a connection that sent a bad magic")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConcurrentRequests keeps many requests in flight on several
// connections at once (run with -race).
func TestConcurrentRequests(t *testing.T) {
	ts, dev, _ := setup(t)
	const conns, perConn, block = 4, 16, 64 << 10
	clients := make([]*rawClient, conns)
	for i := range clients {
		clients[i] = connect(t, ts.addr, "disk", clientOpts{structured: i%2 == 0})
	}
	// Each goroutine owns one block, writes random data, reads it back.
	var wg sync.WaitGroup
	errs := make(chan error, conns*perConn)
	for ci, c := range clients {
		for j := range perConn {
			wg.Add(1)
			go func() {
				defer wg.Done()
				off := uint64((ci*perConn + j) * block)
				for round := range 8 {
					n, _ := rand.Int(rand.Reader, big.NewInt(block))
					data := make([]byte, 1+n.Int64())
					rand.Read(data)
					fl := uint16(0)
					if round%3 == 0 {
						fl = cmdFlagFUA
					}
					if r := c.write(off, data, fl); r.errno != 0 {
						errs <- fmt.Errorf("write: %d", r.errno)
						return
					}
					got := make([]byte, len(data))
					if r := c.read(off, got, 0); r.errno != 0 || !bytes.Equal(got, data) {
						errs <- fmt.Errorf("read back at %d: errno %d", off, r.errno)
						return
					}
				}
			}()
		}
	}
	// Flushes from every connection mixed in.
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if r := c.do(cmdFlush, 0, 0, 0, nil, nil); r.errno != 0 {
					errs <- fmt.Errorf("flush: %d", r.errno)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, c := range clients {
		c.checkProto()
		if err := c.disconnect(); err != nil {
			t.Error(err)
		}
	}
	if dev.writes.Load() != conns*perConn*8 {
		t.Fatalf("device writes %d", dev.writes.Load())
	}
	if s := ts.srv.Stats(); s.BytesWritten == 0 || s.BytesWritten != s.BytesRead {
		t.Fatalf("stats: written %d read %d", s.BytesWritten, s.BytesRead)
	}
}

// TestInflightBudget checks that a tiny MaxInflightBytes still lets large
// requests through (one at a time) and keeps the data right.
func TestInflightBudget(t *testing.T) {
	dev := newFileDevice(t, testSize)
	ex := newTestExports()
	ex.add("disk", dev, true)
	ts := startServer(t, ex, Options{MaxInflightBytes: 4096, Workers: 2})
	c := connect(t, ts.addr, "disk", clientOpts{})
	var calls []*call
	var want [][]byte
	for i := range 16 {
		d := randBytes(t, 100000)
		want = append(want, d)
		calls = append(calls, c.send(cmdWrite, 0, uint64(i*100000), uint32(len(d)), d, nil))
	}
	for _, cl := range calls {
		if c.wait(cl).errno != 0 {
			t.Fatal(cl.errno)
		}
	}
	for i, d := range want {
		got := make([]byte, len(d))
		if r := c.read(uint64(i*100000), got, 0); r.errno != 0 || !bytes.Equal(got, d) {
			t.Fatalf("block %d wrong", i)
		}
	}
}

// TestCloseWithBusyClients closes the server under load: Close returns,
// every connection ends and (TestMain) no goroutine is left.
func TestCloseWithBusyClients(t *testing.T) {
	dev := newFileDevice(t, testSize)
	ex := newTestExports()
	ex.add("disk", dev, true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ex, Options{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), lis) }()
	var clients []*rawClient
	for range 3 {
		clients = append(clients, connect(t, lis.Addr().String(), "disk", clientOpts{structured: true}))
	}
	// A client stuck in the handshake.
	idle := dialRaw(t, lis.Addr().String())
	_ = idle
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if r := c.read(0, buf, 0); r.errno == errConnClosed {
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	close(stop)
	wg.Wait()
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v, want ErrServerClosed", err)
	}
	if n := srv.Stats().ConnectionsActive; n != 0 {
		t.Fatalf("%d connections still active", n)
	}
	if ex.opens.Load() != ex.releases.Load() {
		t.Fatalf("opens %d releases %d", ex.opens.Load(), ex.releases.Load())
	}
	if err := srv.Serve(context.Background(), lis); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

// TestServeContextCancel: cancelling Serve's context stops it and its
// connections.
func TestServeContextCancel(t *testing.T) {
	dev := newFileDevice(t, testSize)
	ex := newTestExports()
	ex.add("disk", dev, true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ex, Options{})
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	c := connect(t, lis.Addr().String(), "disk", clientOpts{})
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	select {
	case <-c.readerDone:
	case <-time.After(5 * time.Second):
		t.Fatal("connection outlived Serve")
	}
}

// TestOversizedOptionAnsweredAtOnce: the NBD_REP_ERR_TOO_BIG answer to an
// option over the 64 KiB limit reaches a client that sends nothing else,
// and the negotiation goes on afterwards.
func TestOversizedOptionAnsweredAtOnce(t *testing.T) {
	ts, _, _ := setup(t)
	c := dialRaw(t, ts.addr)
	c.sendClientFlags(flagCFixedNewstyle | flagCNoZeroes)
	c.sendOpt(optInfo, make([]byte, 1<<20))
	// Far below the 30 s handshake timeout, which would otherwise end the
	// wait with EOF.
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	r, err := c.readOptReply()
	if err != nil {
		t.Fatalf("no answer to a 1 MiB option: %v", err)
	}
	if r.opt != optInfo || r.typ != repErrTooBig {
		t.Fatalf("answer to a 1 MiB option: option %d type %#x, want %d NBD_REP_ERR_TOO_BIG", r.opt, r.typ, optInfo)
	}
	if _, r := c.option(optGo, infoGoData("disk")); r.typ != repAck {
		t.Fatalf("NBD_OPT_GO after the oversized option: %#x, want ACK", r.typ)
	}
}

// TestLatencyCountsEachRequest: every request is counted once, under its
// kind, on the quick path (plain reads and writes) and the workers' (FUA
// writes, flushes) alike.
func TestLatencyCountsEachRequest(t *testing.T) {
	dev := &quickDevice{memDevice: memDevice{data: make([]byte, 1<<20)}} // even blocks quick, odd ones the workers'
	ex := newTestExports()
	ex.add("q", dev, true)
	ts := startServer(t, ex, Options{})
	c := connect(t, ts.addr, "q", clientOpts{structured: true})
	data := randBytes(t, 4096)
	for i := range 3 {
		if r := c.write(uint64(i)*4096, data, 0); r.errno != 0 {
			t.Fatalf("write: errno %d", r.errno)
		}
	}
	if r := c.write(0, data, cmdFlagFUA); r.errno != 0 {
		t.Fatalf("FUA write: errno %d", r.errno)
	}
	for i := range 2 {
		if r := c.read(uint64(i)*4096, make([]byte, 4096), 0); r.errno != 0 {
			t.Fatalf("read: errno %d", r.errno)
		}
	}
	if dev.quickWrites.Load() != 2 || dev.quickReads.Load() != 1 {
		t.Fatalf("served quickly: %d writes and %d reads; want 2 and 1", dev.quickWrites.Load(), dev.quickReads.Load())
	}
	if r := c.do(cmdFlush, 0, 0, 0, nil, nil); r.errno != 0 {
		t.Fatalf("flush: errno %d", r.errno)
	}
	lat := ts.srv.Stats().Latency
	// Read, write, flush, other.
	if got, want := latency.Counts(lat), [latency.NumOps]uint64{2, 4, 1, 0}; got != want {
		t.Errorf("commands counted by kind %v; want %v", got, want)
	}
	if lat[latency.Write].Sum <= 0 {
		t.Errorf("writes took no time: %+v", lat[latency.Write])
	}
}

// refusingWrites refuses every write with a Refusal.
type refusingWrites struct{ *fileDevice }

func (d refusingWrites) WriteAt(context.Context, []byte, int64, bool) error {
	return &Refusal{Errno: syscall.EPERM, Reason: "reserved by another host",
		Err: errors.New("volume v is reserved by host h; release it there")}
}

// TestRefusalIsToldAndLoggedOnce: a device's Refusal reaches the client
// as its errno with its reason in the structured reply, and the operator
// as one warning per connection, however many requests it refuses.
func TestRefusalIsToldAndLoggedOnce(t *testing.T) {
	ex := newTestExports()
	ex.add("disk", refusingWrites{newFileDevice(t, testSize)}, true)
	ts := startServer(t, ex, Options{})
	for _, structured := range []bool{true, false} {
		c := connect(t, ts.addr, "disk", clientOpts{structured: structured})
		for range 3 {
			r := c.write(0, make([]byte, 4096), 0)
			if r.errno != errPerm || (structured && r.msg != "reserved by another host") {
				t.Fatalf("refused write (structured %v): errno %d, message %q; want EPERM and the device's reason", structured, r.errno, r.msg)
			}
		}
		if r := c.read(0, make([]byte, 4096), 0); r.errno != 0 {
			t.Fatalf("read after the refusals: errno %d", r.errno)
		}
		c.checkProto()
	}
	if n := strings.Count(ts.logs.String(), "volume v is reserved by host h"); n != 2 {
		t.Fatalf("the refusal was logged %d times for two connections of three refused writes each, want 2:\n%s", n, ts.logs.String())
	}
}
