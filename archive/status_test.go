package archive

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/cms"
)

// signedStatuses keeps the signature-related statuses of a record.
func signedStatuses(st []string) []string {
	var out []string
	for _, s := range st {
		if strings.HasPrefix(s, "signed-") || s == StatusCertsOnly {
			out = append(out, s)
		}
	}
	return out
}

// TestRecordStatusPerVerdict: each verdict gets its own record status
// (issue 9), from OpenSSL-made fixtures whose verdicts testdata/expected.tsv
// states, and each is found by List's status filter.
func TestRecordStatusPerVerdict(t *testing.T) {
	a, _ := openTest(t)
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(filepath.Join(testdataDir, "pki", "ca-bundle.pem"))
	if err != nil || !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("ca-bundle.pem: %v", err)
	}
	eng := harvest.New(harvest.Options{Keys: []*cms.Key{orgKey(t, "org-new")}, Roots: roots})
	for i, tc := range []struct {
		file string
		want []string // expected.tsv's verdicts, as record statuses
	}{
		{"signed-rsa-sha256.eml", []string{StatusSignedValid}},     // valid
		{"sign-then-encrypt.eml", []string{StatusSignedValid}},     // valid
		{"signed-two-signers.eml", []string{StatusSignedMismatch}}, // mismatch,valid: not all valid
		{"signed-expired.eml", []string{StatusSignedExpired}},      // expired
		{"signed-selfsigned.eml", []string{StatusSignedUntrusted}}, // untrusted
		{"signed-noeku.eml", []string{StatusSignedUntrusted}},      // untrusted
		{"signed-mismatch.eml", []string{StatusSignedMismatch}},    // mismatch
		{"signed-tampered.eml", []string{StatusSignedInvalid}},     // invalid
		{"signed-no-sigpart.eml", []string{StatusSignedError}},     // error
		{"certs-only.eml", []string{StatusCertsOnly}},              // no signature
		{"plain.eml", nil}, // plain
	} {
		s := src(uint32(i + 1))
		rec, _ := put(t, a, eng, s, testenv.Testdata(t, "msg", tc.file))
		if got := signedStatuses(rec.Status); !slices.Equal(got, tc.want) {
			t.Errorf("%s: status %v, want %v among them", tc.file, rec.Status, tc.want)
		}
		for _, st := range tc.want {
			found := false
			a.List(Query{Status: st}, func(r *Record) error { found = found || r.ID == rec.ID; return nil })
			if !found {
				t.Errorf("%s: List(--status %s) does not find record %d", tc.file, st, rec.ID)
			}
		}
	}
}

// TestSignatureStatuses: one status per distinct non-valid verdict, in a
// fixed order; signed-valid only when every verdict is valid; a partial
// verdict is never signed-valid; an unknown verdict is signed-error.
func TestSignatureStatuses(t *testing.T) {
	sigs := func(vs ...string) []harvest.Signature {
		var out []harvest.Signature
		for _, v := range vs {
			out = append(out, harvest.Signature{Status: v})
		}
		return out
	}
	for _, tc := range []struct {
		verdicts []string
		want     []string
	}{
		{nil, nil},
		{[]string{"valid"}, []string{"signed-valid"}},
		{[]string{"valid", "valid"}, []string{"signed-valid"}},
		{[]string{"partial"}, []string{"signed-partial"}},
		{[]string{"valid", "partial"}, []string{"signed-partial"}},
		{[]string{"revoked"}, []string{"signed-revoked"}},
		{[]string{"error", "untrusted", "expired", "untrusted"}, []string{"signed-untrusted", "signed-expired", "signed-error"}},
		{[]string{"invalid", "mismatch", "partial"}, []string{"signed-partial", "signed-mismatch", "signed-invalid"}},
		{[]string{"valid", "brand-new-verdict"}, []string{"signed-error"}},
		{[]string{"brand-new-verdict", "error"}, []string{"signed-error"}},
	} {
		if got := signatureStatuses(sigs(tc.verdicts...)); !slices.Equal(got, tc.want) {
			t.Errorf("signatureStatuses(%v) = %v, want %v", tc.verdicts, got, tc.want)
		}
	}
}

// TestStatusFilterNamesValidValues: an unknown --status is refused in
// one line naming every valid value.
func TestStatusFilterNamesValidValues(t *testing.T) {
	q := Query{Status: "signed-bogus"}
	err := q.Check()
	want := `unknown status "signed-bogus" (want one of decrypted, undecryptable, signed-valid, signed-partial, signed-untrusted, signed-expired, signed-mismatch, signed-revoked, signed-invalid, signed-error, certs-only, plain, error, signed, encrypted, sent-unsigned, sent-unencrypted, refused, passed)`
	if err == nil || err.Error() != want {
		t.Errorf("Check() = %v, want %s", err, want)
	}
}
