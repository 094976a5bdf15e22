package daemon

// This file holds what `smimed run` counts: the Prometheus metrics served
// on [daemon] metrics_listen (text exposition format, its own registry, so
// nothing of the Go runtime's defaults is mixed in) and the per-folder
// states behind the STATUS= line (status.go), and the backlogs' progress
// (progress.go). Watchers and the sink report here; every method does
// nothing on a nil *Metrics.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/smimed/smimed/harvest"
)

// Outcomes of a processed message, the "outcome" label of
// smimed_messages_processed_total.
const (
	OutcomeDecrypted     = "decrypted"     // decrypted with one of our keys
	OutcomeUndecryptable = "undecryptable" // encrypted, but to none of our keys (or broken)
	OutcomeSigned        = "signed"        // signed, not encrypted
	OutcomePlain         = "plain"         // neither
	OutcomeError         = "error"         // the engine could not read it (or its decrypted content)
	OutcomeTooLarge      = "too_large"     // over max_message_size, not downloaded
)

// Metrics collects the service's counters and folder states.
type Metrics struct {
	reg           *prometheus.Registry
	processed     *prometheus.CounterVec
	decryptFailed *prometheus.CounterVec
	verdicts      *prometheus.CounterVec
	up            *prometheus.GaugeVec
	backlog       *prometheus.GaugeVec
	latency       *prometheus.HistogramVec
	lastCheck     *prometheus.GaugeVec
	seals         prometheus.Counter
	stamps        *prometheus.CounterVec
	sealsPending  prometheus.Gauge
	status        statusBoard
	progress      progressBoard
	gateway       *gatewayMetrics
	now           func() time.Time
}

// NewMetrics returns the collectors, registered in a registry of their own.
func NewMetrics() *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append([]string{"account", "folder"}, labels...))
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"account", "folder"})
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		processed: counter("smimed_messages_processed_total",
			"Messages done, by outcome: decrypted, undecryptable, signed, plain, error, too_large.", "outcome"),
		decryptFailed: counter("smimed_decryption_failures_total",
			"Encrypted messages none of the configured keys could decrypt."),
		verdicts: counter("smimed_signature_verdicts_total",
			"Signature verdicts, one per signer: valid, partial, invalid, untrusted, expired, revoked, mismatch, error (partial is never counted as valid).", "verdict"),
		up: gauge("smimed_folder_connected",
			"1 while the folder's IMAP connection is up and the folder examined, else 0."),
		backlog: gauge("smimed_folder_backlog_messages",
			"Messages listed in the folder above its checkpoint and not yet done."),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "smimed_message_delay_seconds",
			Help:    "Seconds from a message's arrival (IMAP INTERNALDATE) until it was done.",
			Buckets: prometheus.ExponentialBucketsRange(0.1, 3600, 12),
		}, []string{"account", "folder"}),
		lastCheck: gauge("smimed_folder_last_check_timestamp_seconds",
			"Unix time the folder was last confirmed in sync with the server (listing, IDLE wake-up or NOOP)."),
		seals: prometheus.NewCounter(prometheus.CounterOpts{Name: "smimed_seals_total",
			Help: "Seals appended to the archive's chain ([archive.seal])."}),
		stamps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smimed_seal_timestamps_total",
			Help: "Timestamp requests to each TSA, by result: ok (verified and kept) or failed."}, []string{"tsa", "result"}),
		sealsPending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "smimed_seals_pending",
			Help: "Seals with fewer timestamps than archive.seal.require."}),
		status: statusBoard{changed: make(chan struct{}, 1)},
		now:    time.Now,
	}
	m.status.progress = &m.progress
	m.gateway = newGatewayMetrics(m.reg)
	m.reg.MustRegister(m.processed, m.decryptFailed, m.verdicts, m.up, m.backlog, m.latency, m.lastCheck, m.seals, m.stamps, m.sealsPending,
		newProgressCollector(&m.progress, func() time.Time { return m.now() }))
	return m
}

// Sealed counts a seal appended to the chain.
func (m *Metrics) Sealed() {
	if m != nil {
		m.seals.Inc()
	}
}

// Timestamp counts one timestamp request to the TSA at url.
func (m *Metrics) Timestamp(url string, ok bool) {
	if m == nil {
		return
	}
	result := "ok"
	if !ok {
		result = "failed"
	}
	m.stamps.WithLabelValues(url, result).Inc()
}

// SealsPending sets how many seals lack their timestamps.
func (m *Metrics) SealsPending(n int) {
	if m != nil {
		m.sealsPending.Set(float64(n))
	}
}

