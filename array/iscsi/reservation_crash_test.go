package iscsi

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/internal/testenv"
)

// TestReservationsSurviveSIGKILL kills a real process that serves a unit
// with an array's store as its Keeper, right after its last PERSISTENT
// RESERVE OUT was answered, and starts another over the same store: every
// registration and the reservation it acknowledged are there.
func TestReservationsSurviveSIGKILL(t *testing.T) {
	if dir := os.Getenv("VOLREP_PR_CHILD"); dir != "" {
		reservationChild(t, dir)
		return
	}
	dir := t.TempDir()
	start := func() (*exec.Cmd, string) {
		cmd, out := testenv.StartChild(t, "TestReservationsSurviveSIGKILL", "VOLREP_PR_CHILD="+dir)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				return cmd, addr
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the child did not start serving")
		return nil, ""
	}
	kill := func(cmd *exec.Cmd) { testenv.KillChild(t, cmd) }
	login := func(addr string, isid byte) *rawClient {
		c := dialRaw(t, addr)
		c.mustLogin(loginOpts{initiator: rawInit, target: testIQN, isid: [6]byte{0x80, 0, 0, 0, 0, isid}})
		c.mustDo(0, []byte{0x00, 0, 0, 0, 0, 0}, 0, nil)
		return c
	}

	cmd, addr := start()
	a, b := login(addr, 1), login(addr, 2)
	const keyA, keyB = 0xa0a0, 0xb0b0
	a.mustPROut(paRegisterIgnore, 0, 0, keyA)
	b.mustPROut(paRegisterIgnore, 0, 0, keyB)
	a.mustPROut(paReserve, typeWERO, keyA, 0)
	b.mustPROut(paRegister, 0, keyB, keyB+1) // the last answer before the kill
	a.nc.Close()
	b.nc.Close()
	kill(cmd)

	cmd, addr = start()
	defer kill(cmd)
	c := login(addr, 1)
	defer c.nc.Close()
	if _, keys := keysOf(c.prIn(prInReadKeys)); len(keys) != 2 || keys[0] != keyA || keys[1] != keyB+1 {
		t.Fatalf("after SIGKILL: keys %x; want %x and %x", keys, keyA, keyB+1)
	}
	resv := c.prIn(prInReadResv)
	if len(resv) < 24 || binary.BigEndian.Uint64(resv[8:]) != keyA || resv[21] != typeWERO {
		t.Fatalf("READ RESERVATION after SIGKILL: %x", resv)
	}
}

// reservationChild serves one unit (a fixed NAA) with the store in dir
// as its Keeper, prints its address and serves until it is killed.
func reservationChild(t *testing.T, dir string) {
	s, err := store.Open(dir+"/array", store.Options{Name: "pr-child"})
	if err != nil {
		t.Fatal(err)
	}
	tt := newTestTargets()
	tt.add(testIQN, rawInit, Auth{}, 0, newFileDevice(t, 1<<20, 51))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(tt, Options{Keeper: s})
	go srv.Serve(context.Background(), lis)
	fmt.Printf("listening %s\n", lis.Addr())
	select {}
}
