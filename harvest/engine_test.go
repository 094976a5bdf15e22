package harvest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/cms"
)

// The fixtures under ../testdata are made by testdata/gen.sh with OpenSSL;
// testdata/expected.tsv holds what OpenSSL says about each message. These
// tests assert the engine against that file, never against its own output.

var testdataDir = func() string {
	d, err := filepath.Abs(filepath.Join("..", "testdata"))
	if err != nil {
		panic(err)
	}
	return d
}()

// fixtureRow is one line of testdata/expected.tsv.
type fixtureRow struct {
	file, layers, decrypt, sigCrypto, chain, from, signerEmails, verdict, signerFP, plainSHA, note string
}

func readExpected(tb testing.TB) []fixtureRow {
	tb.Helper()
	f, err := os.Open(filepath.Join(testdataDir, "expected.tsv"))
	if err != nil {
		tb.Fatalf("fixtures: %v (run testdata/gen.sh)", err)
	}
	defer f.Close()
	var rows []fixtureRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for first := true; sc.Scan(); first = false {
		if first {
			continue
		}
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 11 {
			tb.Fatalf("expected.tsv: short line %q", sc.Text())
		}
		rows = append(rows, fixtureRow{c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10]})
	}
	if len(rows) == 0 {
		tb.Fatal("expected.tsv holds no rows")
	}
	return rows
}

// privateCopy copies a fixture secret into dir with mode 0600 (git does not
// keep file modes, and the loaders refuse group-readable secrets).
func privateCopy(tb testing.TB, dir, name string) string {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(testdataDir, "pki", name))
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// orgKeys loads the organisation's fixture keys: org-new and the EC keys
// from PEM, the rotated-away org-old from a legacy (RC2-40/3DES) PKCS#12.
func orgKeys(tb testing.TB) map[string]*cms.Key {
	tb.Helper()
	dir := tb.TempDir()
	keys := map[string]*cms.Key{}
	for _, name := range []string{"org-new", "org-ec256", "org-ec384"} {
		lk, err := LoadPEMKey(filepath.Join(testdataDir, "pki", name+".crt"), privateCopy(tb, dir, name+".key"))
		if err != nil {
			tb.Fatalf("LoadPEMKey(%s) = %v", name, err)
		}
		keys[name] = &cms.Key{Cert: lk.Cert, Private: lk.Private}
	}
	pw, err := ReadPasswordFile(privateCopy(tb, dir, "org-old-legacy.pass"))
	if err != nil {
		tb.Fatal(err)
	}
	lks, err := LoadPKCS12(privateCopy(tb, dir, "org-old-legacy.p12"), pw)
	if err != nil || len(lks) != 1 {
		tb.Fatalf("LoadPKCS12(org-old-legacy.p12) = %v, %v", lks, err)
	}
	keys["org-old"] = &cms.Key{Cert: lks[0].Cert, Private: lks[0].Private}
	return keys
}

func keyList(m map[string]*cms.Key) []*cms.Key {
	var out []*cms.Key
	for _, k := range m {
		out = append(out, k)
	}
	return out
}

func fixtureRoots(tb testing.TB) *x509.CertPool {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(testdataDir, "pki", "ca-bundle.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		tb.Fatal("ca-bundle.pem: no certificates")
	}
	return pool
}

var layerNames = map[string]string{
	"signed-detached": "multipart/signed",
	"signed-opaque":   "signed-data",
	"enveloped":       "enveloped-data",
	"auth-enveloped":  "authEnveloped-data",
	"certs-only":      "certs-only",
}

