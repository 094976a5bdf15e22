package pkcs12

// Every expected value in these tests comes from OpenSSL (run at test time),
// from RFC test vectors, or from files written by other implementations;
// none is computed by the code under test.

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

func writeTemp(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// opensslFingerprints returns, in order, the SHA-256 fingerprints that
// `openssl x509 -fingerprint -sha256` prints for the certificates in a PEM
// bundle (lower-case hex without colons).
func opensslFingerprints(t testing.TB, dir string, bundle []byte) []string {
	t.Helper()
	var fps []string
	for i := 0; ; i++ {
		var block *pem.Block
		block, bundle = pem.Decode(bundle)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		f := writeTemp(t, dir, fmt.Sprintf("fp-%d.pem", i), pem.EncodeToMemory(block))
		fps = append(fps, testenv.OpenSSLFingerprint(t, f))
	}
	return fps
}

// expected is what OpenSSL reads from a PKCS#12 file.
type expected struct {
	fps    []string // certificate fingerprints in file order
	pubDER []byte   // SubjectPublicKeyInfo of the first private key
}

// opensslExpect extracts the certificates and the first key of p12 with
// `openssl pkcs12` and derives the expected values from them with
// `openssl x509` and `openssl pkey`.
func opensslExpect(t testing.TB, dir, p12, password string, extra ...string) expected {
	t.Helper()
	base := append([]string{"pkcs12", "-in", p12, "-passin", "pass:" + password, "-legacy"}, extra...)
	certs := testenv.OpenSSL(t, dir, append(base, "-nokeys")...)
	keys := testenv.OpenSSL(t, dir, append(base, "-nocerts", "-nodes")...)
	kf := writeTemp(t, dir, filepath.Base(p12)+".key.pem", keys)
	return expected{
		fps:    opensslFingerprints(t, dir, certs),
		pubDER: testenv.OpenSSL(t, dir, "pkey", "-in", kf, "-pubout", "-outform", "DER"),
	}
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// checkDecoded compares Decode's result with what OpenSSL found.
func checkDecoded(t testing.TB, key crypto.PrivateKey, certs []*x509.Certificate, want expected) {
	t.Helper()
	var got []string
	for _, c := range certs {
		got = append(got, fingerprint(c))
	}
	if strings.Join(got, ",") != strings.Join(want.fps, ",") {
		t.Errorf("certificate fingerprints = %v, openssl says %v", got, want.fps)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		t.Fatalf("key is %T, not a crypto.Signer", key)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub, want.pubDER) {
		t.Errorf("public key of the decoded private key differs from `openssl pkey -pubout`")
	}
}

// testPKI is a CA with an RSA and an EC end-entity certificate.
type testPKI struct {
	dir            string
	caCert         string
	rsaCert, rsaKy string
	ecCert, ecKey  string
}

func makePKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{dir: dir}
	p.caCert = filepath.Join(dir, "ca.pem")
	testenv.OpenSSL(t, dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "ca.key", "-out", p.caCert, "-subj", "/O=Test/CN=Test CA", "-days", "30")
	leaf := func(name, newkey string, opts ...string) (string, string) {
		args := append([]string{"req", "-new", "-newkey", newkey}, opts...)
		args = append(args, "-nodes", "-keyout", name+".key", "-out", name+".csr",
			"-subj", "/O=Test/CN="+name+"/emailAddress="+name+"@example.org")
		testenv.OpenSSL(t, dir, args...)
		testenv.OpenSSL(t, dir, "x509", "-req", "-in", name+".csr", "-CA", p.caCert, "-CAkey", "ca.key",
			"-set_serial", fmt.Sprint(len(name)+100), "-days", "30", "-out", name+".pem")
		return filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	}
	p.rsaCert, p.rsaKy = leaf("rsa", "rsa:2048")
	p.ecCert, p.ecKey = leaf("ec", "ec", "-pkeyopt", "ec_paramgen_curve:P-384")
	return p
}

var legacyProvider = []string{"-provider", "legacy", "-provider", "default"}

func TestDecodeOpenSSL(t *testing.T) {
	pki := makePKI(t)
	const pw = "s3cret p\u00e4ss"
	cases := []struct {
		name     string
		ec       bool
		password string
		args     []string
		info     []string // what `openssl pkcs12 -info` must report
		noMAC    bool
	}{
		{name: "openssl3-default", password: pw, info: []string{"MAC: sha256", "PBES2, PBKDF2, AES-256-CBC"}},
		{name: "legacy", password: pw, args: []string{"-legacy"},
			info: []string{"MAC: sha1", "pbeWithSHA1And40BitRC2-CBC", "pbeWithSHA1And3-KeyTripleDES-CBC"}},
		{name: "rc2-40-3des-sha1", password: pw,
			args: append(legacyProvider, "-certpbe", "PBE-SHA1-RC2-40", "-keypbe", "PBE-SHA1-3DES", "-macalg", "sha1"),
			info: []string{"MAC: sha1", "pbeWithSHA1And40BitRC2-CBC", "pbeWithSHA1And3-KeyTripleDES-CBC"}},
		{name: "rc2-128", password: pw,
			args: append(legacyProvider, "-keypbe", "PBE-SHA1-RC2-128", "-certpbe", "PBE-SHA1-RC2-128"),
			info: []string{"pbeWithSHA1And128BitRC2-CBC"}},
		{name: "2key-3des", password: pw, args: []string{"-keypbe", "PBE-SHA1-2DES", "-certpbe", "PBE-SHA1-2DES"},
			info: []string{"pbeWithSHA1And2-KeyTripleDES-CBC"}},
		{name: "aes128-3des-sha512", password: pw, args: []string{"-keypbe", "AES-128-CBC", "-certpbe", "DES-EDE3-CBC", "-macalg", "sha512"},
			info: []string{"MAC: sha512", "AES-128-CBC", "DES-EDE3-CBC"}},
		{name: "aes192-sha384", password: pw, args: []string{"-keypbe", "AES-192-CBC", "-certpbe", "AES-192-CBC", "-macalg", "sha384"},
			info: []string{"MAC: sha384", "AES-192-CBC"}},
		{name: "sha224-mac", password: pw, args: []string{"-macalg", "sha224"}, info: []string{"MAC: sha224"}},
		{name: "iterations-1", password: pw, args: []string{"-noiter", "-nomaciter"}, info: []string{"Iteration 1"}},
		{name: "iterations-100000", password: pw, args: []string{"-iter", "100000"}, info: []string{"Iteration 100000"}},
		{name: "nomac", password: pw, args: []string{"-nomac"}, noMAC: true, info: []string{"PBES2"}},
		{name: "nomac-legacy", password: pw, args: []string{"-nomac", "-legacy"}, noMAC: true, info: []string{"pbeWithSHA1And3-KeyTripleDES-CBC"}},
		{name: "nomac-rc2-40", password: pw, args: append(legacyProvider, "-nomac", "-certpbe", "PBE-SHA1-RC2-40", "-keypbe", "PBE-SHA1-3DES"),
			noMAC: true, info: []string{"pbeWithSHA1And40BitRC2-CBC"}},
		{name: "plain-keybag", password: pw, args: []string{"-nomac", "-keypbe", "NONE", "-certpbe", "NONE"}, noMAC: true, info: []string{"Key bag"}},
		{name: "ec", ec: true, password: pw, info: []string{"PBES2"}},
		{name: "ec-legacy", ec: true, password: pw, args: []string{"-legacy"}, info: []string{"pbeWithSHA1And3-KeyTripleDES-CBC"}},
		{name: "empty-password", password: "", info: []string{"MAC: sha256"}},
		{name: "empty-password-legacy", password: "", args: []string{"-legacy"}, info: []string{"MAC: sha1"}},
		{name: "empty-password-nomac-legacy", password: "", args: []string{"-legacy", "-nomac"}, noMAC: true, info: []string{"pbeWithSHA1And3-KeyTripleDES-CBC"}},
		{name: "non-bmp-password", password: "p\u00e4ss \U0001D11E", args: []string{"-legacy"}, info: []string{"MAC: sha1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cert, key := pki.rsaCert, pki.rsaKy
			if tc.ec {
				cert, key = pki.ecCert, pki.ecKey
			}
			p12 := filepath.Join(dir, tc.name+".p12")
			args := append([]string{"pkcs12", "-export", "-in", cert, "-inkey", key, "-certfile", pki.caCert,
				"-name", tc.name, "-passout", "pass:" + tc.password, "-out", p12}, tc.args...)
			testenv.OpenSSL(t, dir, args...)
			info := string(testenv.OpenSSLCombined(t, dir, "pkcs12", "-info", "-noout", "-in", p12, "-passin", "pass:"+tc.password, "-legacy"))
			for _, w := range tc.info {
				if !strings.Contains(info, w) {
					t.Fatalf("openssl pkcs12 -info does not mention %q; the fixture is not what this case tests:\n%s", w, info)
				}
			}
			if tc.noMAC == strings.Contains(info, "MAC:") {
				t.Fatalf("fixture MAC presence is not %v:\n%s", !tc.noMAC, info)
			}
			want := opensslExpect(t, dir, p12, tc.password)
			if len(want.fps) != 2 {
				t.Fatalf("openssl found %d certificates, want 2", len(want.fps))
			}
			data, err := os.ReadFile(p12)
			if err != nil {
				t.Fatal(err)
			}

			key2, certs, err := Decode(data, tc.password)
			if err != nil {
				t.Fatalf("Decode() = %v", err)
			}
			checkDecoded(t, key2, certs, want)

			// The same file in BER, as NSS writes it: indefinite lengths
			// and chunked OCTET STRINGs. With a MAC only the layers
			// outside the MAC'd octets can change; without one, every
			// plain level can.
			ber := berOuter(t, data)
			if tc.noMAC {
				ber = berDeep(t, data)
			}
			berFile := writeTemp(t, dir, tc.name+".ber.p12", ber)
			if bytes.Equal(ber, data) {
				t.Fatal("BER re-encoding changed nothing")
			}
			if got := opensslExpect(t, dir, berFile, tc.password); strings.Join(got.fps, ",") != strings.Join(want.fps, ",") {
				t.Fatalf("openssl reads the BER re-encoding differently: %v", got.fps)
			}
			key2, certs, err = Decode(ber, tc.password)
			if err != nil {
				t.Fatalf("Decode(BER) = %v", err)
			}
			checkDecoded(t, key2, certs, want)

			if !tc.noMAC {
				// A changed MAC value fails even with the right password.
				var pfx struct {
					Version  int
					AuthSafe asn1.RawValue
					MacData  macData
				}
				if _, err := asn1.Unmarshal(data, &pfx); err != nil {
					t.Fatal(err)
				}
				digest := pfx.MacData.Mac.Digest
				if len(digest) == 0 || bytes.Count(data, digest) != 1 {
					t.Fatal("cannot locate the MAC value")
				}
				bad := bytes.Clone(digest)
				bad[len(bad)-1] ^= 1
				_, _, err := Decode(bytes.Replace(data, digest, bad, 1), tc.password)
				if !errors.Is(err, ErrIncorrectPassword) || !strings.Contains(err.Error(), "MAC mismatch") {
					t.Errorf("Decode(altered MAC) = %v, want ErrIncorrectPassword for the MAC", err)
				}
			}
			if tc.name == "plain-keybag" {
				return // nothing is encrypted or MAC'd: any password reads it
			}
			for _, wrong := range []string{"wrong", tc.password + "\n"} {
				key2, certs, err := Decode(data, wrong)
				if tc.noMAC {
					// Without a MAC only the padding (or, rarely, the
					// structure behind it) betrays a wrong password.
					if err == nil {
						t.Errorf("Decode(%q) succeeded", wrong)
					}
				} else if !errors.Is(err, ErrIncorrectPassword) {
					t.Errorf("Decode(%q) = %v, want ErrIncorrectPassword", wrong, err)
				}
				if err != nil && (key2 != nil || certs != nil) {
					t.Errorf("Decode(%q) returned a key or certificates with an error", wrong)
				}
			}
			if tc.noMAC {
				if _, _, err := Decode(data, "wrong"); !errors.Is(err, ErrIncorrectPassword) {
					t.Errorf("Decode(wrong, no MAC) = %v, want ErrIncorrectPassword", err)
				}
			}
		})
	}
}

// TestDecodeEmptyPasswordForms checks both encodings of the empty password
// for the MAC: OpenSSL and Bouncy Castle write BMPString "" as two zero
// bytes, other producers as no bytes at all. The second kind is made from an
// OpenSSL file by replacing its MAC with one that OpenSSL computes (`openssl
// kdf PKCS12KDF` with an empty password, then `openssl mac HMAC`).
func TestDecodeEmptyPasswordForms(t *testing.T) {
	pki := makePKI(t)
	dir := t.TempDir()
	p12 := filepath.Join(dir, "empty.p12")
	testenv.OpenSSL(t, dir, "pkcs12", "-export", "-in", pki.ecCert, "-inkey", pki.ecKey, "-passout", "pass:", "-out", p12)
	data, err := os.ReadFile(p12)
	if err != nil {
		t.Fatal(err)
	}
	var pfx struct {
		Version  int
		AuthSafe testContentInfo
		MacData  macData
	}
	if _, err := asn1.Unmarshal(data, &pfx); err != nil {
		t.Fatal(err)
	}
	if !pfx.MacData.Mac.Algorithm.Algorithm.Equal(oidSHA256) || len(pfx.MacData.Mac.Digest) != 32 {
		t.Fatalf("fixture MAC is %v, want SHA-256", pfx.MacData.Mac.Algorithm.Algorithm)
	}
	var authSafe []byte
	if _, err := asn1.Unmarshal(pfx.AuthSafe.Content.Bytes, &authSafe); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(testenv.OpenSSL(t, dir, "kdf", "-keylen", "32", "-kdfopt", "digest:SHA256", "-kdfopt", "hexpass:",
		"-kdfopt", "hexsalt:"+hex.EncodeToString(pfx.MacData.MacSalt), "-kdfopt", fmt.Sprintf("iter:%d", pfx.MacData.Iterations),
		"-kdfopt", "id:3", "PKCS12KDF")))
	key = strings.ReplaceAll(key, ":", "")
	content := writeTemp(t, dir, "authsafe.bin", authSafe)
	macHex := strings.TrimSpace(string(testenv.OpenSSL(t, dir, "mac", "-digest", "SHA256", "-macopt", "hexkey:"+key, "-in", content, "HMAC")))
	mac, err := hex.DecodeString(macHex)
	if err != nil || len(mac) != 32 {
		t.Fatalf("openssl mac printed %q", macHex)
	}
	if bytes.Count(data, pfx.MacData.Mac.Digest) != 1 {
		t.Fatal("MAC value not unique in the file")
	}
	spliced := bytes.Replace(data, pfx.MacData.Mac.Digest, mac, 1)
	splicedFile := writeTemp(t, dir, "empty-form.p12", spliced)

	want := opensslExpect(t, dir, p12, "")
	// OpenSSL accepts the new MAC (it retries with a NULL password).
	if got := opensslExpect(t, dir, splicedFile, ""); strings.Join(got.fps, ",") != strings.Join(want.fps, ",") {
		t.Fatalf("openssl reads the re-MAC'd file differently: %v", got.fps)
	}
	for name, b := range map[string][]byte{"two-zero-bytes": data, "no-bytes": spliced} {
		k, certs, err := Decode(b, "")
		if err != nil {
			t.Errorf("%s: Decode() = %v", name, err)
			continue
		}
		checkDecoded(t, k, certs, want)
		if _, _, err := Decode(b, "x"); !errors.Is(err, ErrIncorrectPassword) {
			t.Errorf("%s: Decode(wrong password) = %v, want ErrIncorrectPassword", name, err)
		}
	}
}

