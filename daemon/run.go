package daemon

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smimed/smimed/daemon/imapwatch"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/cms"
)

// Service is `smimed run`: one watcher per account and folder, every
// message handed to the harvest engine. Until the archive exists, a
// message counts as done once its certificates are harvested durably and
// its outcome is logged. Reload (SIGHUP) re-reads the configuration file
// while it runs.
type Service struct {
	store     *harvest.Store
	cps       *Checkpoints
	log       *slog.Logger
	notify    *Notifier
	pool      *Pool // [daemon] workers, shared by every folder
	metrics   *Metrics
	metricsLn net.Listener // nil when metrics_listen is ""
	engine    atomic.Pointer[harvest.Engine]
	running   atomic.Int64  // watchers that have not returned
	ended     chan struct{} // 1 slot: running dropped to 0

	mu       sync.Mutex // serialises Run's start and end and Reload
	cfg      *Config    // the configuration in force
	ctx      context.Context
	stopped  bool
	initial  []accountSettings // started by Run
	accounts map[string]*accountRun

	errMu sync.Mutex
	errs  []error // of watchers that stopped for good
}

// accountSettings is everything an account's watchers are started with:
// a reload restarts an account exactly when they differ.
type accountSettings struct {
	Account          AccountConfig
	Password         string
	TempDir          string
	MaxMessageSize   int64
	IdleRestart      time.Duration
	LivenessInterval time.Duration
	PollInterval     time.Duration
}

// accountRun is one account's running watchers.
type accountRun struct {
	settings accountSettings
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// loaded is what a configuration needs from files before it can run.
type loaded struct {
	keys      []*cms.Key
	roots     *x509.CertPool
	passwords map[string]string // by account name
}

// load reads the keys, trust anchors and account passwords cfg names, so
// that a configuration is refused whole before anything uses it.
func load(cfg *Config) (*loaded, error) {
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
	l := &loaded{keys: keys, roots: roots, passwords: map[string]string{}}
	for _, a := range cfg.Accounts {
		pw, err := harvest.ReadPasswordFile(a.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("account %s: %w", a.Name, err)
		}
		l.passwords[a.Name] = pw
	}
	return l, nil
}

// settings returns the watchers' settings of every account of cfg.
func (l *loaded) settings(cfg *Config) []accountSettings {
	var out []accountSettings
	for _, a := range cfg.Accounts {
		out = append(out, accountSettings{
			Account: a, Password: l.passwords[a.Name],
			TempDir:          filepath.Join(cfg.StateDir, "tmp"),
			MaxMessageSize:   cfg.MaxMessageSize,
			IdleRestart:      cfg.Daemon.IdleRestart,
			LivenessInterval: cfg.Daemon.LivenessInterval,
			PollInterval:     cfg.Daemon.PollInterval,
		})
	}
	return out
}

// NewService loads keys, trust anchors and passwords, opens the store and
// the metrics listener. The caller must Close it.
func NewService(cfg *Config, log *slog.Logger, notify *Notifier) (*Service, error) {
	l, err := load(cfg)
	if err != nil {
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
	s := &Service{
		cfg: cfg, store: store, cps: cps, log: log, notify: notify,
		pool: NewPool(cfg.Daemon.Workers), metrics: NewMetrics(),
		ended: make(chan struct{}, 1), initial: l.settings(cfg), accounts: map[string]*accountRun{},
	}
	if cfg.Daemon.MetricsListen != "" {
		s.metricsLn, err = net.Listen("tcp", cfg.Daemon.MetricsListen)
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("daemon.metrics_listen: %w", err)
		}
	}
	s.engine.Store(s.newEngine(cfg, l))
	return s, nil
}

func (s *Service) newEngine(cfg *Config, l *loaded) *harvest.Engine {
	return harvest.New(harvest.Options{Keys: l.keys, Roots: l.roots, Store: s.store, Harvest: true, RejectSHA1: cfg.Trust.RejectSHA1})
}

// Close releases the store (and the metrics listener if Run did not).
func (s *Service) Close() error {
	if s.metricsLn != nil {
		s.metricsLn.Close()
	}
	return s.store.Close()
}

// MetricsAddr is the address the metrics are served on, or nil.
func (s *Service) MetricsAddr() net.Addr {
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// Metrics returns the service's metrics and folder states.
func (s *Service) Metrics() *Metrics { return s.metrics }

// Run watches every configured folder until ctx ends, then lets the
// watchers finish the messages in hand and returns. It also returns when
// every watcher has stopped for good, with their errors.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.ctx != nil {
		s.mu.Unlock()
		return errors.New("daemon: Service.Run called twice")
	}
	s.ctx = ctx
	for _, a := range s.initial {
		s.startAccount(a)
	}
	s.initial = nil
	s.mu.Unlock()

	// The metrics and the status outlive ctx until the watchers are done.
	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	if s.metricsLn != nil {
		bg.Go(func() {
			if err := s.metrics.Serve(bgCtx, s.metricsLn); err != nil {
				s.log.Error("metrics server stopped", "err", err)
			}
		})
	}
	bg.Go(func() { s.statusLoop(bgCtx) })
	if err := s.notify.Ready(); err != nil {
		s.log.Warn("sd_notify READY failed", "err", err)
	}

	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-s.ended:
			s.mu.Lock() // a reload in progress may start watchers again
			done = s.running.Load() == 0
			s.mu.Unlock()
		}
	}
	s.mu.Lock()
	s.stopped = true
	runs := slices.Collect(maps.Values(s.accounts))
	s.mu.Unlock()
	for _, r := range runs {
		r.cancel()
	}
	for _, r := range runs {
		r.wg.Wait()
	}
	stopBg()
	bg.Wait()
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return errors.Join(s.errs...)
}

