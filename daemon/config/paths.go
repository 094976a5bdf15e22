package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Where smimed keeps things, all derived from the configuration.

const (
	// MaxSocketPath is the longest path a unix socket address holds
	// (sun_path is 108 bytes with the final NUL).
	MaxSocketPath = 107
	// controlSocketName is the socket's file name in the default
	// directories.
	controlSocketName = "control.sock"
)

// StorePath is the state file (package harvest/state): the certificate
// store, the archive's index and audit log, the checkpoints.
func (c *Config) StorePath() string { return filepath.Join(c.StateDir, "smimed.db") }

// ArchiveDir is where the archive keeps its files: state_dir/archive.
func (c *Config) ArchiveDir() string { return filepath.Join(c.StateDir, "archive") }

// ControlSocketPath is where the daemon listens: [daemon] control_socket
// when set, else control.sock in $RUNTIME_DIRECTORY (systemd's
// RuntimeDirectory=smimed, so /run/smimed) when that is set, else in
// state_dir.
func (c *Config) ControlSocketPath() string {
	if c.Daemon.ControlSocket != "" {
		return c.Daemon.ControlSocket
	}
	if rd := os.Getenv("RUNTIME_DIRECTORY"); rd != "" {
		// Several RuntimeDirectory= entries arrive colon-separated.
		return filepath.Join(strings.Split(rd, ":")[0], controlSocketName)
	}
	return filepath.Join(c.StateDir, controlSocketName)
}

// ControlSocketPaths are where a command looks for the daemon: the
// configured socket when there is one; else $RUNTIME_DIRECTORY's (when
// set), /run/smimed's (the unit's RuntimeDirectory, which an admin's shell
// does not know of) and state_dir's.
func (c *Config) ControlSocketPaths() []string {
	if c.Daemon.ControlSocket != "" {
		return []string{c.Daemon.ControlSocket}
	}
	var out []string
	for _, p := range []string{c.ControlSocketPath(), filepath.Join("/run/smimed", controlSocketName), filepath.Join(c.StateDir, controlSocketName)} {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}
