package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/archive/worm"
	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/imapconn"
	"github.com/smimed/smimed/daemon/oauth"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/revocation"
	"github.com/smimed/smimed/harvest/state"
)

// Service is `smimed run`: one watcher per account and folder, every
// message handed to the harvest engine and kept in the archive; a message
// counts as done once the archive holds it durably and the user's copy (if
// any) is in the archive folder. Reload (SIGHUP) re-reads the
// configuration file while it runs.
type Service struct {
	state     *state.DB // the state file; store, arch and cps keep their buckets in it
	store     *harvest.Store
	network   *config.Network // CRLs (kept in state) and issuers fetched, across reloads
	stateDir  string          // fixed for the life of the service (a reload keeps it)
	arch      *archive.Archive
	sealer    *sealer
	copyWake  chan struct{} // 1 slot: wakes copyLoop
	cps       *Checkpoints
	log       *slog.Logger
	notify    *Notifier
	pool      *Pool // messages in hand (inHand of [daemon] workers), shared by every folder
	gate      *Gate // the engine's parallelism: [daemon] workers
	large     *Gate // large messages (in files) in memory at once: [daemon] workers
	metrics   *Metrics
	worm      *worm.Uploader // nil without [archive.worm]
	metricsLn net.Listener   // nil when metrics_listen is ""
	engine    atomic.Pointer[harvest.Engine]
	budgets   map[string]*connBudget                   // by server host:port (daemon.max_connections); under mu
	trustCfg  atomic.Pointer[config.Config]            // cfg, for the control socket's requests (which must not wait for mu)
	tokens    atomic.Pointer[map[string]*oauth.Source] // OAuth2 logins by account name, replaced by a reload
	gateway   *gatewayRun                              // nil: no [gateway]; fixed for the life of the service
	gwDone    chan error                               // 1 slot: the gateway's Serve returned
	running   atomic.Int64                             // watchers that have not returned
	ended     chan struct{}                            // 1 slot: running dropped to 0

	mu       sync.Mutex     // serialises Run's start and end and Reload
	cfg      *config.Config // the configuration in force
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
	Account          config.Account
	Password         string
	TempDir          string
	MaxMessageSize   int64
	IdleRestart      time.Duration
	LivenessInterval time.Duration
	PollInterval     time.Duration
	AuthservID       string
}

// accountRun is one account's running watchers.
type accountRun struct {
	settings accountSettings
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	sink     *archiveSink
}

// waitAll waits for every account in runs at once: their messages in hand
// and their LOGOUTs must fit in the 10 s of a shutdown together.
func waitAll(runs []*accountRun) {
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(r.wait)
	}
	wg.Wait()
}

// wait waits for the account's watchers to finish the messages in hand,
// then closes its APPEND connection.
func (r *accountRun) wait() {
	r.wg.Wait()
	if r.sink.copier != nil {
		r.sink.copier.Close()
	}
}

// loaded is what a configuration needs from files before it can run.
type loaded struct {
	crypto    *config.Crypto
	passwords map[string]string        // by account name
	tokens    map[string]*oauth.Source // by account name: OAuth2 logins
	gateway   *gatewayLoaded           // nil: no [gateway]
}

// load reads the keys, trust anchors and account passwords cfg names, so
// that a configuration is refused whole before anything uses it.
func load(cfg *config.Config) (*loaded, error) {
	if len(cfg.Accounts) == 0 && cfg.Gateway == nil {
		return nil, &config.Error{Path: cfg.Path, Problems: []string{"accounts: no [[accounts]] to watch and no [gateway] to serve: give one or both"}}
	}
	crypto, err := cfg.LoadCrypto()
	if err != nil {
		return nil, err
	}
	if err := cfg.CheckAccounts(); err != nil {
		return nil, err
	}
	if err := cfg.CheckWorm(); err != nil {
		return nil, err
	}
	gw, err := loadGateway(cfg)
	if err != nil {
		return nil, err
	}
	l := &loaded{crypto: crypto, passwords: map[string]string{}, tokens: map[string]*oauth.Source{}, gateway: gw}
	read := map[string]string{} // the mailboxes of a users block share one file
	shared := map[int]*oauth.Source{}
	for _, a := range cfg.Accounts {
		if a.OAuth2 != nil {
			// Client credentials: one token for every mailbox of the
			// block; a service account signs for each mailbox.
			src := shared[a.Index]
			if src == nil || a.OAuth2.Grant() != oauth.ClientCredentials {
				if src, err = cfg.TokenSource(a); err != nil {
					return nil, &config.Error{Path: cfg.Path, Problems: []string{fmt.Sprintf("accounts[%d].oauth2: %v", a.Index, err)}}
				}
				shared[a.Index] = src
			}
			l.tokens[a.Name] = src
			continue
		}
		pw, done := read[a.PasswordFile]
		if !done {
			if pw, err = config.ReadAccountPassword(a); err != nil {
				// A configuration error (exit 2): a restart does not mend
				// it.
				return nil, &config.Error{Path: cfg.Path, Problems: []string{fmt.Sprintf("accounts[%d].password_file: %v", a.Index, err)}}
			}
			read[a.PasswordFile] = pw
		}
		l.passwords[a.Name] = pw
	}
	return l, nil
}

