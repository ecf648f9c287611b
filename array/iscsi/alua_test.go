package iscsi

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func rtpgCDB(format byte, alloc uint32) []byte {
	cdb := make([]byte, 12)
	cdb[0], cdb[1] = 0xa3, format<<5|0x0a
	binary.BigEndian.PutUint32(cdb[6:], alloc)
	return cdb
}

// rtpg decodes REPORT TARGET PORT GROUPS parameter data with one group of
// one port.
type rtpgGroup struct {
	state     AccessState
	pref      bool
	group     uint16
	ports     int
	firstPort uint16
}

func parseRTPG(t *testing.T, d []byte, extended bool) rtpgGroup {
	t.Helper()
	hdr := 4
	if extended {
		hdr = 8
		if d[4]&0x70 != 0x10 {
			t.Fatalf("extended RTPG header format %#x", d[4])
		}
	}
	if n := int(binary.BigEndian.Uint32(d)); n != len(d)-4 || len(d) < hdr+12 {
		t.Fatalf("RTPG return data length %d for %d bytes", n, len(d))
	}
	g := d[hdr:]
	return rtpgGroup{state: AccessState(g[0] & 0x0f), pref: g[0]&0x80 != 0, group: binary.BigEndian.Uint16(g[2:]),
		ports: int(g[7]), firstPort: binary.BigEndian.Uint16(g[10:])}
}

// TestALUA: the LUN reports implicit ALUA, its port group in VPD 0x83 and
// in REPORT TARGET PORT GROUPS, a state change as a unit attention once,
// and the media access each state refuses.
func TestALUA(t *testing.T) {
	ts, _, dev := rawSetup(t, Options{PortGroup: 7})
	dev.setAccess(Access{State: ActiveOptimized, Preferred: true})
	c := dialRaw(t, ts.addr)
	c.mustLogin(loginOpts{initiator: rawInit, target: testIQN})

	std := c.mustDo(0, []byte{0x12, 0, 0, 0, 96, 0}, 96, nil)
	if std.data[5]&0x30 != 0x10 {
		t.Errorf("INQUIRY TPGS = %d, want 1 (implicit ALUA)", std.data[5]>>4&3)
	}
	vpd := c.mustDo(0, []byte{0x12, 1, 0x83, 0, 255, 0}, 255, nil)
	if !bytes.Contains(vpd.data, []byte{0x51, 0x95, 0x00, 4, 0, 0, 0, 7}) {
		t.Errorf("VPD 0x83 has no target port group 7: % x", vpd.data)
	}
	if !bytes.Contains(vpd.data, []byte{0x51, 0x94, 0x00, 4, 0, 0, 0, 7}) {
		t.Errorf("VPD 0x83 has no relative target port 7: % x", vpd.data)
	}
	for _, ext := range []bool{false, true} {
		f := byte(0)
		if ext {
			f = 1
		}
		r := c.mustDo(0, rtpgCDB(f, 255), 255, nil)
		if r.status != statusGood {
			t.Fatalf("RTPG (format %d): status %#x sense % x", f, r.status, r.sense)
		}
		g := parseRTPG(t, r.data, ext)
		if g != (rtpgGroup{state: ActiveOptimized, pref: true, group: 7, ports: 1, firstPort: 7}) {
			t.Errorf("RTPG (format %d) = %+v", f, g)
		}
	}
	if r := c.mustDo(0, rtpgCDB(2, 255), 255, nil); r.status == statusGood {
		t.Error("RTPG with a reserved parameter data format answered GOOD")
	}

	read := read10(0, 1)
	for _, tc := range []struct {
		state     AccessState
		readASC   uint16 // 0: the read succeeds
		modeSense bool
	}{
		{ActiveNonOptimized, 0, true},
		{Standby, ascPortStandby, true},
		{Unavailable, ascPortUnavailable, false},
		{Transitioning, ascALUATransition, false},
		{ActiveOptimized, 0, true},
	} {
		dev.setAccess(Access{State: tc.state})
		// The first command after the change is the unit attention;
		// REPORT TARGET PORT GROUPS is not held up by it.
		g := parseRTPG(t, c.mustDo(0, rtpgCDB(0, 255), 255, nil).data, false)
		if g.state != tc.state || g.pref {
			t.Errorf("%v: RTPG reports %v pref=%v", tc.state, g.state, g.pref)
		}
		if key, asc := c.mustDo(0, read, 512, nil).senseKey(); key != senseUnitAttention || asc != ascAccessStateChanged {
			t.Errorf("%v: first command after the change: sense %x/%04x, want the ALUA unit attention", tc.state, key, asc)
		}
		reads := dev.reads.Load()
		r := c.mustDo(0, read, 512, nil)
		switch key, asc := r.senseKey(); {
		case tc.readASC == 0 && r.status != statusGood:
			t.Errorf("%v: READ refused: sense %x/%04x", tc.state, key, asc)
		case tc.readASC != 0 && (key != senseNotReady || asc != tc.readASC):
			t.Errorf("%v: READ sense %x/%04x, want %x/%04x", tc.state, key, asc, senseNotReady, tc.readASC)
		case tc.readASC != 0 && dev.reads.Load() != reads:
			t.Errorf("%v: a refused READ reached the device", tc.state)
		}
		ms := c.mustDo(0, []byte{0x1a, 0x08, 0x3f, 0, 255, 0}, 255, nil)
		if (ms.status == statusGood) != tc.modeSense {
			t.Errorf("%v: MODE SENSE status %#x, allowed should be %v", tc.state, ms.status, tc.modeSense)
		}
		if inq := c.mustDo(0, []byte{0x12, 0, 0, 0, 96, 0}, 96, nil); inq.status != statusGood {
			t.Errorf("%v: INQUIRY refused", tc.state)
		}
	}
	writes := dev.writes.Load()
	dev.setAccess(Access{State: Unavailable})
	c.mustDo(0, read, 512, nil) // the unit attention
	w := c.mustDo(0, write10(0, 1, false), 512, make([]byte, 512))
	if key, asc := w.senseKey(); key != senseNotReady || asc != ascPortUnavailable || dev.writes.Load() != writes {
		t.Errorf("WRITE on an unavailable port: sense %x/%04x, device writes %d → %d", key, asc, writes, dev.writes.Load())
	}
}
