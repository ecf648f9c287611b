// Package netfault is a TCP proxy for tests that stands for a link that
// fails. Frozen, it moves no more bytes either way but closes nothing, as
// a partition that drops packets does, or a hung or SIGSTOPped peer whose
// kernel still answers TCP: the sender's socket buffers fill and its
// writes block, so what ends a frozen call is a peer's own timeout, never
// a closed connection. Cut, the peer is plainly away: every connection
// is closed and new ones are refused. Throttled, it is reachable but
// slow.
package netfault

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards the connections made to Addr to a target.
type Proxy struct {
	lis      net.Listener
	accepted atomic.Int32
	cut      atomic.Bool
	// rate is what a throttled proxy forwards towards the target, in
	// bytes a second (0: unthrottled).
	rate atomic.Int64

	// thaw is open while frozen: a pipe with bytes to forward waits for
	// it to close (or for the proxy to stop). Freeze holds no lock a pipe
	// holds, so it returns at once even while a pipe's write is blocked
	// on a peer that does not read.
	frozenMu sync.Mutex
	thaw     chan struct{}
	done     chan struct{}

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

// New starts a proxy to target on a free loopback port.
func New(t testing.TB, target string) *Proxy { return NewAt(t, "127.0.0.1:0", target) }

// NewAt starts a proxy to target listening on at. It stops, closing every
// connection, when the test ends.
func NewAt(t testing.TB, at, target string) *Proxy {
	t.Helper()
	p, err := TryAt(t, at, target)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TryAt is NewAt for an address that may be taken: it returns the
// listen error instead of failing the test.
func TryAt(t testing.TB, at, target string) (*Proxy, error) {
	lis, err := net.Listen("tcp", at)
	if err != nil {
		return nil, err
	}
	p := &Proxy{lis: lis, done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept(target)
	t.Cleanup(p.close)
	return p, nil
}

// Addr is where to connect.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Accepted counts the connections made to the proxy.
func (p *Proxy) Accepted() int { return int(p.accepted.Load()) }

// Freeze stops moving bytes until Thaw; bytes already read wait in the
// proxy.
func (p *Proxy) Freeze() {
	p.frozenMu.Lock()
	defer p.frozenMu.Unlock()
	if p.thaw == nil {
		p.thaw = make(chan struct{})
	}
}

// Thaw delivers what waited and forwards again.
func (p *Proxy) Thaw() {
	p.frozenMu.Lock()
	defer p.frozenMu.Unlock()
	if p.thaw != nil {
		close(p.thaw)
		p.thaw = nil
	}
}

// gate waits while the proxy is frozen.
func (p *Proxy) gate() {
	p.frozenMu.Lock()
	thaw := p.thaw
	p.frozenMu.Unlock()
	if thaw != nil {
		select {
		case <-thaw:
		case <-p.done:
		}
	}
}

// Cut closes every connection and refuses new ones until Pass.
func (p *Proxy) Cut() {
	p.cut.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Throttle forwards what clients send at bytesPerSecond, and accepts
// connections again after a Cut.
func (p *Proxy) Throttle(bytesPerSecond int64) {
	p.rate.Store(bytesPerSecond)
	p.cut.Store(false)
}

// Pass forwards everything as fast as it comes, and accepts connections
// again after a Cut.
func (p *Proxy) Pass() { p.Throttle(0) }

func (p *Proxy) accept(target string) {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		if p.cut.Load() {
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, u, true)
		go p.pipe(u, c, false)
	}
}

func (p *Proxy) pipe(from, to net.Conn, toTarget bool) {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			p.gate()
			if _, werr := to.Write(buf[:n]); werr != nil {
				from.Close()
				return
			}
			if r := p.rate.Load(); toTarget && r > 0 {
				time.Sleep(time.Duration(n) * time.Second / time.Duration(r))
			}
		}
		if err != nil {
			to.Close()
			return
		}
	}
}

func (p *Proxy) close() {
	close(p.done)
	p.lis.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
