package iscsi

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// fuzzDevice is a memory Device that fails the test on anything the
// server must never ask of a device: a range outside [0, Size()), a
// misaligned one, or a write to a read-only LUN.
type fuzzDevice struct {
	t  *testing.T
	ro bool
	mu sync.Mutex
	d  []byte
}

func (f *fuzzDevice) check(op string, off, n int64, write bool) bool {
	f.t.Helper()
	if off < 0 || n < 0 || off > int64(len(f.d)) || n > int64(len(f.d))-off || off%BlockSize != 0 || n%BlockSize != 0 {
		f.t.Errorf("%s [%d, +%d) outside or misaligned in %d bytes", op, off, n, len(f.d))
		return false
	}
	if write && f.ro {
		f.t.Errorf("%s on a read-only device", op)
		return false
	}
	return true
}

func (f *fuzzDevice) Size() int64    { return int64(len(f.d)) }
func (f *fuzzDevice) ReadOnly() bool { return f.ro }
func (f *fuzzDevice) ReadAt(_ context.Context, p []byte, off int64) error {
	if f.check("ReadAt", off, int64(len(p)), false) {
		f.mu.Lock()
		copy(p, f.d[off:])
		f.mu.Unlock()
	}
	return nil
}
func (f *fuzzDevice) WriteAt(_ context.Context, p []byte, off int64, _ bool) error {
	if f.check("WriteAt", off, int64(len(p)), true) {
		f.mu.Lock()
		copy(f.d[off:], p)
		f.mu.Unlock()
	}
	return nil
}
func (f *fuzzDevice) Flush(context.Context) error { return nil }
func (f *fuzzDevice) Zero(_ context.Context, off, n int64, _ bool) error {
	if f.check("Zero", off, n, true) {
		f.mu.Lock()
		clear(f.d[off : off+n])
		f.mu.Unlock()
	}
	return nil
}
func (f *fuzzDevice) Identity() Identity { return Identity{NAA: [16]byte{0x60, 0xf}} }
func (f *fuzzDevice) Close()             {}

// FuzzPDU feeds arbitrary bytes to the PDU reader (with and without
// digests) and every data segment it yields to the text parser, and to a
// login on a real connection: nothing may panic, and a parsed PDU's
// lengths must match what was read.
func FuzzPDU(f *testing.F) {
	var bhs [bhsLen]byte
	bhs[0] = opLoginReq | immediateBit
	bhs[1] = 0x87
	var text []byte
	text = appendText(text, "InitiatorName", rawInit)
	text = appendText(text, "TargetName", testIQN)
	text = appendText(text, "HeaderDigest", "CRC32C,None")
	f.Add(appendPDU(nil, &bhs, text, false, false), byte(0))
	f.Add(appendPDU(nil, &bhs, text, true, true), byte(3))
	bhs[4] = 2
	f.Add(append(appendPDU(nil, &bhs, []byte("a=b\x00c"), false, false), make([]byte, 8)...), byte(1))
	f.Add([]byte("X=\x00=Y\x00\x00\x00Key=Value"), byte(0))
	f.Fuzz(func(t *testing.T, in []byte, mode byte) {
		pr := pduReader{r: bufio.NewReader(bytes.NewReader(in)), headerDigest: mode&1 != 0, dataDigest: mode&2 != 0, maxData: 1 << 16}
		for {
			var p pdu
			if err := pr.read(&p); err != nil {
				break
			}
			if len(p.data) != dataLength(&p.bhs) || len(p.ahs) != ahsLength(&p.bhs) {
				t.Fatalf("data %d ahs %d for a header saying %d and %d", len(p.data), len(p.ahs), dataLength(&p.bhs), ahsLength(&p.bhs))
			}
			kv, err := parseText(p.data)
			if err == nil {
				for _, x := range kv {
					if x[0] == "" || len(x[0]) > 63 {
						t.Fatalf("parsed key %q", x[0])
					}
				}
			}
			extendedCDB(p.ahs)
		}
		parseText(in)
		// The same bytes as the first PDUs of a connection.
		dev := &fuzzDevice{t: t, d: make([]byte, 64<<10)}
		tt := newTestTargets()
		tt.add(testIQN, rawInit, Auth{}, 0, dev)
		srv := NewServer(tt, Options{LoginTimeout: time.Second})
		client, server := net.Pipe()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			io.Copy(io.Discard, client)
		}()
		go func() {
			defer wg.Done()
			client.Write(in)
			client.Close()
		}()
		srv.serveConn(context.Background(), server)
		client.Close()
		wg.Wait()
	})
}

