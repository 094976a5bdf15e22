package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/imapconn"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/state"
)

const watchTimeout = 30 * time.Second // generous: CI machines and -race are slow

type sinkKey struct{ uidValidity, uid uint32 }

// fakeSink is an idempotent in-memory Sink that counts its calls.
type fakeSink struct {
	mu      sync.Mutex
	calls   map[sinkKey]int    // every Deliver call
	done    map[sinkKey]string // successful deliveries: the X-Smimed-Test header
	fail    func(m Message, call int) error
	changed chan struct{} // 1 slot: a Deliver call happened
}

func newFakeSink() *fakeSink {
	return &fakeSink{calls: map[sinkKey]int{}, done: map[sinkKey]string{}, changed: make(chan struct{}, 1)}
}

func (s *fakeSink) Deliver(ctx context.Context, m Message) error {
	var body []byte
	id := ""
	if m.TooLarge {
		if m.Path != "" || m.Size <= 0 {
			return fmt.Errorf("fake sink: TooLarge message with path %q, size %d", m.Path, m.Size)
		}
		id = fmt.Sprintf("too large (%d bytes)", m.Size)
	} else if body = m.Data; body == nil {
		var err error
		if body, err = os.ReadFile(m.Path); err != nil {
			return fmt.Errorf("fake sink: %w", err)
		}
	}
	for line := range strings.SplitSeq(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(line, "X-Smimed-Test: "); ok {
			id = v
		}
	}
	k := sinkKey{m.UIDValidity, m.UID}
	s.mu.Lock()
	s.calls[k]++
	call := s.calls[k]
	fail := s.fail
	s.mu.Unlock()
	defer func() {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}()
	if fail != nil {
		if err := fail(m, call); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.done[k] = id
	s.mu.Unlock()
	return nil
}

func (s *fakeSink) snapshot() (calls map[sinkKey]int, done map[sinkKey]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	calls, done = map[sinkKey]int{}, map[sinkKey]string{}
	for k, v := range s.calls {
		calls[k] = v
	}
	for k, v := range s.done {
		done[k] = v
	}
	return calls, done
}

// waitDone waits until n distinct messages were delivered successfully.
func (s *fakeSink) waitDone(t *testing.T, n int) map[sinkKey]string {
	t.Helper()
	deadline := time.NewTimer(watchTimeout)
	defer deadline.Stop()
	for {
		_, done := s.snapshot()
		if len(done) >= n {
			return done
		}
		select {
		case <-s.changed:
		case <-deadline.C:
			t.Fatalf("after %v: %d messages delivered, want %d: %v", watchTimeout, len(done), n, done)
		}
	}
}

type watchEnv struct {
	d *testenv.Dovecot
}

func (e watchEnv) user(t *testing.T) string {
	name := strings.ToLower(strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
	e.d.AddUser(t, name, "pw-"+name)
	return name
}

func (e watchEnv) deliver(t *testing.T, user string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: alice@partner.example\r\nTo: bob@org.example\r\nSubject: test %s\r\nMessage-ID: <%s@test.smimed.example>\r\nX-Smimed-Test: %s\r\n\r\nbody of %s\r\n", id, id, id, id)
		e.d.Deliver(t, user, "INBOX", b.Bytes())
	}
}

func (e watchEnv) config(t *testing.T, user string) WatchConfig {
	tmp := filepath.Join(t.TempDir(), "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return WatchConfig{
		Account: user, Folder: "INBOX",
		IMAP: imapconn.Config{
			Addr: e.d.Addr(), TLS: "none", Username: user, Password: "pw-" + user,
			Logger: log, CommandTimeout: 20 * time.Second,
		},
		TempDir:          tmp,
		MaxMessageSize:   1 << 20,
		Workers:          3,
		IdleRestart:      700 * time.Millisecond,
		LivenessInterval: 400 * time.Millisecond,
		PollInterval:     200 * time.Millisecond,
		Backfill:         "all",
		Logger:           log,
	}
}

func openWatchDB(t *testing.T, path string) (*state.DB, *Checkpoints) {
	t.Helper()
	db, err := state.Open(path, false)
	if err != nil {
		t.Fatalf("state.Open(%s) = %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	cps, err := NewCheckpoints(db)
	if err != nil {
		t.Fatal(err)
	}
	return db, cps
}

type runningWatcher struct {
	w      *Watcher
	ready  chan uint32
	cancel context.CancelFunc
	result chan error
	once   sync.Once
}

// startWatcher runs a Watcher with a short backoff; stop ends it.
func startWatcher(t *testing.T, cfg WatchConfig, cps *Checkpoints, sink Sink) *runningWatcher {
	t.Helper()
	w := NewWatcher(cfg, cps, sink)
	w.backoff = &Backoff{Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}
	r := &runningWatcher{w: w, ready: make(chan uint32, 100), result: make(chan error, 1)}
	w.onReady = func(start uint32) {
		select {
		case r.ready <- start:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.result <- w.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *runningWatcher) waitReady(t *testing.T) uint32 {
	t.Helper()
	select {
	case start := <-r.ready:
		return start
	case <-time.After(watchTimeout):
		t.Fatalf("watcher not ready after %v", watchTimeout)
		return 0
	}
}

func (r *runningWatcher) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.result:
			if err != nil {
				t.Errorf("Run() = %v, want nil after cancel", err)
			}
		case <-time.After(watchTimeout):
			t.Errorf("Run() did not return %v after cancel", watchTimeout)
		}
	})
}

func checkpointOf(t *testing.T, cps *Checkpoints, account string) Checkpoint {
	t.Helper()
	cp, ok, err := cps.Get(account, "INBOX")
	if err != nil || !ok {
		t.Fatalf("Checkpoints.Get = %v, %v, %v", cp, ok, err)
	}
	return cp
}

func checkOnce(t *testing.T, s *fakeSink) {
	t.Helper()
	calls, _ := s.snapshot()
	for k, n := range calls {
		if n != 1 {
			t.Errorf("uid %d delivered %d times, want once", k.uid, n)
		}
	}
}

func checkTempEmpty(t *testing.T, cfg WatchConfig) {
	t.Helper()
	left, _ := os.ReadDir(cfg.TempDir)
	if len(left) != 0 {
		t.Errorf("temp files left in %s: %v", cfg.TempDir, left)
	}
}

func TestWatcher(t *testing.T) {
	e := watchEnv{d: testenv.StartDovecot(t)}
	t.Logf("Dovecot %s on %s", e.d.Version(), e.d.Addr())

	t.Run("Backlog", func(t *testing.T) {
		u := e.user(t)
		e.deliver(t, u, "b1", "b2", "b3", "b4", "b5")
		uids := e.d.UIDs(t, u, "INBOX")
		if len(uids) != 5 {
			t.Fatalf("doveadm search = %v, want 5 UIDs", uids)
		}
		cfg := e.config(t, u)
		_, cps := openWatchDB(t, filepath.Join(t.TempDir(), "state.db"))
		sink := newFakeSink()
		r := startWatcher(t, cfg, cps, sink)
		done := sink.waitDone(t, 5)
		r.stop(t)

		uv := e.d.UIDValidity(t, u, "INBOX")
		for i, uid := range uids {
			if got, want := done[sinkKey{uv, uid}], fmt.Sprint("b", i+1); got != want {
				t.Errorf("uid %d: sink got message %q, want %q", uid, got, want)
			}
		}
		checkOnce(t, sink)
		if cp, want := checkpointOf(t, cps, u), (Checkpoint{uv, uids[4]}); cp != want {
			t.Errorf("checkpoint = %+v, want %+v", cp, want)
		}
		// The folder is untouched: same messages, none \Seen.
		if got := strings.TrimSpace(e.d.Doveadm(t, "mailbox", "status", "-u", u, "messages unseen", "INBOX")); got != "INBOX messages=5 unseen=5" {
			t.Errorf("doveadm mailbox status = %q, want messages=5 unseen=5", got)
		}
		if seen := strings.TrimSpace(e.d.Doveadm(t, "search", "-u", u, "mailbox", "INBOX", "seen")); seen != "" {
			t.Errorf("doveadm search seen = %q, want none", seen)
		}
		checkTempEmpty(t, cfg)
	})

	t.Run("IdleWake", func(t *testing.T) {
		u := e.user(t)
		cfg := e.config(t, u)
		// Long enough that only an IDLE wake-up can be in time.
		cfg.IdleRestart, cfg.LivenessInterval = time.Minute, time.Minute
		_, cps := openWatchDB(t, filepath.Join(t.TempDir(), "state.db"))
		sink := newFakeSink()
		r := startWatcher(t, cfg, cps, sink)
		r.waitReady(t)
		// The watcher lists, then idles; either way the new message must
		// arrive quickly.
		for i := range 2 {
			start := time.Now()
			e.deliver(t, u, fmt.Sprint("i", i))
			sink.waitDone(t, i+1)
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("message %d delivered after %v, want within 3s", i, d)
			}
		}
		r.stop(t)
		checkOnce(t, sink)
		uids := e.d.UIDs(t, u, "INBOX")
		if cp := checkpointOf(t, cps, u); cp.UID != uids[len(uids)-1] {
			t.Errorf("checkpoint = %+v, want UID %d", cp, uids[len(uids)-1])
		}
	})

	t.Run("Restart", func(t *testing.T) {
		u := e.user(t)
		e.deliver(t, u, "r1", "r2", "r3")
		cfg := e.config(t, u)
		dbPath := filepath.Join(t.TempDir(), "state.db")
		sink := newFakeSink()

		db, cps := openWatchDB(t, dbPath)
		r := startWatcher(t, cfg, cps, sink)
		sink.waitDone(t, 3)
		r.stop(t)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}

		_, cps = openWatchDB(t, dbPath)
		r = startWatcher(t, cfg, cps, sink)
		if start := r.waitReady(t); start != e.d.UIDs(t, u, "INBOX")[2] {
			t.Errorf("restart from checkpoint %d, want %d", start, e.d.UIDs(t, u, "INBOX")[2])
		}
		e.deliver(t, u, "r4", "r5")
		done := sink.waitDone(t, 5)
		r.stop(t)

		checkOnce(t, sink)
		uids := e.d.UIDs(t, u, "INBOX")
		uv := e.d.UIDValidity(t, u, "INBOX")
		for i, uid := range uids {
			if got, want := done[sinkKey{uv, uid}], fmt.Sprint("r", i+1); got != want {
				t.Errorf("uid %d: sink got message %q, want %q", uid, got, want)
			}
		}
		if cp := checkpointOf(t, cps, u); cp != (Checkpoint{uv, uids[4]}) {
			t.Errorf("checkpoint = %+v, want UID %d", cp, uids[4])
		}
	})

	t.Run("TemporaryFailure", func(t *testing.T) {
		u := e.user(t)
		e.deliver(t, u, "t1", "t2", "t3", "t4", "t5")
		uids := e.d.UIDs(t, u, "INBOX")
		failUID := uids[1]
		cfg := e.config(t, u)
		_, cps := openWatchDB(t, filepath.Join(t.TempDir(), "state.db"))
		sink := newFakeSink()
		var (
			mu         sync.Mutex
			violations []string
		)
		sink.fail = func(m Message, call int) error {
			if m.UID != failUID {
				return nil
			}
			if call == 1 {
				return Temporary(errors.New("spool disk full"))
			}
			// The retry: nothing past the failed UID may be committed yet.
			cp, _, err := cps.Get(u, "INBOX")
			if err != nil || cp.UID >= failUID {
				mu.Lock()
				violations = append(violations, fmt.Sprintf("retry %d of uid %d: checkpoint %+v (%v)", call, m.UID, cp, err))
				mu.Unlock()
			}
			return nil
		}
		r := startWatcher(t, cfg, cps, sink)
		sink.waitDone(t, 5)
		r.stop(t)

		mu.Lock()
		for _, v := range violations {
			t.Error(v)
		}
		mu.Unlock()
		calls, done := sink.snapshot()
		uv := e.d.UIDValidity(t, u, "INBOX")
		for i, uid := range uids {
			want := 1
			if uid == failUID {
				want = 2
			}
			if n := calls[sinkKey{uv, uid}]; n != want {
				t.Errorf("uid %d: %d Deliver calls, want %d", uid, n, want)
			}
			if got := done[sinkKey{uv, uid}]; got != fmt.Sprint("t", i+1) {
				t.Errorf("uid %d: sink got %q", uid, got)
			}
		}
		if cp := checkpointOf(t, cps, u); cp != (Checkpoint{uv, uids[4]}) {
			t.Errorf("checkpoint = %+v, want UID %d", cp, uids[4])
		}
		checkTempEmpty(t, cfg)
	})

	t.Run("FailedThenExpunged", func(t *testing.T) {
		// A message fails temporarily and is deleted by the user before
		// the retry: it must not hold the checkpoint back.
		u := e.user(t)
		e.deliver(t, u, "f1", "f2", "f3", "f4")
		uids := e.d.UIDs(t, u, "INBOX")
		failUID := uids[1]
		cfg := e.config(t, u)
		_, cps := openWatchDB(t, filepath.Join(t.TempDir(), "state.db"))
		sink := newFakeSink()
		sink.fail = func(m Message, call int) error {
			if m.UID != failUID {
				return nil
			}
			e.d.Doveadm(t, "expunge", "-u", u, "mailbox", "INBOX", "uid", fmt.Sprint(failUID))
			return Temporary(errors.New("spool disk full"))
		}
		r := startWatcher(t, cfg, cps, sink)
		sink.waitDone(t, 3)
		deadline := time.Now().Add(30 * time.Second)
		for checkpointOf(t, cps, u).UID != uids[3] {
			if time.Now().After(deadline) {
				t.Fatalf("checkpoint = %+v, want UID %d once the failed message is gone", checkpointOf(t, cps, u), uids[3])
			}
			time.Sleep(50 * time.Millisecond)
		}
		r.stop(t)
	})

	t.Run("BackfillNone", func(t *testing.T) {
		u := e.user(t)
		e.deliver(t, u, "old1", "old2", "old3")
		cfg := e.config(t, u)
		cfg.Backfill = "none"
		_, cps := openWatchDB(t, filepath.Join(t.TempDir(), "state.db"))
		sink := newFakeSink()
		r := startWatcher(t, cfg, cps, sink)
		if start, want := r.waitReady(t), e.d.UIDs(t, u, "INBOX")[2]; start != want {
			t.Errorf("first start at checkpoint %d, want %d", start, want)
		}
		e.deliver(t, u, "new1", "new2")
		done := sink.waitDone(t, 2)
		r.stop(t)

		checkOnce(t, sink)
		calls, _ := sink.snapshot()
		if len(calls) != 2 {
			t.Errorf("sink got %d messages, want only the 2 new ones: %v", len(calls), done)
		}
		uids := e.d.UIDs(t, u, "INBOX")
		uv := e.d.UIDValidity(t, u, "INBOX")
		for i, uid := range uids[3:] {
			if got, want := done[sinkKey{uv, uid}], fmt.Sprint("new", i+1); got != want {
				t.Errorf("uid %d: sink got %q, want %q", uid, got, want)
			}
		}
		if cp := checkpointOf(t, cps, u); cp != (Checkpoint{uv, uids[4]}) {
			t.Errorf("checkpoint = %+v, want UID %d", cp, uids[4])
		}
	})

	t.Run("BackfillSince", func(t *testing.T) {
		u := e.user(t)
		e.deliver(t, u, "s1", "s2", "s3")
		uids := e.d.UIDs(t, u, "INBOX")
		for _, tc := range []struct {
			backfill string
			start    uint32
		}{
			{"since:2999-12-31", uids[2]}, // every message is older
			{"since:2000-01-01", 0},       // every message is newer
		} {
			cfg := e.config(t, u)
			cfg.Backfill = tc.backfill
			_, cps := openWatchDB(t, filepath.Join(t.TempDir(), "state.db"))
			r := startWatcher(t, cfg, cps, newFakeSink())
			if start := r.waitReady(t); start != tc.start {
				t.Errorf("backfill %s: first start at checkpoint %d, want %d", tc.backfill, start, tc.start)
			}
			r.stop(t)
			checkTempEmpty(t, cfg)
		}
	})

	t.Run("UIDValidityChanged", func(t *testing.T) {
		u := e.user(t)
		e.deliver(t, u, "v1", "v2")
		uv := e.d.UIDValidity(t, u, "INBOX")
		cfg := e.config(t, u)
		_, cps := openWatchDB(t, filepath.Join(t.TempDir(), "state.db"))
		// A checkpoint of an earlier incarnation of the folder, past its end.
		if err := cps.Set(u, "INBOX", Checkpoint{UIDValidity: uv - 1, UID: 1000}); err != nil {
			t.Fatal(err)
		}
		sink := newFakeSink()
		r := startWatcher(t, cfg, cps, sink)
		if start := r.waitReady(t); start != 0 {
			t.Errorf("start after a UIDVALIDITY change = %d, want 0", start)
		}
		sink.waitDone(t, 2)
		r.stop(t)
		checkOnce(t, sink)
		uids := e.d.UIDs(t, u, "INBOX")
		if cp := checkpointOf(t, cps, u); cp != (Checkpoint{uv, uids[1]}) {
			t.Errorf("checkpoint = %+v, want %+v", cp, Checkpoint{uv, uids[1]})
		}
	})

	t.Run("TooLarge", func(t *testing.T) {
		u := e.user(t)
		e.deliver(t, u, "big")
		cfg := e.config(t, u)
		cfg.MaxMessageSize = 10
		_, cps := openWatchDB(t, filepath.Join(t.TempDir(), "state.db"))
		sink := newFakeSink()
		r := startWatcher(t, cfg, cps, sink)
		done := sink.waitDone(t, 1)
		r.stop(t)
		for _, id := range done {
			if !strings.HasPrefix(id, "too large (") {
				t.Errorf("sink got %q, want a TooLarge message", id)
			}
		}
		checkTempEmpty(t, cfg)
	})

	t.Run("SharedPoolBacklog", func(t *testing.T) {
		// Two accounts share a pool of 2 workers. The first has a backlog
		// whose deliveries hang; the second's new message must still get
		// through, and the first may hold only its share (1) meanwhile.
		busy := e.user(t)
		e.d.AddUser(t, busy+"-fresh", "pw-"+busy+"-fresh")
		fresh := busy + "-fresh"
		ids := make([]string, 10)
		for i := range ids {
			ids[i] = fmt.Sprint("q", i)
		}
		e.deliver(t, busy, ids...)
		pool := NewPool(2)
		cfgBusy, cfgFresh := e.config(t, busy), e.config(t, fresh)
		cfgBusy.Pool, cfgFresh.Pool = pool, pool
		_, cps := openWatchDB(t, filepath.Join(t.TempDir(), "state.db"))

		release := make(chan struct{})
		var (
			mu                sync.Mutex
			inFlight, maxBusy int
		)
		sinkBusy := newFakeSink()
		sinkBusy.fail = func(m Message, call int) error {
			mu.Lock()
			inFlight++
			maxBusy = max(maxBusy, inFlight)
			mu.Unlock()
			<-release
			mu.Lock()
			inFlight--
			mu.Unlock()
			return nil
		}
		metrics := NewMetrics()
		cfgBusy.Metrics = metrics
		rb := startWatcher(t, cfgBusy, cps, sinkBusy)
		rf := startWatcher(t, cfgFresh, cps, newFakeSink())
		rf.waitReady(t)
		// Fresh mail arrives while the backlog's deliveries hang.
		deadline := time.Now().Add(watchTimeout)
		for {
			mu.Lock()
			n := inFlight
			mu.Unlock()
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the backlog folder delivered nothing")
			}
			time.Sleep(10 * time.Millisecond)
		}
		e.deliver(t, fresh, "fresh1")
		sinkFresh := rf.w.sink.(*fakeSink)
		done := sinkFresh.waitDone(t, 1)
		if got := done[sinkKey{e.d.UIDValidity(t, fresh, "INBOX"), e.d.UIDs(t, fresh, "INBOX")[0]}]; got != "fresh1" {
			t.Errorf("fresh folder's sink got %v, want fresh1", done)
		}
		mu.Lock()
		if maxBusy != 1 {
			t.Errorf("the backlog folder held %d slots of 2 while the other folder had mail, want 1", maxBusy)
		}
		mu.Unlock()
		if n := gauge(t, metrics, "smimed_folder_backlog_messages", busy); n != 10 {
			t.Errorf("backlog gauge = %v while all 10 messages hang, want 10", n)
		}
		close(release)
		sinkBusy.waitDone(t, 10)
		rb.stop(t)
		if n := gauge(t, metrics, "smimed_folder_backlog_messages", busy); n != 0 {
			t.Errorf("backlog gauge = %v after all 10 messages are done, want 0", n)
		}
		rf.stop(t)
		checkOnce(t, sinkBusy)
		uids := e.d.UIDs(t, busy, "INBOX")
		if cp := checkpointOf(t, cps, busy); cp.UID != uids[9] {
			t.Errorf("backlog checkpoint = %+v, want UID %d", cp, uids[9])
		}
	})

	t.Run("BadBackfill", func(t *testing.T) {
		cfg := e.config(t, "nobody")
		cfg.Backfill = "some"
		_, cps := openWatchDB(t, filepath.Join(t.TempDir(), "state.db"))
		if err := NewWatcher(cfg, cps, newFakeSink()).Run(context.Background()); err == nil {
			t.Error("Run() with backfill \"some\" = nil, want an error")
		}
	})
}
