package daemon

// This file starts the WORM copy ([archive.worm], package archive/worm):
// the bucket's Object Lock checked at start (smimed refuses to start on a
// bucket without), the uploader run in the background, its counters in
// the metrics and its backlog in `smimed status`.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/archive/worm"
	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/harvest/state"
)

// wormCheckTimeout bounds the Object Lock check at start.
const wormCheckTimeout = 30 * time.Second

// newWorm returns the uploader of [archive.worm], or nil without one. A
// bucket without Object Lock is a configuration error (exit 2: a restart
// does not mend it); a bucket that cannot be reached is not: mail never
// waits for S3, the objects wait in the outbox and the uploader checks
// the lock again before it writes anything.
func newWorm(cfg *config.Config, arch *archive.Archive, db *state.DB, log *slog.Logger) (*worm.Uploader, error) {
	w := cfg.Archive.Worm
	if w == nil {
		return nil, nil
	}
	c, err := w.Client()
	if err != nil {
		return nil, &config.Error{Path: cfg.Path, Problems: []string{err.Error()}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wormCheckTimeout)
	defer cancel()
	if _, err := w.CheckLock(ctx, c); errors.Is(err, worm.ErrNoObjectLock) {
		return nil, &config.Error{Path: cfg.Path, Problems: []string{fmt.Sprintf(
			"archive.worm: bucket %s at %s has no Object Lock enabled: smimed writes its WORM copy only to a bucket created with Object Lock (see docs/worm.md)", w.Bucket, w.Endpoint)}}
	} else if err != nil {
		log.Warn("archive.worm: cannot check the bucket now; its objects wait in the outbox", "err", err)
	}
	u := worm.NewUploader(arch, db, c, worm.Options{
		Mode: w.S3Mode(), RetainUntil: wormRetainUntil(cfg), Logger: log,
		Held: func(r *archive.Record) bool {
			held, err := arch.HeldBy(r)
			return err == nil && len(held) > 0
		},
	})
	arch.SetHoldObserver(worm.HoldObserver(db, arch, u.Notify))
	return u, nil
}

// wormRetainUntil is when a record's objects may go: a message's own
// retain-until (its retention class, written into the record); a record
// of another kind (a seal, a tombstone) the longest class, so that the
// evidence outlives everything it covers; default_years for a record
// with neither.
func wormRetainUntil(cfg *config.Config) worm.RetainUntil {
	w := cfg.Archive.Worm
	longest := w.DefaultYears
	for _, y := range cfg.Archive.Retention.Classes {
		longest = max(longest, y)
	}
	fallback := worm.YearsAfterReceipt(w.DefaultYears)
	return func(r *archive.Record) time.Time {
		switch {
		case r.Kind == archive.KindMessage && !r.RetainUntil.IsZero():
			// The record's last second of Dec 31: the lock ends with it.
			return r.RetainUntil.Add(time.Second)
		case r.Kind == archive.KindMessage:
			return fallback(r)
		}
		return worm.EndOfYearPlus(r.When(), longest)
	}
}

// wormKeepToken queues a kept timestamp (the .tsr answer and the TSA's
// chain) for the WORM copy as seals/SEAL/TSA.tsr and .pem, locked as
// long as a seal record: the longest retention class.
func (s *Service) wormKeepToken(cfg *config.Config) func(seal uint64, tsa string) {
	until := wormRetainUntil(cfg)
	return func(seal uint64, tsa string) {
		id := strconv.FormatUint(seal, 10)
		lock := until(&archive.Record{ID: seal, Kind: archive.KindSeal, ArchivedAt: time.Now()})
		for _, ext := range []string{".tsr", ".pem"} {
			path := filepath.Join(s.arch.EvidenceDir(), id, tsa+ext)
			if err := s.worm.Enqueue("seals/"+id+"/"+tsa+ext, path, lock); err != nil {
				s.log.Error("WORM copy: cannot queue a timestamp; archive verify --evidence still checks the local one", "seal", seal, "tsa", tsa, "err", err)
			}
		}
		s.worm.Notify()
	}
}

// Worm is the WORM copy's uploader, nil without [archive.worm]. Holds
// (SetLegalHold) and seals' files (Enqueue) reach the bucket through it.
func (s *Service) Worm() *worm.Uploader { return s.worm }

// wormClient is the running uploader's client for the admin API, nil
// without [archive.worm].
func (s *Service) wormClient() func() (*worm.Client, error) {
	if s.worm == nil {
		return nil
	}
	return func() (*worm.Client, error) { return s.worm.Client(), nil }
}

// wormRestart warns when [archive.worm] changed on a reload: the running
// uploader keeps the configuration it started with, and so does cfg.
func (s *Service) wormRestart(old, cfg *config.Config) {
	if !reflect.DeepEqual(old.Archive.Worm, cfg.Archive.Worm) {
		s.log.Warn("archive.worm changed; restart needed")
		cfg.Archive.Worm = old.Archive.Worm
	}
}

// wormStatus is the WORM copy's part of `smimed status`.
func (s *Service) wormStatus() *admin.WormStatus {
	if s.worm == nil {
		return nil
	}
	ws := &admin.WormStatus{Bucket: s.worm.Bucket(), Stats: s.worm.Stats()}
	bl, err := s.worm.Backlog()
	if err != nil {
		ws.Backlog.LastError = "cannot read the outbox: " + err.Error()
	} else {
		ws.Backlog = bl
	}
	return ws
}

// watchWorm adds the uploader's counters and backlog to the metrics.
func (m *Metrics) watchWorm(u *worm.Uploader) {
	if m == nil || u == nil {
		return
	}
	counter := func(name, help string, v func(worm.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v(u.Stats())) })
	}
	gauge := func(name, help string, v func(worm.Backlog) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			bl, err := u.Backlog()
			if err != nil {
				return -1
			}
			return float64(v(bl))
		})
	}
	m.reg.MustRegister(
		counter("smimed_worm_queued_total", "Objects added to the WORM copy's outbox.", func(s worm.Stats) int64 { return s.Queued }),
		counter("smimed_worm_uploaded_total", "Objects written to the WORM bucket (or found written).", func(s worm.Stats) int64 { return s.Uploaded }),
		counter("smimed_worm_failures_total", "Failed attempts to write to the WORM bucket (uploads, legal holds, the lock check).", func(s worm.Stats) int64 { return s.Failures }),
		gauge("smimed_worm_outbox_objects", "Objects in the WORM copy's outbox, waiting for the bucket.", func(b worm.Backlog) int64 { return int64(b.Objects) }),
		gauge("smimed_worm_unqueued_records", "Archive records whose objects are not yet in the outbox.", func(b worm.Backlog) int64 { return int64(b.Unqueued) }),
	)
}
