package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/imapwatch"
	"github.com/smimed/smimed/harvest"
)

// Service is `smimed run`: one watcher per account and folder, every
// message handed to the harvest engine and kept in the archive; a message
// counts as done once the archive holds it durably and the user's copy (if
// any) is in the archive folder.
type Service struct {
	cfg    *Config
	store  *harvest.Store
	arch   *archive.Archive
	cps    *Checkpoints
	eng    *harvest.Engine
	log    *slog.Logger
	notify *Notifier
	// copyWake (one slot) wakes copyLoop.
	copyWake chan struct{}
}

// NewService loads keys and trust anchors and opens the store. The caller
// must Close it.
func NewService(cfg *Config, log *slog.Logger, notify *Notifier) (*Service, error) {
	if len(cfg.Accounts) == 0 {
		return nil, &ConfigError{Path: cfg.Path, Problems: []string{"accounts: no [[accounts]] to watch"}}
	}
	keys, err := cfg.LoadKeys()
	if err != nil {
		return nil, err
	}
	roots, err := cfg.TrustPool()
	if err != nil {
		return nil, err
	}
	if err := cfg.CheckAccounts(); err != nil {
		return nil, err
	}
	tmp := filepath.Join(cfg.StateDir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	// Fetched messages and unsent copies left by a crash or a forced exit: their folders
	// checkpoints did not pass them, so they are fetched again.
	if left, err := filepath.Glob(filepath.Join(tmp, "*.eml")); err == nil {
		for _, f := range left {
			os.Remove(f)
		}
	}
	store, err := harvest.OpenStore(cfg.StorePath(), false)
	if err != nil {
		return nil, err
	}
	cps, err := NewCheckpoints(store.DB())
	if err != nil {
		store.Close()
		return nil, err
	}
	arch, err := archive.Open(cfg.ArchiveDir(), store.DB())
	if err != nil {
		store.Close()
		return nil, err
	}
	eng := harvest.New(harvest.Options{Keys: keys, Roots: roots, Store: store, Harvest: true, RejectSHA1: cfg.Trust.RejectSHA1})
	return &Service{cfg: cfg, store: store, arch: arch, cps: cps, eng: eng, log: log, notify: notify, copyWake: make(chan struct{}, 1)}, nil
}

// Close releases the store.
func (s *Service) Close() error { return s.store.Close() }

// Run watches every configured folder until ctx ends, then lets the
// watchers finish the messages in hand and returns.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	n := 0
	for _, a := range s.cfg.Accounts {
		n += len(a.Folders)
	}
	errs := make(chan error, n)
	sinks := map[string]*archiveSink{}
	for _, a := range s.cfg.Accounts {
		password, err := harvest.ReadPasswordFile(a.PasswordFile)
		if err != nil {
			return fmt.Errorf("account %s: %w", a.Name, err)
		}
		imapCfg := func(log *slog.Logger) imapwatch.Config {
			return imapwatch.Config{
				Addr: a.Server, TLS: a.TLS, TLSCAFile: a.TLSCAFile, TLSServerName: a.TLSServerName,
				Username: a.Username, Password: password, Auth: a.Auth, Logger: log,
			}
		}
		var cp *copier
		if a.ArchiveFolder != "" {
			log := s.log.With("account", a.Name, "archive_folder", a.ArchiveFolder)
			cp = &copier{cfg: imapCfg(log), folder: a.ArchiveFolder, tmpDir: filepath.Join(s.cfg.StateDir, "tmp"), log: log}
			defer cp.close()
		}
		sink := &archiveSink{eng: s.eng, arch: s.arch, copier: cp, mode: a.ArchiveFolderMessages, authserv: s.cfg.Daemon.AuthservID, log: s.log.With("account", a.Name)}
		sinks[a.Name] = sink
		for _, folder := range a.Folders {
			log := s.log.With("account", a.Name, "folder", folder)
			w := NewWatcher(WatchConfig{
				Account: a.Name, Folder: folder,
				IMAP:             imapCfg(log),
				TempDir:          filepath.Join(s.cfg.StateDir, "tmp"),
				MaxMessageSize:   s.cfg.MaxMessageSize,
				Workers:          s.cfg.Daemon.Workers,
				IdleRestart:      s.cfg.Daemon.IdleRestart,
				LivenessInterval: s.cfg.Daemon.LivenessInterval,
				PollInterval:     s.cfg.Daemon.PollInterval,
				Backfill:         a.Backfill,
				Logger:           s.log, // the watcher adds account and folder itself
			}, s.cps, sink)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := w.Run(ctx); err != nil {
					log.Error("watcher stopped", "err", err)
					errs <- fmt.Errorf("account %s folder %s: %w", a.Name, folder, err)
				}
			}()
		}
	}
	// The copies of re-processed messages, at start and when woken.
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.copyLoop(ctx, func(account string) *archiveSink { return sinks[account] })
	}()
	if err := s.notify.Ready(); err != nil {
		s.log.Warn("sd_notify READY failed", "err", err)
	}
	s.notify.Status(fmt.Sprintf("watching %d account(s)", len(s.cfg.Accounts)))
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// copyInterval is how often pending user copies are retried without a
// wake-up.
const copyInterval = 5 * time.Minute

// copyLoop runs updateCopies at start, when WakeCopies is called, and every
// copyInterval, until ctx ends.
func (s *Service) copyLoop(ctx context.Context, sinkFor func(string) *archiveSink) {
	t := time.NewTicker(copyInterval)
	defer t.Stop()
	for {
		updateCopies(ctx, s.arch, sinkFor, s.log)
		select {
		case <-ctx.Done():
			return
		case <-s.copyWake:
		case <-t.C:
		}
	}
}

// WakeCopies asks the service to bring the users' copies up to date now
// (after an archive retry through the control socket).
func (s *Service) WakeCopies() {
	select {
	case s.copyWake <- struct{}{}:
	default:
	}
}
