package harvest

// The external interop corpus test. The corpus (../shared/corpus beside the
// checkout, or $SMIMED_CORPUS) holds mail and CMS objects written by other
// projects' clients and test suites, with expectations/results.json saying
// what OpenSSL 3 made of every layer. Every expectation asserted here is
// derived from that file (OpenSSL's verdicts plus the verdict rules of
// docs/verdicts.md), never from the engine's own output. Where the engine
// legitimately differs, the difference is written down in
// interopExceptions with the value the engine must produce instead.

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	netmail "net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/cms"
)

// interopCheckDate is when OpenSSL's "chain(now)" column was computed
// (MANIFEST.md: "Checked 2026-11-27"). Messages without a Date header are
// received at this time, so "now" means the same for both.
var interopCheckDate = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// interopPasswords are the PKCS#12 passwords per source (MANIFEST.md).
var interopPasswords = map[string]string{
	"thunderbird-nss":   "nss",
	"simple-java-mail":  "letmein",
	"bouncycastle-mail": "", // johndoe.p12
}

// interopAnchors are the trust anchors of each source, the same certificates
// OpenSSL was given as -CAfile (results.json "ca").
var interopAnchors = map[string][]string{
	"thunderbird-nss":   {"thunderbird-nss/smime/TestCA.pem"},
	"simple-java-mail":  {"simple-java-mail/pkcs12/ca.crt"},
	"bouncycastle-mail": {"bouncycastle-mail/validator.root.crt"},
	"rfc4134":           {"rfc4134/CarlRSASelf.cer", "rfc4134/CarlDSSSelf.cer"},
	"openssl":           {"openssl/smime-certs/smroot.pem", "openssl/certs/pkitsta.pem"},
	"mimekit":           {"mimekit/StartComCertificationAuthority.crt", "mimekit/StartComClass1PrimaryIntermediateClientCA.crt"},
	"kde-messagelib":    nil,
}

// interopAnchorsInP12 names PKCS#12 files whose CA certificates are anchors
// too ("NSS Test CA (ECC)" is only shipped inside Alice-ec.p12).
var interopAnchorsInP12 = map[string][]string{
	"thunderbird-nss": {"thunderbird-nss/smime/Alice-ec.p12"},
}

// interopException is a documented, legitimate difference between the
// engine and the OpenSSL-derived expectation. apply turns the expectation
// into what the engine must produce instead, so the test still fails when
// the behaviour changes.
type interopException struct {
	reason string // category, for the summary
	why    string // one line
	apply  func(e *interopExpect)
}

func interopKeepLayers(n int) func(e *interopExpect) {
	return func(e *interopExpect) { e.layers = e.layers[:n] }
}

func interopSetSig(layer, signer int, status string) func(e *interopExpect) {
	return func(e *interopExpect) {
		if layer < len(e.layers) && signer < len(e.layers[layer].sigs) {
			e.layers[layer].sigs[signer].status = status
			e.layers[layer].sigs[signer].basis = "documented exception"
		}
	}
}

// interopPartSignature: the signed entity is one part of a multipart/mixed
// (a mailing list's header and footer around it); the engine judges it,
// marks the layer as covering a part only, and a signature that OpenSSL
// finds good is partial, not valid: the footer is shown unsigned.
func interopPartSignature(e *interopExpect) {
	for i := range e.layers {
		if e.layers[i].name == "multipart/signed" {
			e.layers[i].name = "multipart/signed (part)"
			for j := range e.layers[i].sigs {
				if e.layers[i].sigs[j].status == StatusValid {
					e.layers[i].sigs[j].status = StatusPartial
					e.layers[i].sigs[j].basis += "; the footer is not signed"
				}
			}
		}
	}
}