// TestDecodeDSAOnly checks that a file whose only key is DSA fails with a
// clear error.
func TestDecodeDSAOnly(t *testing.T) {
	dir := t.TempDir()
	testenv.OpenSSL(t, dir, "genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt", "dsa_paramgen_bits:1024", "-out", "dsa.param")
	testenv.OpenSSL(t, dir, "genpkey", "-paramfile", "dsa.param", "-out", "dsa.key")
	testenv.OpenSSL(t, dir, "req", "-x509", "-new", "-key", "dsa.key", "-subj", "/CN=dsa", "-days", "30", "-out", "dsa.pem")
	testenv.OpenSSL(t, dir, "pkcs12", "-export", "-in", "dsa.pem", "-inkey", "dsa.key", "-passout", "pass:x", "-out", "dsa.p12")
	info := string(testenv.OpenSSL(t, dir, "pkcs12", "-in", "dsa.p12", "-passin", "pass:x", "-nocerts", "-nodes"))
	if !strings.Contains(info, "BEGIN PRIVATE KEY") {
		t.Fatalf("fixture has no private key:\n%s", info)
	}
	data, err := os.ReadFile(filepath.Join(dir, "dsa.p12"))
	if err != nil {
		t.Fatal(err)
	}
	key, certs, err := Decode(data, "x")
	if !errors.Is(err, ErrNoPrivateKey) || !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "DSA") ||
		!strings.Contains(err.Error(), "1.2.840.10040.4.1") {
		t.Errorf("Decode(DSA only) = %v, want ErrNoPrivateKey and ErrUnsupported naming DSA", err)
	}
	if key != nil || certs != nil {
		t.Errorf("Decode(DSA only) returned %T and %d certificates", key, len(certs))
	}
}

