package harvest

import (
	"crypto"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/revocation"
	"github.com/smimed/smimed/harvest/state"
	"golang.org/x/crypto/ocsp"
)

// TestEnclosedRevocationInfo (issue 15): revocation information the
// signer enclosed in the SignedData (RFC 5652 RevocationInfoChoices, OCSP
// responses as RFC 5940 encloses them), made by openssl: OCSP responses
// answered by `openssl ocsp` from the CA's index, CRLs by `openssl ca`.
// The CA's own servers are unreachable, so with trust.revocation = hard
// only what is enclosed can give an answer. An answer about another
// certificate, from another key, or no longer current when the message
// arrived gives none.
func TestEnclosedRevocationInfo(t *testing.T) {
	ca := testenv.NewCA(t, "Enclosing CA", "http://127.0.0.1:9/enclosing.crl")
	ca.OCSPURL(t, "http://127.0.0.1:9/ocsp")
	issued := time.Now().AddDate(0, -6, 0)
	alice, aliceKey := ca.Issue(t, "alice", "alice@partner.example", issued)
	bob, bobKey := ca.Issue(t, "bob", "bob@partner.example", issued)
	compromised := time.Now().AddDate(0, -1, 0).UTC()
	ca.Revoke(t, bob, "keyCompromise", compromised)
	crl := ca.CRL(t, 7)
	aliceOCSP, bobOCSP := ca.OCSPResponse(t, alice), ca.OCSPResponse(t, bob)
	impostor := testenv.NewCA(t, "Enclosing CA", "")
	impostorCRL := impostor.CRL(t, 7)

	roots := x509.NewCertPool()
	roots.AddCert(testenv.ReadCert(t, ca.Cert))
	now := time.Now()
	for _, tc := range []struct {
		name        string
		cert, key   string
		crls, ocsps [][]byte
		at          time.Time
		want        string
		reason      string
	}{
		{"good OCSP answer", alice, aliceKey, nil, [][]byte{aliceOCSP}, now, StatusValid, ""},
		{"revoked OCSP answer", bob, bobKey, nil, [][]byte{bobOCSP}, now, StatusRevoked, "says the OCSP answer enclosed in the message"},
		{"CRL listing the signer", bob, bobKey, [][]byte{crl}, nil, now, StatusRevoked, "keyCompromise"},
		{"CRL not listing the signer", alice, aliceKey, [][]byte{crl}, nil, now, StatusValid, ""},
		{"OCSP answer about another certificate", alice, aliceKey, nil, [][]byte{bobOCSP}, now, StatusUntrusted, "revocation unknown"},
		{"CRL signed by another key", bob, bobKey, [][]byte{impostorCRL}, nil, now, StatusUntrusted, "revocation unknown"},
		{"OCSP answer past its nextUpdate at arrival", alice, aliceKey, nil, [][]byte{aliceOCSP}, now.Add(72 * time.Hour), StatusUntrusted, "revocation unknown"},
		{"nothing enclosed", alice, aliceKey, nil, nil, now, StatusUntrusted, "revocation unknown"},
	} {
		// Each case with a checker of its own: an enclosed CRL is kept.
		eng := New(Options{Roots: roots, RevocationMode: revocation.Hard,
			Revocation: revocation.New(nil, revocation.Config{Fetch: true, OCSP: true, Timeout: time.Second})})
		from := testenv.ReadCert(t, tc.cert).EmailAddresses[0]
		msg := ca.SignEnclosing(t, tc.cert, tc.key, from, "order", "please ship", tc.crls, tc.ocsps)
		res, err := eng.Process(msg, tc.at)
		if err != nil || len(res.Report.Signatures) != 1 {
			t.Fatalf("%s: Process() = %+v, %v", tc.name, res, err)
		}
		v := res.Report.Signatures[0]
		if v.Status != tc.want || !strings.Contains(v.Reason, tc.reason) {
			t.Errorf("%s: %s %q; want %s with %q", tc.name, v.Status, v.Reason, tc.want, tc.reason)
		}
	}
	// The enclosed CRL is the CA's signed word: kept in the state as if
	// fetched, and it answers for the next message that encloses nothing.
	db, err := state.Open(filepath.Join(t.TempDir(), "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checker := revocation.New(db, revocation.Config{Fetch: true, Timeout: time.Second})
	eng := New(Options{Roots: roots, Revocation: checker, RevocationMode: revocation.Hard})
	if res, err := eng.Process(ca.SignEnclosing(t, bob, bobKey, "bob@partner.example", "order", "please ship", [][]byte{crl}, nil), now); err != nil || res.Report.Signatures[0].Status != StatusRevoked {
		t.Fatalf("bob, CRL enclosed: %+v, %v", res.Report.Signatures, err)
	}
	if res, err := eng.Process(ca.Sign(t, bob, bobKey, "bob@partner.example", "order", "please ship"), now); err != nil || res.Report.Signatures[0].Status != StatusRevoked {
		t.Errorf("bob, nothing enclosed after a CRL came enclosed: %+v, %v; want revoked by the kept CRL", res.Report.Signatures, err)
	}
	kept, err := checker.List()
	if err != nil || len(kept) != 1 || kept[0].Source != revocation.SourceEnclosed || kept[0].Issuer != testenv.ReadCert(t, ca.Cert).Subject.String() {
		t.Errorf("kept CRLs after an enclosed one: %+v, %v; want the CA's, from %q", kept, err, revocation.SourceEnclosed)
	}
}

// TestEnclosedRevocationInfoForged (issue 15, found in review): a signer
// cannot vouch for itself with an OCSP "good" it signed with its own key
// (x/crypto/ocsp takes any certificate the issuer signed as the responder;
// RFC 6960 wants id-kp-OCSPSigning), and an enclosed answer from before a
// revocation does not hide a kept CRL that lists the signer.
func TestEnclosedRevocationInfoForged(t *testing.T) {
	ca := testenv.NewCA(t, "Forged CA", "http://127.0.0.1:9/forged.crl")
	ca.OCSPURL(t, "http://127.0.0.1:9/ocsp")
	bob, bobKey := ca.Issue(t, "bob", "bob@partner.example", time.Now().AddDate(0, -6, 0))
	caCert, bobCert := testenv.ReadCert(t, ca.Cert), testenv.ReadCert(t, bob)
	lk, err := LoadPEMKey(bob, bobKey)
	if err != nil {
		t.Fatal(err)
	}
	selfVouched, err := ocsp.CreateResponse(caCert, bobCert, ocsp.Response{
		Status: ocsp.Good, SerialNumber: bobCert.SerialNumber, ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().Add(time.Hour), Certificate: bobCert,
	}, lk.Private.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	goodBefore := ca.OCSPResponse(t, bob) // signed by the CA, before the revocation
	ca.Revoke(t, bob, "keyCompromise", time.Time{})
	crl := ca.CRL(t, 7)

	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	verdict := func(eng *Engine, ocsps [][]byte) Signature {
		t.Helper()
		res, err := eng.Process(ca.SignEnclosing(t, bob, bobKey, "bob@partner.example", "order", "please ship", nil, ocsps), time.Now())
		if err != nil || len(res.Report.Signatures) != 1 {
			t.Fatalf("Process() = %+v, %v", res, err)
		}
		return res.Report.Signatures[0]
	}
	eng := New(Options{Roots: roots, RevocationMode: revocation.Hard, Revocation: revocation.New(nil, revocation.Config{Fetch: true, Timeout: time.Second})})
	if v := verdict(eng, [][]byte{selfVouched}); v.Status == StatusValid {
		t.Errorf("an OCSP good signed by the signer's own key: %s %q; want no answer from it", v.Status, v.Reason)
	}
	checker := revocation.New(nil, revocation.Config{Timeout: time.Second})
	if _, err := checker.Import(crl, []*x509.Certificate{caCert}); err != nil {
		t.Fatal(err)
	}
	eng = New(Options{Roots: roots, RevocationMode: revocation.Hard, Revocation: checker})
	if v := verdict(eng, [][]byte{goodBefore}); v.Status != StatusRevoked || !strings.Contains(v.Reason, "keyCompromise") {
		t.Errorf("an enclosed good from before the revocation, the CRL kept: %s %q; want revoked", v.Status, v.Reason)
	}
}