// FuzzCDB runs arbitrary CDBs and Data-Out through the command
// dispatcher against a small device: never a panic, always a status, and
// CHECK CONDITION always with sense data.
func FuzzCDB(f *testing.F) {
	seeds := [][]byte{
		{0x12, 1, 0x83, 0, 255, 0}, {0x12, 1, 0xb0, 0, 255, 0}, {0x12, 0, 0, 0, 96, 0},
		{0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0}, {0x2a, 8, 0, 0, 0, 1, 0, 0, 1, 0},
		{0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0, 0, 0, 1, 0, 0},
		{0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0},
		{0x93, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0},
		{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0}, {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0},
		{0x9e, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},
		{0xa3, 0x0c, 0x01, 0x28, 0, 0, 0, 0, 1, 0, 0, 0}, {0xa3, 0x0c, 0x80, 0, 0, 0, 0, 0, 16, 0, 0, 0},
		{0x5a, 0, 0x3f, 0xff, 0, 0, 0, 1, 0, 0}, {0x1a, 0x08, 0x08, 0, 255, 0},
		{0x2f, 2, 0, 0, 0, 0, 0, 0, 1, 0}, {0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, {0x03, 1, 0, 0, 18, 0},
		{0x5e, 0x03, 0, 0, 0, 0, 0, 0x40, 0, 0}, {0x5f, 0x06, 0, 0, 0, 0, 0, 0, 24, 0}, {0x5f, 0x01, 0x08, 0, 0, 0, 0, 0, 24, 0},
	}
	for _, s := range seeds {
		f.Add(s, make([]byte, 1024), uint32(1024), byte(0))
	}
	f.Fuzz(func(t *testing.T, cdb, out []byte, edtl uint32, lunByte byte) {
		if len(cdb) == 0 || len(cdb) > 32 || len(out) > 1<<20 {
			return
		}
		dev := &fuzzDevice{t: t, ro: lunByte&0x80 != 0, d: make([]byte, 256<<10)}
		tt := newTestTargets()
		tt.add(testIQN, rawInit, Auth{}, 0, dev)
		srv := NewServer(tt, Options{})
		ss := newSCSISession(srv, nexus{initiator: rawInit, target: testIQN})
		defer ss.close()
		var raw uint64
		if lunByte&1 != 0 {
			raw = uint64(lunByte) << 48
		}
		res := ss.exec(context.Background(), raw, cdb, out, int(edtl%(2<<20)), newByteBudget(8<<20), 0)
		switch res.status {
		case statusGood, statusReservationConflict:
		case statusCheckCondition:
			if len(res.sense) < 14 {
				t.Fatalf("CHECK CONDITION without sense for %x", cdb)
			}
		default:
			t.Fatalf("status %#x for %x", res.status, cdb)
		}
		if res.release != nil {
			res.release()
		}
	})
}

// FuzzReservationMessages: what the other target of a shared unit sends
// comes off the network. No input makes the decoders panic, and a state
// that decodes encodes back to one that decodes the same.
func FuzzReservationMessages(f *testing.F) {
	st := &prState{version: 7, generation: 3, typ: prWriteExclusive, aptpl: true,
		regs: []registration{{n: nexus{initiator: rawInit, isid: [6]byte{0x80, 0, 0, 0, 0, 1}, target: testIQN, port: 2}, key: 9}}}
	st.holder = st.regs[0].n
	f.Add(encodeState(st, map[nexus]uint16{st.holder: ascRegistrationsPreempted}, stateAborts))
	f.Add(encodeReservationOut(st.holder, []byte{0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0}, make([]byte, prParamsLen)))
	f.Add(encodeReservationReply(conflict()))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeReservationOut(b)
		decodeReservationReply(b)
		got, owe, flags, err := decodeState(b)
		if err != nil {
			return
		}
		again, owe2, flags2, err := decodeState(encodeState(got, owe, flags))
		if err != nil || again.version != got.version || again.generation != got.generation || again.typ != got.typ ||
			again.holder != got.holder || again.aptpl != got.aptpl || len(again.regs) != len(got.regs) || len(owe2) != len(owe) || flags2 != flags {
			t.Fatalf("a decoded state does not survive its own encoding: %+v then %+v (%v)", got, again, err)
		}
	})
}
