package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// Listen opens a TCP listener on addr ("host:port"; port 0 picks a free
// one), or takes the one inherited for exactly that address (see
// takeInherited). The error names the address and, for the common cases, what to do.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	if addr == "" {
		return nil, errors.New("listen: the address is empty; set it as host:port, for example 127.0.0.1:7001")
	}
	if lis := takeInherited(addr); lis != nil {
		return lis, nil
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	switch {
	case err == nil:
		return lis, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("listen on %s: the address is already in use; stop the process holding it (ss -ltnp | grep %s) or choose another port: %w",
			addr, portOf(addr), err)
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("listen on %s: permission denied; ports below 1024 need privileges, choose a higher port: %w", addr, err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("listen on %s: no local interface has that address; use an address of this host or 0.0.0.0: %w", addr, err)
	default:
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
}

func portOf(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil {
		return ":" + port
	}
	return addr
}
