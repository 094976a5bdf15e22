package harvest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// fixtureCertTimes are the moments around which a verdict on the fixtures
// changes: a second before, at and after every NotBefore and NotAfter of
// the fixture certificates, and the middle of each validity period.
func fixtureCertTimes(t *testing.T) []time.Time {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testdataDir, "pki", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil || b.Type != "CERTIFICATE" {
				continue
			}
			for _, at := range []time.Time{c.NotBefore, c.NotAfter} {
				out = append(out, at.Add(-time.Second), at, at.Add(time.Second))
			}
			out = append(out, c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore)/2))
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return slices.CompactFunc(out, time.Time.Equal)
}

// TestChainCacheKeepsVerdicts: one engine that reads every fixture message
// at every moment a verdict may change, in an order that jumps back and
// forth in time, gives the very report a new engine (nothing cached) gives
// for the same message and moment.
func TestChainCacheKeepsVerdicts(t *testing.T) {
	keys := keyList(orgKeys(t))
	roots := fixtureRoots(t)
	now := func() time.Time { return time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC) }
	opts := Options{Keys: keys, Roots: roots, Now: now}
	files, err := filepath.Glob(filepath.Join(testdataDir, "msg", "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("fixtures: %v", err)
	}
	times := fixtureCertTimes(t)
	// Middle out, alternating: every step crosses many boundaries.
	var order []time.Time
	for i, j := len(times)/2, len(times)/2+1; i >= 0 || j < len(times); i, j = i-1, j+1 {
		if i >= 0 {
			order = append(order, times[i])
		}
		if j < len(times) {
			order = append(order, times[j])
		}
	}
	long := New(opts)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, at := range order {
			got := reportOf(t, long, raw, at)
			want := reportOf(t, New(opts), raw, at)
			if got != want {
				t.Fatalf("%s at %s: the engine with its caches reports\n%s\nwant (a new engine)\n%s", filepath.Base(f), at, got, want)
			}
		}
	}
	if long.chains.lru.len() == 0 {
		t.Fatal("no chain was kept: the test does not test the cache")
	}
}

func reportOf(t *testing.T, eng *Engine, raw []byte, at time.Time) string {
	t.Helper()
	res, err := eng.Process(raw, at)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

// TestChainCacheNewAnchors: the chains an engine keeps go with its trust
// anchors. An engine built with other anchors (as on SIGHUP) judges anew.
func TestChainCacheNewAnchors(t *testing.T) {
	raw := testenv.Testdata(t, "msg", "signed-rsa-sha256.eml")
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	trusting := New(Options{Roots: fixtureRoots(t)})
	for i := 0; i < 2; i++ {
		if s := signatureStatus(t, trusting, raw, at); s != StatusValid {
			t.Fatalf("Process() #%d with the fixture roots = %s, want %s", i, s, StatusValid)
		}
	}
	if trusting.chains.lru.len() != 1 {
		t.Fatalf("%d chains kept, want 1", trusting.chains.lru.len())
	}
	if s := signatureStatus(t, New(Options{}), raw, at); s != StatusUntrusted {
		t.Fatalf("Process() without roots = %s, want %s", s, StatusUntrusted)
	}
}

// TestChainCacheAmbiguousRoot: when another root is named like the one a
// chain ends in, Verify may have looked at it too, and the chain is not
// kept (the verdict is the same).
func TestChainCacheAmbiguousRoot(t *testing.T) {
	raw := testenv.Testdata(t, "msg", "signed-rsa-sha256.eml")
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	roots := fixtureRoots(t)
	eng := New(Options{Roots: roots})
	if s := signatureStatus(t, eng, raw, at); s != StatusValid {
		t.Fatalf("Process() = %s, want %s", s, StatusValid)
	}
	if eng.chains.lru.len() != 1 {
		t.Fatalf("%d chains kept, want 1", eng.chains.lru.len())
	}
	// A root of its own named like every fixture root.
	var subjects [][]byte
	data, err := os.ReadFile(filepath.Join(testdataDir, "pki", "ca-bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		subjects = append(subjects, c.RawSubject)
	}
	for _, s := range subjects {
		roots.AddCert(selfSignedNamed(t, s))
	}
	eng = New(Options{Roots: roots})
	if s := signatureStatus(t, eng, raw, at); s != StatusValid {
		t.Fatalf("Process() with look-alike roots = %s, want %s", s, StatusValid)
	}
	if n := eng.chains.lru.len(); n != 0 {
		t.Fatalf("%d chains kept with look-alike roots, want 0", n)
	}
}

func selfSignedNamed(t *testing.T, rawSubject []byte) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), RawSubject: rawSubject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	return mustCertificate(t, tmpl, tmpl, &key.PublicKey, key)
}

func signatureStatus(t *testing.T, eng *Engine, raw []byte, at time.Time) string {
	t.Helper()
	res, err := eng.Process(raw, at)
	if err != nil || len(res.Report.Signatures) == 0 {
		t.Fatalf("Process() = %v, %+v", err, res.Report)
	}
	return res.Report.Signatures[0].Status
}

// TestCertCacheOwnCopy: a certificate from the cache refers to a copy of
// its DER, not to the message it came from, and is parsed once.
func TestCertCacheOwnCopy(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testdataDir, "pki", "alice.crt"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	msg := bytes.Clone(b.Bytes)
	cc := newCertCache()
	c, err := cc.parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	clear(msg)
	if !bytes.Equal(c.Raw, b.Bytes) || !strings.Contains(c.Subject.String(), "alice") {
		t.Fatalf("the cached certificate changed with the message: %s", c.Subject)
	}
	again, err := cc.parse(b.Bytes)
	if err != nil || again != c {
		t.Fatalf("parse() again = %p, %v; want the cached %p", again, err, c)
	}
	if _, err := cc.parse([]byte{0x30, 0x00}); err == nil {
		t.Fatal("parse(garbage) succeeded")
	}
}

// TestLRUBounds: the least recently used entries go first, by number and
// by weight; an entry heavier than the whole bound is not kept.
func TestLRUBounds(t *testing.T) {
	c := newLRU[int, string](3, 100)
	for i := 0; i < 3; i++ {
		c.add(i, "v", 10)
	}
	c.get(0) // 1 is now the least recently used
	c.add(3, "v", 10)
	if _, ok := c.get(1); ok || c.len() != 3 {
		t.Fatalf("after a fourth entry: 1 kept = %v, %d entries; want dropped, 3", ok, c.len())
	}
	c.add(4, "v", 85) // 0, 2, 3 and 4 weigh 115: the oldest two go
	for k, want := range map[int]bool{0: false, 2: false, 3: true, 4: true} {
		if _, ok := c.get(k); ok != want {
			t.Errorf("entry %d kept = %v, want %v", k, ok, want)
		}
	}
	c.add(5, "v", 101)
	if _, ok := c.get(5); ok {
		t.Error("an entry over the weight bound was kept")
	}
	c.add(3, "w", 20) // 3 now weighs 20 (not 30): with 4, 105; 4 goes
	if v, _ := c.get(3); v != "w" || c.weight != 20 || c.len() != 1 {
		t.Errorf("after replacing: %q, weight %d, %d entries; want \"w\", 20, 1", v, c.weight, c.len())
	}
}
