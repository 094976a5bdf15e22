package daemon

import (
	"testing"
	"time"

	"github.com/smimed/smimed/harvest"
)

// TestBacklogProgress drives a backlog of 5,000 messages on an injected
// clock, as the watcher and the sink report it: 10 a second for 30 s,
// then 20 a second for 90 s, then nothing. The rate, the time to go and
// the done/total are worked out by hand from that schedule.
func TestBacklogProgress(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := t0
	m := NewMetrics()
	m.now = func() time.Time { return clock }
	plain := &harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptNone}}
	m.FolderUp("ceo", "INBOX")
	left := 5000
	m.Backlog("ceo", "INBOX", left)
	// work does perSecond messages a second for seconds, each in the
	// middle of its slot, then sets the clock to the end of the stretch.
	work := func(perSecond, seconds int) {
		start := clock
		for i := range perSecond * seconds {
			clock = start.Add(time.Duration(i)*time.Second/time.Duration(perSecond) + time.Second/time.Duration(2*perSecond))
			m.Processed(Message{Account: "ceo", Folder: "INBOX"}, plain)
			left--
			m.Backlog("ceo", "INBOX", left)
		}
		clock = start.Add(time.Duration(seconds) * time.Second)
	}
	check := func(when string, wantRate float64, wantETA int64, wantLine string) {
		t.Helper()
		f := m.folders()[0]
		if f.Backlog != left || f.BacklogTotal != 5000 || !f.BacklogStarted.Equal(t0) || f.RatePerSecond != wantRate || f.ETASeconds != wantETA {
			t.Errorf("%s: backlog %d of %d since %v, %v/s, ETA %d s; want %d of 5000 since %v, %v/s, ETA %d s", when,
				f.Backlog, f.BacklogTotal, f.BacklogStarted, f.RatePerSecond, f.ETASeconds, left, t0, wantRate, wantETA)
		}
		fams := gather(t, m)
		if got := gauge(t, m, "smimed_folder_backlog_rate", "ceo"); got != wantRate {
			t.Errorf("%s: smimed_folder_backlog_rate = %v, want %v", when, got, wantRate)
		}
		eta := fams["smimed_folder_backlog_eta_seconds"]
		switch {
		case wantETA == 0 && eta != nil:
			t.Errorf("%s: smimed_folder_backlog_eta_seconds = %v, want none (nothing done lately)", when, eta.GetMetric())
		case wantETA > 0 && gauge(t, m, "smimed_folder_backlog_eta_seconds", "ceo") != float64(wantETA):
			t.Errorf("%s: smimed_folder_backlog_eta_seconds = %v, want %d", when, eta.GetMetric(), wantETA)
		}
		if got := m.Status(); got != wantLine {
			t.Errorf("%s: Status() = %q, want %q", when, got, wantLine)
		}
	}

	// 300 done in 30 s: 10 a second; 4,700 left take 470 s.
	work(10, 30)
	check("after 30 s", 10, 470, "ceo: 1/1 folders up, 300 processed, 0 failed, 4700 left, ETA 8m")
	// The window is the last minute: 59 whole seconds at 20 a second
	// (the 60th has only begun); 2,900 left take 145 s.
	work(20, 90)
	check("after 120 s", 20, 145, "ceo: 1/1 folders up, 2100 processed, 0 failed, 2900 left, ETA 3m")
	// A minute without a message: no rate, no estimate.
	clock = clock.Add(rateWindow)
	check("stalled", 0, 0, "ceo: 1/1 folders up, 2100 processed, 0 failed, 2900 left")

	// New mail listed meanwhile joins the backlog: 100 more in the total.
	m.Backlog("ceo", "INBOX", left+100)
	if f := m.folders()[0]; f.Backlog != 3000 || f.BacklogTotal != 5100 || !f.BacklogStarted.Equal(t0) {
		t.Errorf("grown: backlog %d of %d since %v, want 3000 of 5100 since %v", f.Backlog, f.BacklogTotal, f.BacklogStarted, t0)
	}

	// The end: no backlog, an ETA of 0, the rate of the last minute (one
	// message in the 59 s of the window).
	m.Processed(Message{Account: "ceo", Folder: "INBOX"}, plain)
	clock = clock.Add(2 * time.Second)
	m.Backlog("ceo", "INBOX", 0)
	f := m.folders()[0]
	if f.Backlog != 0 || f.BacklogTotal != 0 || !f.BacklogStarted.IsZero() || f.ETASeconds != 0 || f.RatePerSecond != 0.02 {
		t.Errorf("done: backlog %d of %d since %v, %v/s, ETA %d s; want none, 0.02/s", f.Backlog, f.BacklogTotal, f.BacklogStarted, f.RatePerSecond, f.ETASeconds)
	}
	if got := gauge(t, m, "smimed_folder_backlog_eta_seconds", "ceo"); got != 0 || gather(t, m)["smimed_folder_backlog_eta_seconds"] == nil {
		t.Errorf("done: smimed_folder_backlog_eta_seconds = %v, want a series of 0", got)
	}
	if got, want := m.Status(), "ceo: 1/1 folders up, 2101 processed, 0 failed"; got != want {
		t.Errorf("done: Status() = %q, want %q", got, want)
	}

	// A new backlog starts its own rate; its first message, 10 ms in,
	// counts over at least a second, not as 100 a second.
	m.Backlog("ceo", "INBOX", 10)
	clock = clock.Add(10 * time.Millisecond)
	m.Processed(Message{Account: "ceo", Folder: "INBOX"}, plain)
	m.Backlog("ceo", "INBOX", 9)
	if f := m.folders()[0]; f.BacklogTotal != 10 || f.RatePerSecond != 1 || f.ETASeconds != 9 {
		t.Errorf("new backlog: %d of %d, %v/s, ETA %d s; want 9 of 10, 1/s, ETA 9 s", f.Backlog, f.BacklogTotal, f.RatePerSecond, f.ETASeconds)
	}

	// A folder no longer watched leaves no series.
	m.ForgetFolder("ceo", "INBOX")
	if fams := gather(t, m); fams["smimed_folder_backlog_rate"] != nil || fams["smimed_folder_backlog_eta_seconds"] != nil {
		t.Errorf("after ForgetFolder: %v, %v; want no series", fams["smimed_folder_backlog_rate"], fams["smimed_folder_backlog_eta_seconds"])
	}
}
