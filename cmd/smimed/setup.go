package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/harvest"
)

// setup is what a one-shot command (inspect, decrypt) needs: the
// configuration, and the engine with the store it reads (admin.Open).
type setup struct {
	cfg *config.Config
	env *admin.Env
	eng *harvest.Engine
}

func (s *setup) close() { s.env.Close() }

// loadConfig reads the config file. Without --config, a missing default
// file means built-in defaults (no keys, system roots).
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		if _, err := os.Stat(config.DefaultPath); errors.Is(err, os.ErrNotExist) {
			return config.Defaults(), nil
		}
		path = config.DefaultPath
	}
	return config.Load(path)
}

// newSetup loads config, keys and trust anchors and opens the store:
// read-write when harvesting, else read-only if it exists. It prints its
// own errors and returns an exit code when it fails.
func newSetup(configPath string, writeStore bool, stderr io.Writer) (*setup, int) {
	cfg, err := loadConfig(configPath)
	if err != nil {
		fmt.Fprintf(stderr, "smimed: %v\n", err)
		return nil, exitUsage
	}
	mode := admin.Inspect
	if writeStore {
		mode = admin.Harvest
	}
	env, err := admin.Open(cfg, mode)
	if err != nil {
		fmt.Fprintf(stderr, "smimed: %v\n", err)
		return nil, exitCodeOf(err)
	}
	for _, w := range env.Warnings {
		fmt.Fprintf(stderr, "smimed: warning: %s\n", w)
	}
	return &setup{cfg: cfg, env: env, eng: env.Engine}, exitOK
}

// exitCodeOf is the exit code of a failure to open: 2 when it is the
// configuration's fault, else 1.
func exitCodeOf(err error) int {
	var ce *admin.ConfigError
	if errors.As(err, &ce) {
		return exitUsage
	}
	return exitFailed
}

// errTooLarge marks a message over max_message_size: a property of the
// message, reported like any other problem with it.
var errTooLarge = errors.New("message exceeds max_message_size")

// readMessage reads one message from a file or "-" (stdin), refusing more
// than max bytes without reading them into memory.
func readMessage(name string, stdin io.Reader, max int64) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > max {
			return nil, fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, fi.Size(), max)
		} else if err == nil && fi.IsDir() {
			return nil, fmt.Errorf("%s: is a directory", name)
		}
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, max)
	}
	return data, nil
}
