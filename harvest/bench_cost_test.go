package harvest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// The worst CPU cost per message that could be built under the limits of
// budget.go, against an ordinary signed message measured in the same run
// (x-ordinary) and against the verify budget (x-budget). See docs/security.md,
// "Limits".

// bigKey is an RSA key of the largest size accepted (8,192 bits) with the
// largest exponent Go accepts (2^31-1), which makes every check of its
// signatures as slow as a legal key can. It is the product of sixteen
// 512-bit primes, so that it is made in milliseconds; a verifier cannot
// tell. It signs with the Chinese remainder theorem.
type bigKey struct {
	pub    rsa.PublicKey
	primes []*big.Int
	exps   []*big.Int // e^-1 mod p-1
}

func newBigKey(tb testing.TB) *bigKey {
	tb.Helper()
	e := big.NewInt(1<<31 - 1)
	k := &bigKey{pub: rsa.PublicKey{N: big.NewInt(1), E: 1<<31 - 1}}
	for len(k.primes) < 16 {
		p, err := rand.Prime(rand.Reader, 512)
		if err != nil {
			tb.Fatal(err)
		}
		d := new(big.Int).ModInverse(e, new(big.Int).Sub(p, big.NewInt(1)))
		if d == nil {
			continue
		}
		k.primes = append(k.primes, p)
		k.exps = append(k.exps, d)
		k.pub.N.Mul(k.pub.N, p)
	}
	return k
}

func (k *bigKey) Public() crypto.PublicKey { return &k.pub }

// Sign makes a PKCS #1 v1.5 signature of a SHA-256 digest (RFC 8017
// section 9.2).
func (k *bigKey) Sign(_ io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	prefix := []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}
	size := k.pub.Size()
	em := make([]byte, size)
	em[1] = 1
	t := append(prefix, digest...)
	for i := 2; i < size-len(t)-1; i++ {
		em[i] = 0xff
	}
	copy(em[size-len(t):], t)
	m := new(big.Int).SetBytes(em)
	x, mod := new(big.Int), big.NewInt(1)
	for i, p := range k.primes {
		s := new(big.Int).Exp(new(big.Int).Mod(m, p), k.exps[i], p)
		// x += mod * ((s - x) * mod^-1 mod p)
		d := new(big.Int).Sub(s, x)
		d.Mul(d, new(big.Int).ModInverse(mod, p)).Mod(d, p)
		x.Add(x, d.Mul(d, mod))
		mod.Mul(mod, p)
	}
	return x.FillBytes(make([]byte, size)), nil
}

// worstCostMessage: every signer's signature and its certificate are made
// with bigKey, and so is a chain of maxChainCAs CA certificates with names
// of their own (one per name is what chain building is offered), each
// correctly signed by the next, ending nowhere: each chain verification
// checks maxChainCAs signatures of the slowest legal kind. Layers of 16
// signers each are nested until more signers than the budget allows.
func worstCostMessage(tb testing.TB) []byte {
	k := newBigKey(tb)
	name := func(i int) pkix.Name {
		return pkix.Name{Organization: []string{"Mallory"}, CommonName: fmt.Sprintf("Mallory CA %d", i)}
	}
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var certs [][]byte
	for i := 1; i <= maxChainCAs; i++ {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i)), Subject: name(i), NotBefore: day, NotAfter: day.AddDate(30, 0, 0),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		parent := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: name(i + 1), PublicKey: k.Public()}
		certs = append(certs, mustCertificate(tb, tmpl, parent, k.Public(), k).Raw)
	}
	leaf := mustCertificate(tb, &x509.Certificate{SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "alice"},
		EmailAddresses: []string{"alice@partner.example"}, NotBefore: day, NotAfter: day.AddDate(30, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}},
		&x509.Certificate{SerialNumber: big.NewInt(1), Subject: name(1), PublicKey: k.Public()}, k.Public(), k)
	certs = append(certs, leaf.Raw)
	sign := func(digest []byte) []byte {
		sig, _ := k.Sign(nil, digest, crypto.SHA256)
		return sig
	}
	entity := []byte("Content-Type: text/plain\r\n\r\nhi\r\n")
	for n := 0; n <= maxJudgedSigners; n += maxSigners {
		entity = signedDataEntity(entity, certs, leaf, sign, maxSigners)
	}
	return append([]byte("From: alice@partner.example\r\n"), entity...)
}

// benchCost times Process on raw and reports the ratios against the
// ordinary signed fixture (timed here, in the same run) and the budget.
func benchCost(b *testing.B, raw []byte) {
	benchCostWith(b, New(Options{Roots: fixtureRoots(b)}), raw)
}

func benchCostWith(b *testing.B, eng *Engine, raw []byte) {
	ordinary := testenv.Testdata(b, "msg", "signed-rsa-sha256.eml")
	now := time.Now()
	start := time.Now()
	n := 0
	for ; time.Since(start) < 300*time.Millisecond; n++ {
		eng.Process(ordinary, now)
	}
	ordinaryNs := float64(time.Since(start).Nanoseconds()) / float64(n)
	res, err := eng.Process(raw, now)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d bytes, %d signatures, error %q", len(raw), len(res.Report.Signatures), res.Report.Error)
	b.ResetTimer()
	start = time.Now()
	for i := 0; i < b.N; i++ {
		eng.Process(raw, now)
	}
	perOp := float64(time.Since(start).Nanoseconds()) / float64(b.N)
	b.ReportMetric(perOp/1e6, "ms/msg")
	b.ReportMetric(perOp/ordinaryNs, "x-ordinary")
	b.ReportMetric(perOp/float64(DefaultVerifyBudget.Nanoseconds()), "x-budget")
}

// BenchmarkCostWorst is the worst case built so far (see worstCostMessage).
func BenchmarkCostWorst(b *testing.B) { benchCost(b, worstCostMessage(b)) }

// BenchmarkCostIssue is issue 9's message (refused for its certificate
// size) and BenchmarkCostHugeKeys the most of its fakes that fit.
func BenchmarkCostIssue(b *testing.B) {
	benchCost(b, buildCostAttack(b, costAttack{fakes: 100, bits: 65536, exponent: 1<<31 - 1, signers: 16}))
}

func BenchmarkCostHugeKeys(b *testing.B) {
	benchCost(b, buildCostAttack(b, costAttack{fakes: 24, bits: 65536, exponent: 1<<31 - 1, signers: 16}))
}

// BenchmarkCostSameName: 100 fakes of the largest legal size, one name.
func BenchmarkCostSameName(b *testing.B) {
	benchCost(b, buildCostAttack(b, costAttack{fakes: 100, bits: 8192, exponent: 1<<31 - 1, signers: 16}))
}

// BenchmarkCostStoreIntermediates: the fakes in the certificate store
// instead of the message (see TestCostStoreIntermediates).
func BenchmarkCostStoreIntermediates(b *testing.B) {
	raw, st := storeCostAttack(b)
	defer st.Close()
	benchCostWith(b, New(Options{Roots: fixtureRoots(b), Store: st}), raw)
}
