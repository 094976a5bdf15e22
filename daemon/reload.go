package daemon

// This file is the SIGHUP reload of `smimed run`: the configuration file is
// read again and, when it is valid as a whole, put in force without a
// restart. Keys and trust anchors are reloaded (a new engine takes the next
// message), [daemon] workers resizes the pool, and accounts are compared by
// everything their watchers were started with: added ones start, removed
// ones stop (messages in hand finished, checkpoints committed, LOGOUT),
// changed ones restart, unchanged ones keep their connections. The
// gateway takes the new policy, signing identities and escrow for its
// next message, its sessions go on (gatewayrun.go). state_dir,
// log_format and metrics_listen need a restart: the running value is kept
// and a warning says so.

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/smimed/smimed/daemon/config"
)

// ErrNotRunning is returned by Reload before Run or after it ended.
var ErrNotRunning = errors.New("daemon: service not running")

// Reload re-reads the configuration file. An invalid configuration is
// logged in one line and returned; the running one stays in force. It
// tells systemd RELOADING=1 before and READY=1 after.
func (s *Service) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil || s.stopped || s.ctx.Err() != nil {
		return ErrNotRunning
	}
	if err := s.notify.Reloading(); err != nil {
		s.log.Warn("sd_notify RELOADING failed", "err", err)
	}
	defer func() {
		if err := s.notify.Ready(); err != nil {
			s.log.Warn("sd_notify READY failed", "err", err)
		}
	}()
	old := s.cfg
	cfg, err := config.Load(old.Path)
	var l *loaded
	if err == nil {
		l, err = load(cfg)
	}
	if err != nil {
		s.log.Error("reload refused: keeping the running configuration", "err", oneLine(err))
		return err
	}
	l.warn(s.log)
	s.arch.SetRetention(cfg.Archive.Retention.Policy())

	restartNeeded := func(key string, running, configured *string) {
		if *configured != *running {
			s.log.Warn(key+" changed; restart needed", "running", *running, "configured", *configured)
			*configured = *running
		}
	}
	restartNeeded("state_dir", &old.StateDir, &cfg.StateDir)
	restartNeeded("daemon.log_format", &old.Daemon.LogFormat, &cfg.Daemon.LogFormat)
	restartNeeded("daemon.metrics_listen", &old.Daemon.MetricsListen, &cfg.Daemon.MetricsListen)
	restartNeeded("daemon.control_socket", &old.Daemon.ControlSocket, &cfg.Daemon.ControlSocket)
	s.wormRestart(old, cfg)
	if cfg.Daemon.MaxConnections != old.Daemon.MaxConnections {
		s.log.Warn("daemon.max_connections changed; restart needed", "running", old.Daemon.MaxConnections, "configured", cfg.Daemon.MaxConnections)
		cfg.Daemon.MaxConnections = old.Daemon.MaxConnections
	}
	if cfg.Daemon.Workers != old.Daemon.Workers {
		s.pool.Resize(inHand(cfg.Daemon.Workers))
		s.gate.Resize(cfg.Daemon.Workers)
		s.large.Resize(cfg.Daemon.Workers)
	}
	s.engine.Store(s.newEngine(cfg, l))
	s.tokens.Store(&l.tokens)
	s.reloadGateway(old, cfg, l)

	want := map[string]accountSettings{}
	var names []string
	for _, a := range l.settings(cfg) {
		want[a.Account.Name] = a
		names = append(names, a.Account.Name)
	}
	var added, removed, restarted, unchanged []string
	var stop []*accountRun
	for name, r := range s.accounts {
		a, ok := want[name]
		switch {
		case !ok:
			removed = append(removed, name)
		case !sameSettings(a, r.settings):
			restarted = append(restarted, name)
		default:
			unchanged = append(unchanged, name)
			continue
		}
		r.cancel()
		stop = append(stop, r)
	}
	// Every stopping watcher finishes its messages in parallel.
	waitAll(stop)
	for _, r := range stop {
		name := r.settings.Account.Name
		for _, f := range r.settings.Account.Folders {
			if a, ok := want[name]; !ok || !slices.Contains(a.Account.Folders, f) {
				s.metrics.ForgetFolder(name, f)
			}
		}
		delete(s.accounts, name)
	}
	for _, name := range names {
		if _, running := s.accounts[name]; !running {
			if !slices.Contains(restarted, name) {
				added = append(added, name)
			}
			s.startAccount(want[name])
		}
	}
	s.cfg = cfg
	s.trustCfg.Store(cfg)
	for _, list := range [][]string{added, removed, restarted, unchanged} {
		slices.Sort(list)
	}
	s.log.Info("configuration reloaded",
		"added", strings.Join(added, ","), "removed", strings.Join(removed, ","),
		"restarted", strings.Join(restarted, ","), "unchanged", strings.Join(unchanged, ","),
		"keys", len(l.crypto.Keys), "workers", cfg.Daemon.Workers)
	return nil
}

// sameSettings reports whether a and b watch the same way: where the
// block stands in the file does not count.
func sameSettings(a, b accountSettings) bool {
	a.Account.Index, b.Account.Index = 0, 0
	return reflect.DeepEqual(a, b)
}

// oneLine renders err on one line: a *config.Error's problems joined by
// "; ".
func oneLine(err error) string {
	var ce *config.Error
	if errors.As(err, &ce) {
		return fmt.Sprintf("config %s: %s", ce.Path, strings.Join(ce.Problems, "; "))
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}
