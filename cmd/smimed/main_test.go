package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
)

// These tests run the command as a user would, with the OpenSSL-made
// fixtures under ../../testdata, and compare with OpenSSL's own answers.

var fixtures = func() string {
	d, err := filepath.Abs(filepath.Join("..", "..", "testdata"))
	if err != nil {
		panic(err)
	}
	return d
}()

func runCmd(stdin []byte, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, bytes.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// writeConfig makes a config in a temp dir holding copies of the fixture
// keys with mode 0600, and returns its path.
func writeConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	testenv.CopyPKI(t, dir, "org-new.crt", "org-new.key", "org-ec256.crt", "org-ec256.key", "org-old-legacy.p12", "org-old-legacy.pass", "ca-bundle.pem")
	cfg := fmt.Sprintf(`state_dir = "state"
%s
[trust]
system_roots = false
ca_files = ["ca-bundle.pem"]

[[keys]]
cert_file = "org-new.crt"
key_file = "org-new.key"
[[keys]]
cert_file = "org-ec256.crt"
key_file = "org-ec256.key"
[[keys]]
pkcs12_file = "org-old-legacy.p12"
password_file = "org-old-legacy.pass"
`, extra)
	p := filepath.Join(dir, "smimed.toml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func msg(name string) string { return filepath.Join(fixtures, "msg", name) }

func TestInspectJSON(t *testing.T) {
	cfg := writeConfig(t, "")
	code, out, errOut := runCmd(nil, "inspect", "--config", cfg, "--json", msg("sign-then-encrypt.eml"), msg("enc-nokey.eml"))
	if code != exitOK {
		t.Fatalf("inspect exit %d, stderr %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("inspect --json printed %d lines, want 2:\n%s", len(lines), out)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"file", "message_id", "from", "subject", "layers", "decryption", "signatures", "harvested", "error"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, lines[0])
		}
	}
	dec := got["decryption"].(map[string]any)
	if dec["status"] != "ok" || dec["cipher"] == "" || dec["key_transport"] != "rsa-pkcs1v15" {
		t.Errorf("decryption = %v", dec)
	}
	if want := testenv.OpenSSLFingerprint(t, filepath.Join(fixtures, "pki", "org-new.crt")); dec["key"] != want {
		t.Errorf("decryption.key = %v, want %s (openssl)", dec["key"], want)
	}
	sigs := got["signatures"].([]any)
	if len(sigs) != 1 {
		t.Fatalf("signatures = %v", sigs)
	}
	s := sigs[0].(map[string]any)
	alice := testenv.OpenSSLFingerprint(t, filepath.Join(fixtures, "pki", "alice.crt"))
	if s["status"] != "valid" || s["fingerprint"] != alice || s["signer"] != "alice@partner.example" || s["digest"] == "" || s["algorithm"] != "rsa-pkcs1v15" {
		t.Errorf("signature = %v, want valid by alice (%s)", s, alice)
	}
	if got["message_id"] != "<sign-then-encrypt@test.smimed.example>" || got["from"] != "alice@partner.example" {
		t.Errorf("message_id/from = %v/%v", got["message_id"], got["from"])
	}
	var nokey map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &nokey); err != nil {
		t.Fatal(err)
	}
	if d := nokey["decryption"].(map[string]any); d["status"] != "failed" || !strings.Contains(d["error"].(string), "serial=") {
		t.Errorf("enc-nokey decryption = %v, want failed naming the recipient", d)
	}
	// Nothing is written without --harvest.
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), "state", "smimed.db")); err == nil {
		t.Errorf("inspect without --harvest created the store")
	}
}

func TestInspectHarvestThenCerts(t *testing.T) {
	cfg := writeConfig(t, "")
	if code, _, errOut := runCmd(nil, "inspect", "--config", cfg, "--harvest", msg("signed-rsa-sha256.eml"), msg("signed-selfsigned.eml")); code != exitOK {
		t.Fatalf("inspect --harvest exit %d: %s", code, errOut)
	}
	code, out, errOut := runCmd(nil, "certs", "list", "--json", "--config", cfg)
	if code != exitOK {
		t.Fatalf("certs list exit %d: %s", code, errOut)
	}
	alice := testenv.OpenSSLFingerprint(t, filepath.Join(fixtures, "pki", "alice.crt"))
	self := testenv.OpenSSLFingerprint(t, filepath.Join(fixtures, "pki", "selfsigned.crt"))
	found := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		found[fmt.Sprintf("%v %v", e["fingerprint"], e["quarantined"])] = true
	}
	if !found[alice+" false"] || !found[self+" true"] {
		t.Errorf("certs list = %s; want alice usable and selfsigned quarantined", out)
	}
	// The harvested certificate can be used without the message's copy.
	code, out, _ = runCmd(nil, "inspect", "--config", cfg, "--json", msg("signed-nocerts.eml"))
	if code != exitOK || !strings.Contains(out, `"status":"valid"`) {
		t.Errorf("signed-nocerts after harvest: exit %d, %s", code, out)
	}
}

