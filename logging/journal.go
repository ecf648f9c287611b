// Package logging builds volrepd's logger. Under systemd it writes to
// journald with every slog attribute as a journal field of its own, so that
// `journalctl -u volrepd BACKEND_ID=pure2-async PRIORITY=3` finds exactly the
// records an operator is after; elsewhere it writes slog's text or JSON.
package logging

import (
	"bytes"
	"context"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultSocket is where journald receives native-protocol datagrams.
const DefaultSocket = "/run/systemd/journal/socket"

// DefaultIdentifier is the SYSLOG_IDENTIFIER of every record, which is what
// `journalctl -t volrepd` matches.
const DefaultIdentifier = "volrepd"

// maxFieldName is journald's limit on a field name; longer names are
// dropped by journald, so they are cut here instead.
const maxFieldName = 64

// renamed starts a field name that would otherwise be invalid or would
// collide with a field the handler sets itself.
const renamed = "X_"

// reserved are the fields the handler writes for every record. An attribute
// mapping to one of them is renamed, so that a stray "message" or
// "priority" attribute cannot add a second MESSAGE or PRIORITY value and
// break `journalctl PRIORITY=3`.
var reserved = map[string]bool{
	"MESSAGE": true, "PRIORITY": true, "SYSLOG_IDENTIFIER": true,
	"CODE_FILE": true, "CODE_LINE": true, "CODE_FUNC": true,
}

// JournalOptions configure a JournalHandler.
type JournalOptions struct {
	// Level is the minimum level sent; nil means slog.LevelInfo.
	Level slog.Leveler
	// Identifier is SYSLOG_IDENTIFIER; "" means DefaultIdentifier.
	Identifier string
	// Socket is journald's native socket; "" means DefaultSocket. Tests
	// point it at a journald of their own.
	Socket string
}

// JournalHandler is a slog.Handler that sends each record to journald over
// its native protocol (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/): one
// datagram per record holding PRIORITY, MESSAGE, SYSLOG_IDENTIFIER,
// CODE_FILE/CODE_LINE/CODE_FUNC and one upper-case field per attribute,
// with group names joined by "_" (see FieldName).
//
// The protocol is written here rather than through go-systemd's
// journal.Send because Send's socket path is fixed at build time, which
// would leave the handler's real output untestable; go-systemd is still
// used to recognise a journal stream on stderr (see New).
//
// A JournalHandler is safe for concurrent use; the handlers WithAttrs and
// WithGroup derive from it share its socket.
type JournalHandler struct {
	sink   *sink
	level  slog.Leveler
	ident  string
	prefix string // the open groups, each followed by "_", as written in code
	fields []byte // WithAttrs' attributes, already encoded
}

var _ slog.Handler = (*JournalHandler)(nil)

// sink is the socket records leave by. It is not connected: each datagram
// is addressed to the socket path, so a restarted journald (a new socket at
// the same path) is reached without reconnecting.
type sink struct {
	conn *net.UnixConn
	addr *net.UnixAddr
}

// NewJournalHandler returns a handler writing to journald's socket. It
// fails when nothing listens there, so that a daemon asked for journal
// logging says so at start instead of logging into the void.
func NewJournalHandler(opts JournalOptions) (*JournalHandler, error) {
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	if opts.Identifier == "" {
		opts.Identifier = DefaultIdentifier
	}
	if opts.Level == nil {
		opts.Level = slog.LevelInfo
	}
	addr := &net.UnixAddr{Name: opts.Socket, Net: "unixgram"}
	probe, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return nil, fmt.Errorf("journald is not listening at %s: %w", opts.Socket, err)
	}
	probe.Close()
	// An empty name autobinds the socket to a unique abstract address.
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("opening a socket for journald: %w", err)
	}
	return &JournalHandler{sink: &sink{conn: conn, addr: addr}, level: opts.Level, ident: opts.Identifier}, nil
}

// Close releases the socket of h and of every handler derived from it.
func (h *JournalHandler) Close() error { return h.sink.conn.Close() }