// startAccount starts one watcher per folder of a. Called with mu held.
func (s *Service) startAccount(a accountSettings) {
	actx, cancel := context.WithCancel(s.ctx)
	r := &accountRun{settings: a, cancel: cancel}
	for _, folder := range a.Account.Folders {
		log := s.log.With("account", a.Account.Name, "folder", folder)
		w := NewWatcher(WatchConfig{
			Account: a.Account.Name, Folder: folder,
			IMAP: imapwatch.Config{
				Addr: a.Account.Server, TLS: a.Account.TLS, TLSCAFile: a.Account.TLSCAFile, TLSServerName: a.Account.TLSServerName,
				Username: a.Account.Username, Password: a.Password, Auth: a.Account.Auth, Logger: log,
			},
			TempDir:          a.TempDir,
			MaxMessageSize:   a.MaxMessageSize,
			Pool:             s.pool,
			IdleRestart:      a.IdleRestart,
			LivenessInterval: a.LivenessInterval,
			PollInterval:     a.PollInterval,
			Backfill:         a.Account.Backfill,
			Logger:           s.log, // the watcher adds account and folder itself
			Metrics:          s.metrics,
		}, s.cps, &engineSink{engine: &s.engine, metrics: s.metrics, log: log})
		r.wg.Add(1)
		s.running.Add(1)
		go func() {
			defer r.wg.Done()
			if err := w.Run(actx); err != nil {
				log.Error("watcher stopped", "err", err)
				s.errMu.Lock()
				s.errs = append(s.errs, fmt.Errorf("account %s folder %s: %w", a.Account.Name, folder, err))
				s.errMu.Unlock()
			}
			if s.running.Add(-1) == 0 {
				select {
				case s.ended <- struct{}{}:
				default:
				}
			}
		}()
	}
	s.accounts[a.Account.Name] = r
}

// statusLoop sends the STATUS= line when it changed, at most once a
// second.
func (s *Service) statusLoop(ctx context.Context) {
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.metrics.changed():
		}
		if line := s.metrics.Status(); line != last {
			if err := s.notify.Status(line); err != nil {
				s.log.Debug("sd_notify STATUS failed", "err", err)
			}
			last = line
		}
		if sleepCtx(ctx, time.Second) != nil {
			return
		}
	}
}

// engineSink runs the harvest engine on each fetched message and logs one
// line with its outcome (never its content).
type engineSink struct {
	engine  *atomic.Pointer[harvest.Engine] // replaced by a reload
	metrics *Metrics
	log     *slog.Logger
}

func (k *engineSink) Deliver(ctx context.Context, m Message) error {
	log := k.log.With("uid", m.UID, "uidvalidity", m.UIDValidity)
	if m.TooLarge {
		log.Warn("message not processed: larger than max_message_size", "size", m.Size)
		k.metrics.Processed(m, nil)
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
	res, err := k.engine.Load().Process(raw, received)
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
	k.metrics.Processed(m, &r)
	return nil
}
