package harvest

import (
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// The A-labels are Python's (str.encode("idna")), not computed by us.
func TestASCIIDomain(t *testing.T) {
	for in, want := range map[string]string{
		"bücher.example":        "xn--bcher-kva.example",
		"MÜNCHEN.Example":       "xn--mnchen-3ya.example",
		"ドメイン.テスト":              "xn--eckwd4c7c.xn--zckzah",
		"xn--bcher-kva.example": "xn--bcher-kva.example",
		"Partner.Example.":      "partner.example",
		"under_score.example":   "under_score.example", // ASCII: only lower-cased
		"bad_ü.example":         "bad_ü.example",       // refused by IDNA: only lower-cased
		// Lookalikes IDNA's mapping would fold into another domain stay
		// as written (lower-cased): fullwidth letters, a soft hyphen, a
		// decomposed ü, an ideographic full stop.
		"ｏｒｇ.example":          "ｏｒｇ.example",
		"o\u00adrg.example":    "o\u00adrg.example",
		"bu\u0308cher.example": "bu\u0308cher.example",
		"partner。example":      "partner。example",
		"":                     "",
	} {
		if got := ASCIIDomain(in); got != want {
			t.Errorf("ASCIIDomain(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"Anna@Bücher.example":     "anna@xn--bcher-kva.example",
		"anna@bücher.example.":    "anna@xn--bcher-kva.example",
		"no-at-sign":              "no-at-sign",
		"Ünïcode@Partner.Example": "ünïcode@partner.example",
	} {
		if got := NormalizeAddress(in); got != want {
			t.Errorf("NormalizeAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

// A certificate names its address in A-labels (rfc822Name is ASCII); mail
// written with SMTPUTF8 (RFC 6532) shows the domain in U-labels. The
// signature binds the From all the same, the certificate is harvested
// under the A-label address and found for either spelling — and OpenSSL,
// which knows nothing of IDNA, verifies the signature too.
func TestInternationalDomainBinding(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	ca := genCA(t, dir, "idn-ca")
	leaf := genLeaf(t, dir, "anna", "rsa-pkcs8", "anna@xn--bcher-kva.example", &ca, 30, "digitalSignature,keyEncipherment")
	roots := x509.NewCertPool()
	roots.AddCert(loadCert(t, ca.CertPath))
	st := openTestStore(t, filepath.Join(dir, "smimed.db"), false)
	defer st.Close()
	eng := New(Options{Roots: roots, Store: st, Harvest: true})
	body := []byte("Content-Type: text/plain; charset=utf-8\r\n\r\nGrüße\r\n")
	signed := testenv.OpenSSLInput(t, dir, body, "cms", "-sign", "-signer", leaf.CertPath, "-inkey", leaf.KeyPath)
	testenv.OpenSSLInput(t, dir, signed, "cms", "-verify", "-CAfile", ca.CertPath, "-purpose", "smimesign")
	for _, from := range []string{"Anna <anna@bücher.example>", "anna@xn--bcher-kva.example", "anna@BÜCHER.example"} {
		raw := append([]byte("From: "+from+"\r\nTo: x@org.example\r\nSubject: IDN\r\n"), signed...)
		res, err := eng.Process(raw, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if s := res.Report.Signatures; len(s) != 1 || s[0].Status != StatusValid {
			t.Errorf("From %s: signatures %+v, want one valid", from, s)
		}
	}
	for _, addr := range []string{"anna@xn--bcher-kva.example", "Anna@Bücher.example"} {
		if fp, _ := recipientFP(t, st, addr, time.Now()); fp != leaf.FP {
			t.Errorf("RecipientCert(%s) = %q, want %s", addr, fp, leaf.FP)
		}
	}
}

// FuzzNormalizeAddress: any address (from a header, an envelope or a
// certificate) normalises without panicking, to a value that normalises
// to itself, and the domain of an all-ASCII address is only lower-cased.
func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{"Anna@Bücher.example", "a@xn--bcher-kva.example.", "@", "a@", "a@b@c", "x@\u3002example", "x@ex\u200dample", "x@" + strings.Repeat("ü", 300) + ".example", "\xff@\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		n := NormalizeAddress(addr)
		if again := NormalizeAddress(n); again != n {
			t.Fatalf("NormalizeAddress(%q) = %q, and again %q", addr, n, again)
		}
		ascii := true
		for i := 0; i < len(addr); i++ {
			ascii = ascii && addr[i] < 0x80
		}
		if ascii && n != strings.TrimRight(strings.ToLower(addr), ".") && strings.Contains(addr, "@") && !strings.HasSuffix(addr[:strings.LastIndexByte(addr, '@')+1], ".") {
			// Only the domain's trailing dots go.
			if i := strings.LastIndexByte(addr, '@'); n != strings.ToLower(addr[:i+1])+strings.TrimRight(strings.ToLower(addr[i+1:]), ".") {
				t.Fatalf("NormalizeAddress(%q) = %q: an ASCII address changed beyond case and trailing dots", addr, n)
			}
		}
	})
}
