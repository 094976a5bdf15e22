package harvest

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/harvest/state"
)

// loadCert parses a PEM certificate written by openssl.
func loadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// genSubCA makes an intermediate CA signed by parent.
func genSubCA(t *testing.T, dir, name string, parent testCert) testCert {
	t.Helper()
	key := genKey(t, dir, name, "ec-pkcs8")
	cnf := filepath.Join(dir, name+".cnf")
	writeFile(t, cnf, "[req]\ndistinguished_name=dn\n[dn]\n[ext]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n", 0o644)
	csr := filepath.Join(dir, name+".csr")
	cert := filepath.Join(dir, name+".pem")
	testenv.OpenSSL(t, dir, "req", "-new", "-key", key, "-subj", "/O=Test/CN="+name, "-config", cnf, "-out", csr)
	testenv.OpenSSL(t, dir, "x509", "-req", "-in", csr, "-CA", parent.CertPath, "-CAkey", parent.KeyPath,
		"-set_serial", fmt.Sprint(osslSerial.Add(1)), "-days", "1000", "-extfile", cnf, "-extensions", "ext", "-out", cert)
	return testCert{CertPath: cert, KeyPath: key, FP: testenv.OpenSSLFingerprint(t, cert), NotAfter: testenv.OpenSSLDate(t, cert, "enddate")}
}

func openTestStore(t *testing.T, path string, readOnly bool) *Store {
	t.Helper()
	s, err := OpenStore(path, readOnly)
	if err != nil {
		t.Fatalf("OpenStore(%s, %v) = %v", path, readOnly, err)
	}
	return s
}

// setLockTimeout shortens state.LockTimeout for one test (which must not
// be parallel).
func setLockTimeout(t *testing.T, d time.Duration) {
	old := state.LockTimeout
	state.LockTimeout = d
	t.Cleanup(func() { state.LockTimeout = old })
}

func fingerprints(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Fingerprint)
	}
	return out
}

func preferredOf(es []Entry) string {
	var out []string
	for _, e := range es {
		if e.EncryptionPreferred {
			out = append(out, e.Fingerprint)
		}
	}
	return strings.Join(out, ",")
}

func TestStorePersistence(t *testing.T) {
	dir := t.TempDir()
	leaf := genLeaf(t, dir, "alice", "rsa-pkcs8", "alice@example.org", nil, 100, "digitalSignature,keyEncipherment")
	path := filepath.Join(dir, "state", "sub", "smimed.db")

	s := openTestStore(t, path, false)
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	seen := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := s.Harvest("Alice@Example.ORG", loadCert(t, leaf.CertPath), nil, nil, []string{"aes256-CBC"}, Sighting{MessageID: "<m1@example.org>", Seen: seen}); err != nil {
		t.Fatalf("Harvest() = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700, filepath.Dir(filepath.Dir(path)): 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("mode of %s = %04o, want %04o", p, fi.Mode().Perm(), want)
		}
	}

	s = openTestStore(t, path, true)
	defer s.Close()
	es, err := s.ByEmail("alice@example.org")
	if err != nil {
		t.Fatalf("ByEmail() = %v", err)
	}
	if len(es) != 1 {
		t.Fatalf("ByEmail() returned %d entries, want 1", len(es))
	}
	e := es[0]
	if e.Fingerprint != leaf.FP || Fingerprint(e.Cert) != leaf.FP {
		t.Errorf("Fingerprint = %s, want %s (openssl)", e.Fingerprint, leaf.FP)
	}
	if !e.Cert.NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("NotAfter = %v, want %v (openssl)", e.Cert.NotAfter, leaf.NotAfter)
	}
	if e.Email != "alice@example.org" || !e.FirstSeen.Equal(seen) || !e.LastSeen.Equal(seen) || e.MessageID != "<m1@example.org>" ||
		e.Quarantined || !e.EncryptionPreferred || strings.Join(e.Capabilities, ",") != "aes256-CBC" {
		t.Errorf("ByEmail()[0] = %+v", e)
	}
	if err := s.Harvest("alice@example.org", e.Cert, nil, nil, nil, Sighting{}); err == nil {
		t.Errorf("Harvest() on a read-only store succeeded")
	}

	if _, err := OpenStore(filepath.Join(dir, "nope.db"), true); !errors.Is(err, state.ErrMissing) {
		t.Errorf("OpenStore(missing, read-only) = %v, want state.ErrMissing", err)
	}
}

