package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// signingCert makes a self-signed certificate and key with OpenSSL in dir:
// newKey as openssl req -newkey takes it, ext the extensions, days its
// validity (negative: already expired, via -not_after).
func signingCert(t *testing.T, dir, name, newKey, ext string) (cert, key string) {
	t.Helper()
	cnf := writeFile(t, dir, name+".cnf", "[req]\ndistinguished_name=dn\n[dn]\n[ext]\nbasicConstraints=CA:FALSE\n"+ext+"\n")
	cert, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	testenv.OpenSSL(t, dir, "req", "-x509", "-newkey", newKey, "-nodes", "-keyout", key, "-subj", "/O=Org/CN="+name,
		"-days", "365", "-config", cnf, "-extensions", "ext", "-out", cert)
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

const (
	signExt  = "keyUsage=critical,digitalSignature,nonRepudiation\nextendedKeyUsage=emailProtection\nsubjectAltName=email:ceo@org.example"
	encExt   = "keyUsage=critical,keyEncipherment\nextendedKeyUsage=emailProtection\nsubjectAltName=email:ceo@org.example"
	tlsExt   = "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=email:ceo@org.example"
	escrowKU = "keyUsage=critical,keyEncipherment\nextendedKeyUsage=emailProtection\nsubjectAltName=email:escrow@org.example"
)

// [[signing]] loaded with OpenSSL-made keys: what can sign is loaded and
// found by address, then by the most specific domain; every problem is
// named by its key.
func TestLoadSigning(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	rsaCert, rsaKey := signingCert(t, dir, "rsa", "rsa:2048", signExt)
	ecCert, ecKey := signingCert(t, dir, "ec", "ec:"+ecParams(t, dir), signExt)
	orgCert, orgKey := signingCert(t, dir, "org", "rsa:2048", escrowKU)
	p := writeFile(t, dir, "smimed.toml", fmt.Sprintf(`
[[keys]]
cert_file = %q
key_file = %q
[[signing]]
addresses = ["CEO@org.example"]
cert_file = %q
key_file = %q
pss = true
[[signing]]
domains = ["org.example", "*.org.test", "*.Bücher.example", "*.xn--bcher-kva.example"] # the last twice: once is enough
cert_file = %q
key_file = %q
`, orgCert, orgKey, rsaCert, rsaKey, ecCert, ecKey))
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	ids, warnings, err := LoadSigningWarn(cfg)
	if err != nil {
		t.Fatalf("LoadSigningWarn = %v", err)
	}
	all := ids.All()
	if len(all) != 2 || !all[0].PSS || all[0].Key == nil || all[1].Key == nil {
		t.Fatalf("identities = %+v", all)
	}
	for _, tc := range []struct {
		addr string
		want int // index, -1 none
	}{{"ceo@org.example", 0}, {"Ceo@ORG.example", 0}, {"cfo@org.example", 1}, {"x@sub.org.test", 1}, {"x@a.b.org.test", 1}, {"x@org.test", -1}, {"x@other.test", -1}, {"no-at", -1},
		// *.Bücher.example, matched in U-labels and in A-labels.
		{"x@Sub.BÜCHER.example", 1}, {"x@sub.xn--bcher-kva.example", 1}, {"x@xn--bcher-kva.example", -1}} {
		got := ids.For(tc.addr)
		if (tc.want < 0) != (got == nil) || got != nil && got.Entry != tc.want {
			t.Errorf("For(%s) = %+v, want signing[%d]", tc.addr, got, tc.want)
		}
	}
	// The encryption certificate defaults to the first [[keys]] entry's.
	if ec := all[0].EncryptionCert; ec == nil || !strings.Contains(ec.Subject.CommonName, "org") {
		t.Errorf("EncryptionCert = %v, want the [[keys]] entry's certificate", ec)
	}
	if esc, err := cfg.DefaultEscrow(); err != nil || esc == nil || !esc.Equal(all[0].EncryptionCert) {
		t.Errorf("DefaultEscrow = %v, %v", esc, err)
	}
	if len(warnings) != 3 || !strings.Contains(warnings[0], "signing[1].domains[0]") || !strings.Contains(warnings[0], "ceo@org.example") {
		t.Errorf("warnings = %q, want one per domain naming the certificate's address", warnings)
	}
}

func ecParams(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "p256.pem")
	testenv.OpenSSL(t, dir, "ecparam", "-name", "prime256v1", "-out", p)
	return p
}