func corpusDir(t *testing.T) string {
	t.Helper()
	dir := testenv.CorpusPath()
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		testenv.SkipNoCorpus(t, dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestDecodeCorpus decodes files written by NSS (BER at every level),
// Java's KeyStore (an RSA and a DSA key) and Bouncy Castle (empty
// password), and compares with what OpenSSL reads from them.
func TestDecodeCorpus(t *testing.T) {
	corpus := corpusDir(t)
	testenv.NeedOpenSSL(t)
	type file struct{ path, password string }
	var files []file
	for _, g := range []string{"thunderbird-nss/smime/*.p12", "thunderbird-nss/smime-interop/*.p12"} {
		m, _ := filepath.Glob(filepath.Join(corpus, g))
		if len(m) == 0 {
			t.Errorf("no files match %s in the corpus", g)
		}
		for _, p := range m {
			files = append(files, file{p, "nss"})
		}
	}
	files = append(files,
		file{filepath.Join(corpus, "simple-java-mail/pkcs12/smime_keystore.pkcs12"), "letmein"},
		file{filepath.Join(corpus, "simple-java-mail/pkcs12/smime_test_user.p12"), "letmein"},
		file{filepath.Join(corpus, "bouncycastle-mail/johndoe.p12"), ""},
	)
	sawBER := false
	for _, f := range files {
		name, _ := filepath.Rel(corpus, f.path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f.path)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) > 1 && data[1] == 0x80 {
				sawBER = true
			}
			dir := t.TempDir()
			want := opensslExpect(t, dir, f.path, f.password)
			key, certs, err := Decode(data, f.password)
			if err != nil {
				t.Fatalf("Decode() = %v", err)
			}
			checkDecoded(t, key, certs, want)
			if _, _, err := Decode(data, f.password+"x"); !errors.Is(err, ErrIncorrectPassword) {
				t.Errorf("Decode(wrong password) = %v, want ErrIncorrectPassword", err)
			}
		})
	}
	if !sawBER {
		t.Error("no corpus file starts with an indefinite-length SEQUENCE; the NSS files are not what this test expects")
	}
}