func TestStoreLocked(t *testing.T) {
	setLockTimeout(t, 200*time.Millisecond)
	path := filepath.Join(t.TempDir(), "smimed.db")
	s := openTestStore(t, path, false)

	want := fmt.Sprintf("state file %s is locked by another process (is smimed running?); "+
		"that lock covers all of smimed's state: certificates, archive index, audit log, checkpoints", path)
	for _, ro := range []bool{false, true} {
		start := time.Now()
		s2, err := OpenStore(path, ro)
		if err == nil {
			s2.Close()
			t.Fatalf("OpenStore(read-only=%v) while open read-write succeeded", ro)
		}
		if !errors.Is(err, state.ErrLocked) || err.Error() != want {
			t.Errorf("OpenStore(read-only=%v) = %q, want %q", ro, err, want)
		}
		if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
			t.Errorf("OpenStore(read-only=%v) gave up after %v, want about %v", ro, d, state.LockTimeout)
		}
	}
	s.Close()

	// Two readers share the lock.
	r1 := openTestStore(t, path, true)
	r2 := openTestStore(t, path, true)
	r1.Close()
	r2.Close()
}

// TestStoreSchema: the state file records the version of each of the
// store's buckets (and "schema", which smimed before the registry read),
// and a newer version of one of them is refused.
func TestStoreSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smimed.db")
	openTestStore(t, path, false).Close()

	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var meta []string
	var buckets []string
	db.View(func(tx *bbolt.Tx) error {
		tx.Bucket([]byte("meta")).ForEach(func(k, v []byte) error {
			meta = append(meta, string(k)+"="+string(v))
			return nil
		})
		return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			buckets = append(buckets, string(name))
			return nil
		})
	})
	if got, want := strings.Join(meta, ","), "schema=1,version/addresses=1,version/certs=1,version/intermediates=1,version/revocation_crls=1"; got != want {
		t.Errorf("meta = %s, want %s", got, want)
	}
	if got := strings.Join(buckets, ","); got != "addresses,certs,intermediates,meta,revocation_crls" {
		t.Errorf("buckets = %s", got)
	}
	setMeta := func(k, v string) {
		t.Helper()
		if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte(k), []byte(v)) }); err != nil {
			t.Fatal(err)
		}
	}
	setMeta("version/addresses", "2")
	db.Close()

	for _, ro := range []bool{false, true} {
		_, err := OpenStore(path, ro)
		if !errors.Is(err, state.ErrSchema) || !strings.Contains(err.Error(), "bucket addresses version 2, this smimed knows 1") || !strings.Contains(err.Error(), path) {
			t.Errorf("OpenStore(addresses version 2, read-only=%v) = %v, want state.ErrSchema", ro, err)
		}
	}

	db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	setMeta("version/addresses", "one")
	db.Close()
	if _, err := OpenStore(path, false); !errors.Is(err, state.ErrSchema) {
		t.Errorf("OpenStore(corrupt version) = %v, want state.ErrSchema", err)
	}
}

