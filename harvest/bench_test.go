package harvest

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/cms"
)

// The benchmarks report, besides ns/op and allocations:
//   x-crypto  engine time / bare crypto time (RSA-2048 operation(s) plus
//             the symmetric pass and digest over the content) — the
//             engine's overhead factor;
//   x-rsa-priv+aes  engine time / (one RSA-2048 private-key operation plus
//             an AES-256-CBC pass over the message), the project's yardstick;
//   alloc-x   bytes allocated per op / message size (an upper bound on the
//             peak);
//   peak-x    the highest the heap rose during one Process call (sampled,
//             with the collector kept close behind) / message size; for
//             messages of 1 MiB and more only, as the heap's statistics
//             move in steps of whole spans of small objects.
// The two ratios come from a loop of their own in which the engine and the
// bare crypto take turns, so that both see the same load of the machine.

func benchEngine(b *testing.B) (*Engine, map[string]*cms.Key) {
	keys := orgKeys(b)
	return New(Options{Keys: keyList(keys), Roots: fixtureRoots(b)}), keys
}

// bareCrypto is the unavoidable work for a message of n content bytes:
// decrypt=true adds one RSA-2048 private-key operation and an AES-256-CBC
// pass; verify=true adds a SHA-256 pass and the RSA-2048 signature checks
// of the signature and its chain.
type bareCrypto struct {
	priv    *rsa.PrivateKey
	wrapped []byte
	sig     []byte
	digest  []byte
	block   cipher.Block
	buf     []byte
	iv      []byte

	decrypt, verify bool
}

func newBareCrypto(b *testing.B, priv *rsa.PrivateKey, n int, decrypt, verify bool) *bareCrypto {
	key := make([]byte, 32)
	rand.Read(key)
	wrapped, err := rsa.EncryptPKCS1v15(rand.Reader, &priv.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	block, _ := aes.NewCipher(key)
	d := sha256.Sum256([]byte("x"))
	sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, d[:])
	if err != nil {
		b.Fatal(err)
	}
	n = (n + 15) / 16 * 16
	return &bareCrypto{priv: priv, wrapped: wrapped, sig: sig, digest: d[:], block: block, buf: make([]byte, n), iv: make([]byte, 16),
		decrypt: decrypt, verify: verify}
}

// chainVerifies is the RSA signature checks a trustworthy verdict needs on
// the fixture chain: the message signature, the leaf by the intermediate,
// the intermediate by the root.
const chainVerifies = 3

func (c *bareCrypto) run() {
	if c.decrypt {
		k := make([]byte, 32)
		rsa.DecryptPKCS1v15SessionKey(nil, c.priv, c.wrapped, k)
		cipher.NewCBCDecrypter(c.block, c.iv).CryptBlocks(c.buf, c.buf)
	}
	if c.verify {
		sha256.Sum256(c.buf)
		for i := 0; i < chainVerifies; i++ {
			rsa.VerifyPKCS1v15(&c.priv.PublicKey, crypto.SHA256, c.digest, c.sig)
		}
	}
}

// benchProcess measures eng.Process on raw against base (the bare crypto
// of this message) and issue (the project's yardstick).
func benchProcess(b *testing.B, eng *Engine, raw []byte, base, issue *bareCrypto, wantDecrypt, wantSig bool) {
	received := time.Now()
	res, err := eng.Process(raw, received)
	if err != nil || res.Report.Error != "" {
		b.Fatalf("Process() = %v, %q", err, res.Report.Error)
	}
	if wantDecrypt && res.Report.Decryption.Status != DecryptOK {
		b.Fatalf("not decrypted: %+v", res.Report.Decryption)
	}
	if wantSig && (len(res.Report.Signatures) == 0 || res.Report.Signatures[0].Status != StatusValid) {
		b.Fatalf("signature not valid: %+v", res.Report.Signatures)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := eng.Process(raw, received); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	yardsticks := []*bareCrypto{base}
	if issue != base {
		yardsticks = append(yardsticks, issue)
	}
	ratios := turnRatios(eng, raw, received, yardsticks...)
	b.ReportMetric(ratios[0], "x-crypto")
	b.ReportMetric(ratios[len(ratios)-1], "x-rsa-priv+aes")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/float64(len(raw)), "alloc-x")
	if len(raw) >= 1<<20 {
		b.ReportMetric(float64(peakHeap(eng, raw, received))/float64(len(raw)), "peak-x")
	}
}

