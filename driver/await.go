package driver

import (
	"context"
	"time"

	"github.com/volrep/volrep/errdefs"
)

// awaitArray waits until an array answers, for at most the backend's
// volrep_failover_wait. Failover and failback are asked for when an array
// has just gone or is just coming back; without the wait a failback asked
// a moment too early fails, and without the reconnect one asked on time
// fails too, because gRPC keeps refusing calls until its reconnect backoff
// (tens of seconds after a long outage) runs out. Each try reconnects at
// once. An answer other than "unreachable" (a rejected token, say) ends
// the wait: waiting does not fix it.
func (b *Backend) awaitArray(ctx context.Context, c Conn, what string) error {
	deadline := time.Now().Add(b.cfg.FailoverWait)
	delay := 50 * time.Millisecond
	waiting := false
	for {
		c.reconnect()
		// One try may take as long as a connection attempt to a host that
		// drops packets, but not past the deadline by much.
		actx, cancel := context.WithTimeout(ctx, min(5*time.Second, max(time.Until(deadline), time.Second)))
		_, err := c.Array.Info(actx)
		cancel()
		if err == nil {
			if waiting {
				b.log.Info("array answers again; carrying on", "array", what)
			}
			return nil
		}
		left := time.Until(deadline)
		if ctx.Err() != nil || left <= 0 || !(errdefs.IsUnavailable(err) || errdefs.Is(err, errdefs.KindDeadlineExceeded)) {
			return err
		}
		if !waiting {
			b.log.Warn("waiting for an array to answer", "array", what, "up_to", left.Round(time.Second), "err", err)
			waiting = true
		}
		t := time.NewTimer(min(delay, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}
