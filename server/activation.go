package server

import (
	"net"
	"sync"

	"github.com/coreos/go-systemd/v22/activation"
)

// Listeners handed over by the process that started this one, as systemd
// socket activation does (LISTEN_PID, LISTEN_FDS, descriptors from 3): a
// .socket unit, or a test harness that bound the ports itself so that no
// other process can take them between choosing a port and the daemon's
// bind. Listen uses an inherited listener whose address is exactly the one
// asked for, and binds a new one otherwise.
var inherited struct {
	once   sync.Once
	mu     sync.Mutex
	byAddr map[string]net.Listener
}

func takeInherited(addr string) net.Listener {
	inherited.once.Do(func() {
		inherited.byAddr = map[string]net.Listener{}
		// true: unset the variables, so nothing this process starts
		// believes the descriptors are its own.
		for _, f := range activation.Files(true) {
			lis, err := net.FileListener(f)
			f.Close() // FileListener holds its own duplicate
			if err != nil {
				continue // not a stream socket; nothing here asked for it
			}
			inherited.byAddr[lis.Addr().String()] = lis
		}
	})
	inherited.mu.Lock()
	defer inherited.mu.Unlock()
	lis, ok := inherited.byAddr[addr]
	if !ok {
		return nil
	}
	delete(inherited.byAddr, addr)
	return lis
}
