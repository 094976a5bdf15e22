package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/smimed/smimed/daemon/imapwatch"
	"github.com/smimed/smimed/harvest"
)

// Service is `smimed run`: one watcher per account and folder, every
// message handed to the harvest engine. Until the archive exists, a
// message counts as done once its certificates are harvested durably and
// its outcome is logged.
type Service struct {
	cfg    *Config
	store  *harvest.Store
	cps    *Checkpoints
	eng    *harvest.Engine
	log    *slog.Logger
	notify *Notifier
	pool   *Pool // [daemon] workers, shared by every folder
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
	// Fetched messages left by a crash or a forced exit: their folders'
	// checkpoints did not pass them, so they are fetched again.
	if left, err := filepath.Glob(filepath.Join(tmp, "imapwatch-*.eml")); err == nil {
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
	eng := harvest.New(harvest.Options{Keys: keys, Roots: roots, Store: store, Harvest: true, RejectSHA1: cfg.Trust.RejectSHA1})
	return &Service{cfg: cfg, store: store, cps: cps, eng: eng, log: log, notify: notify, pool: NewPool(cfg.Daemon.Workers)}, nil
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
	for _, a := range s.cfg.Accounts {
		password, err := harvest.ReadPasswordFile(a.PasswordFile)
		if err != nil {
			return fmt.Errorf("account %s: %w", a.Name, err)
		}
		for _, folder := range a.Folders {
			log := s.log.With("account", a.Name, "folder", folder)
			w := NewWatcher(WatchConfig{
				Account: a.Name, Folder: folder,
				IMAP: imapwatch.Config{
					Addr: a.Server, TLS: a.TLS, TLSCAFile: a.TLSCAFile, TLSServerName: a.TLSServerName,
					Username: a.Username, Password: password, Auth: a.Auth, Logger: log,
				},
				TempDir:          filepath.Join(s.cfg.StateDir, "tmp"),
				MaxMessageSize:   s.cfg.MaxMessageSize,
				Pool:             s.pool,
				IdleRestart:      s.cfg.Daemon.IdleRestart,
				LivenessInterval: s.cfg.Daemon.LivenessInterval,
				PollInterval:     s.cfg.Daemon.PollInterval,
				Backfill:         a.Backfill,
				Logger:           s.log, // the watcher adds account and folder itself
			}, s.cps, &engineSink{eng: s.eng, log: log})
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

// engineSink runs the harvest engine on each fetched message and logs one
// line with its outcome (never its content).
type engineSink struct {
	eng *harvest.Engine
	log *slog.Logger
}

func (k *engineSink) Deliver(ctx context.Context, m Message) error {
	log := k.log.With("uid", m.UID, "uidvalidity", m.UIDValidity)
	if m.TooLarge {
		log.Warn("message not processed: larger than max_message_size", "size", m.Size)
		return nil
	}
	raw, err := os.ReadFile(m.Path)
	if err != nil {
		return Temporary(fmt.Errorf("read fetched message: %w", err))
	}
	received := m.InternalDate
	if received.IsZero() {
		received = time.Now()
	}
	res, err := k.eng.Process(raw, received)
	if err != nil {
		// Our store could not be written: retry this message later.
		return Temporary(err)
	}
	r := res.Report
	var verdicts, signers []string
	for _, sig := range r.Signatures {
		verdicts = append(verdicts, sig.Status)
		signers = append(signers, sig.Fingerprint)
	}
	var harvested []string
	for _, h := range r.Harvested {
		harvested = append(harvested, h.Email+"="+h.Fingerprint)
	}
	log.Info("message processed",
		"message_id", r.MessageID,
		"layers", strings.Join(r.Layers, ">"),
		"decryption", r.Decryption.Status,
		"cipher", r.Decryption.Cipher,
		"key", r.Decryption.Key,
		"verdicts", strings.Join(verdicts, ","),
		"signers", strings.Join(signers, ","),
		"harvested", strings.Join(harvested, ","),
		"error", r.Error)
	return nil
}
