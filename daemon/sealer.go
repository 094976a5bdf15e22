package daemon

// The sealer: every [archive.seal] every_records records, or interval
// when anything is unsealed, and once more at shutdown, it appends a seal
// to the archive's chain (archive.SealRecords: one write in the group
// commit, so mail never waits for a TSA) and then asks each configured
// TSA for a timestamp over it. A TSA that fails is asked again with
// backoff (one Backoff per TSA, 10 s up to 1 h) until the seal has
// `require` answers; the failures are logged, counted in the metrics and
// shown by `smimed status`.

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
)

// Sealer timings.
var (
	// sealPoll is how often the unsealed records are counted, in
	// nanoseconds; atomic, as tests shorten it while other tests'
	// services run.
	sealPoll       = func() *atomic.Int64 { var v atomic.Int64; v.Store(int64(2 * time.Second)); return &v }()
	sealMinBackoff = 10 * time.Second // a failed TSA's first pause
	sealMaxBackoff = time.Hour
	// sealShutdownWait bounds the timestamping after the last seal at
	// shutdown; what does not answer in time is asked at the next start.
	sealShutdownWait = 5 * time.Second
)

// sealer runs in the service.
type sealer struct {
	arch    *archive.Archive
	cfg     func() *config.Config
	log     *slog.Logger
	metrics *Metrics
	http    *http.Client
	// kept, when set, is told of each timestamp kept: the seal and the
	// TSA's name (archive.TSAName), whose files are in the seal's
	// evidence directory. The WORM copy takes them from there.
	kept func(seal uint64, tsa string)

	mu       sync.Mutex // guards what status reads
	pending  []uint64   // seals with fewer than require answers, oldest first
	lastSeal uint64
	lastAt   time.Time
	tsas     map[string]*tsaState // by URL
}

type tsaState struct {
	answered, failed uint64
	lastErr          string
	lastErrAt        time.Time
	retryAt          time.Time
	backoff          *Backoff
}

func newSealer(arch *archive.Archive, cfg func() *config.Config, log *slog.Logger, m *Metrics) *sealer {
	return &sealer{arch: arch, cfg: cfg, log: log.With("pkg", "sealer"), metrics: m, http: &http.Client{}, tsas: map[string]*tsaState{}}
}

func (s *sealer) tsa(url string) *tsaState {
	t := s.tsas[url]
	if t == nil {
		t = &tsaState{backoff: &Backoff{Min: sealMinBackoff, Max: sealMaxBackoff, Jitter: EqualJitter}}
		s.tsas[url] = t
	}
	return t
}

// run seals and stamps until ctx ends, then seals what is left and
// stamps it within sealShutdownWait.
func (s *sealer) run(ctx context.Context) {
	s.loadPending()
	t := time.NewTicker(time.Duration(sealPoll.Load()))
	defer t.Stop()
	s.mu.Lock()
	s.lastAt = time.Now()
	s.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			cfg := s.cfg().Archive.Seal
			if cfg.Enabled() {
				s.seal()
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sealShutdownWait)
				s.stamp(sctx, cfg, true)
				cancel()
			}
			return
		case <-t.C:
		}
		cfg := s.cfg().Archive.Seal
		if !cfg.Enabled() {
			continue
		}
		first, head, err := s.arch.Unsealed()
		if err != nil {
			s.log.Error("cannot count the unsealed records", "err", err)
			continue
		}
		s.mu.Lock()
		due := time.Since(s.lastAt) >= cfg.Interval
		s.mu.Unlock()
		if head >= first && (head-first+1 >= uint64(cfg.EveryRecords) || due) {
			s.seal()
		}
		s.stamp(ctx, cfg, false)
	}
}

