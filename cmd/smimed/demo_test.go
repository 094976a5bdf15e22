package main

import (
	"context"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/imapconn"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/cms"
	"github.com/smimed/smimed/harvest/state"
)

// demoWant is what each demo message must come to: independent of the
// code under test, it follows from how the message was made.
var demoWant = map[string]struct {
	status string // the archive record's status
	copy   bool   // a copy in Decrypted (archive_folder_messages = "smime")
	ar     string // the copy's smime= result
}{
	"1-signed":           {"signed-valid", true, "smime=pass"},
	"2-encrypted":        {"decrypted", true, "smime=none"},
	"3-signed-encrypted": {"decrypted,signed-valid", true, "smime=pass"},
	"4-plain":            {"plain", false, ""},
	"5-tampered":         {"signed-invalid", true, "smime=fail"},
}

// demoHaveOpenSSL reports whether the openssl command is there; the
// comparisons that need it are skipped with a note when it is not.
func demoHaveOpenSSL(t *testing.T) bool {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Log("openssl not installed: the comparisons with OpenSSL are skipped")
		return false
	}
	return true
}

// demoOpenSSL runs the openssl command in dir with stdin and returns its
// output and whether it succeeded.
func demoOpenSSL(t *testing.T, dir string, stdin []byte, args ...string) (string, bool) {
	t.Helper()
	out, err := testenv.OpenSSLTry(t, dir, stdin, args...)
	return string(out), err == nil
}