// Enabled reports whether records at level are sent.
func (h *JournalHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

// WithAttrs returns a handler that adds attrs, under the open groups, to
// every record.
func (h *JournalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	buf := bytes.NewBuffer(append([]byte(nil), h.fields...))
	for _, a := range attrs {
		appendAttr(buf, h.prefix, a)
	}
	h2.fields = buf.Bytes()
	return &h2
}

// WithGroup returns a handler that puts later attributes in group name:
// attribute "method" in group "grpc" becomes GRPC_METHOD.
func (h *JournalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + name + "_"
	return &h2
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Handle sends r as one journal entry.
func (h *JournalHandler) Handle(_ context.Context, r slog.Record) error {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		// Keep one huge record from pinning its buffer for good.
		if buf.Cap() <= 64<<10 {
			bufPool.Put(buf)
		}
	}()
	appendField(buf, "PRIORITY", strconv.Itoa(Priority(r.Level)))
	appendField(buf, "MESSAGE", r.Message)
	appendField(buf, "SYSLOG_IDENTIFIER", h.ident)
	if r.PC != 0 {
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		appendField(buf, "CODE_FILE", f.File)
		appendField(buf, "CODE_LINE", strconv.Itoa(f.Line))
		appendField(buf, "CODE_FUNC", f.Function)
	}
	buf.Write(h.fields)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(buf, h.prefix, a)
		return true
	})
	return h.sink.send(buf.Bytes())
}

// Priority maps a slog level to a syslog priority: debug 7, info 6,
// warn 4, error 3. A level between two of slog's takes the priority of the
// lower one (INFO+2 is still 6), so nothing is promoted to an error.
func Priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	default:
		return 7
	}
}

// appendAttr encodes one attribute, flattening groups into prefixed names.
// It follows slog's rules for handlers: values are resolved, an empty
// attribute and an empty group are dropped, a group with no key is inlined.
func appendAttr(buf *bytes.Buffer, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "_"
		}
		for _, ga := range a.Value.Group() {
			appendAttr(buf, p, ga)
		}
		return
	}
	name := FieldName(prefix + a.Key)
	if reserved[name] {
		name = renamed + name
	}
	appendField(buf, name, valueText(a.Value))
}

// FieldName turns an attribute name (with its groups, joined by "_") into a
// valid journal field name: upper case; every character outside [A-Z0-9_]
// becomes "_"; a name that does not start with a letter (journald rejects
// a leading digit, and a leading "_" marks fields only journald may set)
// gets the prefix "X_"; at most 64 characters. So "backend_id" is
// BACKEND_ID, "grpc.code" is GRPC_CODE and "2fa" is X_2FA.
func FieldName(key string) string {
	b := make([]byte, 0, len(key)+len(renamed))
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		default:
			c = '_'
		}
		b = append(b, c)
	}
	if len(b) == 0 || b[0] < 'A' || b[0] > 'Z' {
		b = append([]byte(renamed), b...)
	}
	if len(b) > maxFieldName {
		b = b[:maxFieldName]
	}
	return string(b)
}

// valueText renders a resolved value the way slog's text handler would,
// except that times are RFC 3339, which journalctl users can paste.
func valueText(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case encoding.TextMarshaler:
			if b, err := x.MarshalText(); err == nil {
				return string(b)
			}
		case []byte:
			return string(x)
		}
		return fmt.Sprintf("%+v", v.Any())
	}
	return v.String()
}

// appendField writes one field in the native protocol: NAME=value on one
// line, or, when the value holds a newline (a multi-line error, a config
// problem list), NAME, a newline, the value's length as a little-endian
// uint64, the value and a newline.
func appendField(buf *bytes.Buffer, name, value string) {
	buf.WriteString(name)
	if !containsNewline(value) {
		buf.WriteByte('=')
		buf.WriteString(value)
		buf.WriteByte('\n')
		return
	}
	buf.WriteByte('\n')
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(value)))
	buf.Write(n[:])
	buf.WriteString(value)
	buf.WriteByte('\n')
}

func containsNewline(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return true
		}
	}
	return false
}

// send delivers one entry. A datagram larger than the socket allows is
// passed instead as a sealed memfd, which journald reads the entry from.
func (s *sink) send(p []byte) error {
	_, _, err := s.conn.WriteMsgUnix(p, nil, s.addr)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EMSGSIZE) && !errors.Is(err, syscall.ENOBUFS) {
		return fmt.Errorf("sending to journald: %w", err)
	}
	return s.sendMemfd(p)
}

func (s *sink) sendMemfd(p []byte) error {
	fd, err := unix.MemfdCreate("volrep-journal-entry", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return fmt.Errorf("sending a large entry to journald: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "volrep-journal-entry")
	defer f.Close()
	if _, err := f.Write(p); err != nil {
		return fmt.Errorf("sending a large entry to journald: %w", err)
	}
	// journald only trusts a memfd nobody can change any more.
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		return fmt.Errorf("sending a large entry to journald: sealing the memfd: %w", err)
	}
	if _, _, err := s.conn.WriteMsgUnix(nil, unix.UnixRights(int(f.Fd())), s.addr); err != nil {
		return fmt.Errorf("sending a large entry to journald: %w", err)
	}
	return nil
}
