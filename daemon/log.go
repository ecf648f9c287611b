package daemon

import (
	"io"
	"log/slog"

	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/logging"
)

// NewLogger builds the daemon's logger from [volrep] log_format and
// log_level (see logging.New): journald's native protocol with one field
// per attribute under systemd, slog's text or JSON on w otherwise.
func NewLogger(d config.Daemon, w io.Writer) (*slog.Logger, error) {
	return logging.New(d.LogFormat, d.LogLevel, w)
}
