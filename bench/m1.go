package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/array/client"
	"github.com/volrep/volrep/server"
)

// M1: volrepd's resident memory per volume. A real volrepd process is
// measured (VmRSS from /proc) empty, then holding 10,000 volumes of which
// 100 have 20 snapshots each; the difference per volume is the figure,
// against the goal of 20 KiB.
func init() {
	register("M1", "rss-per-volume", memoryPerVolume)
}

const m1GoalKiB = 20

func memoryPerVolume(ctx context.Context, env *Env) ([]Row, error) {
	vols, snapVols, snaps := 10000, 100, 20
	if env.Quick {
		vols, snapVols, snaps = 1000, 10, 20
	}
	d, err := startDaemon(ctx, env, "m1", gib, "")
	if err != nil {
		return nil, err
	}
	defer d.stop()
	cc, err := server.Dial(d.arrayAddr, "bench-token")
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	a := client.New(cc)
	empty, err := rssKiB(d.pid)
	if err != nil {
		return nil, err
	}
	work := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				name := fmt.Sprintf("m1-%05d", i)
				if _, err := a.CreateVolume(ctx, array.VolumeSpec{Name: name, Pool: "cinder", SizeBytes: gib}); err != nil {
					errs <- err
					return
				}
				if i >= snapVols {
					continue
				}
				// A volume with snapshots has data in each of its layers.
				for j := range snaps {
					if err := a.WriteVolume(ctx, name, int64(j)<<20, bytes.Repeat([]byte{byte(j + 1)}, 4096), false); err != nil {
						errs <- err
						return
					}
					if _, err := a.CreateSnapshot(ctx, name, fmt.Sprintf("s%02d", j), nil); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	for i := range vols {
		select {
		case work <- i:
		case err := <-errs:
			close(work)
			wg.Wait()
			return nil, err
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	// The row counts only if the array holds what it was asked to.
	list, err := a.ListVolumes(ctx, "cinder")
	if err != nil {
		return nil, err
	}
	if len(list) < vols {
		return nil, fmt.Errorf("the array lists %d volumes after %d creates", len(list), vols)
	}
	full, err := rssKiB(d.pid)
	if err != nil {
		return nil, err
	}
	per := float64(full-empty) / float64(vols)
	return []Row{{ID: "M1", Name: "rss-per-volume", Volrep: per, Baseline: m1GoalKiB, Unit: "KiB",
		Note: fmt.Sprintf("volrepd VmRSS %d KiB empty, %d KiB with %d volumes (%d with %d snapshots each); KiB per volume vs the goal of %d (ratio = goal / measured, >= 1 meets it)",
			empty, full, vols, snapVols, snaps, m1GoalKiB)}}, nil
}

// rssKiB is process pid's resident set, from /proc/PID/status.
func rssKiB(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if f := bytes.Fields(line); len(f) >= 2 && string(f[0]) == "VmRSS:" {
			return strconv.ParseInt(string(f[1]), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
