package gateway

import (
	"crypto/rand"
	"encoding/base64"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smimed/smimed/daemon/testenv"
)

const benchMessage = "From: CEO <ceo@org.example>\r\nTo: alice@partner.example\r\nSubject: numbers\r\nMessage-ID: <bench@org.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
	"A short business message of a few lines,\r\nas most mail is.\r\n\r\nRegards\r\n"

// sendMany sends n messages over one session to addr.
func sendMany(b *testing.B, addr string, n int) {
	b.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for range n {
		if err := testenv.SendSMTP(c, "ceo@org.example", []string{"alice@partner.example"}, benchMessage); err != nil {
			b.Fatal(err)
		}
	}
	c.Quit()
}

// BenchmarkGatewayThroughput: b.N small messages signed and encrypted to
// one partner (and the escrow key) through the gateway, against the same
// messages sent by the same client straight to the same go-smtp sink in
// the same run. Reports messages per second through the gateway and the
// ratio of the two times (gateway/direct).
func BenchmarkGatewayThroughput(b *testing.B) {
	e := startComposeEnv(b, envOptions{relay: func(r *testRelay) { r.discard = true }})
	e.arch.noRead = true
	sendMany(b, e.addr, 3) // warm up: PKI, connections
	b.ResetTimer()
	start := time.Now()
	sendMany(b, e.relay.addr, b.N)
	direct := time.Since(start)
	start = time.Now()
	sendMany(b, e.addr, b.N)
	through := time.Since(start)
	b.StopTimer()
	if got := e.mon.count(OutcomeSignedEncrypted); got != b.N+3 {
		b.Fatalf("%d signed and encrypted, want %d", got, b.N+3)
	}
	b.ReportMetric(float64(b.N)/through.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/direct.Seconds(), "direct-msgs/s")
	b.ReportMetric(through.Seconds()/direct.Seconds(), "gateway/direct")
}

// bigMessage is a message with a size-byte attachment, base64 in lines
// of 76, produced while it is read (never whole in memory).
func bigMessage(size int) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		io.WriteString(pw, "From: ceo@org.example\r\nTo: alice@partner.example\r\nSubject: the report\r\nMIME-Version: 1.0\r\n"+
			"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nattached\r\n"+
			"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		raw := make([]byte, 57*1024)
		line := make([]byte, 0, 78)
		for done := 0; done < size; done += len(raw) {
			rand.Read(raw)
			for i := 0; i < len(raw); i += 57 {
				line = base64.StdEncoding.AppendEncode(line[:0], raw[i:i+57])
				line = append(line, '\r', '\n')
				pw.Write(line)
			}
		}
		io.WriteString(pw, "--b1--\r\n")
		pw.Close()
	}()
	return pr
}

// BenchmarkGateway20MiB: a 20 MiB attachment signed and encrypted
// through the gateway. Reports the peak heap in use during the send
// (sampled every millisecond, above the heap before) divided by the
// attachment's size; the target is at most 3.
func BenchmarkGateway20MiB(b *testing.B) {
	const size = 20 << 20
	e := startComposeEnv(b, envOptions{relay: func(r *testRelay) { r.discard = true }, cfg: func(c *Config) {
		c.MaxMessageSize = 64 << 20
		c.DataTimeout = 5 * time.Minute
	}})
	e.arch.noRead = true
	var worst float64
	for b.Loop() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		var peak atomic.Uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					var m runtime.MemStats
					runtime.ReadMemStats(&m)
					if m.HeapInuse > peak.Load() {
						peak.Store(m.HeapInuse)
					}
				}
			}
		})
		c, err := smtp.Dial(e.addr)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Mail("ceo@org.example", nil); err != nil {
			b.Fatal(err)
		}
		if err := c.Rcpt("alice@partner.example", nil); err != nil {
			b.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(w, bigMessage(size)); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatalf("DATA: %v\n%s", err, e.log())
		}
		c.Close()
		close(stop)
		wg.Wait()
		if p := peak.Load(); p > base {
			worst = max(worst, float64(p-base)/size)
		}
	}
	if n := len(e.relay.messages()); n == 0 || !strings.Contains(e.log(), "signed") && e.mon.count(OutcomeSignedEncrypted) == 0 {
		b.Fatalf("nothing signed and encrypted (%d relayed)", n)
	}
	b.ReportMetric(worst, "peak-heap/size")
}
