package harvest

// This file loads the organisation's own decryption keys: a certificate with
// its private key, either as two PEM files or as one PKCS#12 (.p12/.pfx)
// file with a password file. Secrets must not be readable by group or
// others; CheckPrivateFile enforces that before anything is read.

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/smimed/smimed/harvest/cms"
	"github.com/smimed/smimed/harvest/pkcs12"
)

// Errors returned by the key loaders; the returned errors wrap them and name
// the file.
var (
	ErrInsecureFile  = errors.New("harvest: private file readable by group or others")
	ErrNoPrivateKey  = errors.New("harvest: no PRIVATE KEY block")
	ErrKeyMismatch   = errors.New("harvest: key does not match certificate")
	ErrBadPKCS12     = errors.New("harvest: wrong password or corrupt PKCS#12")
	ErrNoCertificate = errors.New("harvest: no certificate")
)

// LoadedKey is one certificate with its private key.
type LoadedKey struct {
	Cert    *x509.Certificate
	Private crypto.PrivateKey
	// Chain holds the other certificates found next to the key (usually
	// the issuing CAs), in file order.
	Chain []*x509.Certificate
	// Source is the file the key came from, for messages.
	Source string
	// Warning, when set, is one line for the log and check-config: the
	// key is an RSA key under 1,024 bits, loaded for decryption only (as
	// a *cms.LegacyRSAKey). It names the file and the size, nothing else.
	Warning string
}

// legacyKey wraps an RSA key under 1,024 bits (historic keys, which Go's
// crypto/rsa refuses) for decryption only and says so; other keys are
// returned as they are.
func legacyKey(lk *LoadedKey) error {
	k, ok := lk.Private.(*rsa.PrivateKey)
	if !ok || k.N.BitLen() >= cms.LegacyBits {
		return nil
	}
	lr, err := cms.NewLegacyRSAKey(k)
	if err != nil {
		return fmt.Errorf("key file %s: %w", lk.Source, err)
	}
	lk.Private = lr
	lk.Warning = fmt.Sprintf("key file %s: RSA key of %d bits (under %d): loaded to decrypt old mail only; replace it for new mail",
		lk.Source, lr.Bits(), cms.LegacyBits)
	return nil
}

// fileError is an error with a fixed, readable message that still matches
// its sentinel under errors.Is.
type fileError struct {
	msg string
	err error
}

func (e *fileError) Error() string { return e.msg }
func (e *fileError) Unwrap() error { return e.err }

func fileErrorf(sentinel error, format string, args ...any) error {
	return &fileError{msg: fmt.Sprintf(format, args...), err: sentinel}
}

// CheckPrivateFile refuses a file that holds a secret (private key, PKCS#12,
// password) when it is a regular file readable by group or others, and
// reports a missing or unreadable file with its path.
func CheckPrivateFile(path string) error {
	return checkPrivateFile("key file", path)
}

func checkPrivateFile(kind, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fileErrorf(err, "%s %s does not exist", kind, path)
		}
		return fmt.Errorf("%s %s: %w", kind, path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%s %s is a directory", kind, path)
	}
	// Pipes and character devices (e.g. /dev/stdin) carry no meaningful
	// permission bits; only regular files are checked.
	if fi.Mode().IsRegular() && fi.Mode().Perm()&0o044 != 0 && !serviceGroupFile(fi) {
		return fileErrorf(ErrInsecureFile, "%s %s is readable by group or others (mode %04o); chmod 600 it (or 0640 owned by root and the service's group: chown root:smimed)",
			kind, path, fi.Mode().Perm())
	}
	return nil
}

// serviceGroupFile reports whether fi is a secret laid out for a service
// user by root: owned by root, readable by its group and nobody else,
// the group being ours (not root's): chown root:smimed, chmod 0640.
func serviceGroupFile(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	gid := os.Getegid()
	return ok && fi.Mode().Perm()&0o037 == 0 && st.Uid == 0 && gid != 0 && int(st.Gid) == gid
}

// ReadPasswordFile reads a password file after CheckPrivateFile passed on
// it, and strips one trailing newline ("\n" or "\r\n") as written by editors
// and `echo`. Everything else, including other whitespace, is kept.
func ReadPasswordFile(path string) (string, error) {
	if err := checkPrivateFile("password file", path); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("password file %s: %w", path, err)
	}
	s := string(b)
	if strings.HasSuffix(s, "\r\n") {
		s = s[:len(s)-2]
	} else if strings.HasSuffix(s, "\n") {
		s = s[:len(s)-1]
	}
	return s, nil
}

// LoadPEMKey reads a certificate file (PEM, one or more CERTIFICATE blocks,
// or a single DER certificate) and a PEM private key file: PKCS#1 "RSA
// PRIVATE KEY", PKCS#8 "PRIVATE KEY" or SEC1 "EC PRIVATE KEY". Encrypted
// PEM keys are refused. The certificate whose public key matches the private
// key becomes Cert; the others become Chain. An RSA key under 1,024 bits
// is loaded for decryption only (see LoadedKey.Warning).
func LoadPEMKey(certFile, keyFile string) (*LoadedKey, error) {
	if err := CheckPrivateFile(keyFile); err != nil {
		return nil, err
	}
	certs, err := ReadCertificates(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", keyFile, err)
	}
	priv, err := parsePEMPrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", keyFile, err)
	}
	leaf, chain, ok := splitByKey(priv, certs)
	if !ok {
		return nil, fileErrorf(ErrKeyMismatch, "key file %s: key does not match certificate in %s", keyFile, certFile)
	}
	lk := &LoadedKey{Cert: leaf, Private: priv, Chain: chain, Source: keyFile}
	if err := legacyKey(lk); err != nil {
		return nil, err
	}
	return lk, nil
}

