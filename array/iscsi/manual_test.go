package iscsi

import (
	"log/slog"
	"os"
	"os/signal"
	"testing"
)

// TestManualServe serves a 64 MiB file device for manual poking with
// iscsi-ls and friends; it runs only with ISCSI_MANUAL=1.
func TestManualServe(t *testing.T) {
	if os.Getenv("ISCSI_MANUAL") == "" {
		return
	}
	dev := newFileDevice(t, 64<<20, 1)
	tt := newTestTargets()
	tt.add("iqn.2024-01.test:vol", "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test", Auth{}, 0, dev)
	tt.add("iqn.2024-01.test:vol", "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2", Auth{}, 0, dev)
	ts := startServer(t, tt, Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	t.Logf("listening on %s", ts.addr)
	os.WriteFile("/tmp/iscsi-manual-addr", []byte(ts.addr), 0o600)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt)
	<-ch
	signal.Stop(ch)
	t.Log(ts.logs.String())
}