// TestDecodeRFC9579 uses the PBMAC1 test vectors of RFC 9579 appendix A
// (password "1234"): A.1 to A.3 are valid, A.4 (bad iteration count) and
// A.5 (wrong salt) must fail the MAC, A.6 lacks the PBKDF2 keyLength.
// OpenSSL 3.0 cannot verify PBMAC1, so the expected contents come from
// `openssl pkcs12 -nomacver`.
func TestDecodeRFC9579(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		file string
		want error
	}{
		{"a1.p12", nil},
		{"a2.p12", nil},
		{"a3.p12", nil},
		{"a4.p12", ErrIncorrectPassword},
		{"a5.p12", ErrIncorrectPassword},
		{"a6.p12", ErrMalformed},
	} {
		t.Run(tc.file, func(t *testing.T) {
			p, err := filepath.Abs(filepath.Join("testdata", "rfc9579", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			info := string(testenv.OpenSSLCombined(t, dir, "pkcs12", "-info", "-noout", "-nomacver", "-in", p, "-passin", "pass:1234"))
			if !strings.Contains(info, "MAC: PBMAC1") {
				t.Fatalf("%s is not a PBMAC1 file:\n%s", tc.file, info)
			}
			key, certs, err := Decode(data, "1234")
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("Decode() = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode() = %v", err)
			}
			checkDecoded(t, key, certs, opensslExpect(t, dir, p, "1234", "-nomacver"))
			if _, _, err := Decode(data, "12345"); !errors.Is(err, ErrIncorrectPassword) {
				t.Errorf("Decode(wrong password) = %v, want ErrIncorrectPassword", err)
			}
		})
	}
}

