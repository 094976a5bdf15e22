package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/state"
)

// certsTestCert is a self-signed certificate made by openssl, with what
// openssl reports about it.
type certsTestCert struct {
	path                string
	cert                *x509.Certificate
	fp                  string // lower-case hex, from openssl -fingerprint -sha256
	notBefore, notAfter string // RFC 3339, from openssl -startdate/-enddate
}

func certsTestGen(t *testing.T, dir, name, email string, days int, newKey []string) certsTestCert {
	t.Helper()
	cnf := filepath.Join(dir, name+".cnf")
	ext := "[req]\ndistinguished_name=dn\n[dn]\n[ext]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment,keyAgreement\nextendedKeyUsage=emailProtection\nsubjectAltName=email:" + email + "\n"
	if err := os.WriteFile(cnf, []byte(ext), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".pem")
	args := append([]string{"req", "-x509", "-newkey"}, newKey...)
	args = append(args, "-nodes", "-keyout", filepath.Join(dir, name+".key"), "-subj", "/O=Test/CN="+name,
		"-days", fmt.Sprint(days), "-config", cnf, "-extensions", "ext", "-out", path)
	testenv.OpenSSL(t, dir, args...)

	c := certsTestCert{path: path, fp: testenv.OpenSSLFingerprint(t, path)}
	c.notBefore = testenv.OpenSSLDate(t, path, "startdate").Format(time.RFC3339)
	c.notAfter = testenv.OpenSSLDate(t, path, "enddate").Format(time.RFC3339)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if c.cert, err = x509.ParseCertificate(block.Bytes); err != nil {
		t.Fatal(err)
	}
	return c
}

