package testenv

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TSA is an RFC 3161 time-stamping authority for the tests: a CA of its
// own (CAFile, the trust anchor), a TSA certificate with the critical
// extended key usage timeStamping, and an HTTP handler on loopback that
// answers every POSTed TimeStampReq with `openssl ts -reply`.
type TSA struct {
	URL    string
	CA     *CA
	CAFile string // the CA certificate (PEM): the TSA's trust anchor
	Cert   string // the TSA certificate (PEM)
	Key    string
	Dir    string
	// Nice runs openssl ts -reply at the lowest CPU priority, for
	// benchmarks where the TSA (a remote party in production) must not
	// take the CPU from the code measured.
	Nice bool

	down     atomic.Bool
	answered atomic.Int32
	mu       sync.Mutex // openssl ts -reply keeps a serial file
	srv      *httptest.Server
}

// NewTSA starts a TSA whose certificate is valid from notBefore to
// notAfter (zero: an hour ago for two years), issued by ca (nil: a new
// CA). It stops at the end of the test.
func NewTSA(tb testing.TB, ca *CA, name string, notBefore, notAfter time.Time) *TSA {
	tb.Helper()
	NeedOpenSSL(tb)
	if ca == nil {
		ca = NewCA(tb, name+" CA", "")
	}
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Hour)
	}
	if notAfter.IsZero() {
		notAfter = notBefore.AddDate(2, 0, 0)
	}
	t := &TSA{CA: ca, CAFile: ca.Cert, Dir: tb.TempDir()}
	ext := filepath.Join(ca.Dir, name+".tsaext")
	if err := os.WriteFile(ext, []byte("[ tsa_ext ]\nbasicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n"+
		"extendedKeyUsage = critical, timeStamping\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	csr := filepath.Join(t.Dir, "tsa.csr")
	t.Key, t.Cert = filepath.Join(t.Dir, "tsa.key"), filepath.Join(t.Dir, "tsa.crt")
	OpenSSL(tb, t.Dir, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", t.Key, "-out", csr, "-subj", "/O=Smimed Test/CN="+name)
	OpenSSL(tb, ca.Dir, "ca", "-batch", "-config", "ca.cnf", "-in", csr, "-out", t.Cert, "-extfile", ext, "-extensions", "tsa_ext",
		"-startdate", OpenSSLTime(notBefore), "-enddate", OpenSSLTime(notAfter), "-notext")
	conf := fmt.Sprintf(`[ tsa ]
default_tsa = tsa1

[ tsa1 ]
serial = %s
crypto_device = builtin
signer_cert = %s
signer_key = %s
signer_digest = sha256
default_policy = 1.3.6.1.4.1.55555.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
`, filepath.Join(t.Dir, "serial"), t.Cert, t.Key)
	if err := os.WriteFile(filepath.Join(t.Dir, "serial"), []byte("01\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t.Dir, "ts.cnf"), []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	t.srv = httptest.NewServer(http.HandlerFunc(t.serve))
	tb.Cleanup(t.srv.Close)
	t.URL = t.srv.URL + "/tsr"
	return t
}

// SetDown makes the TSA answer 503 (down) or answer again.
func (t *TSA) SetDown(down bool) { t.down.Store(down) }

// Answered counts the tokens the TSA issued.
func (t *TSA) Answered() int { return int(t.answered.Load()) }

func (t *TSA) serve(w http.ResponseWriter, r *http.Request) {
	if t.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/timestamp-query" {
		http.Error(w, "not a timestamp query", http.StatusBadRequest)
		return
	}
	req, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	q, err := os.CreateTemp(t.Dir, "req-*.tsq")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer os.Remove(q.Name())
	q.Write(req)
	q.Close()
	args := []string{"openssl", "ts", "-reply", "-queryfile", q.Name(), "-config", filepath.Join(t.Dir, "ts.cnf")}
	if t.Nice {
		args = append([]string{"nice", "-n", "19"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = t.Dir
	out, err := cmd.Output()
	if err != nil {
		http.Error(w, "openssl ts -reply: "+err.Error(), http.StatusInternalServerError)
		return
	}
	t.answered.Add(1)
	w.Header().Set("Content-Type", "application/timestamp-reply")
	w.Write(out)
}