// settings returns the watchers' settings of every account of cfg.
func (l *loaded) settings(cfg *config.Config) []accountSettings {
	var out []accountSettings
	for _, a := range cfg.Accounts {
		out = append(out, accountSettings{
			Account: a, Password: l.passwords[a.Name],
			TempDir:          filepath.Join(cfg.StateDir, "tmp"),
			MaxMessageSize:   cfg.MaxMessageSize,
			IdleRestart:      cfg.Daemon.IdleRestart,
			LivenessInterval: cfg.Daemon.LivenessInterval,
			PollInterval:     cfg.Daemon.PollInterval,
			AuthservID:       cfg.Daemon.AuthservID,
		})
	}
	return out
}

// NewService loads keys, trust anchors and passwords, opens the store and
// the metrics listener. The caller must Close it.
func NewService(cfg *config.Config, log *slog.Logger, notify *Notifier) (*Service, error) {
	l, err := load(cfg)
	if err != nil {
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
	db, err := state.Open(cfg.StorePath(), false)
	if err != nil {
		return nil, err
	}
	store := harvest.NewStore(db)
	cps, err := NewCheckpoints(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	arch, err := archive.Open(cfg.ArchiveDir(), db)
	if err != nil {
		db.Close()
		return nil, err
	}
	arch.SetRetention(cfg.Archive.Retention.Policy())
	// Open removed what a crash left in the archive's tmp directories
	// and unfinished backups (it holds the store's lock: nothing of a
	// running smimed).
	if n := arch.LeftoversRemoved(); n > 0 {
		log.Info("crash leftovers removed", "files", n)
	}
	s := &Service{
		cfg: cfg, state: db, store: store, network: config.NewNetwork(db, log.With("pkg", "revocation")), stateDir: cfg.StateDir, arch: arch, copyWake: make(chan struct{}, 1), cps: cps, log: log, notify: notify,
		pool: NewPool(inHand(cfg.Daemon.Workers)), gate: NewGate(cfg.Daemon.Workers), large: NewGate(cfg.Daemon.Workers), metrics: NewMetrics(),
		ended: make(chan struct{}, 1), initial: l.settings(cfg), accounts: map[string]*accountRun{},
	}
	if s.worm, err = newWorm(cfg, arch, db, log); err != nil {
		db.Close()
		return nil, err
	}
	s.metrics.watchWorm(s.worm)
	if cfg.Daemon.MetricsListen != "" {
		s.metricsLn, err = net.Listen("tcp", cfg.Daemon.MetricsListen)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("daemon.metrics_listen: %w", err)
		}
	}
	s.engine.Store(s.newEngine(cfg, l))
	s.tokens.Store(&l.tokens)
	s.trustCfg.Store(cfg)
	s.sealer = newSealer(arch, s.trustCfg.Load, log, s.metrics)
	if s.worm != nil {
		s.sealer.kept = s.wormKeepToken(cfg)
	}
	if l.gateway != nil {
		if s.gateway, err = s.startGateway(cfg, l.gateway); err != nil {
			if s.metricsLn != nil {
				s.metricsLn.Close()
			}
			db.Close()
			return nil, err
		}
		s.gwDone = make(chan error, 1)
	}
	l.warn(log)
	for _, w := range cfg.RetentionWarnings() {
		log.Warn(w)
	}
	return s, nil
}

// warn logs one line per key loaded for decryption only.
func (l *loaded) warn(log *slog.Logger) {
	for _, w := range l.crypto.Warnings {
		log.Warn("weak decryption key: "+w, "decrypt_only", true)
	}
}

// newEngine is the service's engine: it leaves the certificates it
// harvests to the sink to write (Result.Write), after the engine's turn
// in the Gate, so a CPU slot never waits for the disk.
func (s *Service) newEngine(cfg *config.Config, l *loaded) *harvest.Engine {
	opts := cfg.EngineOptions(l.crypto, s.store, true, s.network)
	opts.DeferWrites = true
	return harvest.New(opts)
}

// Close releases the state file (and the metrics listener if Run did not).
func (s *Service) Close() error {
	if s.metricsLn != nil {
		s.metricsLn.Close()
	}
	return s.state.Close()
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
	// The admin commands reach the archive through the control socket
	// while we hold the store.
	stopControl, err := admin.ServeControl(ctx, admin.ControlOptions{
		Path: s.cfg.ControlSocketPath(), GID: -1, StateDir: s.cfg.StateDir, Log: s.log, Status: s.Status,
		Auditors: new(admin.AccessOf(s.cfg, os.Getuid())),
		Open: func(c admin.Caller) admin.ArchiveAPI {
			return &admin.Local{Archive: s.arch, Store: s.store, State: s.state, Engine: s.engine.Load(), Caller: c, Changed: s.WakeCopies, Seal: s.trustCfg.Load().Archive.Seal, Worm: s.wormClient(),
				Revocation: s.network.CRLs, CAs: admin.CACandidates(s.trustCfg.Load(), s.store)}
		},
	})
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("control socket: %w", err)
	}
	defer stopControl()
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
	// The gateway stops with ctx (its sessions get 10 s to finish).
	var gwWait sync.WaitGroup
	gwCtx, stopGateway := context.WithCancel(ctx)
	defer stopGateway()
	if s.gateway != nil {
		s.archiveKept()
		gwWait.Go(func() { s.gwDone <- s.gateway.serve(gwCtx, s.log) })
	}
	// The copies of re-processed messages, at start and when woken.
	bg.Go(func() { s.copyLoop(bgCtx) })
	bg.Go(func() { s.crlLoop(bgCtx) })
	// Seals, and at the end (after the watchers) one over the rest.
	bg.Go(func() { s.sealer.run(bgCtx) })
	if s.worm != nil {
		bg.Go(func() { s.worm.Run(bgCtx) })
	}
	if err := s.notify.Ready(); err != nil {
		s.log.Warn("sd_notify READY failed", "err", err)
	}

	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case err := <-s.gwDone: // nil channel without a gateway
			if err != nil {
				s.errMu.Lock()
				s.errs = append(s.errs, err)
				s.errMu.Unlock()
			}
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
	stopGateway()
	waitAll(runs)
	gwWait.Wait()
	stopBg()
	bg.Wait()
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return errors.Join(s.errs...)
}