func certsRun(storePath string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = certsMain(storePath, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCertsCommands(t *testing.T) {
	dir := t.TempDir()
	rsa := []string{"rsa:2048"}
	alice1 := certsTestGen(t, dir, "alice1", "alice@example.org", 100, rsa)
	alice2 := certsTestGen(t, dir, "alice2", "alice@example.org", 400, []string{"ec", "-pkeyopt", "ec_paramgen_curve:P-256"})
	bob := certsTestGen(t, dir, "bob", "bob@example.org", 200, rsa)

	storePath := filepath.Join(dir, "state", "smimed.db")
	st, err := harvest.OpenStore(storePath, false)
	if err != nil {
		t.Fatal(err)
	}
	seen := time.Date(2025, 2, 3, 4, 5, 6, 0, time.UTC)
	caps := []string{"aes256-CBC", "aes128-CBC"}
	// Only alice2 was chosen to encrypt to by a signature (alice1 is
	// usable, but no signature chose it).
	for i, c := range []certsTestCert{alice1, alice2} {
		var chosen *x509.Certificate
		if i == 1 {
			chosen = c.cert
		}
		if err := st.Harvest("alice@example.org", c.cert, nil, chosen, caps, harvest.Sighting{MessageID: "<a@x>", Seen: seen}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Quarantine("bob@example.org", bob.cert, nil, "unknown authority", harvest.Sighting{MessageID: "<b@x>", Seen: seen}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	t.Run("list --json", func(t *testing.T) {
		code, out, errs := certsRun(storePath, "list", "--json")
		if code != 0 {
			t.Fatalf("list --json = %d, %s", code, errs)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 {
			t.Fatalf("list --json printed %d lines, want 3:\n%s", len(lines), out)
		}
		want := []struct {
			email      string
			c          certsTestCert
			quarantine bool
			pref       bool
			msgID      string
		}{
			{"alice@example.org", alice2, false, true, "<a@x>"},
			{"alice@example.org", alice1, false, false, "<a@x>"},
			{"bob@example.org", bob, true, false, "<b@x>"},
		}
		for i, line := range lines {
			var got map[string]any
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("line %d: %v: %s", i, err, line)
			}
			w := want[i]
			for k, v := range map[string]any{
				"email": w.email, "fingerprint": w.c.fp, "not_before": w.c.notBefore, "not_after": w.c.notAfter,
				"quarantined": w.quarantine, "encryption_preferred": w.pref, "message_id": w.msgID,
				"first_seen": "2025-02-03T04:05:06Z", "last_seen": "2025-02-03T04:05:06Z",
			} {
				if got[k] != v {
					t.Errorf("line %d: %s = %v, want %v", i, k, got[k], v)
				}
			}
			for _, k := range []string{"subject", "issuer"} {
				if s, _ := got[k].(string); !strings.Contains(s, "O=Test") {
					t.Errorf("line %d: %s = %v", i, k, got[k])
				}
			}
		}
	})

	t.Run("list", func(t *testing.T) {
		code, out, _ := certsRun(storePath, "list")
		if code != 0 {
			t.Fatalf("list = %d", code)
		}
		for _, want := range []string{"EMAIL", alice2.fp[:16] + "  " + alice2.notAfter[:10] + "  usable+pref", bob.fp[:16] + "  " + bob.notAfter[:10] + "  quarantined"} {
			if !strings.Contains(out, want) {
				t.Errorf("list output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("show", func(t *testing.T) {
		code, out, errs := certsRun(storePath, "show", strings.ToUpper(alice1.fp[:16]))
		if code != 0 {
			t.Fatalf("show = %d, %s", code, errs)
		}
		for _, want := range []string{alice1.fp, "alice@example.org", "RSA 2048", "keyEncipherment", "emailProtection", "aes256-CBC, aes128-CBC", alice1.notAfter} {
			if !strings.Contains(out, want) {
				t.Errorf("show output lacks %q:\n%s", want, out)
			}
		}
		code, out, _ = certsRun(storePath, "show", "Alice@example.org")
		if code != 0 || strings.Count(out, "fingerprint:") != 2 || !strings.Contains(out, "ECDSA P-256") {
			t.Errorf("show EMAIL = %d:\n%s", code, out)
		}
		if code, _, errs := certsRun(storePath, "show", strings.Repeat("0", 64)); code != 1 || errs == "" {
			t.Errorf("show absent = %d, %q, want 1", code, errs)
		}
	})

	t.Run("export and trust", func(t *testing.T) {
		code, out, errs := certsRun(storePath, "export", "alice@example.org")
		if code != 0 {
			t.Fatalf("export = %d, %s", code, errs)
		}
		exported := filepath.Join(dir, "alice-export.pem")
		if err := os.WriteFile(exported, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		// openssl reads the first certificate of the file: the preferred one.
		if fp := testenv.OpenSSLFingerprint(t, exported); fp != alice2.fp {
			t.Errorf("first exported certificate = %s, want preferred %s", fp, alice2.fp)
		}
		if n := strings.Count(out, "-----BEGIN CERTIFICATE-----"); n != 2 {
			t.Errorf("export printed %d certificates, want 2", n)
		}

		code, out, errs = certsRun(storePath, "export", "bob@example.org")
		if code != 1 || out != "" || !strings.Contains(errs, "no usable certificate for bob@example.org") {
			t.Errorf("export quarantined = %d, %q, %q; want 1 and a message", code, out, errs)
		}

		code, out, errs = certsRun(storePath, "trust", bob.fp)
		if code != 0 || !strings.Contains(out, bob.fp) || !strings.Contains(out, "bob@example.org") {
			t.Fatalf("trust = %d, %q, %q", code, out, errs)
		}
		code, out, _ = certsRun(storePath, "export", "bob@example.org")
		if code != 0 || strings.Count(out, "-----BEGIN CERTIFICATE-----") != 1 {
			t.Errorf("export after trust = %d:\n%s", code, out)
		}
		if code, out, _ := certsRun(storePath, "trust", bob.fp); code != 0 || !strings.Contains(out, "already trusted") {
			t.Errorf("trust again = %d, %q", code, out)
		}
		today := time.Now().UTC().Format(time.DateOnly)
		if code, out, _ := certsRun(storePath, "show", bob.fp); code != 0 || !strings.Contains(out, "trusted by ") || !strings.Contains(out, " on "+today+" (pinned") {
			t.Errorf("show after trust = %d:\n%s", code, out)
		}
		if code, out, errs := certsRun(storePath, "untrust", bob.fp[:16]); code != 0 || !strings.Contains(out, "untrusted "+bob.fp) || !strings.Contains(out, "bob@example.org") {
			t.Errorf("untrust = %d, %q, %q", code, out, errs)
		}
		if code, out, _ := certsRun(storePath, "export", "bob@example.org"); code != 1 || out != "" {
			t.Errorf("export after untrust = %d, %q; want 1, nothing (quarantined again)", code, out)
		}
		if code, _, errs := certsRun(storePath, "untrust", bob.fp); code != 1 || !strings.Contains(errs, "not trusted") {
			t.Errorf("untrust again = %d, %q; want 1, not trusted", code, errs)
		}
		if code, _, errs := certsRun(storePath, "trust", strings.Repeat("0", 64)); code != 1 || errs == "" {
			t.Errorf("trust absent = %d, %q, want 1", code, errs)
		}
	})

	t.Run("locked", func(t *testing.T) {
		old := state.LockTimeout
		state.LockTimeout = 100 * time.Millisecond
		defer func() { state.LockTimeout = old }()
		st, err := harvest.OpenStore(storePath, false)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		code, _, errs := certsRun(storePath, "trust", bob.fp)
		if code != 1 || !strings.Contains(errs, "is locked by a running smimed") {
			t.Errorf("trust while locked = %d, %q", code, errs)
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{}, {"frobnicate"}, {"list", "--bogus"}, {"list", "extra"}, {"show"}, {"show", "a", "b"},
			{"export"}, {"trust"}, {"trust", "xyz"}, {"export", "not-an-address"},
		} {
			code, out, errs := certsRun(storePath, args...)
			if code != 2 || out != "" || strings.Count(errs, "\n") != 1 {
				t.Errorf("certs %q = %d, stdout %q, stderr %q; want 2 and one line on stderr", args, code, out, errs)
			}
		}
		if code, out, _ := certsRun(storePath, "list", "-h"); code != 0 || !strings.Contains(out, "Usage") {
			t.Errorf("list -h = %d, %q", code, out)
		}
		if code, _, errs := certsRun(filepath.Join(dir, "missing.db"), "list"); code != 1 || !strings.Contains(errs, "no state file at") {
			t.Errorf("list on a missing store = %d, %q", code, errs)
		}
	})
}