var interopExceptions = map[string]interopException{
	"thunderbird-nss/browser-data/alice.dsig.SHA256.multipart.in.mixed.eml": {
		reason: "signature over one part",
		why:    "the signed entity is one part of a multipart/mixed with an unsigned list footer: judged, marked as covering a part only, and partial",
		apply:  interopPartSignature,
	},
	"thunderbird-nss/browser-data/alice.dsig.SHA256.multipart.in.mixed.with.header.eml": {
		reason: "signature over one part",
		why:    "the signed entity is one part of a multipart/mixed with unsigned list header and footer: judged, marked as covering a part only, and partial",
		apply:  interopPartSignature,
	},
	"thunderbird-nss/browser-data/multipart-alternative.eml": {
		reason: "not on the top-level protection chain",
		why:    "multipart/alternative with two separate enveloped parts: only whole-message encryption is decrypted, so nothing is unwrapped (and no unrelated encrypted parts are merged, EFAIL)",
		apply:  func(e *interopExpect) { e.layers = nil; e.text = "" },
	},
	"thunderbird-nss/browser-data/nested-sigs.eml": {
		reason: "not on the top-level protection chain",
		why:    "the inner multipart/signed sits in a message/rfc822 attachment: an attached message is a message of its own (its own From), so only the outer signature is judged",
		apply:  interopKeepLayers(1),
	},
	"thunderbird-nss/smime-manual/alice.env.mixed.dsig.SHA256.multipart.eml": {
		reason: "not on the top-level protection chain",
		why:    "the enveloped part is one part of a multipart/mixed inside the signature: only whole-message encryption is decrypted (EFAIL), so nothing is decrypted",
		apply:  interopKeepLayers(1),
	},
	"bouncycastle-mail/basicAS2.message": {
		reason: "AS2: an HTTP request, not a mail",
		why:    "the file starts with \"POST / HTTP/1.1\": smimed reads RFC 5322 mail, an HTTP request line is a malformed header",
		apply:  func(e *interopExpect) { e.layers = nil; e.text = "" },
	},
	"bouncycastle-mail/rawAS2.message": {
		reason: "AS2: an HTTP request, not a mail",
		why:    "the file starts with \"POST / HTTP/1.1\": smimed reads RFC 5322 mail, an HTTP request line is a malformed header",
		apply:  func(e *interopExpect) { e.layers = nil; e.text = "" },
	},
	"bouncycastle-mail/validator.shortKey.eml": {
		reason: "policy: RSA keys under 1024 bits",
		why:    "512-bit RSA signer key: Go's crypto/rsa refuses keys under 1024 bits, reported as an unsupported algorithm (error); OpenSSL and BC accept it (BC with a warning)",
		apply:  interopSetSig(0, 0, StatusError),
	},
	"bouncycastle-mail/validator.validMail.eml":    interopMD5Chain,
	"bouncycastle-mail/validator.revoked.eml":      interopMD5Chain, // no CRL is given: would be valid
	"bouncycastle-mail/validator.longValidity.eml": interopMD5Chain,
	"bouncycastle-mail/validator.noEmail.eml":      interopMD5Chain, // would be mismatch
	"bouncycastle-mail/validator.expired.eml":      interopMD5Chain, // would be expired; no chain inside the validity either
	"bouncycastle-mail/validator.notYetValid.eml":  interopMD5Chain, // would be expired; no chain inside the validity either
	"mimekit/thunderbird-signed.eml": {
		reason: "policy: SHA-1/MD5-signed certificates",
		why:    "the StartCom leaf certificate is signed sha1WithRSA: Go's crypto/x509 refuses SHA-1 certificate signatures, so there is no chain to the StartCom anchors (OpenSSL: OK at the signing time)",
		apply:  interopSetSig(0, 0, StatusUntrusted),
	},
	"openssl/smime-eml/SignedInvalidMappingFromanyPolicyTest7.eml": {
		reason: "policy: RFC 5280 policy processing",
		why:    "NIST PKITS 4.10.7: a policy mapping from anyPolicy makes the path invalid; Go's crypto/x509 processes certificate policies and refuses the chain, OpenSSL only does with -policy_check (PKITS expects the failure)",
		apply:  interopSetSig(0, 0, StatusUntrusted),
	},
}

// interopMD5Chain: the validator.* leaf certificates are signed
// md5WithRSA by validator.root.crt.
var interopMD5Chain = interopException{
	reason: "policy: SHA-1/MD5-signed certificates",
	why:    "the leaf certificate is signed md5WithRSA: Go's crypto/x509 refuses MD5 certificate signatures (docs/security.md: MD5 unsupported), so there is no chain to validator.root.crt (OpenSSL: chain OK/expired at the signing time)",
	apply:  interopSetSig(0, 0, StatusUntrusted),
}

// results.json

type interopResults struct {
	Creds map[string][]struct {
		ID     string   `json:"id"`
		Emails []string `json:"emails"`
	} `json:"creds"`
	Files []interopFile `json:"files"`
}

type interopFile struct {
	File    string            `json:"file"`
	Source  string            `json:"source"`
	Kind    string            `json:"kind"`
	Headers map[string]string `json:"headers"`
	Layers  []interopLayer    `json:"layers"`
	Text    *string           `json:"text"`
}

type interopLayer struct {
	Layer          string `json:"layer"`
	CMS            string `json:"cms"`
	ContentCipher  string `json:"content_cipher"`
	OpenSSLDecrypt string `json:"openssl_decrypt"`
	Recipients     []struct {
		Type        string   `json:"type"`
		KEA         string   `json:"kea"`
		MatchingKey []string `json:"matching_key"`
	} `json:"recipients"`
	Signers     []*interopSigner `json:"signers"`
	OpenSSLSig  string           `json:"openssl_sig"`
	ChainNow    string           `json:"openssl_chain_now"`
	ChainAtTime string           `json:"openssl_chain_attime"`
	Error       string           `json:"error"`
}

type interopSigner struct {
	Digest         string   `json:"digest"`
	Sig            string   `json:"sig"`
	SigningTime    string   `json:"signing_time"`
	SignerEmails   []string `json:"signer_emails"`
	SignerValidity string   `json:"signer_validity"`
}

// expectations

type interopExpect struct {
	layers []interopExpLayer
	text   string // whitespace-collapsed start of the innermost text
}

type interopExpLayer struct {
	name string // engine layer name
	// enveloped layers
	decrypt   string   // DecryptOK or DecryptFailed
	keyFPs    []string // certificates of the keys OpenSSL decrypted with
	cipher    string
	transport string
	noKey     bool // no key in the corpus: the report must list recipients
	// signed layers, one per SignerInfo
	sigs []interopExpSig
}

