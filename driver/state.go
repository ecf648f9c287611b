package driver

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// backendState is what the driver keeps of its own: which array serves a
// backend, so a restarted volrepd keeps serving from the secondary after
// a failover.
type backendState struct {
	ActiveBackendID string `json:"active_backend_id"`
}

func (b *Backend) statePath() string {
	if b.opts.StateDir == "" {
		return ""
	}
	return filepath.Join(b.opts.StateDir, "backends", b.cfg.Section+".json")
}

func (b *Backend) loadState() (backendState, error) {
	st := backendState{ActiveBackendID: "default"}
	path := b.statePath()
	if path == "" {
		return st, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// saveState writes the state durably: a temporary file, fsync, rename,
// and fsync of the directory, so a crash leaves the old or the new.
func (b *Backend) saveState(st backendState) error {
	path := b.statePath()
	if path == "" {
		return nil
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeFileDurable(path, data)
}
