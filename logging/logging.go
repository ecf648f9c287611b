package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
)

// Formats New accepts, as [volrep] log_format.
const (
	FormatAuto    = "auto"
	FormatJournal = "journal"
	FormatText    = "text"
	FormatJSON    = "json"
)

// journalSocket is where New looks for journald; tests point it elsewhere.
var journalSocket = DefaultSocket

// stderrIsJournal reports whether the process's stderr is a journal stream,
// which is the case when systemd started it with StandardError=journal
// (the default). A variable so tests can pretend either way.
var stderrIsJournal = journal.StderrIsJournalStream

// New builds the daemon's logger from [volrep] log_format and log_level:
//
//   - "journal": structured entries to journald (JournalHandler); an error
//     when journald's socket is missing.
//   - "text", "json": slog's text or JSON handler on stderr.
//   - "auto" or "": the journal when stderr is connected to it (volrepd
//     runs under systemd), text otherwise. If journald's socket cannot be
//     opened even so, text on stderr still reaches the journal, one line
//     per record, so that is used instead of failing.
//
// level is debug, info, warn or error ("" is info).
func New(format, level string, stderr io.Writer) (*slog.Logger, error) {
	lv, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	return NewLeveled(format, lv, stderr)
}

// ParseLevel reads a log_level: debug, info, warn or error ("" is info).
func ParseLevel(level string) (slog.Level, error) {
	var lv slog.Level
	if level != "" {
		if err := lv.UnmarshalText([]byte(level)); err != nil {
			return lv, fmt.Errorf("log level %q: want debug, info, warn or error", level)
		}
	}
	return lv, nil
}

// NewLeveled is New with the level given as a slog.Leveler, such as a
// *slog.LevelVar that a configuration reload can change.
func NewLeveled(format string, lv slog.Leveler, stderr io.Writer) (*slog.Logger, error) {
	text := func() *slog.Logger { return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv})) }
	switch strings.ToLower(format) {
	case FormatJournal:
		h, err := NewJournalHandler(JournalOptions{Level: lv, Socket: journalSocket})
		if err != nil {
			return nil, fmt.Errorf("log_format journal: %w", err)
		}
		return slog.New(h), nil
	case FormatText:
		return text(), nil
	case FormatJSON:
		return slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lv})), nil
	case FormatAuto, "":
		// A malformed JOURNAL_STREAM only means "not the journal".
		if ok, err := stderrIsJournal(); ok && err == nil {
			if h, err := NewJournalHandler(JournalOptions{Level: lv, Socket: journalSocket}); err == nil {
				return slog.New(h), nil
			}
		}
		return text(), nil
	}
	return nil, fmt.Errorf("log format %q: want auto, journal, text or json", format)
}
