package archive

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/state"
)

// BenchmarkVerifyEvidence measures `archive verify --evidence` on an
// archive of 100,000 messages (each with its file, as a plain message
// has one: plaintext and original are one file), sealed every 1,000
// records by a local TSA (openssl ts -reply): 100 seals, 100 tokens. The
// baseline is plain Verify (the chain and every file) in the same run.
//
//	go test -run '^$' -bench VerifyEvidence -benchtime 1x ./archive
func BenchmarkVerifyEvidence(b *testing.B) {
	const n, every = 100_000, 1000
	ttsa := testenv.NewTSA(b, nil, "Bench TSA", time.Time{}, time.Time{})
	caPEM, _ := os.ReadFile(ttsa.CAFile)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tsa := TSA{URL: ttsa.URL, Roots: roots, RootsPEM: caPEM}
	dir := b.TempDir()
	st, err := state.Open(filepath.Join(dir, "smimed.db"), false)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	a, err := Open(filepath.Join(dir, "archive"), st)
	if err != nil {
		b.Fatal(err)
	}
	st.Bolt().NoSync = true
	t0 := time.Now()
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		msg := fmt.Appendf(nil, "From: s%d@partner.example\r\nTo: ceo@org.example\r\nSubject: report %d\r\nMessage-ID: <m%d@bench>\r\n\r\nbody %d\r\n", i%1000, i, i, i)
		sum := Sum(msg)
		r := &Record{
			Version: 1, Account: "ceo", Folder: "INBOX", UIDValidity: 1, UID: uint32(i + 1),
			MessageID: fmt.Sprintf("<m%d@bench>", i), From: fmt.Sprintf("s%d@partner.example", i%1000), To: []string{"ceo@org.example"},
			Subject: fmt.Sprintf("report %d", i), Received: start.Add(time.Duration(i) * time.Minute), ArchivedAt: start,
			OriginalSHA256: sum, OriginalSize: int64(len(msg)), PlaintextSHA256: sum, PlaintextSize: int64(len(msg)),
			Status: []string{StatusPlain}, Layers: []string{}, Signatures: []harvest.Signature{}, Harvested: []harvest.Harvested{},
		}
		r.PlaintextFile = a.maildirName(r)
		final := filepath.Join(a.MaildirPath(), "new", r.PlaintextFile)
		if err := os.WriteFile(final, msg, 0o600); err != nil {
			b.Fatal(err)
		}
		op := a.OriginalPath(sum)
		os.MkdirAll(filepath.Dir(op), 0o700)
		if err := os.Link(final, op); err != nil {
			b.Fatal(err)
		}
		if _, _, err := a.commit(r, 0, nil); err != nil {
			b.Fatal(err)
		}
		if (i+1)%every == 0 {
			s, err := a.SealRecords()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := a.Stamp(context.Background(), s.ID, tsa); err != nil {
				b.Fatal(err)
			}
		}
	}
	st.Bolt().NoSync = false
	b.Logf("built %d records, %d seals in %v", n, n/every, time.Since(t0).Round(time.Second))
	ev := EvidenceOptions{Roots: tsa.Roots, RootsPEM: caPEM, Require: 1}
	var plain, evidence time.Duration
	b.ResetTimer()
	for range b.N {
		t := time.Now()
		res, err := a.Verify(nil)
		plain += time.Since(t)
		if err != nil || !res.OK() {
			b.Fatalf("Verify: %v %v", err, res.Problems)
		}
		t = time.Now()
		res, err = a.VerifyEvidence(ev, nil)
		evidence += time.Since(t)
		if err != nil || !res.OK() || len(res.Seals) != n/every || !res.Seals[len(res.Seals)-1].Sealed {
			b.Fatalf("VerifyEvidence: %v %v, %d seals", err, res.Problems, len(res.Seals))
		}
	}
	b.StopTimer()
	per := evidence / time.Duration(b.N)
	b.ReportMetric(per.Seconds(), "s/verify-evidence")
	b.ReportMetric(float64(n)/per.Seconds(), "records/s")
	b.ReportMetric(float64(evidence)/float64(plain), "x-plain-verify")
}
