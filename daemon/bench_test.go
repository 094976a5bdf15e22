package daemon

// Benchmarks of `smimed run` against a private Dovecot: backfill
// throughput compared with its two bounds (fetching over IMAP, the engine
// on all cores) measured in the same run, the latency of a new message
// while idle, and the memory cost of an idle folder. They report figures
// (b.ReportMetric) and assert nothing about time:
//
//	go test -run '^$' -bench . -benchtime 1x ./daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/imapconn"
	"github.com/smimed/smimed/daemon/testenv"
)

// benchEnv is svcEnv for a benchmark: the svcEnv helpers take a *testing.T.
func benchEnv(b *testing.B, users ...string) *svcEnv {
	b.Helper()
	e := &svcEnv{d: testenv.StartDovecot(b), dir: b.TempDir()}
	e.cfgPath = filepath.Join(e.dir, "smimed.toml")
	testenv.CopyPKI(b, e.dir, "org-new.crt", "org-new.key", "ca-bundle.pem")
	for _, u := range users {
		e.d.AddAccount(b, e.dir, u)
	}
	return e
}

// benchConfig writes a configuration with state in stateDir, the key
// org-new, and accounts.
func (e *svcEnv) benchConfig(b *testing.B, stateDir, head string, accounts ...string) string {
	b.Helper()
	path := filepath.Join(e.dir, stateDir+".toml")
	if err := os.WriteFile(path, []byte(testenv.Config(stateDir, head, []string{"org-new"}, accounts...)), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// startBench loads cfgPath, starts the service and returns it with a stop
// function (also run at cleanup), which waits for the service without a
// time limit.
func startBench(b *testing.B, cfgPath string) (*Service, func()) {
	b.Helper()
	svc := newService(b, cfgPath, slog.New(slog.DiscardHandler))
	return svc, testenv.RunService(b, svc, 0)
}

// waitCount waits (up to 10 min) until the service's archive holds n
// records.
func waitCount(b *testing.B, svc *Service, n int, poll time.Duration) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		got, err := svc.arch.Count()
		if err != nil {
			b.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d records archived after 10 min, want %d", got, n)
		}
		time.Sleep(poll)
	}
}