// loadPending finds the seals with fewer than require answers of the
// configured TSAs (after a restart, or a TSA added).
func (s *sealer) loadPending() {
	cfg := s.cfg().Archive.Seal
	ids, err := s.arch.SealIDs()
	if err != nil {
		s.log.Error("cannot list the seals", "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = nil
	for _, id := range ids {
		if s.answers(id, cfg) < cfg.Require {
			s.pending = append(s.pending, id)
		}
		s.lastSeal = id
	}
	s.metrics.SealsPending(len(s.pending))
}

// answers counts the configured TSAs that answered for seal id.
func (s *sealer) answers(id uint64, cfg config.Seal) int {
	n := 0
	for _, t := range cfg.TSAs {
		if s.arch.HasToken(id, t.URL) {
			n++
		}
	}
	return n
}

// seal appends a seal over the unsealed records, if any.
func (s *sealer) seal() {
	r, err := s.arch.SealRecords()
	if err != nil {
		s.log.Error("seal failed", "err", err)
		return
	}
	s.mu.Lock()
	s.lastAt = time.Now()
	if r != nil {
		s.lastSeal = r.ID
		s.pending = append(s.pending, r.ID)
	}
	n := len(s.pending)
	s.mu.Unlock()
	if r != nil {
		s.metrics.Sealed()
		s.metrics.SealsPending(n)
		s.log.Info("sealed", "seal", r.ID, "first", r.Seal.First, "last", r.Seal.Last, "root", r.Seal.Root)
	}
}

// stamp asks the TSAs for the pending seals, each TSA whose pause after
// a failure is over (all of them when now is set: the last round at
// shutdown).
func (s *sealer) stamp(ctx context.Context, cfg config.Seal, now bool) {
	s.mu.Lock()
	pending := slices.Clone(s.pending)
	s.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	roots, rootsPEM, err := cfg.Roots()
	if err != nil {
		s.log.Error("cannot read the TSAs' trust anchors", "err", err)
		return
	}
	var done []uint64
	for _, id := range pending {
		for _, t := range cfg.TSAs {
			if ctx.Err() != nil {
				return
			}
			if s.arch.HasToken(id, t.URL) {
				continue
			}
			s.mu.Lock()
			st := s.tsa(t.URL)
			wait := !now && time.Now().Before(st.retryAt)
			s.mu.Unlock()
			if wait {
				continue
			}
			s.stampOne(ctx, id, t, roots, rootsPEM, cfg.Timeout)
		}
		if s.answers(id, cfg) >= cfg.Require {
			done = append(done, id)
		}
	}
	s.mu.Lock()
	s.pending = slices.DeleteFunc(s.pending, func(id uint64) bool { return slices.Contains(done, id) })
	n := len(s.pending)
	s.mu.Unlock()
	s.metrics.SealsPending(n)
}

func (s *sealer) stampOne(ctx context.Context, id uint64, t config.SealTSA, roots *x509.CertPool, rootsPEM []byte, timeout time.Duration) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	vf, err := s.arch.Stamp(tctx, id, archive.TSA{URL: t.URL, Roots: roots, RootsPEM: rootsPEM, HTTP: s.http})
	s.mu.Lock()
	st := s.tsa(t.URL)
	if err != nil {
		st.failed++
		st.lastErr, st.lastErrAt = err.Error(), time.Now()
		st.retryAt = time.Now().Add(st.backoff.Next())
	} else {
		st.answered++
		st.backoff.Reset()
		st.retryAt = time.Time{}
	}
	retry := st.retryAt
	s.mu.Unlock()
	s.metrics.Timestamp(t.URL, err == nil)
	if err != nil {
		s.log.Warn("timestamp failed", "seal", id, "tsa", t.URL, "err", err, "retry_in", time.Until(retry).Round(time.Second))
		return
	}
	s.log.Info("timestamped", "seal", id, "tsa", t.URL, "gen_time", vf.GenTime)
	if s.kept != nil {
		s.kept(id, archive.TSAName(t.URL))
	}
}

// status is the sealer's part of `smimed status`. It never waits for the
// service's mutex nor for a TSA.
func (s *sealer) status(cfg config.Seal) *admin.SealStatus {
	if s == nil || !cfg.Enabled() {
		return nil
	}
	st := &admin.SealStatus{Require: cfg.Require, EveryRecords: cfg.EveryRecords, Interval: cfg.Interval.String()}
	if first, head, err := s.arch.Unsealed(); err == nil && head >= first {
		st.Unsealed = head - first + 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.LastSeal, st.LastSealAt, st.Pending = s.lastSeal, s.lastAt, len(s.pending)
	for _, t := range cfg.TSAs {
		ts := s.tsa(t.URL)
		st.TSAs = append(st.TSAs, admin.TSAStatus{URL: t.URL, Answered: ts.answered, Failed: ts.failed,
			LastError: ts.lastErr, LastErrorAt: ts.lastErrAt, RetryAt: ts.retryAt})
	}
	return st
}