// Outcome classifies a processed message for the outcome label.
func Outcome(m Message, rep *harvest.Report) string {
	switch {
	case m.TooLarge:
		return OutcomeTooLarge
	case rep == nil:
		return OutcomeError
	case rep.Decryption.Status == harvest.DecryptFailed: // rep.Error says why
		return OutcomeUndecryptable
	case rep.Error != "":
		return OutcomeError
	case rep.Decryption.Status == harvest.DecryptOK:
		return OutcomeDecrypted
	case len(rep.Signatures) > 0:
		return OutcomeSigned
	}
	return OutcomePlain
}

// Processed records a message the sink has finished: its outcome, its
// verdicts and its delay since arrival. rep is nil for a message that was
// too large to read.
func (m *Metrics) Processed(msg Message, rep *harvest.Report) {
	if m == nil {
		return
	}
	outcome := Outcome(msg, rep)
	m.processed.WithLabelValues(msg.Account, msg.Folder, outcome).Inc()
	if outcome == OutcomeUndecryptable {
		m.decryptFailed.WithLabelValues(msg.Account, msg.Folder).Inc()
	}
	if rep != nil {
		for _, s := range rep.Signatures {
			m.verdicts.WithLabelValues(msg.Account, msg.Folder, s.Status).Inc()
		}
	}
	now := m.now()
	if !msg.InternalDate.IsZero() {
		d := now.Sub(msg.InternalDate).Seconds()
		m.latency.WithLabelValues(msg.Account, msg.Folder).Observe(max(d, 0))
	}
	m.progress.processed(msg.Account, msg.Folder, now)
	m.status.count(msg.Account, outcome == OutcomeError)
}

// FolderConnecting records that a folder's watcher starts.
func (m *Metrics) FolderConnecting(account, folder string) {
	if m == nil {
		return
	}
	m.up.WithLabelValues(account, folder).Set(0)
	m.status.set(account, folder, folderState{state: stateConnecting})
}

// FolderUp records that a folder is connected and examined.
func (m *Metrics) FolderUp(account, folder string) {
	if m == nil {
		return
	}
	m.up.WithLabelValues(account, folder).Set(1)
	m.status.set(account, folder, folderState{state: stateUp})
}

// FolderPolled records that a polled folder was checked and waits for its
// next poll in next: healthy, without a connection held.
func (m *Metrics) FolderPolled(account, folder string, next time.Duration) {
	if m == nil {
		return
	}
	m.up.WithLabelValues(account, folder).Set(1)
	m.status.set(account, folder, folderState{state: statePolled, retryAt: m.now().Add(next)})
}

// FolderDown records that a folder's connection ended; state is
// stateReconnecting, stateLoginRefused or stateStopped, retryIn when the
// watcher tries again (0 for stateStopped).
func (m *Metrics) FolderDown(account, folder string, state string, retryIn time.Duration) {
	if m == nil {
		return
	}
	m.up.WithLabelValues(account, folder).Set(0)
	fs := folderState{state: state}
	if retryIn > 0 {
		fs.retryAt = m.now().Add(retryIn)
	}
	m.status.set(account, folder, fs)
}

// Checked records that the folder was just confirmed in sync.
func (m *Metrics) Checked(account, folder string) {
	if m == nil {
		return
	}
	m.lastCheck.WithLabelValues(account, folder).Set(float64(m.now().UnixNano()) / 1e9)
}

// Backlog sets how many listed messages of the folder are not done.
func (m *Metrics) Backlog(account, folder string, n int) {
	if m == nil {
		return
	}
	m.backlog.WithLabelValues(account, folder).Set(float64(n))
	m.progress.backlog(account, folder, n, m.now())
	m.status.signal()
}

// ForgetFolder drops the folder's series and state, for a folder no longer
// watched after a reload.
func (m *Metrics) ForgetFolder(account, folder string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"account": account, "folder": folder}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.processed, m.decryptFailed, m.verdicts, m.up, m.backlog, m.latency, m.lastCheck,
	} {
		v.DeletePartialMatch(l)
	}
	m.progress.forget(account, folder)
	m.status.forget(account, folder)
}

// Status returns the STATUS= line: see statusBoard.line.
func (m *Metrics) Status() string {
	if m == nil {
		return ""
	}
	return m.status.line(m.now())
}

// changed is signalled (1 slot) when the status line may have changed.
func (m *Metrics) changed() <-chan struct{} { return m.status.changed }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Serve answers /metrics on ln until ctx ends, then shuts the server down
// (waiting up to 2 s for scrapes in progress).
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("daemon: metrics server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("daemon: metrics server shutdown: %w", err)
	}
	return nil
}