// TestPKCS12KDF compares the KDF of RFC 7292 appendix B.2 with OpenSSL's
// PKCS12KDF. The password is given as raw (BMPString) bytes to both.
func TestPKCS12KDF(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("0041", 70) + "0000" // 142 bytes: more than two SHA-1 blocks
	for _, tc := range []struct {
		digest string
		h      hashAlg
		pass   string // hex
		salt   string // hex
		id     int
		iter   int
		n      int
	}{
		{"SHA1", hashSHA1, "0073006d006500670000", "0a58cf64530d823f", 1, 1, 24},
		{"SHA1", hashSHA1, "0073006d006500670000", "0a58cf64530d823f", 2, 1, 8},
		{"SHA1", hashSHA1, "007100750065006500670000", "1682c0fc5b3f7ec5", 1, 1000, 24},
		{"SHA1", hashSHA1, "007100750065006500670000", "1682c0fc5b3f7ec5", 3, 1000, 20},
		{"SHA1", hashSHA1, long, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff01", 1, 3, 61},
		{"SHA1", hashSHA1, "0000", "01", 3, 2, 20},
		{"SHA1", hashSHA1, "", "0102030405060708", 3, 2048, 20}, // the empty form of the empty password
		{"SHA256", hashSHA256, "", "0102030405060708", 1, 3, 40},
		{"SHA224", hashSHA224, "0061006200630000", "0102030405060708", 1, 5, 40},
		{"SHA256", hashSHA256, "0061006200630000", "0102030405060708", 3, 2048, 32},
		{"SHA256", hashSHA256, long, "0102030405060708", 1, 7, 70},
		{"SHA384", hashSHA384, "0061006200630000", "0102030405060708090a0b0c0d0e0f10", 3, 3, 48},
		{"SHA512", hashSHA512, long, "0102030405060708090a0b0c0d0e0f10", 1, 4, 130},
	} {
		name := fmt.Sprintf("%s-id%d-iter%d-n%d-p%d", tc.digest, tc.id, tc.iter, tc.n, len(tc.pass)/2)
		t.Run(name, func(t *testing.T) {
			out := strings.TrimSpace(string(testenv.OpenSSL(t, dir, "kdf", "-keylen", fmt.Sprint(tc.n),
				"-kdfopt", "digest:"+tc.digest, "-kdfopt", "hexpass:"+tc.pass, "-kdfopt", "hexsalt:"+tc.salt,
				"-kdfopt", fmt.Sprintf("iter:%d", tc.iter), "-kdfopt", fmt.Sprintf("id:%d", tc.id), "PKCS12KDF")))
			want := strings.ToLower(strings.ReplaceAll(out, ":", ""))
			pass, _ := hex.DecodeString(tc.pass)
			salt, _ := hex.DecodeString(tc.salt)
			if got := hex.EncodeToString(pkcs12KDF(tc.h, pass, salt, tc.iter, byte(tc.id), tc.n)); got != want {
				t.Errorf("pkcs12KDF = %s, openssl says %s", got, want)
			}
		})
	}
}

func TestBMPPassword(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "0000"},
		{"smeg", "0073006d006500670000"},
		{"p\u00e4", "007000e40000"},
		{"\U0001D11E", "d834dd1e0000"}, // UTF-16 surrogate pair
	} {
		if got := hex.EncodeToString(bmpPassword(tc.in)); got != tc.want {
			t.Errorf("bmpPassword(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestRC2Vectors checks the test vectors of RFC 2268 section 5.
func TestRC2Vectors(t *testing.T) {
	for _, tc := range []struct {
		bits          int
		key, pt, want string
	}{
		{63, "0000000000000000", "0000000000000000", "ebb773f993278eff"},
		{64, "ffffffffffffffff", "ffffffffffffffff", "278b27e42e2f0d49"},
		{64, "3000000000000000", "1000000000000001", "30649edf9be7d2c2"},
		{64, "88", "0000000000000000", "61a8a244adacccf0"},
		{64, "88bca90e90875a", "0000000000000000", "6ccf4308974c267f"},
		{64, "88bca90e90875a7f0f79c384627bafb2", "0000000000000000", "1a807d272bbe5db1"},
		{128, "88bca90e90875a7f0f79c384627bafb2", "0000000000000000", "2269552ab0f85ca6"},
		{129, "88bca90e90875a7f0f79c384627bafb216f80a6f85920584c42fceb0be255daf1e", "0000000000000000", "5b78d3a43dfff1f1"},
	} {
		key, _ := hex.DecodeString(tc.key)
		pt, _ := hex.DecodeString(tc.pt)
		c, err := newRC2(key, tc.bits)
		if err != nil {
			t.Fatal(err)
		}
		ct := make([]byte, 8)
		c.Encrypt(ct, pt)
		if got := hex.EncodeToString(ct); got != tc.want {
			t.Errorf("RC2(%d bits, key %s).Encrypt(%s) = %s, want %s", tc.bits, tc.key, tc.pt, got, tc.want)
		}
		back := make([]byte, 8)
		c.Decrypt(back, ct)
		if !bytes.Equal(back, pt) {
			t.Errorf("RC2(%d bits, key %s).Decrypt = %x, want %s", tc.bits, tc.key, back, tc.pt)
		}
	}
}

// TestRC2OpenSSL compares RC2-CBC with 40- and 128-bit effective keys, the
// two PKCS#12 uses, with `openssl enc`.
func TestRC2OpenSSL(t *testing.T) {
	dir := t.TempDir()
	pt := []byte("The quick brown fox jumps over the lazy dog, twice: the quick brown fox.") // 72 bytes, 9 blocks
	in := writeTemp(t, dir, "pt", pt)
	iv := "0102030405060708"
	for _, tc := range []struct {
		cipher string
		key    string
		bits   int
	}{
		{"rc2-40-cbc", "a1b2c3d4e5", 40},
		{"rc2-cbc", "00112233445566778899aabbccddeeff", 128},
	} {
		ct := testenv.OpenSSL(t, dir, append([]string{"enc", "-" + tc.cipher, "-K", tc.key, "-iv", iv, "-nopad", "-in", in}, legacyProvider...)...)
		key, _ := hex.DecodeString(tc.key)
		ivb, _ := hex.DecodeString(iv)
		c, err := newRC2(key, tc.bits)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(pt))
		cipher.NewCBCEncrypter(c, ivb).CryptBlocks(got, pt)
		if !bytes.Equal(got, ct) {
			t.Errorf("%s: our encryption %x, openssl %x", tc.cipher, got, ct)
		}
		dec := make([]byte, len(ct))
		cipher.NewCBCDecrypter(c, ivb).CryptBlocks(dec, ct)
		if !bytes.Equal(dec, pt) {
			t.Errorf("%s: decryption of openssl's ciphertext = %q", tc.cipher, dec)
		}
	}
}

// TestCBCPadding checks that every malformed padding is refused as a wrong
// password and that correct padding of every length is removed.
func TestCBCPadding(t *testing.T) {
	block, err := aes.NewCipher(make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, 16)
	enc := func(pt []byte) []byte {
		ct := make([]byte, len(pt))
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, pt)
		return ct
	}
	for n := 1; n <= 16; n++ {
		pt := append(bytes.Repeat([]byte{'x'}, 32-n), bytes.Repeat([]byte{byte(n)}, n)...)
		got, err := cbcDecrypt(block, iv, enc(pt))
		if err != nil || len(got) != 32-n {
			t.Errorf("padding %d: got %d bytes, %v", n, len(got), err)
		}
	}
	for _, tail := range [][]byte{
		{0},          // zero pad length
		{17},         // longer than a block
		{0xff},       // far too long
		{1, 3, 3},    // the third byte from the end is not 3
		{4, 4, 3, 4}, // one wrong byte inside the padding
		append([]byte{15}, bytes.Repeat([]byte{16}, 15)...), // a full pad block with its first byte wrong
	} {
		pt := bytes.Repeat([]byte{'x'}, 32)
		copy(pt[32-len(tail):], tail)
		if _, err := cbcDecrypt(block, iv, enc(pt)); !errors.Is(err, ErrIncorrectPassword) {
			t.Errorf("padding tail %x: err = %v, want ErrIncorrectPassword", tail, err)
		}
	}
	if _, err := cbcDecrypt(block, iv, make([]byte, 15)); !errors.Is(err, ErrMalformed) {
		t.Errorf("partial block: err = %v, want ErrMalformed", err)
	}
	if _, err := cbcDecrypt(block, iv, nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty ciphertext: err = %v, want ErrMalformed", err)
	}
	if _, err := cbcDecrypt(block, iv[:8], make([]byte, 16)); !errors.Is(err, ErrMalformed) {
		t.Errorf("short IV: err = %v, want ErrMalformed", err)
	}
}

// Builders for hand-made PKCS#12 structures (DER).

func mustDER(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func explicitTag0(b []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: b}
}

func algID(oid asn1.ObjectIdentifier, params []byte) pkix.AlgorithmIdentifier {
	return pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.RawValue{FullBytes: params}}
}

