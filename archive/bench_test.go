package archive

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/state"
)

// benchRecords is the size of the synthetic archive the query benchmarks
// run on.
const benchRecords = 100_000

var (
	benchOnce sync.Once
	benchArch *Archive
	benchErr  error
)

// bigArchive returns an archive with benchRecords index records (no
// files: the queries read only the index): 1,000 senders, 50 recipients,
// arrival times spread over two years. It is built once per test binary,
// with bbolt's fsync off while filling (the records are the same).
func bigArchive(b *testing.B) *Archive {
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "smimed-archive-bench")
		if err != nil {
			benchErr = err
			return
		}
		st, err := state.Open(filepath.Join(dir, "smimed.db"), false)
		if err != nil {
			benchErr = err
			return
		}
		a, err := Open(filepath.Join(dir, "archive"), st)
		if err != nil {
			benchErr = err
			return
		}
		st.Bolt().NoSync = true
		start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := range benchRecords {
			r := &Record{
				Version: 1, Account: "ceo", Folder: "INBOX", UIDValidity: 1, UID: uint32(i + 1),
				MessageID:      fmt.Sprintf("<m%d@bench.example>", i),
				From:           fmt.Sprintf("sender%d@partner%d.example", i%1000, i%1000%37),
				To:             []string{fmt.Sprintf("user%d@org.example", i%50)},
				Subject:        fmt.Sprintf("report %d", i),
				Received:       start.Add(time.Duration(i) * 10 * time.Minute),
				ArchivedAt:     start.Add(time.Duration(i) * 10 * time.Minute),
				OriginalSHA256: fmt.Sprintf("%064x", i), PlaintextSHA256: fmt.Sprintf("%064x", i),
				PlaintextFile: fmt.Sprintf("%d.bench", i),
				Status:        []string{[]string{StatusDecrypted, StatusSignedValid, StatusPlain}[i%3]},
				Layers:        []string{}, Signatures: []harvest.Signature{}, Harvested: []harvest.Harvested{},
			}
			if _, _, err := a.commit(r, 0, nil); err != nil {
				benchErr = err
				return
			}
		}
		st.Bolt().NoSync = false
		benchArch = a
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchArch
}

// BenchmarkQuery measures the admin queries on 100,000 records against a
// full scan of the records in the same run (what a query without indexes
// would cost): report ms/query and the ratio.
func BenchmarkQuery(b *testing.B) {
	a := bigArchive(b)
	count := func(q Query) int {
		n := 0
		if err := a.List(q, func(*Record) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		return n
	}
	// The baseline: read and decode every record once.
	scan := func() int {
		n := 0
		a.db.View(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
				r, err := decodeRecord(u64from(k), v)
				if err == nil && r.From == "sender7@partner7.example" {
					n++
				}
				return nil
			})
		})
		return n
	}
	t0 := time.Now()
	if scan() == 0 {
		b.Fatal("baseline scan found nothing")
	}
	scanTime := time.Since(t0)
	since := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, bc := range []struct {
		name string
		q    Query
		want int
	}{
		{"from-limit50", Query{From: "sender7@partner7.example", Limit: 50}, 50},
		{"domain-limit50", Query{From: "@partner7.example", Limit: 50}, 50},
		{"since-until", Query{Since: since, Until: since.Add(7 * 24 * time.Hour)}, 7 * 24 * 6},
		{"status-subject-limit50", Query{Status: StatusPlain, Subject: "report 9999", Limit: 50}, 3},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if n := count(bc.q); n != bc.want {
					b.Fatalf("%+v: %d records, want %d", bc.q, n, bc.want)
				}
			}
			per := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(per.Microseconds())/1000, "ms/query")
			b.ReportMetric(float64(per)/float64(scanTime), "x-fullscan")
		})
	}
}

func u64from(k []byte) uint64 {
	var v uint64
	for _, c := range k {
		v = v<<8 | uint64(c)
	}
	return v
}

// BenchmarkPut measures archive writes (both files and the index record,
// each fsynced) against the bare cost measured in the same run: writing
// and fsyncing the same bytes to one file.
func BenchmarkPut(b *testing.B) {
	dir := b.TempDir()
	a, st := openAt(b, dir, false)
	defer st.Close()
	raw, err := os.ReadFile(filepath.Join(testdataDir, "msg", "enc-aes256.eml"))
	if err != nil {
		b.Fatal(err)
	}
	res, err := harvest.New(harvest.Options{}).Process(raw, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	// The baseline: one durable file write of the same size.
	const rounds = 50
	t0 := time.Now()
	for i := range rounds {
		if err := writeDurable(filepath.Join(dir, "tmpfile"), filepath.Join(dir, fmt.Sprintf("f%d", i)), raw); err != nil {
			b.Fatal(err)
		}
	}
	bare := time.Since(t0) / rounds
	uid := uint32(0)
	for b.Loop() {
		uid++
		if _, _, err := a.Put(Source{Account: "ceo", Folder: "INBOX", UIDValidity: 1, UID: uid}, raw, res); err != nil {
			b.Fatal(err)
		}
	}
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(time.Second)/float64(per), "msgs/s")
	b.ReportMetric(float64(per)/float64(bare), "x-fsync-write")
}
