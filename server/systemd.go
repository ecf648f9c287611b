package server

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// The systemd notifications below are no-ops that return nil when the
// process does not run under systemd (NOTIFY_SOCKET unset), so the daemon
// can call them unconditionally.

// NotifyReady tells systemd that start-up is finished (Type=notify).
func NotifyReady() error {
	_, err := daemon.SdNotify(false, daemon.SdNotifyReady)
	return err
}

// NotifyStopping tells systemd that the daemon is shutting down.
func NotifyStopping() error {
	_, err := daemon.SdNotify(false, daemon.SdNotifyStopping)
	return err
}

// NotifyReloading tells systemd that the daemon is reloading its
// configuration. Type=notify-reload requires MONOTONIC_USEC with it; send
// NotifyReady when the reload is done.
func NotifyReloading() error {
	_, err := daemon.SdNotify(false, daemon.SdNotifyReloading+"\n"+daemon.SdNotifyMonotonicUsec())
	return err
}

// Watchdog sends WATCHDOG=1 at half the interval systemd asks for
// (WatchdogSec=) until ctx is done. It blocks, so run it in a goroutine.
// Without a watchdog (or outside systemd) it returns at once.
func Watchdog(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for {
		// Errors are not fatal: a missed ping shows in systemd's log, and
		// the next tick tries again.
		_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