// pbes2AES256 is the AlgorithmIdentifier of PBES2 with PBKDF2-HMAC-SHA256
// and AES-256-CBC.
func pbes2AES256(t testing.TB, salt []byte, iter int, iv []byte) pkix.AlgorithmIdentifier {
	kdf := mustDER(t, struct {
		Salt []byte
		Iter int
		PRF  pkix.AlgorithmIdentifier
	}{salt, iter, algID(oidHMACWithSHA256, asn1.NullBytes)})
	return algID(oidPBES2, mustDER(t, pbes2Params{
		KeyDerivationFunc: algID(oidPBKDF2, kdf),
		EncryptionScheme:  algID(oidAES256CBC, mustDER(t, iv)),
	}))
}

// bag is a SafeBag without attributes.
func bag(t testing.TB, id asn1.ObjectIdentifier, value []byte) asn1.RawValue {
	return asn1.RawValue{FullBytes: mustDER(t, struct {
		ID    asn1.ObjectIdentifier
		Value asn1.RawValue
	}{id, explicitTag0(value)})}
}

func certBagOf(t testing.TB, certDER []byte) asn1.RawValue {
	return bag(t, oidCertBag, mustDER(t, struct {
		ID    asn1.ObjectIdentifier
		Value asn1.RawValue
	}{oidX509Cert, explicitTag0(mustDER(t, certDER))}))
}

// dataContentInfo wraps DER octets in a data ContentInfo.
func dataContentInfo(t testing.TB, octets []byte) []byte {
	return mustDER(t, struct {
		CT      asn1.ObjectIdentifier
		Content asn1.RawValue
	}{oidData, explicitTag0(mustDER(t, octets))})
}