// Each identity that cannot sign is named with what is wrong.
func TestLoadSigningProblems(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	rsaCert, _ := signingCert(t, dir, "rsa", "rsa:2048", signExt)
	_, otherKey := signingCert(t, dir, "other", "rsa:2048", signExt)
	encCert, encKey := signingCert(t, dir, "enc", "rsa:2048", encExt)
	tlsCert, tlsKey := signingCert(t, dir, "tls", "rsa:2048", tlsExt)
	ecCert, ecKey := signingCert(t, dir, "ec", "ec:"+ecParams(t, dir), signExt)
	signOnly, _ := signingCert(t, dir, "signonly", "rsa:2048", signExt)
	for _, tc := range []struct {
		name, body, want string
	}{
		{"key does not match", fmt.Sprintf("addresses = [\"ceo@org.example\"]\ncert_file = %q\nkey_file = %q", rsaCert, otherKey), "signing[0]: key file " + otherKey + ": key does not match certificate"},
		{"keyEncipherment only", fmt.Sprintf("addresses = [\"ceo@org.example\"]\ncert_file = %q\nkey_file = %q", encCert, encKey), "signing[0]: the certificate in " + encKey + " cannot sign mail: its key usage allows neither digitalSignature nor nonRepudiation"},
		{"not for email", fmt.Sprintf("addresses = [\"ceo@org.example\"]\ncert_file = %q\nkey_file = %q", tlsCert, tlsKey), "extended key usage does not allow email protection"},
		{"pss with EC", fmt.Sprintf("addresses = [\"ceo@org.example\"]\ncert_file = %q\nkey_file = %q\npss = true", ecCert, ecKey), "signing[0].pss: RSASSA-PSS needs an RSA key"},
		{"address not in the certificate", fmt.Sprintf("addresses = [\"cfo@org.example\"]\ncert_file = %q\nkey_file = %q", ecCert, ecKey), "signing[0].addresses[0]: cfo@org.example is not an address of the certificate"},
		{"encryption certificate that cannot encrypt", fmt.Sprintf("addresses = [\"ceo@org.example\"]\ncert_file = %q\nkey_file = %q\nencryption_cert_file = %q", ecCert, ecKey, signOnly), "signing[0].encryption_cert_file: " + signOnly + " cannot be encrypted to: its key usage does not include keyEncipherment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(writeFile(t, dir, "smimed.toml", "[[signing]]\n"+tc.body+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = LoadSigningWarn(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadSigningWarn = %v, want %q", err, tc.want)
			}
		})
	}
	// Problems of the file itself, found by Load.
	_, err := Load(writeFile(t, dir, "bad.toml", `
[[signing]]
cert_file = "x.crt"
[[signing]]
addresses = ["not-an-address", "a@org.example"]
domains = ["org"]
pkcs12_file = "a.p12"
[[signing]]
addresses = ["A@org.example"]
pkcs12_file = "b.p12"
passwrd_file = "b.pass"
`))
	for _, want := range []string{
		"signing[0]: needs addresses or domains",
		"signing[0]: cert_file and key_file must both be set",
		`signing[1].addresses[0]: "not-an-address" is not an email address`,
		`signing[1].domains[0]: "org" is not a domain`,
		"signing[2].addresses[0]: a@org.example is already signed for by signing[1]",
		"signing.passwrd_file: unknown key",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load = %v\nwant %q", err, want)
		}
	}
}