type interopExpSig struct {
	status    string
	weak      bool
	digest    string   // engine spelling, "sha-256"
	algorithm string   // engine spelling, "rsa-pkcs1v15"
	emails    []string // addresses in the signer certificate
	basis     string   // why this status, for failure messages
}

func (l interopLayer) engineName() string {
	switch l.Layer {
	case "multipart/signed":
		if l.Error == "" && l.OpenSSLSig != "" {
			return "multipart/signed"
		}
	case "opaque-signed":
		return "signed-data"
	case "enveloped":
		if strings.HasPrefix(l.CMS, "authEnveloped") {
			return "authEnveloped-data"
		}
		return "enveloped-data"
	}
	return ""
}

// interopIsSMIME reports whether results.json marks f as a message with a
// decryptable and/or verifiable S/MIME layer.
func interopIsSMIME(f interopFile) bool {
	if f.Kind != "message" || len(f.Layers) == 0 {
		return false
	}
	for _, l := range f.Layers {
		if l.engineName() == "" {
			return false
		}
	}
	return true
}

func interopCorpusDir(t *testing.T) string {
	t.Helper()
	dir := testenv.CorpusPath()
	if _, err := os.Stat(filepath.Join(dir, "expectations", "results.json")); err != nil {
		testenv.SkipNoCorpus(t, dir, err)
	}
	return dir
}

func interopLoadResults(t *testing.T, dir string) *interopResults {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "expectations", "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r interopResults
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if len(r.Files) == 0 {
		t.Fatal("results.json lists no files")
	}
	return &r
}

// keys and anchors

type interopKeyring struct {
	byID  map[string]*LoadedKey // results.json cred id (without " [n]") -> key
	keys  []*cms.Key
	roots *x509.CertPool
}

// interopCopyPrivate copies a corpus file into tmp with mode 0600: the key
// loaders refuse group/other-readable secrets.
func interopCopyPrivate(dir, tmp, rel string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return "", err
	}
	dst := filepath.Join(tmp, strings.NewReplacer("/", "_", " ", "_").Replace(rel))
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		return "", err
	}
	return dst, nil
}

// interopReadCerts reads PEM (CERTIFICATE blocks only) or concatenated DER.
func interopReadCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		var out []*x509.Certificate
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		if len(out) == 0 {
			return nil, errors.New("no CERTIFICATE block")
		}
		return out, nil
	}
	return x509.ParseCertificates(data)
}

var interopCredIndex = regexp.MustCompile(`\s*\[\d+\]$`)

func interopCredID(id string) string { return interopCredIndex.ReplaceAllString(id, "") }

// interopLoadCred loads one results.json credential: "a.p12", "key+cert.pem",
// "cert.pem + key.pem" or "cert.cer + key.pri" (unencrypted PKCS#8 DER).
func interopLoadCred(dir, tmp, id, password string) (*LoadedKey, error) {
	if certRel, keyRel, ok := strings.Cut(id, " + "); ok {
		if strings.HasSuffix(keyRel, ".pri") {
			der, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(keyRel)))
			if err != nil {
				return nil, err
			}
			priv, err := x509.ParsePKCS8PrivateKey(der)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", keyRel, err)
			}
			certs, err := interopReadCerts(filepath.Join(dir, filepath.FromSlash(certRel)))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", certRel, err)
			}
			return &LoadedKey{Cert: certs[0], Private: priv, Source: keyRel}, nil
		}
		c, err := interopCopyPrivate(dir, tmp, certRel)
		if err != nil {
			return nil, err
		}
		k, err := interopCopyPrivate(dir, tmp, keyRel)
		if err != nil {
			return nil, err
		}
		return LoadPEMKey(c, k)
	}
	p, err := interopCopyPrivate(dir, tmp, id)
	if err != nil {
		return nil, err
	}
	if interopIsPKCS12(id) {
		ks, err := LoadPKCS12(p, password)
		if err != nil {
			return nil, err
		}
		return ks[0], nil
	}
	return LoadPEMKey(p, p)
}

func interopIsPKCS12(id string) bool {
	switch strings.ToLower(filepath.Ext(id)) {
	case ".p12", ".pkcs12", ".pfx":
		return true
	}
	return false
}

// interopKeyLimits are corpus key files LoadPKCS12 is documented not to
// read; they are skipped without failing.
var interopKeyLimits = map[string]string{
	"simple-java-mail/pkcs12/smime_keystore.pkcs12": "two private keys (RSA and DSA) in one file, LoadPKCS12 reads files with exactly one; the RSA key is also in smime_test_user.p12",
}

