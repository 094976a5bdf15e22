package daemon

// This file estimates when a folder's backlog is worked off, for an admin
// watching a first backfill: the messages left (what the watcher reports
// through Metrics.Backlog), the rate at which they are done (what the sink
// reports through Metrics.Processed, counted a second at a time over a
// sliding window) and from both the time to the end. It feeds the
// smimed_folder_backlog_rate and smimed_folder_backlog_eta_seconds gauges,
// `smimed status` and the STATUS= line.
//
// The times come from Metrics.now, time.Now in the service: time.Time.Sub
// uses the monotonic reading time.Now carries, so a step of the wall clock
// does not disturb the rate.

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rateWindow is how far back the rate looks: the messages done in the last
// rateWindow (or since the backlog began, if later) over that time.
const rateWindow = 60 * time.Second

// rateBuckets counts a second each.
const rateBuckets = int(rateWindow / time.Second)

// rateMinSpan is the shortest time a rate is taken over, so that the first
// message of a backlog does not read as thousands a second.
const rateMinSpan = time.Second

type folderKey struct{ account, folder string }

// folderbacklogProgress is one folder's backlog and recent work.
type folderbacklogProgress struct {
	left int // messages listed and not yet done
	// total is the messages the backlog has held since it began: done
	// plus left. It grows when a listing adds messages.
	total int
	// started is when the backlog began (left went from 0 up); zero
	// while there is none.
	started time.Time
	// since is where the rate starts: the beginning of the current or
	// last backlog, else the folder's first message.
	since time.Time
	// done[i] counts the messages done in second second[i] (seconds since
	// the board's epoch); a ring of rateBuckets.
	done   [rateBuckets]uint32
	second [rateBuckets]int64
}

// progressBoard holds the progress of every folder.
type progressBoard struct {
	mu      sync.Mutex
	epoch   time.Time // second 0 of the buckets; set by the first report
	folders map[folderKey]*folderbacklogProgress
}

// backlogProgress is a folder's backlog progress at one moment.
type backlogProgress struct {
	Left, Total int       // messages left; done + left since Started
	Started     time.Time // zero: no backlog
	Rate        float64   // messages done a second, over the last rateWindow
	// ETA is the estimated time until Left is done at Rate; 0 without a
	// backlog, and while nothing was done in the window (unknown).
	ETA time.Duration
}

func (b *progressBoard) folder(account, folder string, now time.Time) *folderbacklogProgress {
	if b.folders == nil {
		b.folders = map[folderKey]*folderbacklogProgress{}
		b.epoch = now
	}
	k := folderKey{account, folder}
	p := b.folders[k]
	if p == nil {
		p = &folderbacklogProgress{since: now}
		b.folders[k] = p
	}
	return p
}

// sec is the bucket second of t.
func (b *progressBoard) sec(t time.Time) int64 {
	return int64(max(t.Sub(b.epoch), 0) / time.Second)
}

// processed counts a message done at now.
func (b *progressBoard) processed(account, folder string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.folder(account, folder, now)
	s := b.sec(now)
	i := s % int64(rateBuckets)
	if p.second[i] != s {
		p.second[i], p.done[i] = s, 0
	}
	p.done[i]++
}

// backlog sets the messages left at now. A backlog begins when n rises
// from 0; it ends when n is 0 again.
func (b *progressBoard) backlog(account, folder string, n int, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.folder(account, folder, now)
	switch {
	case n <= 0:
		n, p.total, p.started = 0, 0, time.Time{}
	case p.left == 0:
		// The rate starts afresh: what was done before (an idle folder's
		// odd message) says nothing of the pace of a backlog.
		p.total, p.started, p.since = n, now, now
		p.done = [rateBuckets]uint32{}
	case n > p.left:
		p.total += n - p.left
	}
	p.left = n
}

// forget drops a folder no longer watched.
func (b *progressBoard) forget(account, folder string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.folders, folderKey{account, folder})
}

// get returns the folder's progress at now; false for a folder that
// reported nothing.
func (b *progressBoard) get(account, folder string, now time.Time) (backlogProgress, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.folders[folderKey{account, folder}]
	if p == nil {
		return backlogProgress{}, false
	}
	return b.at(p, now), true
}

// at computes p's progress at now; b.mu is held.
func (b *progressBoard) at(p *folderbacklogProgress, now time.Time) backlogProgress {
	pr := backlogProgress{Left: p.left, Total: p.total, Started: p.started}
	// The window is the last rateBuckets seconds, the current one only
	// begun, or less if the rate started within it.
	nowSec := b.sec(now)
	first := nowSec - int64(rateBuckets) + 1
	from := b.epoch.Add(time.Duration(max(first, 0)) * time.Second)
	if p.since.After(from) {
		from = p.since
	}
	var n uint64
	for i, s := range p.second {
		if s >= first && s <= nowSec && p.done[i] > 0 {
			n += uint64(p.done[i])
		}
	}
	if n == 0 {
		return pr
	}
	span := max(now.Sub(from), rateMinSpan)
	pr.Rate = float64(n) / span.Seconds()
	if pr.Left > 0 {
		pr.ETA = time.Duration(math.Ceil(float64(pr.Left)/pr.Rate)) * time.Second
	}
	return pr
}

// byAccount sums the backlogs of each account with one: the messages left
// and the time until its last folder is done (0 if any folder's is
// unknown).
func (b *progressBoard) byAccount(now time.Time) map[string]backlogProgress {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]backlogProgress{}
	unknown := map[string]bool{}
	for k, p := range b.folders {
		if p.left == 0 {
			continue
		}
		pr := b.at(p, now)
		a := out[k.account]
		a.Left += pr.Left
		a.Total += pr.Total
		a.Rate += pr.Rate
		a.ETA = max(a.ETA, pr.ETA)
		unknown[k.account] = unknown[k.account] || pr.ETA == 0
		out[k.account] = a
	}
	for name, a := range out {
		if unknown[name] {
			a.ETA = 0
			out[name] = a
		}
	}
	return out
}

// progressCollector serves smimed_folder_backlog_rate and
// smimed_folder_backlog_eta_seconds, computed at each scrape so that the
// rate falls while nothing is done.
type progressCollector struct {
	board     *progressBoard
	now       func() time.Time
	rate, eta *prometheus.Desc
}

func newProgressCollector(board *progressBoard, now func() time.Time) *progressCollector {
	labels := []string{"account", "folder"}
	return &progressCollector{
		board: board, now: now,
		rate: prometheus.NewDesc("smimed_folder_backlog_rate",
			"Messages of the folder done a second over the last minute (or since its backlog began, if later).", labels, nil),
		eta: prometheus.NewDesc("smimed_folder_backlog_eta_seconds",
			"Estimated seconds until the folder's backlog is done at that rate; 0 without a backlog, absent while nothing is done.", labels, nil),
	}
}

func (c *progressCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.rate
	ch <- c.eta
}

func (c *progressCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	c.board.mu.Lock()
	defer c.board.mu.Unlock()
	for k, p := range c.board.folders {
		pr := c.board.at(p, now)
		ch <- prometheus.MustNewConstMetric(c.rate, prometheus.GaugeValue, pr.Rate, k.account, k.folder)
		if pr.Left == 0 || pr.ETA > 0 {
			ch <- prometheus.MustNewConstMetric(c.eta, prometheus.GaugeValue, pr.ETA.Seconds(), k.account, k.folder)
		}
	}
}