// pfxOf builds a PFX with one plain SafeContents holding bags; with a
// SHA-1 MAC of macIter iterations whose value is zeros, unless macIter is 0.
func pfxOf(t testing.TB, macIter int, bags ...asn1.RawValue) []byte {
	t.Helper()
	safeContents := mustDER(t, bags)
	authSafe := mustDER(t, []asn1.RawValue{{FullBytes: dataContentInfo(t, safeContents)}})
	outer := asn1.RawValue{FullBytes: dataContentInfo(t, authSafe)}
	if macIter == 0 {
		return mustDER(t, struct {
			Version  int
			AuthSafe asn1.RawValue
		}{3, outer})
	}
	md := mustDER(t, macData{
		Mac:        digestInfo{Algorithm: algID(oidSHA1, asn1.NullBytes), Digest: make([]byte, 20)},
		MacSalt:    []byte("saltsalt"),
		Iterations: macIter,
	})
	return mustDER(t, struct {
		Version  int
		AuthSafe asn1.RawValue
		MacData  asn1.RawValue
	}{3, outer, asn1.RawValue{FullBytes: md}})
}

// hostilePFX builds a PFX whose one bag is a shrouded key encrypted with
// PBES2 and keyIter PBKDF2 iterations, with a SHA-1 MAC of macIter
// iterations (none if macIter is 0). Nothing in it decrypts.
func hostilePFX(t testing.TB, keyIter, macIter int) []byte {
	t.Helper()
	epki := mustDER(t, encryptedPrivateKeyInfo{
		Algorithm:     pbes2AES256(t, []byte("saltsalt"), keyIter, make([]byte, 16)),
		EncryptedData: make([]byte, 32),
	})
	return pfxOf(t, macIter, bag(t, oidShroudedKeyBag, epki))
}

// TestDecodeBERShroudedKey checks that a PKCS#8 key in BER inside a
// pkcs8ShroudedKeyBag is read. The bag is encrypted by OpenSSL: the key
// from `openssl kdf PBKDF2`, the ciphertext from `openssl enc
// -aes-256-cbc`; OpenSSL must read the resulting file too.
func TestDecodeBERShroudedKey(t *testing.T) {
	pki := makePKI(t)
	dir := t.TempDir()
	const pw = "ber key"
	keyDER := testenv.OpenSSL(t, dir, "pkcs8", "-topk8", "-nocrypt", "-in", pki.ecKey, "-outform", "DER")
	berKey := berify(t, keyDER)
	if bytes.Equal(berKey, keyDER) {
		t.Fatal("BER re-encoding changed nothing")
	}
	berFile := writeTemp(t, dir, "key.ber", berKey)
	testenv.OpenSSL(t, dir, "pkcs8", "-inform", "DER", "-nocrypt", "-in", berFile, "-out", "key.pem") // OpenSSL reads the BER PKCS#8
	salt, iv := []byte("8 bytes!"), []byte("sixteen byte IV.")
	const iter = 1000
	keyHex := strings.TrimSpace(string(testenv.OpenSSL(t, dir, "kdf", "-keylen", "32", "-kdfopt", "digest:SHA256", "-kdfopt", "pass:"+pw,
		"-kdfopt", "hexsalt:"+hex.EncodeToString(salt), "-kdfopt", fmt.Sprintf("iter:%d", iter), "PBKDF2")))
	ct := testenv.OpenSSL(t, dir, "enc", "-aes-256-cbc", "-K", strings.ReplaceAll(keyHex, ":", ""), "-iv", hex.EncodeToString(iv), "-in", berFile)
	epki := mustDER(t, encryptedPrivateKeyInfo{Algorithm: pbes2AES256(t, salt, iter, iv), EncryptedData: ct})
	certDER := testenv.OpenSSL(t, dir, "x509", "-in", pki.ecCert, "-outform", "DER")
	data := pfxOf(t, 0, bag(t, oidShroudedKeyBag, epki), certBagOf(t, certDER))
	p12 := writeTemp(t, dir, "ber-key.p12", data)

	want := opensslExpect(t, dir, p12, pw)
	if len(want.fps) != 1 {
		t.Fatalf("openssl found %d certificates, want 1", len(want.fps))
	}
	key, certs, err := Decode(data, pw)
	if err != nil {
		t.Fatalf("Decode() = %v", err)
	}
	checkDecoded(t, key, certs, want)
}

func TestDecodeIterationLimits(t *testing.T) {
	start := time.Now()
	for _, tc := range []struct {
		name             string
		keyIter, macIter int
		lim              limits
		want             error
		mention          string
	}{
		{"pbkdf2-over-limit", MaxIterations + 1, 0, defaultLimits, ErrUnsupported, "10000000"},
		{"mac-over-limit", 1, 1<<31 - 1, defaultLimits, ErrUnsupported, "2147483647"},
		{"pbkdf2-at-small-limit", 2000, 0, limits{maxIter: 1999, budget: 10000}, ErrUnsupported, "1999"},
		{"budget", 600, 0, limits{maxIter: 1000, budget: 500}, ErrUnsupported, "add up"},
		{"under-limit", 100, 0, defaultLimits, ErrIncorrectPassword, ""},
	} {
		data := hostilePFX(t, tc.keyIter, tc.macIter)
		_, _, err := decode(data, "pw", tc.lim)
		if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.mention) {
			t.Errorf("%s: decode() = %v, want %v mentioning %q", tc.name, err, tc.want, tc.mention)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusing large iteration counts took %v", d)
	}
	// Negative and zero counts are malformed.
	for _, n := range []int{0, -5} {
		if _, _, err := Decode(hostilePFX(t, n, 0), "pw"); !errors.Is(err, ErrMalformed) {
			t.Errorf("iteration count %d: %v, want ErrMalformed", n, err)
		}
	}
}