// demoMessageID returns the Message-ID field of a raw message.
func demoMessageID(t *testing.T, raw []byte) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^Message-ID: (<[^>]+>)\r$`).FindSubmatch(raw)
	if m == nil {
		t.Fatalf("no Message-ID in %q", raw[:min(len(raw), 300)])
	}
	return string(m[1])
}

// TestDemoMail checks the demo's PKI and messages with OpenSSL and with
// the engine: the signed ones verify against the partner CA (the tampered
// one does not), the encrypted ones decrypt with the organisation's key.
func TestDemoMail(t *testing.T) {
	dir := t.TempDir()
	pki, err := newDemoPKI()
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.write(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{demoOrgKeyFile, demoPartnerKeyFile} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", f, fi.Mode().Perm(), err)
		}
	}
	mails, err := newDemoMail(pki, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mails {
		names = append(names, m.name)
	}
	if want := slices.Sorted(demoNames(demoWant)); !slices.Equal(names, want) {
		t.Fatalf("demo messages %v, want %v", names, want)
	}

	if demoHaveOpenSSL(t) {
		if out, ok := demoOpenSSL(t, dir, nil, "verify", "-CAfile", demoPartnerCAFile, "-purpose", "smimesign", demoPartnerCert); !ok {
			t.Errorf("openssl verify -purpose smimesign %s: %s", demoPartnerCert, out)
		}
		if out, ok := demoOpenSSL(t, dir, nil, "x509", "-noout", "-ext", "subjectAltName,keyUsage,extendedKeyUsage", "-in", demoPartnerCert); !strings.Contains(out, "email:"+demoPartnerAddr) ||
			!strings.Contains(out, "Digital Signature, Key Encipherment") || !strings.Contains(out, "E-mail Protection") || !ok {
			t.Errorf("openssl x509 -ext of %s = %q, want the address, digitalSignature+keyEncipherment, emailProtection", demoPartnerCert, out)
		}
		for _, m := range mails {
			verify := []string{"cms", "-verify", "-CAfile", demoPartnerCAFile, "-purpose", "smimesign", "-out", os.DevNull}
			decrypt := []string{"cms", "-decrypt", "-recip", demoOrgCertFile, "-inkey", demoOrgKeyFile}
			switch m.name {
			case "1-signed":
				if out, ok := demoOpenSSL(t, dir, m.raw, verify...); !ok {
					t.Errorf("%s: openssl cms -verify: %s", m.name, out)
				}
			case "5-tampered":
				if out, ok := demoOpenSSL(t, dir, m.raw, verify...); ok {
					t.Errorf("%s: openssl cms -verify succeeds (%s), want a failure", m.name, out)
				}
			case "2-encrypted":
				if out, ok := demoOpenSSL(t, dir, m.raw, decrypt...); !ok || !strings.Contains(out, "price list") {
					t.Errorf("%s: openssl cms -decrypt = %q, %v", m.name, out, ok)
				}
			case "3-signed-encrypted":
				inner, ok := demoOpenSSL(t, dir, m.raw, decrypt...)
				if !ok {
					t.Fatalf("%s: openssl cms -decrypt: %s", m.name, inner)
				}
				if out, ok := demoOpenSSL(t, dir, []byte(inner), verify...); !ok {
					t.Errorf("%s: openssl cms -verify of the decrypted content: %s", m.name, out)
				}
			}
		}
	}

	lk, err := harvest.LoadPEMKey(filepath.Join(dir, demoOrgCertFile), filepath.Join(dir, demoOrgKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(dir, demoPartnerCAFile))
	if !roots.AppendCertsFromPEM(ca) {
		t.Fatal("no certificate in", demoPartnerCAFile)
	}
	eng := harvest.New(harvest.Options{Keys: []*cms.Key{{Cert: lk.Cert, Private: lk.Private}}, Roots: roots})
	for _, m := range mails {
		res, err := eng.Process(m.raw, time.Now())
		if err != nil {
			t.Fatalf("%s: Process() = %v", m.name, err)
		}
		rep := res.Report
		var verdicts []string
		for _, s := range rep.Signatures {
			verdicts = append(verdicts, s.Status)
		}
		want := map[string]string{"1-signed": "none valid", "2-encrypted": "ok ", "3-signed-encrypted": "ok valid", "4-plain": "none ", "5-tampered": "none invalid"}[m.name]
		if got := string(rep.Decryption.Status) + " " + strings.Join(verdicts, ","); got != want || rep.Error != "" {
			t.Errorf("%s: decryption and verdicts = %q (error %q), want %q", m.name, got, rep.Error, want)
		}
		if rep.Decryption.Status == harvest.DecryptOK && (rep.Decryption.Cipher != "aes-256-cbc" || rep.Decryption.KeyTransport != "rsa-pkcs1v15") {
			t.Errorf("%s: decryption = %+v, want aes-256-cbc with rsa-pkcs1v15", m.name, rep.Decryption)
		}
	}
}

// TestDemoOnce runs `smimed demo --once` and checks what it printed and
// what it left against what the messages are (demoWant), the partner
// certificate's fingerprint as OpenSSL computes it, the store and the
// archive opened afterwards, and `smimed archive verify`. A second run in
// the same directory starts afresh.
func TestDemoOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	start := time.Now()
	code, out, errOut := runCmd(nil, "demo", "--once", "--dir", dir)
	if code != exitOK {
		t.Fatalf("smimed demo --once: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("smimed demo --once took %s, want under 10 s", took)
	}
	if errOut != "" {
		t.Errorf("smimed demo --once wrote to stderr:\n%s", errOut)
	}
	t.Logf("stdout:\n%s", out)

	cfg := filepath.Join(dir, "smimed.toml")
	for _, want := range []string{
		"partner@partner.example  VALID",
		"archive list --config " + cfg,
		"archive verify --config " + cfg,
		"certs list --config " + cfg,
		"status --config " + cfg,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	if demoHaveOpenSSL(t) {
		fp := testenv.OpenSSLFingerprint(t, filepath.Join(dir, demoPartnerCert))
		if !strings.Contains(out, "SHA-256 "+fp) {
			t.Errorf("stdout does not name the partner certificate %s (openssl x509 -fingerprint)", fp)
		}
		st, err := harvest.OpenStore(filepath.Join(dir, "state", "smimed.db"), true)
		if err != nil {
			t.Fatal(err)
		}
		es, err := st.ByEmail(demoPartnerAddr)
		st.Close()
		if err != nil || len(es) != 1 || es[0].Fingerprint != fp || es[0].Quarantined {
			t.Errorf("store entries for %s = %+v, %v; want one usable with fingerprint %s", demoPartnerAddr, es, err, fp)
		}
	}

	// The copies as printed: one per wanted copy, in delivery order.
	var wantAR []string
	for _, name := range slices.Sorted(demoNames(demoWant)) {
		if demoWant[name].copy {
			wantAR = append(wantAR, demoWant[name].ar)
		}
	}
	var gotAR []string
	for _, m := range regexp.MustCompile(`(?m)^    Authentication-Results: smimed-demo\.example; (smime=[a-z]+)`).FindAllStringSubmatch(out, -1) {
		gotAR = append(gotAR, m[1])
	}
	if !slices.Equal(gotAR, wantAR) {
		t.Errorf("printed copies' results = %v, want %v", gotAR, wantAR)
	}

	demoCheckState(t, dir)

	// The configuration it left works: the archive verifies.
	if code, vout, verr := runCmd(nil, "archive", "verify", "--config", cfg); code != exitOK || !strings.Contains(vout, "checked 5 records") {
		t.Errorf("smimed archive verify: exit %d, %q, %q", code, vout, verr)
	}

	// Again in the same directory: a fresh demo, not ten records.
	if code, out, errOut := runCmd(nil, "demo", "--once", "--dir", dir); code != exitOK {
		t.Fatalf("second smimed demo --once in %s: exit %d\n%s\n%s", dir, code, out, errOut)
	}
	demoCheckState(t, dir)
}

func demoNames[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// demoCheckState opens the store and the archive a demo left in dir and
// checks one current record per message in dir/mail with the status and
// the copy demoWant says.
func demoCheckState(t *testing.T, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "mail", "*.eml"))
	if err != nil || len(files) != len(demoWant) {
		t.Fatalf("mail files %v, %v; want %d", files, err, len(demoWant))
	}
	byID := map[string]string{} // Message-ID to name
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		byID[demoMessageID(t, raw)] = strings.TrimSuffix(filepath.Base(f), ".eml")
	}
	db, err := state.Open(filepath.Join(dir, "state", "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	arch, err := archive.Open(filepath.Join(dir, "state", "archive"), db)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = arch.List(archive.Query{}, func(r *archive.Record) error {
		n++
		name, ok := byID[r.MessageID]
		if !ok {
			t.Errorf("record %d: Message-ID %s is not one of this demo's messages", r.ID, r.MessageID)
			return nil
		}
		want := demoWant[name]
		if got := strings.Join(r.Status, ","); got != want.status {
			t.Errorf("record %d (%s): status %s, want %s", r.ID, name, got, want.status)
		}
		c, err := arch.GetCopy(r.ID)
		if err != nil || (c != nil) != want.copy || (c != nil && c.Folder != "Decrypted") {
			t.Errorf("record %d (%s): copy %+v, %v; want a copy in Decrypted: %v", r.ID, name, c, err, want.copy)
		}
		return nil
	})
	if err != nil || n != len(demoWant) {
		t.Errorf("archive: %d records, %v; want %d", n, err, len(demoWant))
	}
}

// TestDemoRunsUntilStopped runs the demo without --once: while it runs,
// the archive commands reach it over its control socket, a message a mail
// client puts into INBOX is processed (the status line says so), and it
// stops cleanly when its context ends (Ctrl-C).
func TestDemoRunsUntilStopped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	var out, errOut testenv.LockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- runDemo(ctx, demoOptions{dir: dir, listen: "127.0.0.1:0"}, &out, &errOut) }()
	waitFor := func(what string, re *regexp.Regexp) []string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if m := re.FindStringSubmatch(out.String()); m != nil {
				return m
			}
			select {
			case code := <-done:
				t.Fatalf("demo ended (exit %d) before %s:\n%s\n%s", code, what, out.String(), errOut.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s in the output:\n%s\n%s", what, out.String(), errOut.String())
			}
		}
	}
	m := waitFor("mail client settings", regexp.MustCompile(`IMAP server (127\.0\.0\.1), port (\d+), no TLS.*\nuser demo, password ([0-9a-f]+)\.`))
	addr, password := m[1]+":"+m[2], m[3]
	waitFor("the running line", regexp.MustCompile(`Running; Ctrl-C stops it\.`))

	cfg := filepath.Join(dir, "smimed.toml")
	code, list, listErr := runCmd(nil, "archive", "list", "--config", cfg)
	if code != exitOK || strings.Count(list, "\n") != 1+len(demoWant) {
		t.Errorf("archive list while the demo runs: exit %d, %q, %q; want %d records", code, list, listErr, len(demoWant))
	}

	// The other printed commands work while it runs too.
	if code, certs, certsErr := runCmd(nil, "certs", "list", "--config", cfg); code != exitOK || !strings.Contains(certs, demoPartnerAddr) {
		t.Errorf("certs list while the demo runs: exit %d, %q, %q", code, certs, certsErr)
	}
	if code, st, stErr := runCmd(nil, "status", "--config", cfg); code != exitOK || !strings.Contains(st, "connected") {
		t.Errorf("status while the demo runs: exit %d, %q, %q", code, st, stErr)
	}

	// A mail client appends a message to INBOX.
	msg := filepath.Join(t.TempDir(), "new.eml")
	os.WriteFile(msg, []byte("From: newcomer@example.org\r\nTo: demo@org.example\r\nSubject: hello from a mail client\r\nMessage-ID: <new@example.org>\r\n\r\nHi.\r\n"), 0o600)
	c, err := imapconn.Dial(ctx, imapconn.Config{Addr: addr, TLS: "none", Username: "demo", Password: password})
	if err != nil {
		t.Fatalf("log in as the printed settings say: %v", err)
	}
	if _, err := c.Append(ctx, "INBOX", msg, time.Now()); err != nil {
		t.Fatalf("APPEND to INBOX: %v", err)
	}
	c.Close()
	waitFor("a status line with the new message", regexp.MustCompile(`demo: 1/1 folders up, 6 processed, 0 failed`))
	code, list, listErr = runCmd(nil, "archive", "list", "--subject", "mail client", "--config", cfg)
	if code != exitOK || !strings.Contains(list, "plain") || strings.Count(list, "\n") != 2 {
		t.Errorf("archive list --subject 'mail client': exit %d, %q, %q; want the new message, plain", code, list, listErr)
	}

	cancel() // Ctrl-C
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("demo after Ctrl-C: exit %d\n%s", code, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop within 15 s of Ctrl-C")
	}
	if !strings.Contains(out.String(), "Stopped. "+dir+" is left as it is") {
		t.Errorf("stdout lacks the parting line:\n%s", out.String())
	}
	// Stopped: the store is free, and the certificate is in it.
	if code, certs, certsErr := runCmd(nil, "certs", "list", "--config", cfg); code != exitOK || !strings.Contains(certs, demoPartnerAddr) {
		t.Errorf("certs list after the demo: exit %d, %q, %q", code, certs, certsErr)
	}
}

func TestDemoUsage(t *testing.T) {
	foreign := t.TempDir()
	os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"demo", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"demo", "extra"}, `unexpected argument "extra"`},
		{[]string{"demo", "--once", "--listen", "0.0.0.0:0"}, "must be a loopback host:port"},
		{[]string{"demo", "--once", "--dir", foreign}, "not empty and not a previous demo's directory"},
	} {
		code, out, errOut := runCmd(nil, tc.args...)
		if code != exitUsage || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("smimed %v: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", tc.args, code, out, errOut, tc.want)
		}
	}
	if entries, _ := os.ReadDir(foreign); len(entries) != 1 {
		t.Errorf("the refused directory was changed: %v", entries)
	}
	if code, out, _ := runCmd(nil, "demo", "--help"); code != exitOK || !strings.Contains(out, "Usage: smimed demo") {
		t.Errorf("smimed demo --help: exit %d, %q", code, out)
	}
}