func TestStorePreferred(t *testing.T) {
	dir := t.TempDir()
	root := genCA(t, dir, "root")
	sub := genSubCA(t, dir, "sub", root)
	const email = "alice@example.org"
	short := genLeaf(t, dir, "short", "rsa-pkcs8", email, &sub, 100, "digitalSignature,keyEncipherment")
	long := genLeaf(t, dir, "long", "ec-pkcs8", email, &sub, 400, "digitalSignature,keyAgreement")
	sigOnly := genLeaf(t, dir, "sigonly", "ec-pkcs8", email, &sub, 800, "digitalSignature")
	noKU := genLeaf(t, dir, "noku", "rsa-pkcs8", email, &sub, 200, "")
	if !long.NotAfter.After(short.NotAfter) || !sigOnly.NotAfter.After(long.NotAfter) {
		t.Fatalf("openssl dates not in the expected order: %v %v %v", short.NotAfter, long.NotAfter, sigOnly.NotAfter)
	}
	chain := []*x509.Certificate{loadCert(t, sub.CertPath), loadCert(t, root.CertPath)}

	s := openTestStore(t, filepath.Join(dir, "smimed.db"), false)
	defer s.Close()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	// As the engine does for a valid signature from email: it chooses
	// the certificate it names, else the signer's own.
	harvest := func(c testCert, encPref *testCert, at time.Time) {
		t.Helper()
		pref := loadCert(t, c.CertPath)
		if encPref != nil {
			pref = loadCert(t, encPref.CertPath)
		}
		if err := s.Harvest(email, loadCert(t, c.CertPath), chain, pref, nil, Sighting{MessageID: "<" + at.Format(time.DateOnly) + ">", Seen: at}); err != nil {
			t.Fatalf("Harvest() = %v", err)
		}
	}
	byEmail := func() []Entry {
		t.Helper()
		es, err := s.ByEmail(email)
		if err != nil {
			t.Fatalf("ByEmail() = %v", err)
		}
		return es
	}

	harvest(short, nil, t0)
	harvest(long, nil, t0.Add(time.Hour))
	if got := preferredOf(byEmail()); got != long.FP {
		t.Errorf("preferred = %s, want the one signed with last %s", got, long.FP)
	}
	harvest(sigOnly, nil, t0.Add(2*time.Hour))
	es := byEmail()
	if got := preferredOf(es); got != long.FP {
		t.Errorf("preferred = %s, want %s (the signing-only certificate must not win)", got, long.FP)
	}
	// The latest signature wins, although noKU expires before sigOnly
	// and long.
	harvest(noKU, nil, t0.Add(3*time.Hour))
	es = byEmail()
	if got := preferredOf(es); got != noKU.FP {
		t.Errorf("preferred = %s, want %s, the latest signer that can encrypt", got, noKU.FP)
	}
	// not_after descending, per openssl's dates.
	if got, want := strings.Join(fingerprints(es), " "), strings.Join([]string{sigOnly.FP, long.FP, noKU.FP, short.FP}, " "); got != want {
		t.Errorf("ByEmail() order = %s, want %s", got, want)
	}

	// The sender names the short one explicitly: it wins.
	harvest(long, &short, t0.Add(4*time.Hour))
	if got := preferredOf(byEmail()); got != short.FP {
		t.Errorf("preferred = %s, want explicit %s", got, short.FP)
	}
	// An older message (processed late) naming another does not override.
	harvest(noKU, &noKU, t0.Add(-time.Hour))
	if got := preferredOf(byEmail()); got != short.FP {
		t.Errorf("preferred after an older message = %s, want %s", got, short.FP)
	}
	for _, e := range byEmail() {
		if e.Fingerprint == noKU.FP {
			if !e.FirstSeen.Equal(t0.Add(-time.Hour)) || !e.LastSeen.Equal(t0.Add(3*time.Hour)) || e.MessageID != "<"+t0.Format(time.DateOnly)+">" {
				t.Errorf("noKU entry seen %v..%v in %s, want first seen moved back only", e.FirstSeen, e.LastSeen, e.MessageID)
			}
		}
	}

	ims, err := s.Intermediates()
	if err != nil {
		t.Fatal(err)
	}
	if len(ims) != 1 || Fingerprint(ims[0]) != sub.FP {
		t.Errorf("Intermediates() = %d certs, want only the sub-CA %s (not the root)", len(ims), sub.FP)
	}
	if c, err := s.Certificate(sub.FP); err != nil || c == nil || Fingerprint(c) != sub.FP {
		t.Errorf("Certificate(sub-CA) = %v, %v", c, err)
	}
	all, err := s.Certificates()
	if err != nil || len(all) != 4 {
		t.Errorf("Certificates() = %d, %v, want 4", len(all), err)
	}
}