func TestDecrypt(t *testing.T) {
	cfg := writeConfig(t, "")
	plain, err := os.ReadFile(msg("plain.eml"))
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd(nil, "decrypt", "--config", cfg, msg("plain.eml"))
	if code != exitOK || out != string(plain) {
		t.Errorf("decrypt plain.eml: exit %d, changed=%v", code, out != string(plain))
	}
	// stdin, and a message only the rotated-away key opens.
	raw, err := os.ReadFile(msg("enc-old-key.eml"))
	if err != nil {
		t.Fatal(err)
	}
	keyDir := t.TempDir()
	key := filepath.Join(keyDir, "k.pem")
	data, _ := os.ReadFile(filepath.Join(fixtures, "pki", "org-old.key"))
	os.WriteFile(key, data, 0o600)
	want := testenv.OpenSSLInput(t, "", raw, "cms", "-decrypt", "-recip", filepath.Join(fixtures, "pki", "org-old.crt"), "-inkey", key)
	_, body, _ := bytes.Cut(want, []byte("\r\n\r\n"))
	code, out, errOut := runCmd(raw, "decrypt", "--config", cfg, "-")
	if code != exitOK || !strings.HasSuffix(out, string(body)) || !strings.Contains(out, "Subject: smimed test: enc-old-key") {
		t.Errorf("decrypt - (enc-old-key): exit %d, stderr %s, output:\n%s", code, errOut, out)
	}
	code, out, errOut = runCmd(nil, "decrypt", "--config", cfg, msg("enc-nokey.eml"))
	if code != exitFailed || out != "" || !strings.Contains(errOut, "no recipient matches") {
		t.Errorf("decrypt enc-nokey: exit %d, stdout %q, stderr %q; want 1, nothing, the reason", code, out, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"inspect", "--bogus", "x"},
		{"inspect"},
		{"decrypt", "a", "b"},
		{"frobnicate"},
		{},
		{"check-config", "extra"},
	} {
		code, _, errOut := runCmd(nil, args...)
		if code != exitUsage {
			t.Errorf("smimed %v: exit %d, want 2", args, code)
		}
		if args != nil && len(args) > 0 && strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("smimed %v: stderr is not one line: %q", args, errOut)
		}
	}
	if code, _, _ := runCmd(nil, "inspect", "--config", filepath.Join(t.TempDir(), "nope.toml"), msg("plain.eml")); code != exitUsage {
		t.Errorf("missing config: exit %d, want 2", code)
	}
	if code, _, _ := runCmd(nil, "inspect", filepath.Join(t.TempDir(), "missing.eml")); code != exitFailed {
		t.Errorf("missing message file: exit %d, want 1", code)
	}
	if code, out, _ := runCmd(nil, "help"); code != exitOK || !strings.Contains(out, "smimed inspect") {
		t.Errorf("help: exit %d", code)
	}
}

func TestCheckConfig(t *testing.T) {
	cfg := writeConfig(t, "")
	if code, out, errOut := runCmd(nil, "check-config", "--config", cfg); code != exitOK || !strings.Contains(out, "ok (3 decryption key(s), 0 mailbox(es)") {
		t.Errorf("check-config good: exit %d, %s %s", code, out, errOut)
	}
	bad := writeConfig(t, `max_message_size = "lots"
colour = "blue"`)
	dir := filepath.Dir(bad)
	os.Chmod(filepath.Join(dir, "org-new.key"), 0o644)
	os.Remove(filepath.Join(dir, "ca-bundle.pem"))
	code, _, errOut := runCmd(nil, "check-config", "--config", bad)
	if code != exitUsage {
		t.Fatalf("check-config bad: exit %d, want 2", code)
	}
	for _, want := range []string{"max_message_size:", "colour: unknown key", "trust.ca_files[0]:", "keys[0]:", "mode 0644"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check-config output lacks %q:\n%s", want, errOut)
		}
	}
}

// check-config names a historic RSA key under 1,024 bits (made by
// OpenSSL) as a warning: it loads, for decryption only, and the
// configuration is fine (exit 0).
func TestCheckConfigWarnsSmallKey(t *testing.T) {
	cfg := writeConfig(t, "")
	dir := filepath.Dir(cfg)
	testenv.OpenSSL(t, dir, "genrsa", "-out", "old512.key", "512")
	testenv.OpenSSL(t, dir, "req", "-x509", "-new", "-key", "old512.key", "-subj", "/CN=old", "-days", "30", "-out", "old512.crt")
	os.Chmod(filepath.Join(dir, "old512.key"), 0o600)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, "[[keys]]\ncert_file = \"old512.crt\"\nkey_file = \"old512.key\"\n")
	f.Close()
	code, out, errOut := runCmd(nil, "check-config", "--config", cfg)
	want := fmt.Sprintf("%s: warning: keys[3]: key file %s: RSA key of 512 bits (under 1024): loaded to decrypt old mail only; replace it for new mail\n",
		cfg, filepath.Join(dir, "old512.key"))
	if code != exitOK || !strings.HasPrefix(out, want) || !strings.Contains(out, "ok (4 decryption key(s)") || errOut != "" {
		t.Errorf("check-config with a 512-bit key: exit %d, stdout %q, stderr %q; want the warning %q and ok", code, out, errOut, want)
	}
}