// interopOpenSSLPKCS12 converts a PKCS#12 file to PEM with the openssl
// command, so a key LoadPKCS12 cannot read can still be used to test the
// engine (the load failure itself is reported).
func interopOpenSSLPKCS12(p, password string) (*LoadedKey, error) {
	out := p + ".pem"
	var last error
	for _, extra := range [][]string{nil, {"-legacy"}} {
		args := append([]string{"pkcs12", "-in", p, "-passin", "pass:" + password, "-nodes", "-out", out}, extra...)
		cmd := exec.Command("openssl", args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			last = fmt.Errorf("openssl pkcs12: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
			continue
		}
		if err := os.Chmod(out, 0o600); err != nil {
			return nil, err
		}
		return LoadPEMKey(out, out)
	}
	return nil, last
}

// interopLoadSource loads every credential results.json lists for a source
// (those Go cannot use, such as DSA or sect283k1 keys, are skipped with a
// log line) and the source's trust anchors.
func interopLoadSource(t *testing.T, dir, tmp, source string, r *interopResults, report func(format string, args ...any)) *interopKeyring {
	t.Helper()
	kr := &interopKeyring{byID: map[string]*LoadedKey{}, roots: x509.NewCertPool()}
	for _, c := range r.Creds[source] {
		id := interopCredID(c.ID)
		if _, done := kr.byID[id]; done {
			continue
		}
		lk, err := interopLoadCred(dir, tmp, id, interopPasswords[source])
		if err != nil && interopIsPKCS12(id) && interopKeyLimits[id] == "" {
			// OpenSSL read it (results.json lists it as a usable key): a
			// PKCS#12 file the loader cannot read is a finding of its own.
			p := filepath.Join(tmp, strings.NewReplacer("/", "_", " ", "_").Replace(id))
			if lk2, err2 := interopOpenSSLPKCS12(p, interopPasswords[source]); err2 == nil {
				report("LoadPKCS12(%s) = %v; openssl reads the file, so the key is used from its PEM conversion to test the engine", id, err)
				lk, err = lk2, nil
			}
		}
		if err != nil {
			why := interopKeyLimits[id]
			if why == "" {
				why = err.Error()
			}
			t.Logf("%s: key %s not usable here: %s", source, c.ID, why)
			continue
		}
		kr.byID[id] = lk
		kr.keys = append(kr.keys, &cms.Key{Cert: lk.Cert, Private: lk.Private})
	}
	for _, rel := range interopAnchors[source] {
		certs, err := interopReadCerts(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatalf("%s: trust anchor %s: %v", source, rel, err)
		}
		for _, c := range certs {
			kr.roots.AddCert(c)
		}
	}
	for _, rel := range interopAnchorsInP12[source] {
		lk, ok := kr.byID[rel]
		if !ok {
			t.Fatalf("%s: %s (holding a trust anchor) could not be loaded", source, rel)
		}
		n := 0
		for _, c := range lk.Chain {
			if c.IsCA {
				kr.roots.AddCert(c)
				n++
			}
		}
		if n == 0 {
			t.Fatalf("%s: no CA certificate inside %s", source, rel)
		}
	}
	return kr
}

// deriving the expectation from results.json

var interopAES = regexp.MustCompile(`^aes(\d+)-(cbc|gcm)$`)

func interopCipherName(s string) string {
	s = strings.ToLower(s)
	if m := interopAES.FindStringSubmatch(s); m != nil {
		return "aes-" + m[1] + "-" + m[2]
	}
	if strings.HasPrefix(s, "rc2-cbc") {
		return "rc2-cbc"
	}
	return s
}

func interopTransportName(typ, kea string) string {
	switch {
	case typ == "kari":
		return "ecdh"
	case strings.HasPrefix(kea, "rsaEncryption"):
		return "rsa-pkcs1v15"
	case strings.HasPrefix(kea, "RSAES-OAEP"):
		return "rsa-oaep"
	}
	return kea
}

func interopDigestName(s string) string {
	switch s {
	case "sha1", "sha224", "sha256", "sha384", "sha512":
		return "sha-" + strings.TrimPrefix(s, "sha")
	}
	return s
}

func interopSigAlgName(s string) string {
	switch {
	case strings.HasPrefix(s, "rsaEncryption"):
		return "rsa-pkcs1v15"
	case strings.HasPrefix(s, "RSASSA-PSS"):
		return "rsa-pss"
	case strings.HasPrefix(s, "dsa"):
		return "dsa"
	case strings.HasPrefix(s, "ecdsa"):
		return "ecdsa"
	}
	return s
}

// interopChainClass maps an OpenSSL verify result to the engine's verdict
// for a certificate problem.
func interopChainClass(r string) (string, bool) {
	switch {
	case r == "OK":
		return StatusValid, true
	case strings.HasPrefix(r, "certificate has expired"), strings.HasPrefix(r, "certificate is not yet valid"):
		return StatusExpired, true
	case strings.HasPrefix(r, "unsuitable certificate purpose"),
		strings.HasPrefix(r, "unable to get local issuer certificate"),
		strings.HasPrefix(r, "self-signed certificate"),
		strings.HasPrefix(r, "n/a (no CA in corpus)"):
		return StatusUntrusted, true
	}
	return "", false
}

// interopWithin reports whether at lies inside "YYYY-MM-DD..YYYY-MM-DD"
// (day granularity, both days included).
func interopWithin(validity string, at time.Time) (bool, error) {
	a, b, ok := strings.Cut(validity, "..")
	if !ok {
		return false, fmt.Errorf("signer_validity %q", validity)
	}
	nb, err := time.Parse(time.DateOnly, a)
	if err != nil {
		return false, err
	}
	na, err := time.Parse(time.DateOnly, b)
	if err != nil {
		return false, err
	}
	return !at.Before(nb) && at.Before(na.AddDate(0, 0, 1)), nil
}

// interopSignerExpect applies docs/verdicts.md's verdict rules to OpenSSL's
// findings for one signer.
func interopSignerExpect(l interopLayer, s *interopSigner, from string, received time.Time) (interopExpSig, error) {
	e := interopExpSig{
		weak:      s.Digest == "sha1",
		digest:    interopDigestName(s.Digest),
		algorithm: interopSigAlgName(s.Sig),
		emails:    s.SignerEmails,
	}
	sig := l.OpenSSLSig
	switch {
	case strings.HasPrefix(sig, "content-digest mismatch"):
		e.status, e.basis = StatusInvalid, "openssl_sig: "+sig
		return e, nil
	case strings.HasPrefix(sig, "malformed signed attributes"), strings.HasPrefix(sig, "signer public key undecodable"):
		e.status, e.basis = StatusError, "openssl_sig: "+sig
		return e, nil
	case !strings.HasPrefix(sig, "OK"):
		return e, fmt.Errorf("unknown openssl_sig %q", sig)
	}
	switch {
	case s.Digest == "md2" || s.Digest == "md4" || s.Digest == "md5":
		e.status, e.basis = StatusError, "unsupported digest "+s.Digest
		return e, nil
	case e.algorithm == "dsa":
		e.status, e.basis = StatusError, "unsupported signature algorithm DSA"
		return e, nil
	}
	// The engine judges at the message's arrival.
	at := received
	chain := "openssl_chain_now: " + l.ChainNow
	switch {
	case l.ChainNow == "OK":
		in, err := interopWithin(s.SignerValidity, at)
		if err != nil {
			return e, err
		}
		e.status = StatusValid
		if !in {
			e.status = StatusExpired
			chain += fmt.Sprintf("; judged at %s, outside %s", at.Format(time.RFC3339), s.SignerValidity)
		}
	case l.ChainAtTime != "":
		res, when, ok := strings.Cut(l.ChainAtTime, " @")
		if !ok {
			return e, fmt.Errorf("openssl_chain_attime %q", l.ChainAtTime)
		}
		ot, err := time.Parse("2006-01-02T15:04Z", when)
		if err != nil {
			return e, fmt.Errorf("openssl_chain_attime %q: %v", l.ChainAtTime, err)
		}
		cls, ok := interopChainClass(res)
		if !ok {
			return e, fmt.Errorf("unknown chain result %q", res)
		}
		chain += "; openssl_chain_attime: " + l.ChainAtTime
		if !ot.Equal(at.UTC().Truncate(time.Minute)) && cls != StatusUntrusted {
			// OpenSSL checked at another time (no signingTime: notBefore+1
			// day); a missing anchor does not depend on the time, validity does.
			in, err := interopWithin(s.SignerValidity, at)
			if err != nil {
				return e, err
			}
			cls = StatusValid
			if !in {
				cls = StatusExpired
			}
			chain += fmt.Sprintf("; judged at %s", at.Format(time.RFC3339))
		}
		e.status = cls
	default:
		cls, ok := interopChainClass(l.ChainNow)
		if !ok {
			return e, fmt.Errorf("unknown openssl_chain_now %q", l.ChainNow)
		}
		e.status = cls
	}
	e.basis = "openssl_sig: " + sig + "; " + chain
	if e.status == StatusValid && !slices.Contains(s.SignerEmails, from) {
		e.status = StatusMismatch
		e.basis += fmt.Sprintf("; From %q not in %v", from, s.SignerEmails)
	}
	return e, nil
}

func interopFrom(f interopFile) string {
	h := f.Headers["From"]
	if a, err := netmail.ParseAddress(h); err == nil {
		return strings.ToLower(a.Address)
	}
	if as, err := netmail.ParseAddressList(h); err == nil && len(as) > 0 {
		return strings.ToLower(as[0].Address)
	}
	// Raw 8-bit display names (ISO-8859-1) defeat net/mail: take <addr>.
	if i := strings.LastIndexByte(h, '<'); i >= 0 {
		if j := strings.IndexByte(h[i:], '>'); j > 0 {
			return strings.ToLower(strings.TrimSpace(h[i+1 : i+j]))
		}
	}
	if strings.Contains(h, "@") {
		return strings.ToLower(strings.TrimSpace(h))
	}
	return ""
}

var interopDateComment = regexp.MustCompile(`\s*\([^)]*\)\s*$`)

// interopReceived is when the message is taken to have arrived: after it
// was written and signed, so the latest of its Date header and its
// signers' signing times (as the corpus's results list them); without a
// Date, interopCheckDate.
func interopReceived(f interopFile) (time.Time, bool) {
	d := strings.TrimSpace(f.Headers["Date"])
	if d == "" {
		return interopCheckDate, false
	}
	t, err := netmail.ParseDate(d)
	if err != nil {
		if t, err = netmail.ParseDate(interopDateComment.ReplaceAllString(d, "")); err != nil {
			return interopCheckDate, false
		}
	}
	for _, l := range f.Layers {
		for _, s := range l.Signers {
			if st, err := time.Parse(time.RFC3339, s.SigningTime); err == nil && st.After(t) {
				t = st
			}
		}
	}
	return t, true
}

func interopDerive(f interopFile, kr *interopKeyring, received time.Time) (*interopExpect, error) {
	e := &interopExpect{}
	if f.Text != nil {
		e.text = strings.Join(strings.Fields(*f.Text), " ")
	}
	from := interopFrom(f)
	for _, l := range f.Layers {
		x := interopExpLayer{name: l.engineName()}
		switch l.Layer {
		case "enveloped":
			x.cipher = interopCipherName(l.ContentCipher)
			switch {
			case strings.Contains(l.OpenSSLDecrypt, ": OK"):
				x.decrypt = DecryptOK
				for _, r := range l.Recipients {
					for _, id := range r.MatchingKey {
						if lk, ok := kr.byID[interopCredID(id)]; ok {
							x.keyFPs = append(x.keyFPs, Fingerprint(lk.Cert))
							x.transport = interopTransportName(r.Type, r.KEA)
						}
					}
				}
				if len(x.keyFPs) == 0 {
					return nil, fmt.Errorf("OpenSSL decrypted with a key that could not be loaded: %s", l.OpenSSLDecrypt)
				}
			case strings.HasPrefix(l.OpenSSLDecrypt, "no matching key"):
				x.decrypt, x.noKey = DecryptFailed, true
			case strings.Contains(l.OpenSSLDecrypt, "bad decrypt"):
				x.decrypt = DecryptFailed
			default:
				return nil, fmt.Errorf("unknown openssl_decrypt %q", l.OpenSSLDecrypt)
			}
		default:
			for i, s := range l.Signers {
				if s == nil {
					return nil, fmt.Errorf("layer %s: signer %d is null", l.Layer, i)
				}
				es, err := interopSignerExpect(l, s, from, received)
				if err != nil {
					return nil, fmt.Errorf("layer %s signer %d: %v", l.Layer, i, err)
				}
				x.sigs = append(x.sigs, es)
			}
		}
		e.layers = append(e.layers, x)
	}
	return e, nil
}

func (e *interopExpect) decryption() string {
	st := DecryptNone
	for _, l := range e.layers {
		switch l.decrypt {
		case DecryptFailed:
			return DecryptFailed
		case DecryptOK:
			st = DecryptOK
		}
	}
	return st
}

func (e *interopExpect) clone() *interopExpect {
	c := &interopExpect{text: e.text}
	for _, l := range e.layers {
		l.keyFPs = slices.Clone(l.keyFPs)
		l.sigs = slices.Clone(l.sigs)
		c.layers = append(c.layers, l)
	}
	return c
}

// interopText is every text/* part of a message (message/rfc822 parts
// included), decoded, with whitespace collapsed.
func interopText(raw []byte) string {
	var parts []string
	var walk func(r io.Reader, depth int)
	walk = func(r io.Reader, depth int) {
		if depth > 10 {
			return
		}
		ent, err := message.Read(r)
		if ent == nil || (err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
			return
		}
		_ = ent.Walk(func(_ []int, p *message.Entity, err error) error {
			if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				return nil
			}
			mt, _, _ := p.Header.ContentType()
			switch {
			case mt == "" || strings.HasPrefix(mt, "text/"):
				if b, err := io.ReadAll(p.Body); err == nil || len(b) > 0 {
					parts = append(parts, string(b))
				}
			case mt == "message/rfc822":
				if b, err := io.ReadAll(p.Body); err == nil {
					walk(bytes.NewReader(b), depth+1)
				}
			}
			return nil
		})
	}
	walk(bytes.NewReader(raw), 0)
	return strings.Join(strings.Fields(strings.Join(parts, " ")), " ")
}