// turnRatios lets the engine and each yardstick take turns, one call
// each, until the first yardstick has run for 300 ms, and returns the
// engine's time over each yardstick's.
func turnRatios(eng *Engine, raw []byte, received time.Time, yardsticks ...*bareCrypto) []float64 {
	var engine time.Duration
	spent := make([]time.Duration, len(yardsticks))
	for n := 0; n < 3 || spent[0] < 300*time.Millisecond; n++ {
		start := time.Now()
		eng.Process(raw, received)
		engine += time.Since(start)
		for i, y := range yardsticks {
			start = time.Now()
			y.run()
			spent[i] += time.Since(start)
		}
	}
	out := make([]float64, len(yardsticks))
	for i := range yardsticks {
		out[i] = float64(engine) / float64(spent[i])
	}
	return out
}

// peakHeap is the most the heap's objects rose above their size before a
// Process call, over a few calls, sampled by another goroutine while the
// collector runs at GOGC=10 (so that little garbage counts as live). The
// result the call returns is part of it.
func peakHeap(eng *Engine, raw []byte, received time.Time) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	var peak uint64
	for i := 0; i < 5; i++ {
		runtime.GC()
		base := read()
		var high atomic.Uint64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if v := read(); v > high.Load() {
					high.Store(v)
				}
				select {
				case <-stop:
					return
				default:
					runtime.Gosched()
				}
			}
		}()
		res, _ := eng.Process(raw, received)
		close(stop)
		<-done
		if v := read(); v > high.Load() {
			high.Store(v)
		}
		runtime.KeepAlive(res)
		if h := high.Load(); h > base && h-base > peak {
			peak = h - base
		}
	}
	return peak
}

func orgRSA(b *testing.B, keys map[string]*cms.Key) *rsa.PrivateKey {
	k, ok := keys["org-new"].Private.(*rsa.PrivateKey)
	if !ok {
		b.Fatal("org-new is not an RSA key")
	}
	return k
}

// (a) a small detached-signed RSA-2048 message.
func BenchmarkInspectSignedSmall(b *testing.B) {
	eng, keys := benchEngine(b)
	raw := testenv.Testdata(b, "msg", "signed-rsa-sha256.eml")
	benchProcess(b, eng, raw,
		newBareCrypto(b, orgRSA(b, keys), len(raw), false, true),
		newBareCrypto(b, orgRSA(b, keys), len(raw), true, false), false, true)
}

// (b) a small AES-256-CBC message to RSA-2048.
func BenchmarkInspectEncryptedSmall(b *testing.B) {
	eng, keys := benchEngine(b)
	raw := testenv.Testdata(b, "msg", "enc-aes256.eml")
	base := newBareCrypto(b, orgRSA(b, keys), len(raw), true, false)
	benchProcess(b, eng, raw, base, base, true, false)
}

// (d) sign-then-encrypt.
func BenchmarkInspectSignThenEncrypt(b *testing.B) {
	eng, keys := benchEngine(b)
	raw := testenv.Testdata(b, "msg", "sign-then-encrypt.eml")
	benchProcess(b, eng, raw,
		newBareCrypto(b, orgRSA(b, keys), len(raw), true, true),
		newBareCrypto(b, orgRSA(b, keys), len(raw), true, false), true, true)
}

// (c) a 5 MiB attachment, AES-256-CBC to RSA-2048, made by OpenSSL here.
func BenchmarkInspectEncryptedLarge(b *testing.B) {
	eng, keys := benchEngine(b)
	raw := largeEncrypted(b, 5<<20)
	base := newBareCrypto(b, orgRSA(b, keys), len(raw), true, false)
	benchProcess(b, eng, raw, base, base, true, false)
}

func largeEncrypted(b testing.TB, size int) []byte {
	b.Helper()
	dir := b.TempDir()
	payload := make([]byte, size)
	rand.Read(payload)
	var ent bytes.Buffer
	ent.WriteString("Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee attachment.\r\n--b1\r\n")
	ent.WriteString("Content-Type: application/octet-stream; name=data.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	writeBase64Lines(&ent, payload)
	ent.WriteString("--b1--\r\n")
	in := filepath.Join(dir, "in.eml")
	if err := os.WriteFile(in, ent.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "out.eml")
	testenv.OpenSSL(b, "", "cms", "-encrypt", "-aes256", "-binary", "-in", in, "-out", out,
		"-from", "alice@partner.example", "-to", "ceo@org.example", "-subject", "large",
		filepath.Join(testdataDir, "pki", "org-new.crt"))
	raw, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}
