package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/volrep/volrep/array"
)

// prOut is PERSISTENT RESERVE OUT (service action, type) with its
// 24-byte parameter list (RESERVATION KEY, SERVICE ACTION RESERVATION KEY).
func prOut(action, typ byte, key, sark uint64) (cdb, params []byte) {
	cdb = []byte{0x5f, action, typ, 0, 0, 0, 0, 0, 24, 0}
	params = make([]byte, 24)
	binary.BigEndian.PutUint64(params, key)
	binary.BigEndian.PutUint64(params[8:], sark)
	return cdb, params
}

// TestISCSIReservationsOutliveSIGKILLAndClear: two cluster nodes reach
// one volume over iSCSI; node A registers and reserves it WRITE
// EXCLUSIVE, so node B's writes conflict. volrepd killed with SIGKILL
// right after A's reservation was answered comes back with it: the array
// API shows it, and B's writes still conflict over new sessions. The
// operator then clears it through the CLI (volrep host reservations
// --clear): A is told RESERVATIONS PREEMPTED, and B writes again.
func TestISCSIReservationsOutliveSIGKILLAndClear(t *testing.T) {
	d := startISCSIDaemon(t, 1)
	a := d.Array("a")
	const iniA, iniB = "iqn.2026-12.io.volrep.e2e:node-a", "iqn.2026-12.io.volrep.e2e:node-b"
	lunA := hostWithLUN(t, a, "node-a", []string{iniA}, "rv", "", 16<<20)
	lunB := hostWithLUN(t, a, "node-b", []string{iniB}, "rv", "", 0)
	sessions := func() (*rawISCSI, *rawISCSI) {
		ca, cb := dialISCSI(t, lunA.Portals[0]), dialISCSI(t, lunB.Portals[0])
		ca.mustLogin(lunA, false)
		cb.mustLogin(lunB, false)
		ca.mustDo(uint64(lunA.LUN), cdbTUR, 0, nil) // the power-on attention
		cb.mustDo(uint64(lunB.LUN), cdbTUR, 0, nil)
		return ca, cb
	}
	block := make([]byte, 512)
	write := func(c *rawISCSI, l lunOf) scsiResult { return c.mustDo(uint64(l.LUN), cdbWrite10(8, 1), 512, block) }
	const key = 0xa1a1
	ca, cb := sessions()
	for _, step := range []struct {
		action, typ byte
		key, sark   uint64
	}{{0x0, 0, 0, key}, {0x1, 0x1, key, 0}} { // REGISTER, RESERVE WRITE EXCLUSIVE
		cdb, params := prOut(step.action, step.typ, step.key, step.sark)
		if r := ca.mustDo(uint64(lunA.LUN), cdb, 24, params); r.status != 0 {
			t.Fatalf("node A's PERSISTENT RESERVE OUT %#x: %v", step.action, r)
		}
	}
	if r := write(cb, lunB); r.status != 0x18 {
		t.Fatalf("node B's write under A's reservation: %v; want RESERVATION CONFLICT", r)
	}

	d.Kill()
	d.Start()
	a = d.Array("a")
	r, err := a.VolumeReservations(t.Context(), "rv")
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != array.ReservationWriteExclusive || r.Generation != 1 || len(r.Registrations) != 1 ||
		r.Registrations[0].Key != key || !r.Registrations[0].Holder || !strings.HasPrefix(r.Registrations[0].InitiatorPort, iniA+",i,0x") {
		t.Fatalf("reservations after SIGKILL and restart: %+v; want node A holding WRITE EXCLUSIVE with key %#x", r, key)
	}
	ca, cb = sessions()
	if r := write(cb, lunB); r.status != 0x18 {
		t.Fatalf("node B's write after the restart: %v; want RESERVATION CONFLICT", r)
	}
	if r := write(ca, lunA); r.status != 0 {
		t.Fatalf("node A's write after the restart: %v", r)
	}

	// A client of the volume over NBD holds no registration: under WRITE
	// EXCLUSIVE it reads, but its writes are refused (EPERM) and change
	// nothing, as node B's are over iSCSI.
	exp, err := a.CreateExport(t.Context(), array.ExportSpec{Volume: "rv", AttachmentID: "e2e-nbd"})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := dialNBD(net.JoinHostPort(exp.Host, strconv.Itoa(exp.Port)), exp.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const nbdOff = 1 << 20
	if err := nc.WriteAt(pattern(0xee, 4096), nbdOff); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("NBD write under node A's WRITE EXCLUSIVE reservation: %v; want EPERM", err)
	}
	got := make([]byte, 4096)
	if err := nc.ReadAt(got, nbdOff); err != nil || bytes.Equal(got, pattern(0xee, 4096)) {
		t.Fatalf("NBD read under WRITE EXCLUSIVE: %v (or the refused write landed)", err)
	}
	if !strings.Contains(d.Logs(), "rv is reserved by a host over iSCSI (SCSI persistent reservation write-exclusive)") {
		t.Errorf("no journal line of the NBD client's refused write:\n%s", d.Logs())
	}

	out, code := volrep(t, d, "host", "reservations", "rv", "--clear", "--array", d.ArrayA, "--array-token", d.TokenA)
	if code != 0 || !regexpLine(out, `registrations\s+none`) || !regexpLine(out, `generation\s+2`) {
		t.Fatalf("volrep host reservations --clear (exit %d):\n%s", code, out)
	}
	if r := ca.mustDo(uint64(lunA.LUN), cdbTUR, 0, nil); r.status != 2 || r.key != 6 || r.asc != 0x2a03 {
		t.Fatalf("node A after the operator's clear: %v; want UNIT ATTENTION RESERVATIONS PREEMPTED (6/2a03)", r)
	}
	if r := write(cb, lunB); r.status != 0 {
		t.Fatalf("node B's write after the operator's clear: %v", r)
	}
	if err := nc.WriteAt(pattern(0xee, 4096), nbdOff); err != nil {
		t.Fatalf("NBD write after the operator's clear: %v", err)
	}
	if err := nc.ReadAt(got, nbdOff); err != nil || !bytes.Equal(got, pattern(0xee, 4096)) {
		t.Fatalf("NBD read after the write that followed the clear: %v, or not what was written", err)
	}
	if !strings.Contains(d.Logs(), "cleared by the array's operator") {
		t.Errorf("no journal line of the operator's clear:\n%s", d.Logs())
	}
}

// regexpLine reports whether a line of out matches re in full.
func regexpLine(out, re string) bool {
	return regexp.MustCompile(`(?m)^` + re + `$`).MatchString(out)
}