// the test

type interopTally struct {
	files, layers, agree, excepted, failed, policy int
}

func TestInteropCorpus(t *testing.T) {
	dir := interopCorpusDir(t)
	results := interopLoadResults(t, dir)
	tmp := t.TempDir()

	// Keys and anchors per source. Every PKCS#12 file OpenSSL reads must
	// load with LoadPKCS12 too.
	rings := map[string]*interopKeyring{}
	for _, f := range results.Files {
		if _, done := rings[f.Source]; done || !interopIsSMIME(f) {
			continue
		}
		rings[f.Source] = nil
		t.Run("keys/"+f.Source, func(t *testing.T) {
			if _, known := interopAnchors[f.Source]; !known {
				t.Fatalf("source %q has no trust anchors configured in this test", f.Source)
			}
			rings[f.Source] = interopLoadSource(t, dir, tmp, f.Source, results, t.Errorf)
		})
	}

	tally := map[string]*interopTally{}
	byReason := map[string]int{}
	usedExceptions := map[string]bool{}
	var walked []string

	for _, f := range results.Files {
		if !interopIsSMIME(f) {
			continue
		}
		walked = append(walked, f.File)
		kr := rings[f.Source]
		tl := tally[f.Source]
		if tl == nil {
			tl = &interopTally{}
			tally[f.Source] = tl
		}
		t.Run(f.File, func(t *testing.T) {
			tl.files++
			if kr == nil {
				t.Fatalf("keys and anchors of %s could not be loaded", f.Source)
			}
			received, _ := interopReceived(f)
			openssl, err := interopDerive(f, kr, received)
			if err != nil {
				t.Fatalf("results.json: %v", err)
			}
			want := openssl
			exc, excepted := interopExceptions[f.File]
			if excepted {
				usedExceptions[f.File] = true
				want = openssl.clone()
				exc.apply(want)
				byReason[exc.reason]++
				t.Logf("documented exception (%s): %s", exc.reason, exc.why)
			}

			raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.File)))
			if err != nil {
				t.Fatal(err)
			}
			eng := New(Options{Keys: kr.keys, Roots: kr.roots})
			res, err := eng.Process(raw, received)
			if err != nil {
				t.Fatalf("Process: %v", err)
			}
			rep := res.Report

			// One entry per results.json layer; an excepted layer that the
			// exception removed counts as excepted.
			layerFailed := make([]bool, max(len(openssl.layers), len(want.layers)))
			fail := func(i int, format string, args ...any) {
				t.Helper()
				if i >= 0 && i < len(layerFailed) {
					layerFailed[i] = true
				} else {
					for j := range layerFailed {
						layerFailed[j] = true
					}
				}
				t.Errorf(format, args...)
			}

			var wantNames []string
			for _, l := range want.layers {
				wantNames = append(wantNames, l.name)
			}
			if !slices.Equal(rep.Layers, wantNames) {
				fail(-1, "layers = %q, want %q (report error %q)", rep.Layers, wantNames, rep.Error)
			}

			// Decryption: the report describes the outermost encryption
			// layer, and "failed" when any layer could not be decrypted.
			wantDec := want.decryption()
			if rep.Decryption.Status != wantDec {
				fail(-1, "decryption status = %q (%s), want %q", rep.Decryption.Status, rep.Decryption.Error, wantDec)
			}
			for i, l := range want.layers {
				if l.decrypt == "" {
					continue
				}
				if l.decrypt == DecryptOK && rep.Decryption.Status == DecryptOK && interopOutermostEnveloped(want) == i {
					if !slices.Contains(l.keyFPs, rep.Decryption.Key) {
						fail(i, "layer %d: decrypted with key %s, want one of %v", i, rep.Decryption.Key, l.keyFPs)
					}
					if rep.Decryption.Cipher != l.cipher {
						fail(i, "layer %d: cipher = %q, want %q", i, rep.Decryption.Cipher, l.cipher)
					}
					if rep.Decryption.KeyTransport != l.transport {
						fail(i, "layer %d: key transport = %q, want %q", i, rep.Decryption.KeyTransport, l.transport)
					}
				}
				if l.decrypt == DecryptFailed && l.noKey && len(rep.Recipients) == 0 {
					fail(i, "layer %d: no key in the corpus, but the report lists no recipients", i)
				}
				if l.decrypt == DecryptFailed && rep.Decryption.Status == DecryptFailed && rep.Error == "" {
					fail(i, "layer %d: decryption failed but the report carries no error", i)
				}
			}

			// Signatures, layer by layer, signer by signer.
			for _, s := range rep.Signatures {
				if s.Layer < 0 || s.Layer >= len(want.layers) || want.layers[s.Layer].decrypt != "" {
					fail(-1, "signature %+v on layer %d, which is not a signed layer", s, s.Layer)
				}
			}
			for i, l := range want.layers {
				if l.decrypt != "" {
					continue
				}
				var got []Signature
				for _, s := range rep.Signatures {
					if s.Layer == i {
						got = append(got, s)
					}
				}
				if len(got) != len(l.sigs) {
					fail(i, "layer %d (%s): %d signatures %+v, want %d", i, l.name, len(got), got, len(l.sigs))
					continue
				}
				for j, w := range l.sigs {
					g := got[j]
					if g.Status != w.status {
						fail(i, "layer %d (%s) signer %d: status %q (%s), want %q [%s]", i, l.name, j, g.Status, g.Reason, w.status, w.basis)
						continue
					}
					if w.status == StatusError {
						continue // unsupported or unreadable: nothing more to compare
					}
					if g.WeakDigest != w.weak {
						fail(i, "layer %d signer %d: weak_digest = %v, want %v", i, j, g.WeakDigest, w.weak)
					}
					if g.Digest != w.digest || g.Algorithm != w.algorithm {
						fail(i, "layer %d signer %d: %s/%s, want %s/%s", i, j, g.Digest, g.Algorithm, w.digest, w.algorithm)
					}
					if len(w.emails) > 0 && !slices.Contains(w.emails, g.Signer) {
						fail(i, "layer %d signer %d: signer %q, want one of %v", i, j, g.Signer, w.emails)
					}
					if g.Fingerprint == "" {
						fail(i, "layer %d signer %d: no certificate fingerprint", i, j)
					}
				}
			}

			// The innermost text (results.json "text": the start of the
			// first text part, whitespace collapsed) must be readable in
			// the plaintext copy.
			if want.text != "" && rep.Decryption.Status != DecryptFailed {
				if got := interopText(res.Plaintext); !strings.Contains(got, want.text) {
					fail(len(want.layers)-1, "plaintext text does not contain %q; got %.200q", want.text, got)
				}
			}

			// Thunderbird's policy: SHA-1 signatures are bad. With
			// reject_sha1 every SHA-1 signature that is otherwise judged
			// valid must be invalid.
			if !t.Failed() && interopHasValidSHA1(want) {
				eng2 := New(Options{Keys: kr.keys, Roots: kr.roots, RejectSHA1: true})
				res2, err := eng2.Process(raw, received)
				if err != nil {
					t.Fatalf("Process (reject_sha1): %v", err)
				}
				for _, s := range res2.Report.Signatures {
					if s.WeakDigest && s.Status != StatusInvalid {
						t.Errorf("reject_sha1: SHA-1 signature on layer %d is %q, want invalid", s.Layer, s.Status)
					}
				}
				tl.policy++
			}

			for i := range layerFailed {
				tl.layers++
				changed := excepted && (i >= len(want.layers) || i >= len(openssl.layers) ||
					!reflect.DeepEqual(openssl.layers[i], want.layers[i]))
				switch {
				case layerFailed[i]:
					tl.failed++
				case changed:
					tl.excepted++
				default:
					tl.agree++
				}
			}
		})
	}

	for file := range interopExceptions {
		if !usedExceptions[file] {
			t.Errorf("exception for %s matches no walked message", file)
		}
	}

	var sources []string
	for s := range tally {
		sources = append(sources, s)
	}
	sort.Strings(sources)
	var sum interopTally
	t.Logf("interop corpus %s: %d messages walked", dir, len(walked))
	for _, s := range sources {
		x := tally[s]
		t.Logf("  %-18s files %3d  layers %3d  agree %3d  documented exceptions %2d  failed %2d  reject_sha1 cross-checks %2d",
			s, x.files, x.layers, x.agree, x.excepted, x.failed, x.policy)
		sum.files += x.files
		sum.layers += x.layers
		sum.agree += x.agree
		sum.excepted += x.excepted
		sum.failed += x.failed
		sum.policy += x.policy
	}
	t.Logf("  %-18s files %3d  layers %3d  agree %3d  documented exceptions %2d  failed %2d  reject_sha1 cross-checks %2d",
		"total", sum.files, sum.layers, sum.agree, sum.excepted, sum.failed, sum.policy)
	var reasons []string
	for r := range byReason {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		t.Logf("  exception %q: %d file(s)", r, byReason[r])
	}
}