// TestDecodeDamaged truncates and flips bytes of OpenSSL-made files: every
// result must be an error matching one of the package's sentinels (or,
// for damage outside what is checked, a success), never a panic.
func TestDecodeDamaged(t *testing.T) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "seeds", "*.p12"))
	if err != nil || len(seeds) == 0 {
		t.Fatalf("no seeds in testdata/seeds (run testdata/gen-seeds.sh): %v", err)
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := decode(data, seedPassword, fuzzLimits); err != nil {
			t.Fatalf("%s: seed does not decode: %v", s, err)
		}
		check := func(what string, b []byte) {
			key, certs, err := decode(b, seedPassword, fuzzLimits)
			if err != nil {
				if !isSentinel(err) {
					t.Errorf("%s %s: error %q matches no sentinel", s, what, err)
				}
				if key != nil || certs != nil {
					t.Errorf("%s %s: key or certificates returned with an error", s, what)
				}
			} else if key == nil {
				t.Errorf("%s %s: success without a key", s, what)
			}
		}
		for n := 0; n < len(data); n += 1 + n/16 {
			check(fmt.Sprintf("truncated to %d", n), data[:n])
		}
		for i := 0; i < len(data); i += 3 {
			b := bytes.Clone(data)
			b[i] ^= 0x5a
			check(fmt.Sprintf("byte %d flipped", i), b)
		}
		check("trailing byte", append(bytes.Clone(data), 0))
	}
}

func isSentinel(err error) bool {
	return errors.Is(err, ErrIncorrectPassword) || errors.Is(err, ErrUnsupported) ||
		errors.Is(err, ErrMalformed) || errors.Is(err, ErrNoPrivateKey)
}

// BER re-encoding, as NSS writes it.

const berChunk = 40

// berify re-encodes a sequence of DER values: constructed values get
// indefinite lengths, and OCTET STRINGs and primitive [0] values (the
// IMPLICIT encryptedContent) longer than berChunk become constructed,
// indefinite-length strings of OCTET STRING chunks. Contents of primitive
// values are not touched.
func berify(t testing.TB, der []byte) []byte {
	t.Helper()
	var out []byte
	for len(der) > 0 {
		var rv asn1.RawValue
		rest, err := asn1.Unmarshal(der, &rv)
		if err != nil {
			t.Fatalf("berify: %v", err)
		}
		der = rest
		id := rv.FullBytes[0]
		switch {
		case rv.IsCompound:
			out = append(out, id, 0x80)
			out = append(out, berify(t, rv.Bytes)...)
			out = append(out, 0, 0)
		case len(rv.Bytes) > berChunk && (rv.Class == asn1.ClassUniversal && rv.Tag == asn1.TagOctetString ||
			rv.Class == asn1.ClassContextSpecific && rv.Tag == 0):
			out = append(out, chunkedOctets(id|0x20, rv.Bytes)...)
		default:
			out = append(out, rv.FullBytes...)
		}
	}
	return out
}

func chunkedOctets(id byte, content []byte) []byte {
	out := []byte{id, 0x80}
	for len(content) > 0 {
		n := min(berChunk, len(content))
		out = append(out, mustMarshal(content[:n])...)
		content = content[n:]
	}
	return append(out, 0, 0)
}

func indefinite(id byte, parts ...[]byte) []byte {
	out := []byte{id, 0x80}
	for _, p := range parts {
		out = append(out, p...)
	}
	return append(out, 0, 0)
}

func mustMarshal(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// berOuter re-encodes the PFX layer only: what a MAC'd file allows.
func berOuter(t testing.TB, der []byte) []byte {
	return berify(t, der)
}

type testContentInfo struct {
	CT      asn1.ObjectIdentifier
	Content asn1.RawValue `asn1:"optional"`
}

// berDeep re-encodes a PFX without MAC in BER at every plain level: the
// PFX, the AuthenticatedSafe and each data SafeContents.
func berDeep(t testing.TB, der []byte) []byte {
	t.Helper()
	var pfx struct {
		Version  int
		AuthSafe testContentInfo
	}
	if _, err := asn1.Unmarshal(der, &pfx); err != nil {
		t.Fatal(err)
	}
	var authSafe []byte
	if _, err := asn1.Unmarshal(pfx.AuthSafe.Content.Bytes, &authSafe); err != nil {
		t.Fatal(err)
	}
	var cis []asn1.RawValue
	if _, err := asn1.Unmarshal(authSafe, &cis); err != nil {
		t.Fatal(err)
	}
	var parts [][]byte
	for _, raw := range cis {
		var ci testContentInfo
		if _, err := asn1.Unmarshal(raw.FullBytes, &ci); err != nil {
			t.Fatal(err)
		}
		if !ci.CT.Equal(oidData) {
			parts = append(parts, berify(t, raw.FullBytes))
			continue
		}
		var sc []byte
		if _, err := asn1.Unmarshal(ci.Content.Bytes, &sc); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, indefinite(0x30, mustMarshal(oidData), indefinite(0xa0, chunkedOctets(0x24, berify(t, sc)))))
	}
	newAuth := indefinite(0x30, parts...)
	return indefinite(0x30, mustMarshal(3),
		indefinite(0x30, mustMarshal(oidData), indefinite(0xa0, chunkedOctets(0x24, newAuth))))
}
