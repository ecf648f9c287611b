package logging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/volrep/volrep/config"
)

func newTestHandler(t *testing.T, j *fakeJournal, level slog.Level) *JournalHandler {
	t.Helper()
	h, err := NewJournalHandler(JournalOptions{Socket: j.path, Level: level})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// logConfigTypo logs a config problem exactly as daemon.Run does.
func logConfigTypo(log *slog.Logger) {
	p := config.Problem{File: "/etc/volrep/volrep.conf", Line: 31, Section: "pure2", Key: "bakend_id",
		Message: `unknown key "bakend_id" in replication_device of [pure2]; did you mean "backend_id"?`}
	log.Error("config problem", "file", p.File, "line", p.Line, "section", p.Section, "key", p.Key, "problem", p.Message)
}

// logOutage logs a replication outage as the array's replication engine
// does, with the backend_id the link serves.
func logOutage(log *slog.Logger) {
	log.With("array", "site-a").Warn("replication failed; retrying with backoff",
		"replica", "cinder-group.pure2-async", "link", "pure2-async", "backend_id", "pure2-async",
		"err", errors.New("peer array at 10.0.0.2:7401 is unreachable:\nconnection refused"))
}

func TestJournalFieldsOfDaemonRecords(t *testing.T) {
	j := newFakeJournal(t)
	log := slog.New(newTestHandler(t, j, slog.LevelDebug))

	logConfigTypo(log)
	typo := j.next(t)
	want := map[string]string{
		"PRIORITY":          "3",
		"MESSAGE":           "config problem",
		"SYSLOG_IDENTIFIER": "volrepd",
		"FILE":              "/etc/volrep/volrep.conf",
		"LINE":              "31",
		"SECTION":           "pure2",
		"KEY":               "bakend_id",
		"PROBLEM":           `unknown key "bakend_id" in replication_device of [pure2]; did you mean "backend_id"?`,
	}
	for k, v := range want {
		if got := typo.one(t, k); got != v {
			t.Errorf("typo record %s = %q, want %q", k, got, v)
		}
	}
	if f := typo.one(t, "CODE_FILE"); !strings.HasSuffix(f, "logging/journal_test.go") {
		t.Errorf("CODE_FILE = %q, want this test file", f)
	}
	if fn := typo.one(t, "CODE_FUNC"); !strings.HasSuffix(fn, ".logConfigTypo") {
		t.Errorf("CODE_FUNC = %q, want logConfigTypo", fn)
	}
	if line, err := strconv.Atoi(typo.one(t, "CODE_LINE")); err != nil || line <= 0 {
		t.Errorf("CODE_LINE = %q", typo["CODE_LINE"])
	}

	logOutage(log)
	outage := j.next(t)
	for k, v := range map[string]string{
		"PRIORITY":   "4",
		"BACKEND_ID": "pure2-async",
		"LINK":       "pure2-async",
		"REPLICA":    "cinder-group.pure2-async",
		"ARRAY":      "site-a",
		// A multi-line value survives whole (the binary form).
		"ERR": "peer array at 10.0.0.2:7401 is unreachable:\nconnection refused",
	} {
		if got := outage.one(t, k); got != v {
			t.Errorf("outage record %s = %q, want %q", k, got, v)
		}
	}
}

func TestJournalPriorities(t *testing.T) {
	j := newFakeJournal(t)
	log := slog.New(newTestHandler(t, j, slog.LevelDebug))
	for _, c := range []struct {
		level slog.Level
		want  string
	}{{slog.LevelDebug, "7"}, {slog.LevelInfo, "6"}, {slog.LevelInfo + 2, "6"}, {slog.LevelWarn, "4"}, {slog.LevelError, "3"}, {slog.LevelError + 4, "3"}} {
		log.Log(context.Background(), c.level, "m")
		if got := j.next(t).one(t, "PRIORITY"); got != c.want {
			t.Errorf("level %v: PRIORITY=%s, want %s", c.level, got, c.want)
		}
	}
}

func TestJournalLevelFilter(t *testing.T) {
	j := newFakeJournal(t)
	log := slog.New(newTestHandler(t, j, slog.LevelWarn))
	log.Info("dropped")
	log.Warn("kept")
	if got := j.next(t).one(t, "MESSAGE"); got != "kept" {
		t.Errorf("first entry is %q; the info record should have been filtered out", got)
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{
		"backend":                "BACKEND",
		"backend_id":             "BACKEND_ID",
		"volume":                 "VOLUME",
		"grpc.method":            "GRPC_METHOD",
		"grpc.code":              "GRPC_CODE",
		"Mixed-Case key":         "MIXED_CASE_KEY",
		"2fa":                    "X_2FA",
		"_pid":                   "X__PID",
		"":                       "X_",
		"é":                      "X___", // two bytes of UTF-8, each invalid
		strings.Repeat("a", 100): strings.Repeat("A", 64),
	} {
		got := FieldName(in)
		if got != want {
			t.Errorf("FieldName(%q) = %q, want %q", in, got, want)
		}
		if err := validField(got); err != nil {
			t.Errorf("FieldName(%q): %v", in, err)
		}
	}
}

func TestJournalGroupsAndAttrs(t *testing.T) {
	j := newFakeJournal(t)
	base := slog.New(newTestHandler(t, j, slog.LevelDebug))

	log := base.With("backend", "pure1").WithGroup("grpc").With("code", "OK").WithGroup("").With(slog.Group("peer", "addr", "10.0.0.1"))
	log.Info("finished call", "method", "/volrep.driver.v1.DriverService/ListBackends", slog.Group("", "inlined", "yes"), slog.Group("empty"))
	e := j.next(t)
	for k, v := range map[string]string{
		"BACKEND":        "pure1",
		"GRPC_CODE":      "OK",
		"GRPC_PEER_ADDR": "10.0.0.1",
		"GRPC_METHOD":    "/volrep.driver.v1.DriverService/ListBackends",
		"GRPC_INLINED":   "yes",
	} {
		if got := e.one(t, k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for k := range e {
		if strings.HasPrefix(k, "GRPC_EMPTY") || k == "EMPTY" {
			t.Errorf("empty group produced field %s", k)
		}
	}

	// Handlers derived from one another do not share attributes.
	base.Info("plain")
	if e := j.next(t); e["BACKEND"] != nil || e["GRPC_CODE"] != nil {
		t.Errorf("the base logger picked up a derived logger's attributes: %v", e)
	}
	a := base.With("k", "a")
	b := a.With("k2", "b")
	c := a.With("k2", "c")
	b.Info("b")
	c.Info("c")
	if eb, ec := j.next(t), j.next(t); eb.one(t, "K2") != "b" || ec.one(t, "K2") != "c" || eb.one(t, "K") != "a" {
		t.Errorf("sibling handlers mixed attributes: %v / %v", eb, ec)
	}
}

type lazy struct{ calls *int }

func (l lazy) LogValue() slog.Value {
	*l.calls++
	return slog.GroupValue(slog.String("state", "up"), slog.Int("targets", 2))
}

func TestJournalValues(t *testing.T) {
	j := newFakeJournal(t)
	log := slog.New(newTestHandler(t, j, slog.LevelDebug))
	calls := 0
	at := time.Date(2026, 11, 24, 10, 0, 0, 5, time.UTC)
	token := config.Secret("s3cret-token-value")
	log.Info("values",
		"token", token,
		"lazy", lazy{&calls},
		"at", at,
		"took", 1500*time.Millisecond,
		"n", 42,
		"ok", true,
		"raw", []byte("bytes"),
		"shape", struct{ A int }{7},
		"message", "not the message",
		"priority", "not the priority",
		slog.Attr{}, // dropped, per slog's rules
	)
	e := j.next(t)
	for k, v := range map[string]string{
		"TOKEN":        "****",
		"LAZY_STATE":   "up",
		"LAZY_TARGETS": "2",
		"AT":           "2026-11-24T10:00:00.000000005Z",
		"TOOK":         "1.5s",
		"N":            "42",
		"OK":           "true",
		"RAW":          "bytes",
		"SHAPE":        "{A:7}",
		"MESSAGE":      "values",
		"X_MESSAGE":    "not the message",
		"PRIORITY":     "6",
		"X_PRIORITY":   "not the priority",
	} {
		if got := e.one(t, k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if calls != 1 {
		t.Errorf("LogValue called %d times, want 1", calls)
	}
	for k, vs := range e {
		for _, v := range vs {
			if strings.Contains(v, token.Reveal()) {
				t.Errorf("field %s leaks the token: %q", k, v)
			}
		}
	}
}

// A record too large for one datagram goes as a sealed memfd.
func TestJournalLargeEntry(t *testing.T) {
	j := newFakeJournal(t)
	log := slog.New(newTestHandler(t, j, slog.LevelDebug))
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB, beyond any datagram limit
	log.Info("large", "dump", big+"\nend")
	e := j.next(t)
	if got := e.one(t, "DUMP"); got != big+"\nend" {
		t.Errorf("DUMP arrived with %d bytes, want %d", len(got), len(big)+4)
	}
	if n := j.viaFD.Load(); n != 1 {
		t.Errorf("%d entries came as a memfd, want 1: the large-entry path was not taken", n)
	}
	log.Info("small")
	if j.next(t).one(t, "MESSAGE") != "small" || j.viaFD.Load() != 1 {
		t.Errorf("a small entry after a large one should go as a datagram")
	}
}

func TestJournalConcurrent(t *testing.T) {
	j := newFakeJournal(t)
	h := newTestHandler(t, j, slog.LevelDebug)
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log := slog.New(h).With("writer", w)
			for i := range each {
				log.Info("concurrent", "i", i)
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for range writers * each {
		e := j.next(t)
		key := e.one(t, "WRITER") + "/" + e.one(t, "I")
		if seen[key] {
			t.Fatalf("entry %s arrived twice", key)
		}
		seen[key] = true
	}
}

func TestNewJournalHandlerWithoutJournald(t *testing.T) {
	_, err := NewJournalHandler(JournalOptions{Socket: t.TempDir() + "/missing"})
	if err == nil || !strings.Contains(err.Error(), "journald is not listening") {
		t.Fatalf("err = %v, want journald is not listening", err)
	}
}

func TestNew(t *testing.T) {
	j := newFakeJournal(t)
	setJournal := func(t *testing.T, socket string, isJournal bool, err error) {
		oldSock, oldIs := journalSocket, stderrIsJournal
		journalSocket = socket
		stderrIsJournal = func() (bool, error) { return isJournal, err }
		t.Cleanup(func() { journalSocket, stderrIsJournal = oldSock, oldIs })
	}

	cases := []struct {
		name, format, level string
		socket              string
		isJournal           bool
		streamErr           error
		want                string // "journal", "text", "json" or "error"
	}{
		{name: "journal", format: "journal", socket: j.path, want: "journal"},
		{name: "journal missing", format: "journal", socket: "/nonexistent/socket", want: "error"},
		{name: "text", format: "text", want: "text"},
		{name: "json", format: "json", level: "debug", want: "json"},
		{name: "auto under systemd", format: "auto", socket: j.path, isJournal: true, want: "journal"},
		{name: "empty under systemd", format: "", socket: j.path, isJournal: true, want: "journal"},
		{name: "auto on a terminal", format: "auto", socket: j.path, want: "text"},
		{name: "auto with a bad JOURNAL_STREAM", format: "auto", socket: j.path, isJournal: false, streamErr: errors.New("bad"), want: "text"},
		{name: "auto, stream but no socket", format: "auto", socket: "/nonexistent/socket", isJournal: true, want: "text"},
		{name: "bad format", format: "syslog", want: "error"},
		{name: "bad level", format: "text", level: "loud", want: "error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			setJournal(t, c.socket, c.isJournal, c.streamErr)
			var stderr bytes.Buffer
			log, err := New(c.format, c.level, &stderr)
			if c.want == "error" {
				if err == nil {
					t.Fatal("New succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if jh, ok := log.Handler().(*JournalHandler); ok {
				t.Cleanup(func() { jh.Close() })
			}
			msg := "hello from " + c.name
			log.Debug("debug " + msg)
			log.Info(msg, "backend_id", "b1")
			switch c.want {
			case "journal":
				if stderr.Len() != 0 {
					t.Errorf("journal logger wrote to stderr: %q", stderr.String())
				}
				e := j.next(t)
				if e.one(t, "MESSAGE") != msg || e.one(t, "BACKEND_ID") != "b1" {
					t.Errorf("journal got %v", e)
				}
				if _, ok := log.Handler().(*JournalHandler); !ok {
					t.Errorf("handler is %T, want *JournalHandler", log.Handler())
				}
			case "text":
				if !strings.Contains(stderr.String(), fmt.Sprintf("msg=%q backend_id=b1", msg)) {
					t.Errorf("stderr = %q, want a text record", stderr.String())
				}
			case "json":
				if !strings.Contains(stderr.String(), `"msg":"debug `+msg+`"`) || !strings.Contains(stderr.String(), `"backend_id":"b1"`) {
					t.Errorf("stderr = %q, want JSON records at debug level", stderr.String())
				}
			}
		})
	}
}
