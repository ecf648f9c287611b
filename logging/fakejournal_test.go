package logging

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// entry is one decoded journal entry: every value of every field, in the
// order sent.
type entry map[string][]string

// one returns the field's single value, failing the test when it has none
// or several.
func (e entry) one(t *testing.T, field string) string {
	t.Helper()
	vs := e[field]
	if len(vs) != 1 {
		t.Fatalf("field %s: want exactly one value, got %q (entry %v)", field, vs, e)
	}
	return vs[0]
}

// fakeJournal owns a unixgram socket and decodes what arrives on it with
// the native protocol, the way journald does, rejecting anything journald
// would reject. It stands in for journald where tests must not depend on
// one.
type fakeJournal struct {
	path    string
	conn    *net.UnixConn
	entries chan entry
	errs    chan error
	done    chan struct{}
	viaFD   atomic.Int32 // entries that came as a passed file descriptor
}

func newFakeJournal(t *testing.T) *fakeJournal {
	t.Helper()
	// A short directory: socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "vj")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "socket")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	// Room for the largest datagram the kernel lets a sender pass.
	if err := conn.SetReadBuffer(8 << 20); err != nil {
		t.Fatal(err)
	}
	j := &fakeJournal{path: path, conn: conn, entries: make(chan entry, 1000), errs: make(chan error, 1000), done: make(chan struct{})}
	go j.serve()
	t.Cleanup(func() {
		conn.Close()
		<-j.done
		os.RemoveAll(dir)
		select {
		case err := <-j.errs:
			t.Errorf("fake journal: %v", err)
		default:
		}
	})
	return j
}

func (j *fakeJournal) serve() {
	defer close(j.done)
	buf := make([]byte, 4<<20)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := j.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return // closed by the test's cleanup
		}
		data := append([]byte(nil), buf[:n]...)
		if oobn > 0 {
			// A large entry arrives as a file descriptor with no payload.
			data, err = readPassedFD(oob[:oobn])
			if err != nil {
				j.errs <- err
				continue
			}
			j.viaFD.Add(1)
		}
		e, err := decodeEntry(data)
		if err != nil {
			j.errs <- err
			continue
		}
		j.entries <- e
	}
}

func readPassedFD(oob []byte) ([]byte, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("control message: %v (%d messages)", err, len(msgs))
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("passed fds: %v (%d)", err, len(fds))
	}
	f := os.NewFile(uintptr(fds[0]), "passed")
	defer f.Close()
	// journald reads from offset 0 whatever the sender's offset.
	return io.ReadAll(io.NewSectionReader(f, 0, 1<<40))
}

// next waits for the next entry.
func (j *fakeJournal) next(t *testing.T) entry {
	t.Helper()
	select {
	case e := <-j.entries:
		return e
	case err := <-j.errs:
		t.Fatalf("fake journal: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no journal entry arrived within 10s")
	}
	return nil
}

// decodeEntry parses the native protocol: NAME=value lines, or NAME, a
// newline, a little-endian uint64 length, the value and a newline.
func decodeEntry(p []byte) (entry, error) {
	e := entry{}
	for len(p) > 0 {
		i := bytes.IndexAny(p, "=\n")
		if i < 0 {
			return nil, fmt.Errorf("field without a value: %q", p)
		}
		name := string(p[:i])
		if err := validField(name); err != nil {
			return nil, err
		}
		var value []byte
		if p[i] == '=' {
			j := bytes.IndexByte(p[i+1:], '\n')
			if j < 0 {
				return nil, fmt.Errorf("field %s: no terminating newline", name)
			}
			value, p = p[i+1:i+1+j], p[i+1+j+1:]
		} else {
			p = p[i+1:]
			if len(p) < 8 {
				return nil, fmt.Errorf("field %s: truncated length", name)
			}
			n := binary.LittleEndian.Uint64(p)
			p = p[8:]
			if uint64(len(p)) < n+1 || p[n] != '\n' {
				return nil, fmt.Errorf("field %s: length %d does not match the data", name, n)
			}
			value, p = p[:n], p[n+1:]
		}
		e[name] = append(e[name], string(value))
	}
	return e, nil
}

// validField applies journald's rules for field names a client may send.
func validField(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("field name %q: empty or longer than 64", name)
	}
	if name[0] < 'A' || name[0] > 'Z' {
		return fmt.Errorf("field name %q must start with A-Z", name)
	}
	for _, c := range []byte(name) {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("field name %q has a character outside A-Z, 0-9, _", name)
		}
	}
	return nil
}

// TestDecoderRejectsWhatJournaldRejects keeps the fake honest: a decoder
// that accepted anything would let an encoding bug through.
func TestDecoderRejectsWhatJournaldRejects(t *testing.T) {
	for _, bad := range []string{
		"message=x\n", // lower case
		"_PID=1\n",    // trusted field
		"1A=x\n",      // leading digit
		"A-B=x\n",     // invalid character
		"MESSAGE\n\x05\x00\x00\x00\x00\x00\x00\x00ab\n", // length beyond the data
		"MESSAGE=no newline",
	} {
		if _, err := decodeEntry([]byte(bad)); err == nil {
			t.Errorf("decodeEntry(%q) accepted it", bad)
		}
	}
	e, err := decodeEntry([]byte("A=1\nB\n\x03\x00\x00\x00\x00\x00\x00\x00x\ny\nA=2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(e["A"]) != "[1 2]" || e["B"][0] != "x\ny" {
		t.Errorf("decoded %q", e)
	}
}