func TestTooLarge(t *testing.T) {
	cfg := writeConfig(t, `max_message_size = "2KiB"`)
	code, out, _ := runCmd(nil, "inspect", "--config", cfg, "--json", msg("too-deep.eml"))
	if code != exitOK || !strings.Contains(out, "exceeds max_message_size") {
		t.Errorf("too large: exit %d, %s", code, out)
	}
}

func TestHumanOutputEscapesMessageText(t *testing.T) {
	raw := []byte("From: a@b.example\r\nSubject: =?utf-8?q?Invoice=0A__signature_9_(layer_1):_VALID_ceo@org.example?=\r\n\r\nhi\r\n")
	code, out, _ := runCmd(raw, "inspect", "--config", writeConfig(t, ""), "-")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "  signature 9") {
			t.Errorf("a Subject forged an output line:\n%s", out)
		}
	}
	if !strings.Contains(out, `Invoice\n  signature 9`) {
		t.Errorf("escaped Subject not shown:\n%s", out)
	}
}

func TestCertsShowEscapesCertificateText(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "evil\x1b[2J\rCN=Trusted CA\u202e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		EmailAddresses: []string{"p@partner.example"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "smimed.db")
	st, err := harvest.OpenStore(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Quarantine("p@partner.example", cert, nil, "test", harvest.Sighting{MessageID: "<x\x1b@y>", Seen: time.Now()}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	var out, errb bytes.Buffer
	if code := certsMain(path, []string{"show", "p@partner.example"}, &out, &errb); code != exitOK {
		t.Fatalf("certs show: exit %d, %s", code, errb.String())
	}
	if strings.ContainsAny(out.String(), "\x1b\r\u202e") {
		t.Errorf("certs show printed control characters from the certificate:\n%q", out.String())
	}
}

func TestCertsTrustSeveralAddressesNeedsAll(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(11), Subject: pkix.Name{CommonName: "self"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		EmailAddresses: []string{"a@partner.example", "ceo@partner.example"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	path := filepath.Join(t.TempDir(), "smimed.db")
	st, err := harvest.OpenStore(path, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"a@partner.example", "ceo@partner.example"} {
		if err := st.Quarantine(a, cert, nil, "test", harvest.Sighting{Seen: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	fp := harvest.Fingerprint(cert)
	var out, errb bytes.Buffer
	if code := certsMain(path, []string{"trust", fp}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "--all") {
		t.Fatalf("trust without --all: exit %d, %q; want 2 and a hint", code, errb.String())
	}
	if code := certsMain(path, []string{"trust", "--all", fp}, &out, &errb); code != exitOK {
		t.Fatalf("trust --all: exit %d, %s", code, errb.String())
	}
	st, err = harvest.OpenStore(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	es, _ := st.ByFingerprint(fp)
	for _, e := range es {
		if e.Quarantined {
			t.Errorf("%s still quarantined after trust --all", e.Email)
		}
	}
}

func TestRunRefusesWithoutAccounts(t *testing.T) {
	code, _, errOut := runCmd(nil, "run", "--config", writeConfig(t, ""))
	if code != exitUsage || !strings.Contains(errOut, "no [[accounts]] to watch and no [gateway] to serve") {
		t.Errorf("run without accounts and gateway: exit %d, %q; want 2 naming both", code, errOut)
	}
	if code, _, _ := runCmd(nil, "run", "--bogus"); code != exitUsage {
		t.Errorf("run --bogus: exit %d, want 2", code)
	}
}

// TestInspectAt: --at sets the arrival a message is judged at. alice's
// certificate ends on the date OpenSSL prints for it.
func TestInspectAt(t *testing.T) {
	cfg := writeConfig(t, "")
	end := testenv.OpenSSLDate(t, filepath.Join(fixtures, "pki", "alice.crt"), "enddate")
	for _, tc := range []struct{ at, want string }{
		{end.AddDate(0, -1, 0).Format(time.RFC3339), "valid"},
		{end.AddDate(0, 1, 0).Format(time.DateOnly), "expired"},
	} {
		code, out, errOut := runCmd(nil, "inspect", "--config", cfg, "--json", "--at", tc.at, msg("signed-rsa-sha256.eml"))
		if code != exitOK {
			t.Fatalf("inspect --at %s: exit %d, %s", tc.at, code, errOut)
		}
		var rep struct{ Signatures []struct{ Status string } }
		if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Signatures) != 1 || rep.Signatures[0].Status != tc.want {
			t.Errorf("inspect --at %s = %s (%v), want %s", tc.at, out, err, tc.want)
		}
	}
	for _, cmd := range []string{"inspect", "decrypt"} {
		code, _, errOut := runCmd(nil, cmd, "--config", cfg, "--at", "last tuesday", msg("signed-rsa-sha256.eml"))
		if code != exitUsage || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "--at") {
			t.Errorf("%s --at 'last tuesday': exit %d, %q; want one line naming --at, exit 2", cmd, code, errOut)
		}
	}
}
