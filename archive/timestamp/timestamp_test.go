package timestamp_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive/timestamp"
	"github.com/smimed/smimed/daemon/testenv"
)

func pool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatalf("%s: no certificate", file)
	}
	return p
}

// stamp asks tsa for a token over data and returns the response file.
func stamp(t *testing.T, tsa *testenv.TSA, data []byte) ([]byte, *timestamp.Response, [32]byte) {
	t.Helper()
	sum := sha256.Sum256(data)
	req, err := timestamp.NewRequest(sum)
	if err != nil {
		t.Fatal(err)
	}
	der, resp, err := (&timestamp.Client{URL: tsa.URL}).Stamp(context.Background(), req)
	if err != nil {
		t.Fatalf("Stamp() = %v", err)
	}
	return der, resp, sum
}

// opensslVerify is openssl's verdict on the response for data, judged at
// at (zero: now).
func opensslVerify(t *testing.T, tsa *testenv.TSA, tsr, data []byte, at time.Time) bool {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "r.tsr"), tsr, 0o600)
	os.WriteFile(filepath.Join(dir, "d"), data, 0o600)
	args := []string{"ts", "-verify", "-data", "d", "-in", "r.tsr", "-CAfile", tsa.CAFile, "-untrusted", tsa.Cert}
	if !at.IsZero() {
		args = append(args, "-attime", strconv.FormatInt(at.Unix(), 10))
	}
	out, err := testenv.OpenSSLTry(t, dir, nil, args...)
	ok := err == nil && strings.Contains(string(out), "Verification: OK")
	return ok
}

func TestStampAndVerify(t *testing.T) {
	tsa := testenv.NewTSA(t, nil, "Test TSA", time.Time{}, time.Time{})
	data := []byte("smimed seal v1\nseal 7\n")
	der, resp, sum := stamp(t, tsa, data)
	if !opensslVerify(t, tsa, der, data, time.Time{}) {
		t.Fatal("openssl ts -verify refuses the token the test TSA issued")
	}
	v, err := resp.Verify(sum[:], pool(t, tsa.CAFile), nil)
	if err != nil {
		t.Fatalf("Verify() = %v, want nil (openssl: OK)", err)
	}
	// The genTime openssl prints.
	out := string(testenv.OpenSSL(t, "", "ts", "-reply", "-in", writeTemp(t, der), "-text"))
	i := strings.Index(out, "Time stamp: ")
	if i < 0 {
		t.Fatalf("no time stamp in %s", out)
	}
	line := strings.TrimSpace(strings.SplitN(out[i+len("Time stamp: "):], "\n", 2)[0])
	want, err := time.Parse("Jan _2 15:04:05 2006 MST", line)
	if err != nil {
		t.Fatal(err)
	}
	if !v.GenTime.Equal(want) {
		t.Errorf("GenTime = %v, openssl says %v", v.GenTime, want)
	}
	// Other data: both refuse.
	other := sha256.Sum256([]byte("other"))
	if _, err := resp.Verify(other[:], pool(t, tsa.CAFile), nil); !errors.Is(err, timestamp.ErrInvalid) {
		t.Errorf("Verify(other data) = %v, want ErrInvalid", err)
	}
	if opensslVerify(t, tsa, der, []byte("other"), time.Time{}) {
		t.Error("openssl accepts the token for other data")
	}
	// Another trust anchor: both refuse.
	stranger := testenv.NewTSA(t, nil, "Stranger TSA", time.Time{}, time.Time{})
	if _, err := resp.Verify(sum[:], pool(t, stranger.CAFile), nil); !errors.Is(err, timestamp.ErrInvalid) {
		t.Errorf("Verify(other CA) = %v, want ErrInvalid", err)
	}
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExpiredTSACertificate: a token issued while the TSA certificate
// was valid still verifies after it expired, judged at its genTime; and
// OpenSSL, asked at the token's time, agrees, while at the current time
// it refuses.
func TestExpiredTSACertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a certificate to expire")
	}
	notAfter := time.Now().Add(3 * time.Second).Truncate(time.Second)
	tsa := testenv.NewTSA(t, nil, "Short TSA", time.Now().Add(-time.Hour), notAfter)
	data := []byte("sealed before expiry")
	der, _, sum := stamp(t, tsa, data)
	time.Sleep(time.Until(notAfter) + 1500*time.Millisecond)
	resp, err := timestamp.ParseResponse(der)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resp.Verify(sum[:], pool(t, tsa.CAFile), nil); err != nil {
		t.Errorf("Verify() after the TSA certificate expired = %v, want nil (judged at genTime)", err)
	}
	if opensslVerify(t, tsa, der, data, time.Time{}) {
		t.Log("openssl ts -verify accepts the token at the current time, too")
	} else {
		t.Log("openssl ts -verify refuses the token at the current time (certificate expired)")
	}
	if !opensslVerify(t, tsa, der, data, resp.Info.GenTime) {
		t.Error("openssl ts -verify -attime GENTIME refuses the token")
	}
	// The token's time after the certificate's end: refused by both.
	late := testenv.NewTSA(t, tsa.CA, "Expired TSA", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	der2, resp2, sum2 := stamp(t, late, data)
	if _, err := resp2.Verify(sum2[:], pool(t, late.CAFile), nil); !errors.Is(err, timestamp.ErrInvalid) {
		t.Errorf("Verify(token issued by an expired certificate) = %v, want ErrInvalid", err)
	}
	if opensslVerify(t, late, der2, data, resp2.Info.GenTime) {
		t.Error("openssl accepts a token issued after its certificate expired")
	}
}

func TestRefusedAndDown(t *testing.T) {
	tsa := testenv.NewTSA(t, nil, "Test TSA", time.Time{}, time.Time{})
	tsa.SetDown(true)
	sum := sha256.Sum256([]byte("x"))
	req, _ := timestamp.NewRequest(sum)
	if _, _, err := (&timestamp.Client{URL: tsa.URL}).Stamp(context.Background(), req); err == nil {
		t.Error("Stamp(down TSA) = nil error")
	}
	if _, _, err := (&timestamp.Client{URL: "http://" + testenv.FreeAddr(t) + "/"}).Stamp(context.Background(), req); err == nil {
		t.Error("Stamp(nobody listening) = nil error")
	}
}

func TestESSBinding(t *testing.T) {
	tsa := testenv.NewTSA(t, nil, "Test TSA", time.Time{}, time.Time{})
	_, resp, sum := stamp(t, tsa, []byte("y"))
	// A look-alike certificate (same name, other key, same CA) handed in
	// as the only candidate: the token names its own by hash.
	other := testenv.NewTSA(t, tsa.CA, "Test TSA", time.Time{}, time.Time{})
	b, _ := os.ReadFile(other.Cert)
	blk, _ := pem.Decode(b)
	oc, _ := x509.ParseCertificate(blk.Bytes)
	resp.Signed.Certificates = nil
	if _, err := resp.Verify(sum[:], pool(t, tsa.CAFile), []*x509.Certificate{oc}); err == nil {
		t.Error("Verify() with another certificate of the same name = nil error")
	}
}