func TestFixturesAgainstOpenSSL(t *testing.T) {
	testenv.NeedOpenSSL(t)
	rows := readExpected(t)
	keys := orgKeys(t)
	keyFP := map[string]string{}
	for name := range keys {
		keyFP[name] = testenv.OpenSSLFingerprint(t, filepath.Join(testdataDir, "pki", name+".crt"))
	}
	st := openTestStore(t, filepath.Join(t.TempDir(), "smimed.db"), false)
	defer st.Close()
	eng := New(Options{Keys: keyList(keys), Roots: fixtureRoots(t), Store: st, Harvest: true})
	received := time.Now()

	// signed-nocerts carries no certificate: the store must supply it, so
	// the message that harvests alice goes first.
	for i, r := range rows {
		if r.file == "signed-rsa-sha256.eml" {
			rows[0], rows[i] = rows[i], rows[0]
		}
	}
	for _, r := range rows {
		t.Run(r.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(testdataDir, "msg", r.file))
			if err != nil {
				t.Fatal(err)
			}
			res, err := eng.Process(raw, received)
			if err != nil {
				t.Fatalf("Process() error = %v", err)
			}
			rep := res.Report
			wantErr := r.verdict == "error" && (r.file == "too-deep.eml" || r.file == "enc-nokey.eml")

			// Layers, outermost first.
			if !wantErr || r.file == "enc-nokey.eml" {
				var want []string
				for _, l := range strings.Split(r.layers, ">") {
					if n, ok := layerNames[l]; ok {
						want = append(want, n)
					}
				}
				if strings.Join(rep.Layers, ">") != strings.Join(want, ">") {
					t.Errorf("Layers = %v, want %v", rep.Layers, want)
				}
			}
			if wantErr {
				if rep.Error == "" {
					t.Errorf("Report.Error empty, want an error (%s)", r.note)
				}
			} else if rep.Error != "" {
				t.Errorf("Report.Error = %q, want none", rep.Error)
			}
			if r.file == "too-deep.eml" && !strings.Contains(rep.Error, "nested too deeply") {
				t.Errorf("Report.Error = %q, want the depth limit", rep.Error)
			}

			// Decryption.
			switch {
			case r.decrypt == "-":
				if rep.Decryption.Status != DecryptNone {
					t.Errorf("Decryption.Status = %q, want none", rep.Decryption.Status)
				}
			case r.decrypt == "fail":
				if rep.Decryption.Status != DecryptFailed || len(rep.Recipients) == 0 {
					t.Errorf("Decryption = %+v, recipients %v; want failed with recipients", rep.Decryption, rep.Recipients)
				}
			default:
				if rep.Decryption.Status != DecryptOK {
					t.Fatalf("Decryption = %+v, want ok (%s)", rep.Decryption, r.decrypt)
				}
				ok := false
				for _, name := range strings.Split(strings.TrimPrefix(r.decrypt, "ok:"), "+") {
					ok = ok || keyFP[name] == rep.Decryption.Key
				}
				if !ok {
					t.Errorf("Decryption.Key = %s, want the certificate of %s", rep.Decryption.Key, r.decrypt)
				}
			}

			// Signatures: one verdict per signer, outermost layer first.
			if r.verdict != "-" && !wantErr {
				var got []string
				for _, s := range rep.Signatures {
					got = append(got, s.Status)
				}
				if strings.Join(got, ",") != r.verdict {
					t.Errorf("verdicts = %v, want %s; report %+v", got, r.verdict, rep.Signatures)
				}
				if r.signerFP != "-" {
					fps := strings.Split(r.signerFP, ",")
					for i, s := range rep.Signatures {
						if i < len(fps) && s.Fingerprint != fps[i] {
							t.Errorf("signature %d fingerprint = %s, want %s", i, s.Fingerprint, fps[i])
						}
					}
				}
			}
			if r.verdict == "-" && len(rep.Signatures) != 0 {
				t.Errorf("Signatures = %+v, want none", rep.Signatures)
			}

			// Plaintext: for a single encryption layer, OpenSSL's decrypted
			// entity is the copy's content under the outer headers.
			if (r.layers == "enveloped" || r.layers == "auth-enveloped") && rep.Decryption.Status == DecryptOK {
				checkPlaintext(t, r, raw, res.Plaintext)
			}
			if r.layers == "certs-only" {
				// alice's certificate chains (with the intermediate in the
				// message), but nothing in a certs-only message is signed:
				// it is quarantined for the From address, never usable.
				want := testenv.OpenSSLFingerprint(t, filepath.Join(testdataDir, "pki", "alice.crt"))
				if len(rep.Harvested) != 1 || rep.Harvested[0].Fingerprint != want || !rep.Harvested[0].Quarantined {
					t.Errorf("Harvested = %+v, want alice's %s, quarantined", rep.Harvested, want)
				}
				if !bytes.Equal(res.Plaintext, raw) {
					t.Errorf("certs-only message changed by processing")
				}
			}
			if r.layers == "plain" && !bytes.Equal(res.Plaintext, raw) {
				t.Errorf("plain message changed by processing")
			}
		})
	}

	// Harvest policy: valid signers are usable, self-signed is quarantined,
	// expired/mismatch/invalid are never stored for their address.
	alice := testenv.OpenSSLFingerprint(t, filepath.Join(testdataDir, "pki", "alice.crt"))
	checkStored(t, st, "alice@partner.example", alice, false)
	checkStored(t, st, "selfsigned@partner.example", testenv.OpenSSLFingerprint(t, filepath.Join(testdataDir, "pki", "selfsigned.crt")), true)
	for _, email := range []string{"expired@partner.example", "bob@elsewhere.example", "noeku@partner.example"} {
		if es, _ := st.ByEmail(email); len(es) != 0 {
			t.Errorf("store holds %s: %+v, want nothing", email, es)
		}
	}
	ims, err := st.Intermediates()
	if err != nil || len(ims) != 1 {
		t.Errorf("Intermediates() = %d, %v; want the one intermediate", len(ims), err)
	}
}

