package daemon

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
)

// expectedRow is what testdata/expected.tsv (OpenSSL's view) says of a
// fixture: how it decrypts and the verdict of each signer.
type expectedRow struct{ decrypt, verdicts string }

func readExpected(t *testing.T) map[string]expectedRow {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "expected.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string]expectedRow{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) > 7 && c[0] != "file" {
			rows[c[0]] = expectedRow{decrypt: c[2], verdicts: c[7]}
		}
	}
	return rows
}

// scrape fetches /metrics over HTTP and parses the text format.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics = %s, Content-Type %q; want 200 text/plain", resp.Status, ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value returns the counter or gauge value of name with exactly labels
// (name=value pairs), 0 if absent; for a histogram its sample count.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	fam := fams[name]
	if fam == nil {
		return 0
	}
	for _, m := range fam.Metric {
		var got []string
		for _, l := range m.Label {
			got = append(got, l.GetName(), l.GetValue())
		}
		if !slices.Equal(got, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

// gauge reads one INBOX series of m without HTTP.
func gauge(t *testing.T, m *Metrics, name, account string) float64 {
	t.Helper()
	return value(gather(t, m), name, "account", account, "folder", "INBOX")
}

// gather reads m's metric families without HTTP, by name.
func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	return byName
}

// TestServiceMetrics delivers fixtures whose outcome OpenSSL has recorded
// in expected.tsv and scrapes the metrics over HTTP.
func TestServiceMetrics(t *testing.T) {
	e := newSvcEnv(t, "ceo")
	expected := readExpected(t)
	files := []string{"signed-rsa-sha256.eml", "signed-tampered.eml", "signed-two-signers.eml", "sign-then-encrypt.eml", "enc-old-key.eml", "plain.eml"}
	outcomes := map[string]float64{}
	verdicts := map[string]float64{}
	for _, f := range files {
		row, ok := expected[f]
		if !ok {
			t.Fatalf("%s not in expected.tsv", f)
		}
		e.d.Deliver(t, "ceo", "INBOX", testenv.Testdata(t, "msg", f))
		// Only org-new is configured.
		outcome := OutcomeUndecryptable
		switch {
		case row.decrypt == "ok:org-new":
			outcome = OutcomeDecrypted
		case row.decrypt != "-":
		case row.verdicts != "-":
			outcome = OutcomeSigned
		default:
			outcome = OutcomePlain
		}
		outcomes[outcome]++
		if outcome != OutcomeUndecryptable && row.verdicts != "-" {
			for v := range strings.SplitSeq(row.verdicts, ",") {
				verdicts[v]++
			}
		}
	}
	var big bytes.Buffer
	big.WriteString("From: alice@partner.example\r\nTo: ceo@org.example\r\nSubject: big\r\n\r\n")
	for big.Len() < 100<<10 {
		big.WriteString(strings.Repeat("x", 76) + "\r\n")
	}
	e.d.Deliver(t, "ceo", "INBOX", big.Bytes())
	outcomes[OutcomeTooLarge]++
	total := float64(len(files) + 1)

	e.writeConfig(t, "max_message_size = \"64KiB\"\n[daemon]\nmetrics_listen = \"127.0.0.1:0\"", []string{"org-new"}, e.account("ceo"))
	started := time.Now()
	logs := &testenv.LockedBuffer{}
	svc, stop := runService(t, e.cfgPath, logs)
	addr := svc.MetricsAddr().String()
	acc := []string{"account", "ceo", "folder", "INBOX"}

	// Wait until every message is done (the backlog gauge drops to 0 after
	// the last checkpoint moves).
	// A scrape gathers the collectors one after another, so one taken
	// while the last message is being counted can be torn: take the next.
	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(30 * time.Second)
	for settled := false; ; {
		fams = scrape(t, addr)
		if value(fams, "smimed_message_delay_seconds", acc...) == total && value(fams, "smimed_folder_backlog_messages", acc...) == 0 {
			if settled {
				break
			}
			settled = true
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("messages not all done within 30 s; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, o := range []string{OutcomeDecrypted, OutcomeUndecryptable, OutcomeSigned, OutcomePlain, OutcomeError, OutcomeTooLarge} {
		if got := value(fams, "smimed_messages_processed_total", append(acc, "outcome", o)...); got != outcomes[o] {
			t.Errorf("smimed_messages_processed_total{outcome=%q} = %v, want %v", o, got, outcomes[o])
		}
	}
	if got := value(fams, "smimed_decryption_failures_total", acc...); got != outcomes[OutcomeUndecryptable] {
		t.Errorf("smimed_decryption_failures_total = %v, want %v", got, outcomes[OutcomeUndecryptable])
	}
	for _, v := range []string{"valid", "invalid", "untrusted", "expired", "mismatch", "error"} {
		if got := value(fams, "smimed_signature_verdicts_total", append(acc, "verdict", v)...); got != verdicts[v] {
			t.Errorf("smimed_signature_verdicts_total{verdict=%q} = %v, want %v", v, got, verdicts[v])
		}
	}
	if got := value(fams, "smimed_folder_connected", acc...); got != 1 {
		t.Errorf("smimed_folder_connected = %v, want 1", got)
	}
	last := value(fams, "smimed_folder_last_check_timestamp_seconds", acc...)
	if lt := time.Unix(int64(last), 0); lt.Before(started.Truncate(time.Second)) || lt.After(time.Now()) {
		t.Errorf("smimed_folder_last_check_timestamp_seconds = %v (%v), want between %v and now", last, lt, started)
	}
	h := fams["smimed_message_delay_seconds"].Metric[0].Histogram
	// The text format adds the +Inf bucket to ours.
	if b := h.Bucket; len(b) != 13 || b[0].GetUpperBound() != 0.1 || b[11].GetUpperBound() < 3599 || b[11].GetUpperBound() > 3601 {
		t.Errorf("delay buckets = %v, want 12 from 0.1 s to 1 h, then +Inf", b)
	}
	if want := fmt.Sprintf("ceo: 1/1 folders up, %v processed, 0 failed", total); svc.Metrics().Status() != want {
		t.Errorf("Status() = %q, want %q", svc.Metrics().Status(), want)
	}

	stop()
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Errorf("metrics still served after the service stopped")
	}
}

// TestMetricsPartialNotValid: a partial verdict (a signature over part of
// what a client shows) is counted as partial, never as valid.
func TestMetricsPartialNotValid(t *testing.T) {
	m := NewMetrics()
	msg := Message{Account: "ceo", Folder: "INBOX"}
	m.Processed(msg, &harvest.Report{Signatures: []harvest.Signature{{Status: harvest.StatusPartial}}})
	m.Processed(msg, &harvest.Report{Signatures: []harvest.Signature{{Status: harvest.StatusValid}, {Status: harvest.StatusPartial}}})
	byName := gather(t, m)
	for verdict, want := range map[string]float64{"partial": 2, "valid": 1} {
		if got := value(byName, "smimed_signature_verdicts_total", "account", "ceo", "folder", "INBOX", "verdict", verdict); got != want {
			t.Errorf("verdict %s counted %v times, want %v", verdict, got, want)
		}
	}
}
