package replication_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/store"
	"github.com/volrep/volrep/clock"
	"github.com/volrep/volrep/errdefs"
)

// keeper stands for an array's iSCSI target as the keeper of its units'
// persistent reservations (store.ReservationWatcher). Its states are
// "version:what", newer by version, as the target's are; the target's
// own rules are array/iscsi's to test.
type keeper struct {
	mu      sync.Mutex
	state   map[string]string // by serial
	decided []string
}

func keep(st *store.Store) *keeper {
	k := &keeper{state: map[string]string{}}
	st.WatchReservations(k)
	return k
}

func version(s string) int {
	v, _ := strconv.Atoi(strings.SplitN(s, ":", 2)[0])
	return v
}

func (k *keeper) DecideReservation(ctx context.Context, serial string, req []byte, share func(context.Context, []byte) ([]byte, error)) ([]byte, error) {
	k.mu.Lock()
	next := fmt.Sprintf("%d:%s", version(k.state[serial])+1, req)
	k.mu.Unlock()
	newer, err := share(ctx, []byte(next))
	if err != nil || newer != nil {
		return nil, fmt.Errorf("sharing %s: newer %q, %v", next, newer, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.state[serial] = next
	k.decided = append(k.decided, string(req))
	return []byte("decided " + next), nil
}

func (k *keeper) InstallReservations(serial string, state []byte) ([]byte, func(context.Context) error, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch cur := k.state[serial]; {
	case version(string(state)) > version(cur):
		k.state[serial] = string(state)
	case version(string(state)) < version(cur):
		return []byte(cur), nil, nil
	}
	return nil, nil, nil
}

func (k *keeper) Reservations(serial string) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return []byte(k.state[serial] + "")
}

// ClearReservations decides an "operator-clear" here, or where forward
// sends it, as the target does.
func (k *keeper) ClearReservations(ctx context.Context, serial string, forward func(context.Context, []byte) ([]byte, bool, error),
	share func(context.Context, []byte) ([]byte, error)) error {
	reply, forwarded, err := forward(ctx, []byte("operator-clear"))
	if !forwarded && err == nil {
		reply, err = k.DecideReservation(ctx, serial, []byte("operator-clear"), share)
	}
	if err == nil && !strings.HasPrefix(string(reply), "decided ") {
		err = fmt.Errorf("the clear was answered %q", reply)
	}
	return err
}

func (k *keeper) ForgetReservations(serial string) {
	k.mu.Lock()
	delete(k.state, serial)
	k.mu.Unlock()
}

// ShowReservations: the state's version stands for the generation.
func (k *keeper) ShowReservations(serial string) array.Reservations {
	k.mu.Lock()
	defer k.mu.Unlock()
	return array.Reservations{Generation: uint32(version(k.state[serial]))}
}

// only returns the one unit's state, failing if there are others.
func (k *keeper) only(t testing.TB) string {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.state) > 1 {
		t.Fatalf("states of %d units: %v", len(k.state), k.state)
	}
	for _, s := range k.state {
		return s
	}
	return ""
}

func (k *keeper) set(serial, s string) {
	k.mu.Lock()
	k.state[serial] = s
	k.mu.Unlock()
}