// startAccount starts one watcher per folder of a. Called with mu held.
func (s *Service) startAccount(a accountSettings) {
	actx, cancel := context.WithCancel(s.ctx)
	imapCfg := func(log *slog.Logger) imapconn.Config {
		return a.Account.IMAP(a.Password, s.tokenFor(a.Account.Name), log)
	}
	budget := s.budgetFor(a.Account.Server)
	sink := &archiveSink{
		account: a.Account.Name, engine: &s.engine, gate: s.gate, large: s.large, arch: s.arch, metrics: s.metrics,
		log: s.log.With("account", a.Account.Name),
	}
	if a.Account.ArchiveFolder != "" {
		log := s.log.With("account", a.Account.Name, "archive_folder", a.Account.ArchiveFolder)
		sink.copier = archive.NewCopier(s.arch, archive.CopierConfig{
			Account: a.Account.Name, Folder: a.Account.ArchiveFolder,
			Mode: a.Account.ArchiveFolderMessages, AuthservID: a.AuthservID, TempDir: a.TempDir,
			Dial: dialCopies(imapCfg(log), budget), Refused: imapconn.IsRefusal,
			Monitor: s.metrics, Log: sink.log, IdleClose: copyIdleClose, Contended: budget.Contended,
		})
	}
	r := &accountRun{settings: a, cancel: cancel, sink: sink}
	for _, folder := range a.Account.Folders {
		log := s.log.With("account", a.Account.Name, "folder", folder)
		w := NewWatcher(WatchConfig{
			Account: a.Account.Name, Folder: folder,
			IMAP:             imapCfg(log),
			TempDir:          a.TempDir,
			MaxMessageSize:   a.MaxMessageSize,
			Pool:             s.pool,
			IdleRestart:      a.IdleRestart,
			LivenessInterval: a.LivenessInterval,
			PollInterval:     a.PollInterval,
			Backfill:         a.Account.Backfill,
			Logger:           s.log, // the watcher adds account and folder itself
			Metrics:          s.metrics,
			Budget:           budget,
		}, s.cps, sink)
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

// copyInterval is how often pending user copies are retried without a
// wake-up.
const copyInterval = 5 * time.Minute

// copyLoop runs the archive's UpdateCopies at start, when WakeCopies is
// called, and every copyInterval, until ctx ends.
func (s *Service) copyLoop(ctx context.Context) {
	t := time.NewTicker(copyInterval)
	defer t.Stop()
	copierFor := func(account string) *archive.Copier {
		s.mu.Lock()
		defer s.mu.Unlock()
		if r := s.accounts[account]; r != nil {
			return r.sink.copier
		}
		return nil
	}
	for {
		s.arch.UpdateCopies(ctx, copierFor, s.log)
		select {
		case <-ctx.Done():
			return
		case <-s.copyWake:
		case <-t.C:
		}
	}
}

// crlInterval is how often the kept CRLs are looked at for a refresh.
const crlInterval = 10 * time.Minute

// crlLoop fetches again the CRLs near the end of their validity, so that
// a message seldom waits for a fetch.
func (s *Service) crlLoop(ctx context.Context) {
	t := time.NewTicker(crlInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.trustCfg.Load().Trust.Revocation != revocation.Off {
			s.network.CRLs.Refresh(ctx)
			s.sweepRevoked()
		}
	}
}

// sweepRevoked marks the store's usable certificates that the kept CRLs
// say are revoked, so that none is offered to encrypt to, whether or not
// its owner writes again.
func (s *Service) sweepRevoked() {
	certs, err := s.store.Certificates()
	if err != nil {
		s.log.Warn("revocation sweep: cannot read the certificate store", "err", err)
		return
	}
	for i, ans := range s.network.CRLs.RevokedAmong(certs) {
		if ans.Code == revocation.ReasonHold {
			continue // a suspension the CA may lift: not marked for good
		}
		fp := harvest.Fingerprint(certs[i])
		changed, err := s.store.MarkRevoked(fp, ans.At, "the certificate was "+ans.Reason)
		switch {
		case err != nil:
			s.log.Warn("revocation sweep: cannot mark a certificate revoked", "fingerprint", fp, "err", err)
		case changed:
			s.log.Info("certificate in the store revoked by its CA; no longer offered to encrypt to", "fingerprint", fp, "revoked_at", ans.At, "reason", ans.Reason)
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

// tokenFor is the OAuth2 token function of the account name: it asks the
// account's token source of the configuration in force (a reload brings
// new ones).
func (s *Service) tokenFor(name string) func(ctx context.Context, fresh bool) (string, error) {
	return func(ctx context.Context, fresh bool) (string, error) {
		src := (*s.tokens.Load())[name]
		if src == nil {
			return "", fmt.Errorf("%w: account %s has no OAuth2 login", imapconn.ErrAuth, name)
		}
		return src.Token(ctx, fresh)
	}
}

// budgetFor is the connection budget of the server addr, made at its
// first account. Called with mu held.
func (s *Service) budgetFor(addr string) *connBudget {
	if s.budgets == nil {
		s.budgets = map[string]*connBudget{}
	}
	b := s.budgets[addr]
	if b == nil {
		b = newConnBudget(s.cfg.Daemon.MaxConnections)
		s.budgets[addr] = b
	}
	return b
}

// copyIdleClose is how long a copier's connection stays open without a
// copy: it holds a slot of the server's connection budget.
const copyIdleClose = 5 * time.Second
