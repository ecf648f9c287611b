// Command volrepd is the volrep daemon: it hosts arrays and runs Cinder
// driver backends, as its configuration says.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof" // served only when VOLREP_PPROF is set
	"os"
	"os/signal"
	"syscall"

	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/daemon"
	"github.com/volrep/volrep/deploy/demo"
)

func main() {
	cfgPath := flag.String("config", "", "cinder.conf-style configuration file (default: the embedded demo)")
	check := flag.Bool("check-config", false, "validate the configuration, print one FILE:LINE: line per problem, and exit (0 valid, 2 problems)")
	output := flag.String("o", "text", "--check-config output: text (the problems), json (what volrepd read, tokens masked, and the problems) "+
		"or ini (the effective configuration as a cinder.conf-style file, defaults filled in, tokens masked)")
	flag.Parse()
	if *output != "text" && *output != "json" && *output != "ini" {
		fmt.Fprintf(os.Stderr, "volrepd: -o %q: use text, json or ini\n", *output)
		os.Exit(1)
	}

	cfg, err := load(*cfgPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "volrepd: %v\n", err)
		os.Exit(1)
	}
	if *check {
		if err := printCheck(os.Stdout, cfg, *output); err != nil {
			fmt.Fprintf(os.Stderr, "volrepd: %v\n", err)
			os.Exit(1)
		}
		if len(cfg.Problems) > 0 {
			fmt.Fprintf(os.Stderr, "volrepd: %s: %d problem(s)\n", cfg.File, len(cfg.Problems))
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "volrepd: %s: configuration is valid\n", cfg.File)
		return
	}
	log, level, err := daemon.NewLogger(cfg.Daemon, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "volrepd: %v\n", err)
		os.Exit(1)
	}
	if addr := os.Getenv("VOLREP_PPROF"); addr != "" {
		// Opt-in profiling (go tool pprof http://ADDR/debug/pprof/profile).
		go func() { log.Warn("pprof server stopped", "err", http.ListenAndServe(addr, nil)) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// SIGHUP (systemctl reload) re-reads the file and re-converges.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	opts := daemon.Options{Logger: log, Level: level, Announce: os.Stdout,
		Reload: hup, Load: func() (*config.Config, error) { return load(*cfgPath) }}
	if err := daemon.Run(ctx, cfg, opts); err != nil {
		log.Error("volrepd failed", "err", err)
		os.Exit(1)
	}
}

// printCheck writes --check-config's report: one FILE:LINE: line per
// problem, as json config.View, which shows the values read as well, or
// as ini the effective configuration (config.WriteINI).
func printCheck(w io.Writer, cfg *config.Config, format string) error {
	switch format {
	case "ini":
		return cfg.WriteINI(w)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(cfg.View())
	}
	for _, p := range cfg.Problems {
		if _, err := fmt.Fprintln(w, p); err != nil {
			return err
		}
	}
	return nil
}

func load(path string) (*config.Config, error) {
	if path == "" {
		return config.Parse(demo.Name, demo.Config)
	}
	return config.Load(path)
}