func TestStoreQuarantineTrust(t *testing.T) {
	dir := t.TempDir()
	good := genLeaf(t, dir, "good", "rsa-pkcs8", "bob@example.org", nil, 100, "")
	bad := genLeaf(t, dir, "bad", "ec-sec1", "bob@example.org", nil, 400, "")
	s := openTestStore(t, filepath.Join(dir, "smimed.db"), false)
	defer s.Close()

	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	if err := s.Harvest("bob@example.org", loadCert(t, good.CertPath), nil, nil, nil, Sighting{MessageID: "<a>", Seen: at}); err != nil {
		t.Fatal(err)
	}
	if err := s.Quarantine("Bob@example.org", loadCert(t, bad.CertPath), nil, "unknown authority", Sighting{MessageID: "<b>", Seen: at}); err != nil {
		t.Fatal(err)
	}

	es, err := s.ByEmail("bob@example.org")
	if err != nil || len(es) != 2 {
		t.Fatalf("ByEmail() = %d entries, %v, want 2", len(es), err)
	}
	// bad has the later not_after, so it comes first, but is quarantined.
	if es[0].Fingerprint != bad.FP || !es[0].Quarantined || es[0].QuarantineReason != "unknown authority" || es[0].EncryptionPreferred {
		t.Errorf("quarantined entry = %+v", es[0])
	}
	if u := Usable(es); len(u) != 1 || u[0].Fingerprint != good.FP || !u[0].EncryptionPreferred {
		t.Errorf("Usable(ByEmail()) = %v, want only %s, preferred", fingerprints(u), good.FP)
	}
	all, _ := s.Certificates()
	if len(all) != 1 || Fingerprint(all[0]) != good.FP {
		t.Errorf("Certificates() includes a quarantined certificate")
	}
	if c, err := s.Certificate(bad.FP); err != nil || c == nil {
		t.Errorf("Certificate(quarantined) = %v, %v; want the certificate", c, err)
	}

	// Trust with openssl's own notation: upper case with colons.
	_, osslFP := testenv.OpenSSLField(t, bad.CertPath, "-fingerprint", "-sha256")
	e, err := s.Trust(osslFP, "admin")
	if err != nil {
		t.Fatalf("Trust(%s) = %v", osslFP, err)
	}
	if e.Fingerprint != bad.FP || e.Quarantined || e.Email != "bob@example.org" || e.TrustedBy != "admin" || time.Since(e.TrustedAt) > time.Minute {
		t.Errorf("Trust() = %+v", e)
	}
	es, _ = s.ByEmail("bob@example.org")
	if u := Usable(es); len(u) != 2 || preferredOf(es) != bad.FP {
		t.Errorf("after Trust: usable %v, preferred %s; want both, %s preferred (the trust is the latest choice)", fingerprints(u), preferredOf(es), bad.FP)
	}
	// A later untrusted signature does not undo the administrator's trust.
	if err := s.Quarantine("bob@example.org", loadCert(t, bad.CertPath), nil, "again", Sighting{Seen: at.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if es, _ := s.ByFingerprint(bad.FP[:16]); len(es) != 1 || es[0].Quarantined || !es[0].LastSeen.Equal(at.Add(time.Hour)) {
		t.Errorf("ByFingerprint(prefix) after re-quarantine = %+v", es)
	}

	// A certificate quarantined for one address, validated later, becomes usable.
	other := genLeaf(t, dir, "other", "ec-sec1", "carol@example.org", nil, 50, "")
	oc := loadCert(t, other.CertPath)
	if err := s.Quarantine("carol@example.org", oc, nil, "expired chain", Sighting{Seen: at}); err != nil {
		t.Fatal(err)
	}
	if err := s.Harvest("carol@example.org", oc, nil, nil, nil, Sighting{Seen: at}); err != nil {
		t.Fatal(err)
	}
	if es, _ := s.ByEmail("carol@example.org"); len(es) != 1 || es[0].Quarantined || es[0].QuarantineReason != "" {
		t.Errorf("after Harvest of a quarantined cert: %+v", es)
	}

	// List: sorted by email.
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Email+"/"+e.Fingerprint[:8])
	}
	want := []string{"bob@example.org/" + bad.FP[:8], "bob@example.org/" + good.FP[:8], "carol@example.org/" + other.FP[:8]}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("List() = %v, want %v", got, want)
	}

	// Lookups that find nothing.
	absent := strings.Repeat("ab", 32)
	if _, err := s.Trust(absent, "admin"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Trust(absent) = %v, want ErrNotFound", err)
	}
	if c, err := s.Certificate(absent); c != nil || err != nil {
		t.Errorf("Certificate(absent) = %v, %v, want nil, nil", c, err)
	}
	if es, err := s.ByFingerprint(absent); es != nil || err != nil {
		t.Errorf("ByFingerprint(absent) = %v, %v, want nil, nil", es, err)
	}
	if es, err := s.ByEmail("nobody@example.org"); es != nil || err != nil {
		t.Errorf("ByEmail(unknown) = %v, %v", es, err)
	}
	for _, fp := range []string{"abc", "zz" + bad.FP[2:], bad.FP + "00"} {
		if _, err := s.ByFingerprint(fp); !errors.Is(err, ErrBadFingerprint) {
			t.Errorf("ByFingerprint(%q) = %v, want ErrBadFingerprint", fp, err)
		}
	}
}

func TestStoreAddIntermediates(t *testing.T) {
	dir := t.TempDir()
	root := genCA(t, dir, "root")
	sub := genSubCA(t, dir, "sub", root)
	leaf := genLeaf(t, dir, "leaf", "ec-sec1", "x@example.org", &sub, 10, "")
	s := openTestStore(t, filepath.Join(dir, "smimed.db"), false)
	defer s.Close()
	if err := s.AddIntermediates([]*x509.Certificate{loadCert(t, root.CertPath), loadCert(t, sub.CertPath), loadCert(t, leaf.CertPath)}); err != nil {
		t.Fatal(err)
	}
	ims, err := s.Intermediates()
	if err != nil || len(ims) != 1 || Fingerprint(ims[0]) != sub.FP {
		t.Errorf("Intermediates() = %d, %v, want only %s", len(ims), err, sub.FP)
	}
	if all, _ := s.Certificates(); len(all) != 0 {
		t.Errorf("Certificates() = %d, want 0 (intermediates are not leaves)", len(all))
	}
}