// TestPodReservationsAreOneAtBothArrays: the preferred array decides a
// pod volume's persistent reservations, the peer's hosts' included (the
// peer forwards them and gets the new state before its host is
// answered), and gives the peer each state it decides for its own. Apart,
// the side that carries on changes them alone; the next mirror stream
// carries the preferred array's state to the peer before the pod is in
// sync, and brings back the peer's if the peer moved on further.
func TestPodReservationsAreOneAtBothArrays(t *testing.T) {
	ctx := t.Context()
	// The keepers come first, as volrepd starts its iSCSI target before
	// its pods: a pod offers its peer to decide only where one is kept.
	src, tg := newSource(t, clock.NewFake(t0)), newTarget(t)
	ka, kb := keep(src.st), keep(tg.st)
	podOn(t, src, tg, 2*time.Second)
	peerWritable(t, tg, "v1", 0, make([]byte, 4096))
	a, b := openVol(t, src.st, "v1"), openVol(t, tg.st, "v1")
	serial, err := src.st.VolumeSerial(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}

	if a.ReservationsUnshared() || b.ReservationsUnshared() {
		t.Fatalf("reservations unshared: %v at the preferred array, %v at the peer", a.ReservationsUnshared(), b.ReservationsUnshared())
	}
	reply, forwarded, err := b.ForwardReservation(ctx, []byte("register"))
	if err != nil || !forwarded || string(reply) != "decided 1:register" {
		t.Fatalf("a PERSISTENT RESERVE OUT at the peer: reply %q forwarded %v, %v", reply, forwarded, err)
	}
	if got := kb.only(t); got != "1:register" {
		t.Fatalf("the peer holds %q once its host is answered; want 1:register", got)
	}
	if _, forwarded, _ := a.ForwardReservation(ctx, []byte("x")); forwarded {
		t.Fatal("the preferred array forwarded a PERSISTENT RESERVE OUT of its own host")
	}
	if newer, err := a.ShareReservations(ctx, []byte("2:reserve")); err != nil || newer != nil {
		t.Fatalf("sharing the preferred array's change: newer %q, %v", newer, err)
	}
	if got := kb.only(t); got != "2:reserve" {
		t.Fatalf("the peer holds %q; want 2:reserve", got)
	}

	// Apart: the preferred array carries on and changes them alone.
	tg.halt()
	ka.set(serial, "3:clear")
	if _, err := a.ShareReservations(ctx, []byte("3:clear")); err != nil {
		t.Fatalf("a change with the peer gone: %v", err)
	}
	tg.start()
	syncNow(t, src)
	if got := kb.only(t); got != "3:clear" {
		t.Fatalf("once in sync again the peer holds %q; want the preferred array's 3:clear", got)
	}

	// The peer moved on further (it carried the pod): the preferred array
	// takes the peer's.
	tg.halt()
	kb.set(serial, "9:preempted")
	// A write finds the peer gone (the halt alone may not have been seen
	// yet, and the pod would still count as in sync).
	if err := src.st.WriteVolume(ctx, "v1", 0, make([]byte, 4096), false); err != nil {
		t.Fatal(err)
	}
	if r, _ := src.eng.GetReplica(ctx, "pod"); r.DirtyBytes == 0 {
		t.Fatalf("the pod did not see the peer gone: %+v", r)
	}
	tg.start()
	syncNow(t, src)
	if got := ka.only(t); got != "9:preempted" {
		t.Fatalf("once in sync again the preferred array holds %q; want the peer's newer 9:preempted", got)
	}
	if len(ka.decided) != 1 {
		t.Fatalf("the preferred array decided %q; want the peer's one REGISTER", ka.decided)
	}

	// The operator clears them through either array's API: the preferred
	// array decides both clears, and each array holds the new state once
	// the call returns. The peer shares them again once it sees the pod
	// in sync and its forward stream is back, which may follow the
	// preferred array's sync; until then a clear there is UNAVAILABLE,
	// as a host's PERSISTENT RESERVE OUT is refused, and is retried.
	for i, st := range []*store.Store{tg.st, src.st} {
		want := fmt.Sprintf("%d:operator-clear", 10+i)
		r, err := st.ClearVolumeReservations(ctx, "v1")
		for deadline := time.Now().Add(10 * time.Second); (errdefs.IsUnavailable(err) || errdefs.IsFailedPrecondition(err)) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
			r, err = st.ClearVolumeReservations(ctx, "v1")
		}
		if err != nil || r.Generation != uint32(10+i) {
			t.Fatalf("clear %d: %+v, %v; want generation %d", i, r, err, 10+i)
		}
		if a, b := ka.only(t), kb.only(t); a != want || b != want {
			t.Fatalf("after clear %d the arrays hold %q and %q; want %q at both", i, a, b, want)
		}
	}
	if len(ka.decided) != 3 || len(kb.decided) != 0 {
		t.Fatalf("decided %q at the preferred array and %q at the peer; want both clears at the preferred array", ka.decided, kb.decided)
	}
}

// BenchmarkPodReservationChange: what a change of a pod volume's
// reservations costs by where it is made, against a 4 KiB write at the
// preferred array of the same pod in the same run (one round trip to the
// peer, as the preferred array's change is): at the preferred array, the
// new state goes to the peer; at the peer, the command goes to the
// preferred array and the state comes back. Each array's iSCSI target is
// the keeper double, so this is the streams' cost, not SCSI's. The pod
// must end in sync with every change at the peer.
func BenchmarkPodReservationChange(b *testing.B) {
	src, tg := newSource(b, clock.NewFake(t0)), newTarget(b)
	ka, kb := keep(src.st), keep(tg.st)
	podOn(b, src, tg, 5*time.Second)
	peerWritable(b, tg, "v1", 0, make([]byte, 4096))
	ctx := b.Context()
	a, p := openVol(b, src.st, "v1"), openVol(b, tg.st, "v1")
	buf := make([]byte, 4096)
	b.Run("write-4KiB-at-preferred", func(b *testing.B) {
		for b.Loop() {
			if err := a.WriteAt(ctx, buf, 0, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("change-at-preferred", func(b *testing.B) {
		for b.Loop() {
			if _, err := src.st.DecideReservation(ctx, "v1", []byte("r")); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("change-at-peer", func(b *testing.B) {
		for b.Loop() {
			if _, forwarded, err := p.ForwardReservation(ctx, []byte("r")); err != nil || !forwarded {
				b.Fatalf("forwarded %v: %v", forwarded, err)
			}
		}
	})
	if ka.only(b) != kb.only(b) {
		b.Fatalf("the arrays hold %q and %q", ka.only(b), kb.only(b))
	}
	if r, err := src.eng.GetReplica(ctx, "pod"); err != nil || r.DirtyBytes != 0 || r.PeerState != array.PeerOnline {
		b.Fatalf("the pod after the runs: %+v, %v", r, err)
	}
}