// bigEncrypted is a message of about 1 MiB of text encrypted to org-new by
// OpenSSL (AES-256-CBC).
func bigEncrypted(b *testing.B) []byte {
	b.Helper()
	dir := b.TempDir()
	var body strings.Builder
	body.WriteString("Content-Type: text/plain; charset=us-ascii\r\n\r\n")
	for i := 0; body.Len() < 1<<20; i++ {
		fmt.Fprintf(&body, "line %07d of a large confidential report, padded to about seventy-six bytes\r\n", i)
	}
	in := filepath.Join(dir, "body.txt")
	if err := os.WriteFile(in, []byte(body.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return testenv.OpenSSL(b, "", "cms", "-encrypt", "-aes256", "-in", in,
		"-recip", filepath.Join("..", "testdata", "pki", "org-new.crt"),
		"-from", "alice@partner.example", "-to", "ceo@org.example", "-subject", "large encrypted report")
}

// BenchmarkBackfill: a service's first start on an INBOX of 2,000
// messages (small signed, small encrypted to org-new, one in 40 a ~1 MiB
// encrypted message), until all are archived. In the same run: fetching
// the same messages over one IMAP connection without processing them
// (what one folder's watcher does), and the service's engine alone on all
// cores. ratio = msgs/s ÷ min(fetch_msgs/s, engine_msgs/s).
func BenchmarkBackfill(b *testing.B) {
	const n = 2000
	e := benchEnv(b, "ceo")
	big := bigEncrypted(b)
	small := [][]byte{testenv.Testdata(b, "msg", "signed-rsa-sha256.eml"), testenv.Testdata(b, "msg", "enc-aes256.eml")}
	msgs := make([][]byte, n)
	size := 0
	for i := range msgs {
		src := small[i%2]
		if i%40 == 39 {
			src = big
		}
		msgs[i] = numbered(src, i)
		size += len(msgs[i])
	}
	e.d.DeliverMaildir(b, "ceo", msgs)
	b.Logf("%d messages, %.1f MiB, GOMAXPROCS %d", n, float64(size)/(1<<20), runtime.GOMAXPROCS(0))

	var svcTime, fetchTime, engineTime time.Duration
	b.ResetTimer()
	for i := range b.N {
		// The service, from start to the last record.
		cfgPath := e.benchConfig(b, fmt.Sprintf("state-%d", i), os.Getenv("SMIMED_BENCH_HEAD"), e.account("ceo"))
		start := time.Now()
		svc, stop := startBench(b, cfgPath)
		waitCount(b, svc, n, 20*time.Millisecond)
		svcTime += time.Since(start)
		stop()

		fetchTime += fetchAll(b, e, n)
		engineTime += engineAll(b, e, fmt.Sprintf("engine-%d", i), msgs)
	}
	b.StopTimer()
	rate := func(d time.Duration) float64 { return float64(n*b.N) / d.Seconds() }
	b.ReportMetric(rate(svcTime), "msgs/s")
	b.ReportMetric(rate(fetchTime), "fetch_msgs/s")
	b.ReportMetric(rate(engineTime), "engine_msgs/s")
	b.ReportMetric(rate(svcTime)/min(rate(fetchTime), rate(engineTime)), "ratio")
}

// fetchAll fetches every message of ceo's INBOX to a file, one after the
// other on one connection, as a watcher does, and returns the time taken.
func fetchAll(b *testing.B, e *svcEnv, n int) time.Duration {
	b.Helper()
	ctx := context.Background()
	tmp := b.TempDir()
	start := time.Now()
	c, err := imapconn.Dial(ctx, imapconn.Config{Addr: e.d.Addr(), TLS: "none", Username: "ceo", Password: "pw-ceo"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Examine(ctx, "INBOX"); err != nil {
		b.Fatal(err)
	}
	uids, err := c.UIDsAfter(ctx, 0)
	if err != nil || len(uids) != n {
		b.Fatalf("UIDsAfter(0) = %d UIDs, %v; want %d", len(uids), err, n)
	}
	for _, uid := range uids {
		f, err := c.FetchToFile(ctx, uid, tmp, 0)
		if err != nil {
			b.Fatal(err)
		}
		os.Remove(f.Path)
	}
	return time.Since(start)
}

// engineAll runs the engine a service gets (keys, anchors, its own
// certificate store, harvesting on) over msgs on GOMAXPROCS goroutines and
// returns the time taken.
func engineAll(b *testing.B, e *svcEnv, stateDir string, msgs [][]byte) time.Duration {
	b.Helper()
	svc := newService(b, e.benchConfig(b, stateDir, "", e.account("ceo")), slog.New(slog.DiscardHandler))
	defer svc.Close()
	eng := svc.engine.Load()
	received := time.Now()
	next := make(chan []byte)
	var wg sync.WaitGroup
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for m := range next {
				if _, err := eng.Process(m, received); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for _, m := range msgs {
		next <- m
	}
	close(next)
	wg.Wait()
	return time.Since(start)
}

// BenchmarkIdleLatency: with the service idle on one folder, 50 messages
// are delivered one at a time (doveadm save, each after the previous one
// is archived); reported are the median and 99th percentile of the time
// from the start of the delivery to the archive record, and the median
// time doveadm save itself takes.
func BenchmarkIdleLatency(b *testing.B) {
	e := benchEnv(b, "ceo")
	svc, _ := startBench(b, e.benchConfig(b, "state", "", e.account("ceo")))
	msg := testenv.Testdata(b, "msg", "enc-aes256.eml")
	e.d.Deliver(b, "ceo", "INBOX", numbered(msg, 0))
	waitCount(b, svc, 1, 5*time.Millisecond)

	var lat, save []float64
	b.ResetTimer()
	for i := range 50 * b.N {
		time.Sleep(100 * time.Millisecond) // back in IDLE
		start := time.Now()
		e.d.Deliver(b, "ceo", "INBOX", numbered(msg, i+1))
		save = append(save, time.Since(start).Seconds())
		waitCount(b, svc, i+2, 2*time.Millisecond)
		lat = append(lat, time.Since(start).Seconds())
	}
	b.StopTimer()
	b.ReportMetric(percentile(lat, 50), "p50_s")
	b.ReportMetric(percentile(lat, 99), "p99_s")
	b.ReportMetric(percentile(save, 50), "save_p50_s")
}

// percentile is the nearest-rank p-th percentile of xs.
func percentile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// BenchmarkIdleFolders: 100 folders (4 accounts of 25) idle in one
// service. Reported per folder: the growth of the process's resident
// memory (VmRSS) and of the Go heap in use (after a GC) from before
// NewService until every folder is connected and idle, so the service's
// fixed costs are included; and goroutines.
func BenchmarkIdleFolders(b *testing.B) {
	const accounts, perAccount = 4, 25
	users := make([]string, accounts)
	for i := range users {
		users[i] = fmt.Sprintf("u%d", i)
	}
	e := benchEnv(b, users...)
	folders := make([]string, perAccount)
	for i := range folders {
		folders[i] = fmt.Sprintf("F%02d", i)
	}
	var accts []string
	for _, u := range users {
		e.d.Doveadm(b, append([]string{"mailbox", "create", "-u", u}, folders...)...)
		accts = append(accts, e.account(u, folders...))
	}
	const total = accounts * perAccount

	var rss, heap, goroutines float64
	b.ResetTimer()
	for i := range b.N {
		cfgPath := e.benchConfig(b, fmt.Sprintf("state-%d", i), "", accts...)
		rss0, heap0, g0 := memNow(b)
		svc, stop := startBench(b, cfgPath)
		deadline := time.Now().Add(2 * time.Minute)
		for connected(b, svc.metrics) < total {
			if time.Now().After(deadline) {
				b.Fatalf("%v of %d folders connected after 2 min", connected(b, svc.metrics), total)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second) // every folder listed and in IDLE
		rss1, heap1, g1 := memNow(b)
		rss += (rss1 - rss0) / total
		heap += (heap1 - heap0) / total
		goroutines += (g1 - g0) / total
		stop()
	}
	b.StopTimer()
	b.ReportMetric(rss/float64(b.N), "rss_KiB/folder")
	b.ReportMetric(heap/float64(b.N), "heap_KiB/folder")
	b.ReportMetric(goroutines/float64(b.N), "goroutines/folder")
}

// memNow returns VmRSS and HeapInuse in KiB after a GC, and the number of
// goroutines.
func memNow(b *testing.B) (rssKiB, heapKiB, goroutines float64) {
	b.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				b.Fatalf("VmRSS line %q", line)
			}
			rssKiB = kib
		}
	}
	return rssKiB, float64(ms.HeapInuse) / 1024, float64(runtime.NumGoroutine())
}

// connected is the sum of smimed_folder_connected over every folder.
func connected(b *testing.B, m *Metrics) float64 {
	b.Helper()
	fams, err := m.reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() == "smimed_folder_connected" {
			for _, s := range f.GetMetric() {
				sum += s.GetGauge().GetValue()
			}
		}
	}
	return sum
}
