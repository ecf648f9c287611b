package daemon

import (
	"slices"
	"testing"

	"github.com/volrep/volrep/config"
)

func TestNeedsRestart(t *testing.T) {
	base := func() *config.Config {
		return &config.Config{
			Daemon: config.Daemon{DriverListen: "127.0.0.1:7400", LogLevel: "info", LogFormat: "auto"},
			Arrays: []config.Array{{Name: "a", DataDir: "/d/a", Listen: "127.0.0.1:7401", Line: 5}},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		want   []string
	}{
		{"nothing", func(*config.Config) {}, nil},
		{"log level is applied live", func(c *config.Config) { c.Daemon.LogLevel = "debug" }, nil},
		{"an array that only moved in the file", func(c *config.Config) { c.Arrays[0].Line = 40 }, nil},
		{"driver_listen", func(c *config.Config) { c.Daemon.DriverListen = "0.0.0.0:7400" }, []string{"[volrep] driver_listen"}},
		{"driver token", func(c *config.Config) { c.Daemon.DriverAPIToken = "new" }, []string{"[volrep] driver_api_token"}},
		{"array data_dir", func(c *config.Config) { c.Arrays[0].DataDir = "/e/a" }, []string{"[array:a] changed"}},
		{"array added and removed", func(c *config.Config) { c.Arrays[0].Name = "b" }, []string{"[array:b] added", "[array:a] removed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := base()
			tc.change(next)
			if got := needsRestart(base(), next); !slices.Equal(got, tc.want) {
				t.Fatalf("needsRestart = %q, want %q", got, tc.want)
			}
		})
	}
}
