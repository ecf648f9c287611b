package server

import (
	"context"
	"strings"
	"testing"
)

func TestListenPortTaken(t *testing.T) {
	lis, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	addr := lis.Addr().String()
	_, err = Listen(context.Background(), addr)
	if err == nil {
		t.Fatalf("second listen on %s succeeded", addr)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("error does not name the address and the cause: %v", err)
	}
}

func TestListenBadAddress(t *testing.T) {
	for _, addr := range []string{"", "127.0.0.1", "127.0.0.1:notaport"} {
		_, err := Listen(context.Background(), addr)
		if err == nil {
			t.Fatalf("Listen(%q) succeeded", addr)
		}
		if addr != "" && !strings.Contains(err.Error(), addr) {
			t.Fatalf("error does not name %q: %v", addr, err)
		}
	}
}
