package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/volrep/volrep/errdefs"
	driverv1 "github.com/volrep/volrep/proto/volrep/driver/v1"
)

// qioWrite is one write a qemu-io process made over NBD, and whether
// and when it was acknowledged.
type qioWrite struct {
	off, n int64
	pat    byte
	ok     bool
	at     time.Time
	out    string
}

// TestMigrateVolumeUnderWrites is issue 15's proof: a volume attached
// over NBD, written by qemu-io without pause, migrates from backend
// puredriver-1 (array a) to pure-b (array b, in another process) by
// snapshot deltas. Writes go on through the incremental passes; they are
// held (they wait) for the last pass and the switch, under 2 s, and then
// fail on the fenced source. The destination volume then holds exactly
// what every acknowledged write wrote, the source is gone, and GetOperation
// reports the passes, their bytes and the held time.
func TestMigrateVolumeUnderWrites(t *testing.T) {
	s := twoBackends(t)
	ctx := t.Context()
	dc := driverClient(t, s.a)
	if _, err := dc.CreateVolume(ctx, &driverv1.CreateVolumeRequest{Backend: "puredriver-1", VolumeId: "mig", SizeGb: 1}); err != nil {
		t.Fatal(err)
	}
	uri := attachURI(t, dc, "puredriver-1", "mig")
	qemuIO := tool(t, "qemu-io")
	const area = 32 << 20
	model := make([]byte, area)
	// The first pass has 32 MiB to send: 1 MiB writes of 32 patterns.
	fill := []string{"-f", "raw"}
	for i := int64(0); i < area>>20; i++ {
		fill = append(fill, "-c", fmt.Sprintf("write -P %d %d 1M", 0x40+i, i<<20))
		copy(model[i<<20:(i+1)<<20], bytes.Repeat([]byte{byte(0x40 + i)}, 1<<20))
	}
	if out, _ := run(t, false, qemuIO, append(fill, uri)...); strings.Count(out, "wrote 1048576/1048576") != area>>20 {
		t.Fatalf("filling the volume: %s", out)
	}

	// The writer: one qemu-io process per 64 KiB write, one after another,
	// so each write's outcome and time are known exactly (qemu-io buffers
	// its output when it reads commands from a pipe).
	stop := make(chan struct{})
	var mu sync.Mutex
	var writes []qioWrite
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		r := rand.New(rand.NewPCG(15, 15))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			wr := qioWrite{off: int64(r.IntN(area/65536)) * 65536, n: 65536, pat: byte(1 + i%250)}
			out, _ := exec.CommandContext(ctx, qemuIO, "-f", "raw", "-c", fmt.Sprintf("write -P %d %d %d", wr.pat, wr.off, wr.n), uri).CombinedOutput()
			wr.out, wr.at = string(out), time.Now()
			wr.ok = strings.Contains(wr.out, fmt.Sprintf("wrote %d/%d bytes", wr.n, wr.n))
			mu.Lock()
			writes = append(writes, wr)
			mu.Unlock()
		}
	}()
	time.Sleep(500 * time.Millisecond) // the volume is in use before the migration

	start := time.Now()
	r, err := dc.MigrateVolume(ctx, &driverv1.MigrateVolumeRequest{Backend: "puredriver-1", VolumeId: "mig", DestinationBackend: "pure-b",
		// Small means under 4 MiB whatever the time (a 32 MiB first pass
		// takes under a second here): the first pass is large, so at least
		// one incremental pass runs before the last.
		SmallPassBytes: 4 << 20, SmallPassMs: 1})
	if err != nil {
		t.Fatal(err)
	}
	var firstPassDone, holdStart time.Time
	var phases []string
	op := watchOpEach(t, dc, "puredriver-1", r.GetOperationId(), func(o *driverv1.Operation) {
		if len(phases) == 0 || phases[len(phases)-1] != o.GetPhase() {
			phases = append(phases, o.GetPhase())
		}
		if firstPassDone.IsZero() && len(o.GetSteps()) >= 1 {
			firstPassDone = time.Now()
		}
		if holdStart.IsZero() && strings.Contains(o.GetPhase(), "writes held") {
			holdStart = time.Now()
		}
	})
	took := time.Since(start)
	// Let the writer see the fenced source for a few writes.
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-writerDone
	if op.GetState() != driverv1.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Fatalf("migration: %v %s (%s); phases %q\n%s", op.GetState(), op.GetError(), op.GetErrorCode(), phases, s.a.Logs())
	}

	// Replay the acknowledged writes, in order; none may follow a failure.
	var acked, duringPasses, afterFirst, failed int
	var firstFailure string
	for i, wr := range writes {
		if !wr.ok {
			if failed == 0 {
				firstFailure = strings.TrimSpace(wr.out)
			}
			failed++
			continue
		}
		if failed > 0 {
			t.Fatalf("write %d was acknowledged after %d writes had failed on the fenced source", i, failed)
		}
		acked++
		copy(model[wr.off:wr.off+wr.n], bytes.Repeat([]byte{wr.pat}, int(wr.n)))
		if wr.at.After(start) && (holdStart.IsZero() || wr.at.Before(holdStart)) {
			duringPasses++
			if wr.at.After(firstPassDone) {
				afterFirst++
			}
		}
	}
	var perPass []int64
	for _, st := range op.GetSteps() {
		perPass = append(perPass, st.GetBytesSent())
	}
	held := time.Duration(op.GetWritesHeldSeconds() * float64(time.Second))
	t.Logf("migrated in %s: %d passes, bytes per pass %v, writes held %s; qemu-io: %d 64 KiB writes acknowledged (%d during the passes, %d of them after the first), %d failed after the switch (the first: %q)",
		took.Round(time.Millisecond), len(perPass), perPass, held.Round(time.Microsecond), acked, duringPasses, afterFirst, failed, firstFailure)
	if len(perPass) < 3 || perPass[0] < area || op.GetSteps()[0].GetIncremental() {
		t.Fatalf("passes %v: want a full first one of at least %d bytes, an incremental one, and the last", perPass, area)
	}
	if duringPasses == 0 {
		t.Fatalf("no write was acknowledged between the start of the migration and the hold: the volume was not in use during the passes")
	}
	if held <= 0 || held >= 2*time.Second {
		t.Fatalf("writes were held for %s; want under 2 s", held)
	}
	if failed == 0 {
		t.Fatalf("no write failed after the switch: the source was not fenced, or the writer stopped early")
	}

	got := make([]byte, area)
	if err := s.a.Array("b").ReadVolume(ctx, "volume-mig-cinder", 0, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, model) {
		i := 0
		for got[i] == model[i] {
			i++
		}
		t.Fatalf("the migrated volume differs from the acknowledged writes at byte %d (block %d): %#x, want %#x", i, i/4096, got[i], model[i])
	}
	if _, err := s.a.Array("a").GetVolume(ctx, "volume-mig-cinder"); !errdefs.IsNotFound(err) {
		t.Fatalf("the source volume is still on array a: %v", err)
	}
	// The volume is a normal one on its new backend: attachable and writable.
	uriB := attachURI(t, dc, "pure-b", "mig")
	// Beyond the written area the 1 GiB copy holds nothing: no data
	// extent reaches past it (the area itself was compared byte by byte).
	for _, e := range nbdMap(t, uriB) {
		if e.Type&2 == 0 && e.Off+e.Len > area {
			t.Fatalf("the migrated volume has data at [%d, %d), past the %d bytes written", e.Off, e.Off+e.Len, area)
		}
	}
	qio(t, uriB, "write -P 0x77 0 4k", "read -P 0x77 0 4k")
	got4k := make([]byte, 4096)
	if err := s.a.Array("b").ReadVolume(ctx, "volume-mig-cinder", 0, got4k); err != nil || got4k[0] != 0x77 {
		t.Fatalf("writing the migrated volume over NBD: %v (%#x)", err, got4k[0])
	}
	g, err := dc.GetOperation(ctx, &driverv1.GetOperationRequest{Backend: "puredriver-1", OperationId: r.GetOperationId()})
	if err != nil || g.GetOperation().GetWritesHeldSeconds() != op.GetWritesHeldSeconds() || len(g.GetOperation().GetSteps()) != len(perPass) {
		t.Fatalf("GetOperation after the migration = %v, %v", g.GetOperation(), err)
	}
	if !strings.Contains(s.a.Logs(), "volume migrated") {
		t.Fatalf("the log does not report the migration")
	}
}
