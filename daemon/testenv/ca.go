package testenv

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CA is a certificate authority run by `openssl ca` in a directory of its
// own: it issues S/MIME certificates that name a CRL distribution point,
// revokes them and publishes CRLs, as a real CA's tooling does. The tests
// of revocation judge smimed against what it publishes.
type CA struct {
	Dir    string // cwd of every openssl ca command
	Cert   string // the CA certificate (PEM)
	CRLURL string // written into the certificates it issues ("" for none)
}

// OpenSSLTime is a time as openssl ca's -startdate, -enddate and
// -crl_compromise take it.
func OpenSSLTime(t time.Time) string { return t.UTC().Format("20060102150405Z") }

// NewCA makes a CA named name whose certificates point to crlURL for their
// CRL ("" for none). Its own certificate is valid from 2020 to 2040.
func NewCA(tb testing.TB, name, crlURL string) *CA {
	tb.Helper()
	ca := newCADir(tb, crlURL, "")
	OpenSSL(tb, ca.Dir, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.csr", "-subj", "/O=Smimed Test/CN="+name)
	OpenSSL(tb, ca.Dir, "ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "ca.key", "-in", "ca.csr", "-out", "ca.crt",
		"-extensions", "ca_ext", "-startdate", "20200101000000Z", "-enddate", "20400101000000Z", "-notext")
	return ca
}

// NewSubCA makes an intermediate CA certified by parent. Its
// certificates point to crlURL for their CRL and, unless aiaURL is "", to
// aiaURL for their issuer's certificate (authority information access,
// caIssuers), as a CA whose subscribers' clients leave the intermediate
// out expects.
func NewSubCA(tb testing.TB, parent *CA, name, crlURL, aiaURL string) *CA {
	tb.Helper()
	ca := newCADir(tb, crlURL, aiaURL)
	OpenSSL(tb, ca.Dir, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.csr", "-subj", "/O=Smimed Test/CN="+name)
	OpenSSL(tb, parent.Dir, "ca", "-batch", "-config", "ca.cnf", "-in", filepath.Join(ca.Dir, "ca.csr"), "-out", ca.Cert,
		"-extensions", "ca_ext", "-startdate", "20200101000000Z", "-enddate", "20400101000000Z", "-notext")
	return ca
}

func newCADir(tb testing.TB, crlURL, aiaURL string) *CA {
	tb.Helper()
	dir := tb.TempDir()
	ca := &CA{Dir: dir, Cert: filepath.Join(dir, "ca.crt"), CRLURL: crlURL}
	if err := os.Mkdir(filepath.Join(dir, "certs"), 0o700); err != nil {
		tb.Fatal(err)
	}
	files := map[string]string{"index.txt": "", "serial": "1001\n", "crlnumber": "01\n", "ca.cnf": caConfig(crlURL, aiaURL)}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return ca
}

func caConfig(crlURL, aiaURL string) string {
	var b strings.Builder
	b.WriteString(`[ ca ]
default_ca = testca

[ testca ]
dir = .
database = index.txt
new_certs_dir = certs
certificate = ca.crt
private_key = ca.key
serial = serial
crlnumber = crlnumber
default_md = sha256
default_days = 365
default_crl_days = 7
policy = anything
unique_subject = no
email_in_dn = yes
crl_extensions = crl_ext

[ anything ]
organizationName = optional
givenName = optional
surname = optional
pseudonym = optional
commonName = supplied
emailAddress = optional

[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ leaf ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:copy
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`)
	if aiaURL != "" {
		fmt.Fprintf(&b, "authorityInfoAccess = caIssuers;URI:%s\n", aiaURL)
	}
	if crlURL == "" {
		b.WriteString("\n[ crl_ext ]\nauthorityKeyIdentifier = keyid:always\n")
	}
	if crlURL != "" {
		// The CRL names its distribution point too (issuing
		// distribution point, RFC 5280 5.2.5), as many CAs' do.
		fmt.Fprintf(&b, "crlDistributionPoints = URI:%s\n\n[ crl_ext ]\nauthorityKeyIdentifier = keyid:always\nissuingDistributionPoint = critical, @idp\n\n[ idp ]\nfullname = URI:%s\n", crlURL, crlURL)
	}
	return b.String()
}

// Issue makes a key and an S/MIME certificate for email, valid from
// notBefore for two years, and returns the paths of certificate and key
// (PEM) in the CA's directory.
func (ca *CA) Issue(tb testing.TB, name, email string, notBefore time.Time) (cert, key string) {
	tb.Helper()
	cert, key, csr := name+".crt", name+".key", name+".csr"
	OpenSSL(tb, ca.Dir, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
		"-subj", "/O=Smimed Test/CN="+name+"/emailAddress="+email)
	OpenSSL(tb, ca.Dir, "ca", "-batch", "-config", "ca.cnf", "-in", csr, "-out", cert, "-extensions", "leaf",
		"-startdate", OpenSSLTime(notBefore), "-enddate", OpenSSLTime(notBefore.AddDate(2, 0, 0)), "-notext")
	return filepath.Join(ca.Dir, cert), filepath.Join(ca.Dir, key)
}

// IssuePolicy is Issue with the subject subj as openssl -subj writes it
// (e.g. "/O=ACME GmbH/GN=Alice/SN=Example/CN=Alice Example/emailAddress=…")
// and, unless policy is "", that certificate policy OID (an S/MIME BR
// validation type, say).
func (ca *CA) IssuePolicy(tb testing.TB, name, subj, policy string, notBefore time.Time) (cert, key string) {
	tb.Helper()
	cert, key, csr, ext := name+".crt", name+".key", name+".csr", name+".ext"
	conf := "[ leaf_policy ]\nbasicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\n" +
		"extendedKeyUsage = emailProtection\nsubjectAltName = email:copy\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
	if policy != "" {
		conf += "certificatePolicies = " + policy + "\n"
	}
	if err := os.WriteFile(filepath.Join(ca.Dir, ext), []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	OpenSSL(tb, ca.Dir, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subj)
	OpenSSL(tb, ca.Dir, "ca", "-batch", "-config", "ca.cnf", "-in", csr, "-out", cert, "-extfile", ext, "-extensions", "leaf_policy",
		"-startdate", OpenSSLTime(notBefore), "-enddate", OpenSSLTime(notBefore.AddDate(2, 0, 0)), "-notext")
	return filepath.Join(ca.Dir, cert), filepath.Join(ca.Dir, key)
}

// Revoke revokes the certificate at cert with reason (an openssl
// -crl_reason, e.g. keyCompromise); compromised, when not zero, is the
// invalidity date openssl records for keyCompromise.
func (ca *CA) Revoke(tb testing.TB, cert, reason string, compromised time.Time) {
	tb.Helper()
	args := []string{"ca", "-config", "ca.cnf", "-revoke", cert, "-crl_reason", reason}
	if !compromised.IsZero() {
		args = append(args, "-crl_compromise", OpenSSLTime(compromised))
	}
	OpenSSL(tb, ca.Dir, args...)
}

// CRL publishes a CRL (DER) valid for days days from now.
func (ca *CA) CRL(tb testing.TB, days int) []byte {
	tb.Helper()
	OpenSSL(tb, ca.Dir, "ca", "-config", "ca.cnf", "-gencrl", "-crldays", fmt.Sprint(days), "-out", "ca.crl.pem")
	return OpenSSL(tb, ca.Dir, "crl", "-in", "ca.crl.pem", "-outform", "DER")
}

// Sign makes a multipart/signed S/MIME message from `from` to
// ceo@org.example with a text body, signed by the certificate and key
// (openssl cms -sign, the signer's certificate included).
func (ca *CA) Sign(tb testing.TB, cert, key, from, subject, body string) []byte {
	tb.Helper()
	return OpenSSLInput(tb, ca.Dir, []byte("Content-Type: text/plain\r\n\r\n"+body+"\r\n"), "cms", "-sign", "-signer", cert, "-inkey", key,
		"-md", "sha256", "-from", from, "-to", "ceo@org.example", "-subject", subject, "-crlfeol")
}

// ReadCert parses the first PEM certificate of the file at path.
func ReadCert(tb testing.TB, path string) *x509.Certificate {
	tb.Helper()
	c, err := x509.ParseCertificate(readPEM(tb, path))
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return c
}

// OCSPURL makes the certificates the CA issues from now on name url as
// their OCSP responder (authority information access).
func (ca *CA) OCSPURL(tb testing.TB, url string) {
	tb.Helper()
	path := filepath.Join(ca.Dir, "ca.cnf")
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	conf := strings.Replace(string(data), "[ leaf ]\n", "[ leaf ]\nauthorityInfoAccess = OCSP;URI:"+url+"\n", 1)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// FreeAddr is a loopback address with a port nobody listens on (for a
// server started later, such as openssl ocsp).
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// StartOCSP runs `openssl ocsp` as the CA's OCSP responder on addr
// (FreeAddr), answering from its index of issued and revoked
// certificates as it stands now, signed with the CA's own key; it is
// stopped at the end of the test.
func (ca *CA) StartOCSP(tb testing.TB, addr string) {
	tb.Helper()
	NeedOpenSSL(tb)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("openssl", "ocsp", "-index", "index.txt", "-port", port, "-rsigner", "ca.crt", "-rkey", "ca.key", "-CA", "ca.crt", "-ndays", "1")
	cmd.Dir = ca.Dir
	stderr := &LockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("openssl ocsp: %v", err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// Ready when it says so: a test connection would hold it (it serves
	// one connection at a time and waits for a request on it).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(stderr.String(), "waiting for OCSP client connections") {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("openssl ocsp does not listen on %s: %s", addr, stderr.String())
		}
	}
}

// AddTo appends the CA's certificate to the PEM bundle at path (a
// configuration's trust.ca_files), making it a trust anchor there.
func (ca *CA) AddTo(tb testing.TB, path string) {
	tb.Helper()
	caPEM, err := os.ReadFile(ca.Cert)
	if err != nil {
		tb.Fatal(err)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, append(old, caPEM...), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// IssueKey is Issue with another key: keyType is "rsa:BITS" or an
// elliptic curve "P-256", "P-384", "P-521". An EC certificate gets the key
// usages digitalSignature and keyAgreement (an EC key cannot encipher
// keys), an RSA one digitalSignature and keyEncipherment.
func (ca *CA) IssueKey(tb testing.TB, name, email, keyType string, notBefore time.Time) (cert, key string) {
	tb.Helper()
	cert, key, csr, ext := name+".crt", name+".key", name+".csr", name+".ext"
	usage := "digitalSignature, keyEncipherment"
	newkey := []string{"-newkey", keyType}
	if strings.HasPrefix(keyType, "P-") {
		usage = "digitalSignature, keyAgreement"
		newkey = []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:" + keyType}
	}
	conf := "[ leaf_key ]\nbasicConstraints = CA:FALSE\nkeyUsage = critical, " + usage + "\n" +
		"extendedKeyUsage = emailProtection\nsubjectAltName = email:copy\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
	if err := os.WriteFile(filepath.Join(ca.Dir, ext), []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	OpenSSL(tb, ca.Dir, append(append([]string{"req", "-new"}, newkey...), "-nodes", "-keyout", key, "-out", csr,
		"-subj", "/O=Smimed Test/CN="+name+"/emailAddress="+email)...)
	OpenSSL(tb, ca.Dir, "ca", "-batch", "-config", "ca.cnf", "-in", csr, "-out", cert, "-extfile", ext, "-extensions", "leaf_key",
		"-startdate", OpenSSLTime(notBefore), "-enddate", OpenSSLTime(notBefore.AddDate(2, 0, 0)), "-notext")
	return filepath.Join(ca.Dir, cert), filepath.Join(ca.Dir, key)
}

// ReadKey parses the PEM private key (PKCS #8, as openssl req -nodes
// writes it) at path.
func ReadKey(tb testing.TB, path string) crypto.Signer {
	tb.Helper()
	k, err := x509.ParsePKCS8PrivateKey(readPEM(tb, path))
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		tb.Fatalf("%s: %T is not a crypto.Signer", path, k)
	}
	return s
}

// readPEM is the DER of the first PEM block of the file at path.
func readPEM(tb testing.TB, path string) []byte {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		tb.Fatalf("%s: no PEM", path)
	}
	return block.Bytes
}