func interopOutermostEnveloped(e *interopExpect) int {
	for i, l := range e.layers {
		if l.decrypt != "" {
			return i
		}
	}
	return -1
}

func interopHasValidSHA1(e *interopExpect) bool {
	for _, l := range e.layers {
		for _, s := range l.sigs {
			if s.weak && s.status == StatusValid {
				return true
			}
		}
	}
	return false
}

// TestInteropCorpusNoPanic feeds every file of the corpus through the engine
// with every usable corpus key and anchor: messages as they are, CMS blobs
// both raw and wrapped in an application/pkcs7-mime message.
func TestInteropCorpusNoPanic(t *testing.T) {
	dir := interopCorpusDir(t)
	results := interopLoadResults(t, dir)
	tmp := t.TempDir()

	opts := Options{Roots: x509.NewCertPool()}
	var sources []string
	for s := range interopAnchors {
		sources = append(sources, s)
	}
	sort.Strings(sources)
	for _, s := range sources {
		kr := interopLoadSource(t, dir, tmp, s, results, t.Logf)
		opts.Keys = append(opts.Keys, kr.keys...)
		for _, rel := range interopAnchors[s] {
			certs, _ := interopReadCerts(filepath.Join(dir, filepath.FromSlash(rel)))
			for _, c := range certs {
				opts.Roots.AddCert(c)
			}
		}
	}
	eng := New(opts)

	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	inputs := 0
	for _, p := range files {
		rel, _ := filepath.Rel(dir, p)
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		feeds := [][]byte{raw}
		if der := interopBlobDER(raw); der != nil {
			feeds = append(feeds, interopWrapCMS(der))
		}
		for i, in := range feeds {
			inputs++
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s (input %d): panic: %v\n%s", rel, i, r, debug.Stack())
					}
				}()
				res, err := eng.Process(in, interopCheckDate)
				if err != nil {
					t.Errorf("%s (input %d): Process error %v, want problems in the report only", rel, i, err)
					return
				}
				if res == nil {
					t.Errorf("%s (input %d): nil result", rel, i)
					return
				}
				if len(res.Report.Layers) > MaxDepth+1 {
					t.Errorf("%s (input %d): %d layers", rel, i, len(res.Report.Layers))
				}
			}()
		}
	}
	t.Logf("%d corpus files, %d inputs through Process without panic", len(files), inputs)
}

// interopBlobDER returns the DER of a raw CMS blob (DER/BER starting with a
// SEQUENCE, or PEM "PKCS7"/"CMS" blocks), or nil for anything else.
func interopBlobDER(raw []byte) []byte {
	if b, _ := pem.Decode(raw); b != nil {
		switch b.Type {
		case "PKCS7", "CMS", "PKCS #7 SIGNED DATA":
			return b.Bytes
		}
		return nil
	}
	if len(raw) > 2 && raw[0] == 0x30 && (raw[1] == 0x80 || raw[1] >= 0x81 && raw[1] <= 0x84) {
		return raw
	}
	return nil
}

func interopWrapCMS(der []byte) []byte {
	var b bytes.Buffer
	b.WriteString("From: interop@example.org\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: application/pkcs7-mime; name=smime.p7m\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	writeBase64Lines(&b, der)
	return b.Bytes()
}
