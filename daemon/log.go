package daemon

import (
	"io"
	"log/slog"

	"github.com/volrep/volrep/config"
	"github.com/volrep/volrep/logging"
)

// NewLogger builds the daemon's logger from [volrep] log_format and
// log_level (see logging.New): journald's native protocol with one field
// per attribute under systemd, slog's text or JSON on w otherwise. The
// level is returned as a LevelVar so a reload can change it.
func NewLogger(d config.Daemon, w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	lv, err := logging.ParseLevel(d.LogLevel)
	if err != nil {
		return nil, nil, err
	}
	level := new(slog.LevelVar)
	level.Set(lv)
	log, err := logging.NewLeveled(d.LogFormat, level, w)
	return log, level, err
}