func checkStored(t *testing.T, st *Store, email, fp string, quarantined bool) {
	t.Helper()
	es, err := st.ByEmail(email)
	if err != nil {
		t.Fatalf("ByEmail(%s) = %v", email, err)
	}
	for _, e := range es {
		if e.Fingerprint == fp {
			if e.Quarantined != quarantined {
				t.Errorf("%s %s quarantined = %v, want %v", email, fp, e.Quarantined, quarantined)
			}
			return
		}
	}
	t.Errorf("store has no %s for %s (entries %+v)", fp, email, es)
}

// checkPlaintext decrypts the message with OpenSSL and checks that the
// engine's plaintext is OpenSSL's entity under the outer headers.
func checkPlaintext(t *testing.T, r fixtureRow, raw, plain []byte) {
	t.Helper()
	key := strings.Split(strings.TrimPrefix(r.decrypt, "ok:"), "+")[0]
	dir := t.TempDir()
	keyFile := privateCopy(t, dir, key+".key")
	if key == "org-old" {
		keyFile = privateCopy(t, dir, "org-old.key")
	}
	args := []string{"cms", "-decrypt", "-recip", filepath.Join(testdataDir, "pki", key+".crt"), "-inkey", keyFile}
	input := raw
	if outer, err := splitEntity(raw); err == nil {
		if mt, _, _ := outer.mediaType(); mt == "application/octet-stream" {
			// OpenSSL reads only pkcs7-mime as S/MIME; hand it the DER.
			if input, err = outer.decodedBody(); err != nil {
				t.Fatal(err)
			}
			args = append(args, "-inform", "DER")
		}
	}
	want := testenv.OpenSSLInput(t, "", input, args...)
	sum := sha256.Sum256(want)
	if hex.EncodeToString(sum[:]) != r.plainSHA {
		t.Fatalf("openssl output sha256 = %x, expected.tsv says %s (regenerate fixtures?)", sum, r.plainSHA)
	}
	inner, err := splitEntity(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(plain, inner.body) {
		t.Errorf("plaintext does not end with the decrypted body")
	}
	for _, f := range rawFields(inner.rawHeader) {
		if !bytes.Contains(plain, bytes.TrimRight(f.raw, "\r\n")) {
			t.Errorf("plaintext lacks inner header %q", f.raw)
		}
	}
	for _, h := range []string{"From:", "To:", "Subject:", "Date:", "Message-ID:"} {
		if !bytes.Contains(plain, []byte("\r\n"+h)) && !bytes.HasPrefix(plain, []byte(h)) {
			t.Errorf("plaintext lacks outer %s header", h)
		}
	}
	if pe, err := splitEntity(plain); err != nil {
		t.Errorf("plaintext is not a message: %v", err)
	} else if mt, _, _ := pe.mediaType(); mt != "text/plain" {
		t.Errorf("plaintext Content-Type = %s, want the inner text/plain", mt)
	}
}

// fuzzEngine builds an engine with the fixture keys and roots for fuzzing.
func fuzzEngine(tb testing.TB) *Engine {
	return New(Options{Keys: keyList(orgKeys(tb)), Roots: fixtureRoots(tb)})
}

// pemCert reads the first certificate of a PEM file.
func pemCert(tb testing.TB, path string) *x509.Certificate {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		tb.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestSigningTimeAndSHA1Policy(t *testing.T) {
	read := func(name string) []byte {
		raw, err := os.ReadFile(filepath.Join(testdataDir, "msg", name))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	eng := New(Options{Roots: fixtureRoots(t)})
	// Received months before the signingTime the signer claims: the claim
	// is not believed and the certificate is judged at receipt.
	early := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	res, err := eng.Process(read("signed-rsa-sha256.eml"), early)
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Report.Signatures; len(s) != 1 || s[0].Status != StatusValid || !strings.Contains(s[0].Reason, "lies after receipt") {
		t.Errorf("future signing time: %+v, want valid with a note that it lies after receipt", s)
	}
	// Received before the certificates existed: expired at receipt.
	res, _ = eng.Process(read("signed-rsa-sha256.eml"), time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	if s := res.Report.Signatures; len(s) != 1 || s[0].Status != StatusExpired {
		t.Errorf("received before notBefore: %+v, want expired", s)
	}
	// SHA-1: valid and weak by default, invalid when configured so.
	res, _ = eng.Process(read("signed-rsa-sha1.eml"), time.Now())
	if s := res.Report.Signatures; len(s) != 1 || s[0].Status != StatusValid || !s[0].WeakDigest || s[0].Digest != "sha-1" {
		t.Errorf("SHA-1 default: %+v, want valid with weak_digest", s)
	}
	strict := New(Options{Roots: fixtureRoots(t), RejectSHA1: true})
	res, _ = strict.Process(read("signed-rsa-sha1.eml"), time.Now())
	if s := res.Report.Signatures; len(s) != 1 || s[0].Status != StatusInvalid {
		t.Errorf("SHA-1 with RejectSHA1: %+v, want invalid", s)
	}
	// Without trust anchors nothing chains.
	res, _ = New(Options{}).Process(read("signed-rsa-sha256.eml"), time.Now())
	if s := res.Report.Signatures; len(s) != 1 || s[0].Status != StatusUntrusted {
		t.Errorf("no anchors: %+v, want untrusted", s)
	}
}

// TestJudgedAtArrival: a signature is judged at the message's arrival
// (the IMAP INTERNALDATE, which the sender does not control), not at the
// signing time the sender claims, nor today. alice's certificate is valid
// from 2026-01-01 to 2045-12-31 (testdata/gen.sh; checked with OpenSSL).
func TestJudgedAtArrival(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testdataDir, "msg", "signed-rsa-sha256.eml"))
	if err != nil {
		t.Fatal(err)
	}
	crt := filepath.Join(testdataDir, "pki", "alice.crt")
	notAfter := testenv.OpenSSLDate(t, crt, "enddate")
	st := openTestStore(t, filepath.Join(t.TempDir(), "smimed.db"), false)
	defer st.Close()
	// Arrived in 2030, judged in 2047: valid, and the reason says the
	// certificate has expired since.
	later := func() time.Time { return notAfter.AddDate(1, 6, 0) }
	eng := New(Options{Roots: fixtureRoots(t), Store: st, Harvest: true, Now: later})
	res, err := eng.Process(raw, time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	since := "certificate expired since " + notAfter.UTC().Format(time.RFC3339)
	if s := res.Report.Signatures; len(s) != 1 || s[0].Status != StatusValid || !strings.Contains(s[0].Reason, since) {
		t.Fatalf("arrived 2030, judged after expiry: %+v, want valid with %q", s, since)
	}
	// Arrived after the certificate expired: expired, whatever the signing
	// time says, and nothing is harvested.
	res, err = New(Options{Roots: fixtureRoots(t)}).Process(raw, notAfter.AddDate(0, 6, 0))
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Report.Signatures; len(s) != 1 || s[0].Status != StatusExpired {
		t.Fatalf("arrived after expiry: %+v, want expired", s)
	}
	if len(res.Report.Harvested) != 0 {
		t.Errorf("harvested %+v, want nothing: the certificate had expired at arrival", res.Report.Harvested)
	}
}

// TestSignerSerialIssuer: the serial and issuer the report names for a
// signer (for RFC 7281's body.smime-serial and body.smime-issuer) are what
// OpenSSL prints for the signer's certificate.
func TestSignerSerialIssuer(t *testing.T) {
	crt := filepath.Join(testdataDir, "pki", "alice.crt")
	_, serial := testenv.OpenSSLField(t, crt, "-serial")
	_, issuer := testenv.OpenSSLField(t, crt, "-issuer", "-nameopt", "RFC2253")
	raw, err := os.ReadFile(filepath.Join(testdataDir, "msg", "signed-rsa-sha256.eml"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := New(Options{}).Process(raw, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Report.Signatures) != 1 {
		t.Fatalf("signatures %+v", res.Report.Signatures)
	}
	s := res.Report.Signatures[0]
	if s.Serial != strings.TrimLeft(serial, "0") && s.Serial != serial {
		t.Errorf("Serial = %q, openssl says %q", s.Serial, serial)
	}
	if s.Issuer != issuer {
		t.Errorf("Issuer = %q, openssl -nameopt RFC2253 says %q", s.Issuer, issuer)
	}
}

// TestDeferWrites: with Options.DeferWrites, Process leaves the store
// alone and returns the harvest as Result.Write, which then stores the
// signer's certificate under the fingerprint OpenSSL gives it.
func TestDeferWrites(t *testing.T) {
	testenv.NeedOpenSSL(t)
	st := openTestStore(t, filepath.Join(t.TempDir(), "smimed.db"), false)
	defer st.Close()
	eng := New(Options{Roots: fixtureRoots(t), Store: st, Harvest: true, DeferWrites: true})
	raw, err := os.ReadFile(filepath.Join(testdataDir, "msg", "signed-rsa-sha256.eml"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := eng.Process(raw, time.Now())
	if err != nil || res.Write == nil || len(res.Report.Harvested) != 1 {
		t.Fatalf("Process() = Write %v, harvested %v, %v; want a Write for one certificate", res.Write != nil, res.Report.Harvested, err)
	}
	email := res.Report.Harvested[0].Email
	if es, err := st.ByEmail(email); err != nil || len(es) != 0 {
		t.Fatalf("before Write the store holds %+v, %v for %s; want nothing", es, err, email)
	}
	if err := res.Write(); err != nil {
		t.Fatalf("Write() = %v", err)
	}
	want := testenv.OpenSSLFingerprint(t, filepath.Join(testdataDir, "pki", "alice.crt"))
	es, err := st.ByEmail(email)
	if err != nil || len(es) != 1 || es[0].Fingerprint != want || es[0].Quarantined {
		t.Errorf("after Write the store holds %+v, %v; want one usable certificate %s", es, err, want)
	}
	// Without DeferWrites the write is Process's own.
	res, err = New(Options{Roots: fixtureRoots(t), Store: st, Harvest: true}).Process(raw, time.Now())
	if err != nil || res.Write != nil {
		t.Errorf("without DeferWrites: Write set %v, %v; want none", res.Write != nil, err)
	}
}
