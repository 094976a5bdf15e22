package main

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/state"
)

// Issue 9: `certs trust` used to change nothing for mail already judged.
// A message signed by a self-signed partner certificate (OpenSSL: "self-signed
// certificate", testdata/expected.tsv) is archived as untrusted, with its
// certificate quarantined; after `certs trust` the admin re-judges old mail
// with `archive retry --all-untrusted`, which selects on the signatures'
// verdict and says what changed.
func TestArchiveRetryAllUntrusted(t *testing.T) {
	cfg := writeConfig(t, "")
	stateDir := filepath.Join(filepath.Dir(cfg), "state")
	db, err := state.Open(filepath.Join(stateDir, "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	st := harvest.NewStore(db)
	a, err := archive.Open(filepath.Join(stateDir, "archive"), db)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if pemData, err := os.ReadFile(filepath.Join(fixtures, "pki", "ca-bundle.pem")); err != nil || !roots.AppendCertsFromPEM(pemData) {
		t.Fatalf("ca-bundle.pem: %v", err)
	}
	eng := harvest.New(harvest.Options{Roots: roots, Store: st, Harvest: true})
	ids := map[string]uint64{}
	now := time.Now().UTC()
	for i, name := range []string{"signed-selfsigned.eml", "signed-rsa-sha256.eml", "plain.eml"} {
		raw, err := os.ReadFile(msg(name))
		if err != nil {
			t.Fatal(err)
		}
		res, err := eng.Process(raw, now)
		if err != nil {
			t.Fatal(err)
		}
		rec, _, err := a.Put(archive.Source{Account: "ceo", Folder: "INBOX", UIDValidity: 1, UID: uint32(i + 1), InternalDate: now}, raw, res)
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = rec.ID
	}
	db.Close()
	self := ids["signed-selfsigned.eml"]

	code, out, errOut := runCmd(nil, "archive", "retry", "--all-untrusted", "--config", cfg)
	if want := fmt.Sprintf("%d: unchanged (untrusted)\n", self); code != exitOK || out != want {
		t.Fatalf("retry --all-untrusted before trust: exit %d, %q (%q), want %q", code, out, errOut, want)
	}

	// In openssl's own notation (upper case, colons), as an admin pastes it.
	_, fp := testenv.OpenSSLField(t, filepath.Join(fixtures, "pki", "selfsigned.crt"), "-fingerprint", "-sha256")
	if code, out, errOut := runCmd(nil, "certs", "trust", fp, "--config", cfg); code != exitOK || !strings.Contains(out, "trusted ") {
		t.Fatalf("certs trust: exit %d, %q, %q", code, out, errOut)
	}
	code, out, errOut = runCmd(nil, "archive", "retry", "--all-untrusted", "--config", cfg)
	want := fmt.Sprintf("%d: verdict untrusted → valid (new record %d)\n", self, ids["plain.eml"]+1)
	if code != exitOK || out != want {
		t.Fatalf("retry --all-untrusted after trust: exit %d, %q (%q), want %q", code, out, errOut, want)
	}
	code, out, _ = runCmd(nil, "archive", "list", "--json", "--config", cfg)
	today := time.Now().UTC().Format(time.DateOnly)
	if code != exitOK || !strings.Contains(out, "trusted by admin on "+today+" (no CA chain)") {
		t.Errorf("archive list after the retry lacks the pinned reason:\n%s", out)
	}
	code, out, _ = runCmd(nil, "archive", "retry", "--all-untrusted", "--config", cfg)
	if code != exitOK || out != "nothing to retry: no message with an untrusted signature\n" {
		t.Errorf("second retry --all-untrusted: exit %d, %q", code, out)
	}

	// Untrust, and the message (now valid, so retried by ID) goes back.
	if code, out, errOut := runCmd(nil, "certs", "untrust", fp, "--config", cfg); code != exitOK || !strings.Contains(out, "untrusted ") {
		t.Fatalf("certs untrust: exit %d, %q, %q", code, out, errOut)
	}
	code, out, _ = runCmd(nil, "archive", "retry", fmt.Sprint(self), "--config", cfg)
	var current uint64
	if i := strings.Index(out, "(new record "); code != exitOK || i < 0 {
		t.Fatalf("retry after untrust: exit %d, %q", code, out)
	} else if _, err := fmt.Sscanf(out[i:], "(new record %d)", &current); err != nil {
		t.Fatalf("retry after untrust: exit %d, %q", code, out)
	}
	code, out, _ = runCmd(nil, "archive", "retry", "--all-untrusted", "--config", cfg)
	if want := fmt.Sprintf("%d: unchanged (untrusted)\n", current); code != exitOK || out != want {
		t.Errorf("retry --all-untrusted after untrust: exit %d, %q, want %q", code, out, want)
	}
	if code, _, errOut := runCmd(nil, "archive", "retry", "--all-untrusted", "7", "--config", cfg); code != exitUsage || !strings.Contains(errOut, "takes no IDs") {
		t.Errorf("retry --all-untrusted 7: exit %d, %q", code, errOut)
	}
}

// Issue 15: a partner's key turns out to have been compromised since a
// date; the CA's CRL is imported (`certs crl import`), and `archive retry
// --revoked-since DATE` judges again the mail since then whose signature
// held: alice's message from after the date becomes revoked, her message
// from before it and bob's stay valid.
func TestArchiveRetryRevokedSince(t *testing.T) {
	cfg := writeConfig(t, "")
	dir := filepath.Dir(cfg)
	ca := testenv.NewCA(t, "Partner CA", "http://192.0.2.1/partner.crl")
	issued := time.Now().AddDate(0, -6, 0)
	alice, aliceKey := ca.Issue(t, "alice", "alice@partner.example", issued)
	bob, bobKey := ca.Issue(t, "bob", "bob@partner.example", issued)
	ca.AddTo(t, filepath.Join(dir, "ca-bundle.pem"))
	stateDir := filepath.Join(dir, "state")
	db, err := state.Open(filepath.Join(stateDir, "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(filepath.Join(stateDir, "archive"), db)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(testenv.ReadCert(t, ca.Cert))
	eng := harvest.New(harvest.Options{Roots: roots})
	compromised := time.Now().AddDate(0, -2, 0).UTC().Truncate(time.Second)
	ids := map[string]uint64{}
	for i, m := range []struct {
		name    string
		raw     []byte
		arrived time.Time
	}{
		{"alice before", ca.Sign(t, alice, aliceKey, "alice@partner.example", "before", "ok"), compromised.AddDate(0, 0, -7)},
		{"alice after", ca.Sign(t, alice, aliceKey, "alice@partner.example", "after", "send money"), compromised.AddDate(0, 0, 7)},
		{"bob after", ca.Sign(t, bob, bobKey, "bob@partner.example", "bob", "ok"), compromised.AddDate(0, 0, 7)},
	} {
		res, err := eng.Process(m.raw, m.arrived)
		if err != nil || res.Report.Signatures[0].Status != harvest.StatusValid {
			t.Fatalf("%s: %+v, %v", m.name, res.Report.Signatures, err)
		}
		rec, _, err := a.Put(archive.Source{Account: "ceo", Folder: "INBOX", UIDValidity: 1, UID: uint32(i + 1), InternalDate: m.arrived}, m.raw, res)
		if err != nil {
			t.Fatal(err)
		}
		ids[m.name] = rec.ID
	}
	db.Close()

	ca.Revoke(t, alice, "keyCompromise", compromised)
	ca.CRL(t, 7)
	if code, out, errOut := runCmd(nil, "certs", "--config", cfg, "crl", "import", filepath.Join(ca.Dir, "ca.crl.pem")); code != exitOK {
		t.Fatalf("certs crl import: exit %d, %q, %q", code, out, errOut)
	}
	code, out, errOut := runCmd(nil, "archive", "retry", "--revoked-since", compromised.Format(time.RFC3339), "--config", cfg)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	wantAlice := fmt.Sprintf("%d: verdict valid → revoked (new record ", ids["alice after"])
	wantBob := fmt.Sprintf("%d: unchanged (valid)", ids["bob after"])
	if code != exitOK || len(lines) != 2 || !strings.Contains(out, wantAlice) || !strings.Contains(out, wantBob) {
		t.Fatalf("retry --revoked-since: exit %d, %q (%q); want %q… and %q, nothing about the message from before", code, out, errOut, wantAlice, wantBob)
	}
}
