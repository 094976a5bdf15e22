package compose

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/cms"
)

// benchCert makes an RSA key and a certificate for it that may sign and
// encrypt mail (made here: benchmarks need no openssl).
func benchCert(b *testing.B, bits int, name string) (*x509.Certificate, *rsa.PrivateKey) {
	b.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	return c, key
}

// BenchmarkSignEncryptSmall signs and encrypts a 2 KB message to a partner
// and the escrow key (one RSA-2048 signature, two RSA public-key
// operations, one AES-256-CBC pass) and, in the same run, does that crypto
// directly with crypto/rsa and crypto/aes. It reports ours/direct as
// "ratio" (fastest iteration of each; target: at most 1.3) and
// "mean-ratio".
func BenchmarkSignEncryptSmall(b *testing.B) {
	sc, sk := benchCert(b, 2048, "signer")
	pc, _ := benchCert(b, 2048, "partner")
	ec, _ := benchCert(b, 2048, "escrow")
	s := &Signer{Cert: sc, Key: sk}
	recips := []Recipient{{Cert: pc}, {Cert: ec}}
	msg := []byte("From: a@org.example\r\nTo: p@partner.example\r\nSubject: s\r\nContent-Type: text/plain\r\n\r\n" +
		strings.Repeat("a line of an ordinary business mail, nothing more\r\n", 40))
	dir := b.TempDir()
	var ours, direct time.Duration
	minOurs, minDirect := time.Duration(1<<62), time.Duration(1<<62)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := SignEncrypt(io.Discard, bytes.NewReader(msg), s, recips, Options{TempDir: dir}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		directCrypto(b, sk, []*rsa.PublicKey{pc.PublicKey.(*rsa.PublicKey), ec.PublicKey.(*rsa.PublicKey)}, msg)
		t2 := time.Now()
		ours += t1.Sub(t0)
		direct += t2.Sub(t1)
		minOurs, minDirect = min(minOurs, t1.Sub(t0)), min(minDirect, t2.Sub(t1))
	}
	// The fastest of each, interleaved, is the least disturbed by other
	// work on a shared machine; the means are reported beside it.
	b.ReportMetric(float64(minOurs)/float64(minDirect), "ratio")
	b.ReportMetric(float64(ours)/float64(direct), "mean-ratio")
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "ours-ns/op")
	b.ReportMetric(float64(direct.Nanoseconds())/float64(b.N), "direct-ns/op")
}

// directCrypto is the bare cryptography of a signed and encrypted message.
func directCrypto(b *testing.B, sk *rsa.PrivateKey, pubs []*rsa.PublicKey, msg []byte) {
	d := sha256.Sum256(msg)
	if _, err := rsa.SignPKCS1v15(rand.Reader, sk, crypto.SHA256, d[:]); err != nil {
		b.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	for _, p := range pubs {
		if _, err := rsa.EncryptPKCS1v15(rand.Reader, p, key); err != nil {
			b.Fatal(err)
		}
	}
	block, _ := aes.NewCipher(key)
	iv := make([]byte, 16)
	rand.Read(iv)
	n := (len(msg)/16 + 1) * 16
	buf := make([]byte, n)
	copy(buf, msg)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf, buf)
}

// heapSampler records the largest live heap (runtime/metrics
// /memory/classes/heap/objects:bytes) seen while it runs.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{})}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	h.wg.Wait()
	return h.peak.Load()
}

func heapNow() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkSignEncryptLarge signs and encrypts a message with a 20 MiB
// attachment and reports the peak heap it took over the message's size as
// "heap/msg" (target: at most 3), for AES-256-CBC (streamed) and
// AES-256-GCM (one buffer of the content).
func BenchmarkSignEncryptLarge(b *testing.B) {
	sc, sk := benchCert(b, 2048, "signer")
	pc, _ := benchCert(b, 2048, "partner")
	att := make([]byte, 20<<20)
	rand.Read(att)
	var mb strings.Builder
	mb.WriteString("From: a@org.example\r\nTo: p@partner.example\r\nSubject: big\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n" +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	mb.WriteString(testenv.Base64Lines(att) + "--b--\r\n")
	msg := []byte(mb.String())
	att = nil
	dir := b.TempDir()
	for _, c := range []struct {
		name string
		caps []string
	}{{"cbc", nil}, {"gcm", []string{"aes-256-gcm"}}} {
		b.Run(c.name, func(b *testing.B) {
			var worst float64
			b.SetBytes(int64(len(msg)))
			for i := 0; i < b.N; i++ {
				runtime.GC()
				base := heapNow()
				h := startHeapSampler()
				alg, err := SignEncrypt(io.Discard, bytes.NewReader(msg), &Signer{Cert: sc, Key: sk}, []Recipient{{Cert: pc, Capabilities: c.caps}}, Options{TempDir: dir})
				peak := h.Stop()
				if err != nil {
					b.Fatal(err)
				}
				if want := map[string]string{"cbc": cms.CipherAES256CBC, "gcm": cms.CipherAES256GCM}[c.name]; alg.Cipher != want {
					b.Fatalf("cipher %s, want %s", alg.Cipher, want)
				}
				if peak > base {
					worst = max(worst, float64(peak-base)/float64(len(msg)))
				}
			}
			b.ReportMetric(worst, "heap/msg")
		})
	}
}
