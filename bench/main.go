// Command bench runs volrep's benchmarks and prints a table plus one
// machine-readable line per row:
//
//	BENCH <id> <name> volrep=<figure> baseline=<figure> ratio=<r>
//
// Every row measures volrep and its baseline in the same run, on the same
// disk, and r is oriented so that higher is better (throughput
// volrep/baseline, time or latency baseline/volrep). Absolute figures do
// not compare across machines or runs; ratios do.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one benchmark result.
type Row struct {
	ID, Name           string
	Volrep, Baseline   float64
	Unit               string
	HigherIsBetter     bool
	VolrepLabel, Basis string // what was measured, for the table
	Note               string
}

// Ratio is oriented so that higher is better.
func (r Row) Ratio() float64 {
	if r.Volrep == 0 || r.Baseline == 0 {
		return 0
	}
	if r.HigherIsBetter {
		return r.Volrep / r.Baseline
	}
	return r.Baseline / r.Volrep
}

type bench struct {
	id   string
	name string
	run  func(ctx context.Context, env *Env) ([]Row, error)
}

// benches run in this order; the snapshot-cost row comes first.
var benches []bench

func register(id, name string, run func(ctx context.Context, env *Env) ([]Row, error)) {
	benches = append(benches, bench{id, name, run})
}

// Env is what every benchmark shares.
type Env struct {
	Dir   string // scratch space on the disk being measured
	Quick bool
}

func main() {
	only := flag.String("run", "", "regexp of benchmark ids to run")
	dir := flag.String("dir", "", "scratch directory (default: a temp dir under ./.bench)")
	quick := flag.Bool("quick", false, "smaller sizes, for a smoke test")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the in-process benchmarks to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	env := &Env{Dir: *dir, Quick: *quick}
	if env.Dir == "" {
		os.MkdirAll(".bench", 0o755)
		d, err := os.MkdirTemp(".bench", "run-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		env.Dir = d
		defer os.RemoveAll(d)
	}
	re := regexp.MustCompile(*only)
	var rows []Row
	failed := false
	for _, b := range benches {
		if !re.MatchString(b.id) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench %s %s ...\n", b.id, b.name)
		start := time.Now()
		rs, err := b.run(ctx, env)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench %s failed: %v\n", b.id, err)
			failed = true
			continue
		}
		fmt.Fprintf(os.Stderr, "bench %s done in %s\n", b.id, time.Since(start).Round(time.Millisecond))
		rows = append(rows, rs...)
	}
	fmt.Printf("volrep benchmarks, %s, %d cores (%s/%s)\n\n", time.Now().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tBENCHMARK\tVOLREP\tBASELINE\tRATIO\tNOTE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s %s\t%.2fx\t%s\n", r.ID, r.Name, fig(r.Volrep), r.Unit, fig(r.Baseline), r.Unit, r.Ratio(), r.Note)
	}
	tw.Flush()
	fmt.Println()
	for _, r := range rows {
		fmt.Printf("BENCH %s %s volrep=%s baseline=%s ratio=%.3f\n", r.ID, strings.ReplaceAll(r.Name, " ", "-"), fig(r.Volrep), fig(r.Baseline), r.Ratio())
	}
	if failed {
		os.Exit(1)
	}
}

func fig(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.4g", v)
	}
}