// LoadPKCS12 reads a PKCS#12 file with harvest/pkcs12: modern (PBES2 with
// AES and PBKDF2, the OpenSSL 3 default), legacy (RC2-40 certificate bag,
// 3DES key bag, SHA-1 MAC, as exported by Windows and Outlook) and the BER
// files of Thunderbird and Firefox (NSS) all work. The password is used
// exactly as given; read it with ReadPasswordFile. Only the first private
// key of the file is used, so the result has one element; the certificate
// matching that key becomes Cert, the others Chain. An RSA key under 1,024
// bits is loaded for decryption only (see LoadedKey.Warning).
func LoadPKCS12(file string, password string) ([]*LoadedKey, error) {
	if err := CheckPrivateFile(file); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", file, err)
	}
	priv, certs, err := pkcs12.Decode(data, password)
	if err != nil {
		if errors.Is(err, pkcs12.ErrIncorrectPassword) {
			return nil, fileErrorf(ErrBadPKCS12, "key file %s: wrong password or corrupt PKCS#12", file)
		}
		return nil, fileErrorf(ErrBadPKCS12, "key file %s: wrong password or corrupt PKCS#12 (%v)", file, err)
	}
	// Exporters do not agree on the order of the certificates, so pick
	// the one that matches the key.
	leaf, chain, ok := splitByKey(priv, certs)
	if !ok {
		return nil, fileErrorf(ErrKeyMismatch, "key file %s: key does not match certificate", file)
	}
	lk := &LoadedKey{Cert: leaf, Private: priv, Chain: chain, Source: file}
	if err := legacyKey(lk); err != nil {
		return nil, err
	}
	return []*LoadedKey{lk}, nil
}

// ReadCertificates reads a certificate file: PEM (every CERTIFICATE
// block, others skipped) or one DER certificate.
func ReadCertificates(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("certificate file %s: %w", file, err)
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("certificate file %s: %w", file, err)
	}
	return certs, nil
}

// PEMCertificates reads PEM data leniently: every block that parses as a
// certificate, in order, at most max; the rest is skipped (ParseCertificates
// is the strict reader, for files an administrator names).
func PEMCertificates(data []byte, max int) []*x509.Certificate {
	var out []*x509.Certificate
	for rest := data; len(out) < max; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// MaxCertificates bounds the certificates ParseCertificates reads from
// one input.
const MaxCertificates = 64

// ParseCertificates reads certificates from PEM (every CERTIFICATE block,
// others skipped) or DER (one certificate, or several concatenated), at
// most MaxCertificates. ErrNoCertificate when there is none.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	if bytes.Contains(data, []byte("-----BEGIN")) {
		rest := data
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			if len(certs) == MaxCertificates {
				return nil, fmt.Errorf("more than %d certificates", MaxCertificates)
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
			}
			certs = append(certs, c)
		}
	} else if len(data) > 0 {
		cs, err := x509.ParseCertificates(data)
		if err != nil {
			return nil, fileErrorf(ErrNoCertificate, "no CERTIFICATE block, and not DER (%v)", err)
		}
		if len(cs) > MaxCertificates {
			return nil, fmt.Errorf("more than %d certificates", MaxCertificates)
		}
		certs = cs
	}
	if len(certs) == 0 {
		return nil, fileErrorf(ErrNoCertificate, "no CERTIFICATE block")
	}
	return certs, nil
}

func parsePEMPrivateKey(data []byte) (crypto.PrivateKey, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, ErrNoPrivateKey
		}
		if _, ok := block.Headers["Proc-Type"]; ok && strings.HasSuffix(block.Type, "PRIVATE KEY") {
			return nil, fmt.Errorf("encrypted %s blocks are not supported; remove the passphrase (openssl pkey) or use a PKCS#12 file", block.Type)
		}
		switch block.Type {
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("RSA PRIVATE KEY: %w", err)
			}
			return k, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PRIVATE KEY: %w", err)
			}
			return k, nil
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("EC PRIVATE KEY: %w", err)
			}
			return k, nil
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("encrypted PRIVATE KEY blocks are not supported; remove the passphrase (openssl pkey) or use a PKCS#12 file")
		}
		// Other blocks (EC PARAMETERS from `openssl ecparam -genkey`,
		// certificates) are skipped.
	}
}

// publicOf returns the public half of a private key, or nil.
func publicOf(priv crypto.PrivateKey) crypto.PublicKey {
	// Every private key type of the standard library (RSA, ECDSA, Ed25519,
	// ECDH) has Public.
	if k, ok := priv.(interface{ Public() crypto.PublicKey }); ok {
		return k.Public()
	}
	return nil
}

// keyMatches reports whether cert carries the public half of priv.
func keyMatches(priv crypto.PrivateKey, cert *x509.Certificate) bool {
	pub, ok := publicOf(priv).(interface{ Equal(crypto.PublicKey) bool })
	return ok && cert != nil && pub.Equal(cert.PublicKey)
}

// splitByKey finds the certificate matching priv and returns it with the
// remaining certificates in their original order.
func splitByKey(priv crypto.PrivateKey, certs []*x509.Certificate) (*x509.Certificate, []*x509.Certificate, bool) {
	for i, c := range certs {
		if keyMatches(priv, c) {
			var chain []*x509.Certificate
			chain = append(chain, certs[:i]...)
			chain = append(chain, certs[i+1:]...)
			return c, chain, true
		}
	}
	return nil, nil, false
}

// ReadCAPool reads a PEM file of trust anchors (a TLS server's CA) into a
// pool; a file without any PEM certificate is an error naming it.
func ReadCAPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}
