package daemon

import (
	"io"
	"log/slog"

	"github.com/volrep/volrep/config"
)

// NewLogger builds the daemon's logger from [volrep] log_format and
// log_level.
func NewLogger(d config.Daemon, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(d.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if d.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
