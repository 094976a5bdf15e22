package cms

// EnvelopedData (RFC 5652 section 6) and AuthEnvelopedData (RFC 5083)
// decryption. The structures are read with cryptobyte straight out of
// ContentInfo.Content (already normalised to DER by ParseContentInfo), so
// the encrypted content is never copied before it is decrypted, and the
// plaintext is written into a single buffer of the ciphertext's size.
//
// Recipients are tried in message order against every key whose certificate
// the recipient identifier names. Key transport (RSA PKCS #1 v1.5 and
// RSAES-OAEP, RFC 3370 and RFC 3560) lives in this file, key agreement
// (ECDH, RFC 5753/RFC 8418) in kari.go, AES key wrap (RFC 3394) in
// keywrap.go and the content ciphers (RFC 3370, RFC 3565, RFC 5084) in
// ciphers.go.

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Key is one organisation key that can decrypt.
type Key struct {
	Cert *x509.Certificate
	// Private is an *rsa.PrivateKey, an *ecdsa.PrivateKey (P-256, P-384,
	// P-521), an *ecdh.PrivateKey on one of those curves, or any
	// crypto.Decrypter whose Public() is an *rsa.PublicKey (e.g. an HSM).
	Private crypto.PrivateKey
}

// Recipient is one entry of a message's RecipientInfos. A
// KeyAgreeRecipientInfo with several RecipientEncryptedKeys gives one
// Recipient per key.
type Recipient struct {
	Kind string     // "ktri", "kari", "kekri", "pwri", "ori" (or "unknown")
	ID   Identifier // zero for kekri/pwri/ori
	// KeyTransport is "rsa-pkcs1v15", "rsa-oaep", "ecdh", or the key
	// encryption algorithm's OID (for ori: the oriType) when unknown.
	KeyTransport string
}

// String renders the recipient for error messages and reports, e.g.
// `ktri issuer="CN=Test CA" serial=0x1e` or `kekri`.
func (r Recipient) String() string {
	if r.ID.IssuerRaw == nil && r.ID.Serial == nil && r.ID.SKI == nil {
		return r.Kind
	}
	return r.Kind + " " + r.ID.String()
}

// Decrypted is the result of a successful Decrypt.
type Decrypted struct {
	Content     []byte                // the decrypted content (for S/MIME: a MIME entity)
	ContentType asn1.ObjectIdentifier // the encryptedContentInfo's contentType
	// Cipher is "aes-128-cbc", "aes-192-cbc", "aes-256-cbc",
	// "des-ede3-cbc", "aes-128-gcm", "aes-192-gcm" or "aes-256-gcm".
	Cipher       string
	KeyTransport string      // "rsa-pkcs1v15", "rsa-oaep" or "ecdh"
	Key          *Key        // the key that worked
	Recipients   []Recipient // all recipients listed in the message
}

// ErrNoRecipient is returned when no recipient of the message names the
// certificate of any key given to Decrypt.
var ErrNoRecipient = errors.New("cms: no recipient matches any key")

// ErrDecrypt is returned when a recipient matched a key but the content
// encryption key or the content could not be recovered (wrong key,
// tampered message, bad padding, failed authentication tag).
var ErrDecrypt = errors.New("cms: decryption failed")

// envError carries a sentinel and a message without the sentinel's text, so
// that several of them can be combined into one error without repeating the
// prefix.
type envError struct {
	kind error
	msg  string
}

func (e *envError) Error() string { return e.kind.Error() + ": " + e.msg }
func (e *envError) Unwrap() error { return e.kind }

func envErrf(kind error, format string, args ...any) error {
	return &envError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// envErrDetail is the text of err without its sentinel prefix.
func envErrDetail(err error) string {
	var ce *envError
	if errors.As(err, &ce) {
		return ce.msg
	}
	return err.Error()
}

const (
	// envMaxAttempts bounds the (recipient, key) pairs Decrypt tries.
	envMaxAttempts = 16
	// envMaxListed bounds the recipients named in an ErrNoRecipient error.
	envMaxListed = 16
)

var (
	envOIDRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	envOIDRSAESOAEP     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	envOIDMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	envOIDPSpecified    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 9}

	envOIDSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	envOIDSHA224 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}
	envOIDSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	envOIDSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	envOIDSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// envAlgID is an AlgorithmIdentifier as found in the message.
type envAlgID struct {
	OID    asn1.ObjectIdentifier
	Params []byte // full encoding of the parameters; nil when absent
	Raw    []byte // full encoding of the AlgorithmIdentifier
}

// paramsAbsent reports whether the parameters are absent or NULL.
func (a envAlgID) paramsAbsent() bool {
	return a.Params == nil || (len(a.Params) == 2 && a.Params[0] == 0x05 && a.Params[1] == 0)
}

func envReadAlgID(s *cryptobyte.String, out *envAlgID) bool {
	var full, seq cryptobyte.String
	if !s.ReadASN1Element(&full, casn1.SEQUENCE) {
		return false
	}
	body := full
	if !body.ReadASN1(&seq, casn1.SEQUENCE) || !seq.ReadASN1ObjectIdentifier(&out.OID) {
		return false
	}
	out.Raw = full
	out.Params = nil
	if !seq.Empty() {
		var p cryptobyte.String
		var tag casn1.Tag
		if !seq.ReadAnyASN1Element(&p, &tag) || !seq.Empty() {
			return false
		}
		out.Params = p
	}
	return true
}

// envRecipientInfo is one RecipientInfo (for kari: one RecipientEncryptedKey
// with the fields it shares with its siblings).
type envRecipientInfo struct {
	Recipient
	keyAlg       envAlgID
	encryptedKey []byte
	kari         *envKARIShared // for Kind "kari"
}

// envEnvelope holds the parsed EnvelopedData or AuthEnvelopedData. All byte
// slices point into ContentInfo.Content.
type envEnvelope struct {
	auth        bool
	recipients  []envRecipientInfo
	contentType asn1.ObjectIdentifier
	contentAlg  envAlgID
	content     []byte // full encoding of encryptedContent [0]; nil when absent
	aad         []byte // AuthEnvelopedData: authAttrs re-tagged as SET
	mac         []byte // AuthEnvelopedData
}

var (
	envTagPrim0 = casn1.Tag(0).ContextSpecific()
	envTagCons0 = casn1.Tag(0).ContextSpecific().Constructed()
	envTagCons1 = casn1.Tag(1).ContextSpecific().Constructed()
	envTagCons2 = casn1.Tag(2).ContextSpecific().Constructed()
	envTagCons3 = casn1.Tag(3).ContextSpecific().Constructed()
	envTagCons4 = casn1.Tag(4).ContextSpecific().Constructed()
)

func envParse(ci *ContentInfo) (*envEnvelope, error) {
	if ci == nil {
		return nil, envErrf(ErrMalformed, "nil ContentInfo")
	}
	env := &envEnvelope{}
	switch {
	case ci.Type.Equal(OIDEnvelopedData):
	case ci.Type.Equal(OIDAuthEnvelopedData):
		env.auth = true
	default:
		return nil, envErrf(ErrUnsupported, "content type %s is not enveloped-data or authEnveloped-data", TypeName(ci.Type))
	}
	name := "EnvelopedData"
	if env.auth {
		name = "AuthEnvelopedData"
	}
	in := cryptobyte.String(ci.Content)
	var seq cryptobyte.String
	var version int64
	if !in.ReadASN1(&seq, casn1.SEQUENCE) || !in.Empty() {
		return nil, envErrf(ErrMalformed, "%s: not a SEQUENCE", name)
	}
	if !seq.ReadASN1Integer(&version) {
		return nil, envErrf(ErrMalformed, "%s: version", name)
	}
	if !seq.SkipOptionalASN1(envTagCons0) { // originatorInfo
		return nil, envErrf(ErrMalformed, "%s: originatorInfo", name)
	}
	var set cryptobyte.String
	if !seq.ReadASN1(&set, casn1.SET) {
		return nil, envErrf(ErrMalformed, "%s: recipientInfos", name)
	}
	var err error
	if env.recipients, err = envParseRecipientInfos(set); err != nil {
		return nil, err
	}
	var eci cryptobyte.String
	if !seq.ReadASN1(&eci, casn1.SEQUENCE) ||
		!eci.ReadASN1ObjectIdentifier(&env.contentType) ||
		!envReadAlgID(&eci, &env.contentAlg) {
		return nil, envErrf(ErrMalformed, "%s: encryptedContentInfo", name)
	}
	if !eci.Empty() {
		var c cryptobyte.String
		var tag casn1.Tag
		if !eci.ReadAnyASN1Element(&c, &tag) || !eci.Empty() || (tag != envTagPrim0 && tag != envTagCons0) {
			return nil, envErrf(ErrMalformed, "%s: encryptedContent", name)
		}
		env.content = c
	}
	if !env.auth {
		if !seq.SkipOptionalASN1(envTagCons1) || !seq.Empty() { // unprotectedAttrs
			return nil, envErrf(ErrMalformed, "%s: unprotectedAttrs or trailing data", name)
		}
		return env, nil
	}
	if seq.PeekASN1Tag(envTagCons1) {
		var attrs cryptobyte.String
		if !seq.ReadASN1Element(&attrs, envTagCons1) {
			return nil, envErrf(ErrMalformed, "%s: authAttrs", name)
		}
		// RFC 5083 section 2.2: the AAD is the DER of authAttrs with the
		// EXPLICIT SET OF tag instead of the IMPLICIT [1].
		env.aad = make([]byte, len(attrs))
		copy(env.aad, attrs)
		env.aad[0] = 0x31
	}
	if !seq.ReadASN1Bytes(&env.mac, casn1.OCTET_STRING) {
		return nil, envErrf(ErrMalformed, "%s: mac", name)
	}
	if !seq.SkipOptionalASN1(envTagCons2) || !seq.Empty() { // unauthAttrs
		return nil, envErrf(ErrMalformed, "%s: unauthAttrs or trailing data", name)
	}
	return env, nil
}

func envParseRecipientInfos(set cryptobyte.String) ([]envRecipientInfo, error) {
	var out []envRecipientInfo
	for n := 1; !set.Empty(); n++ {
		if len(out) >= MaxRecipientInfos {
			return nil, envErrf(ErrTooMany, "more than %d RecipientInfos", MaxRecipientInfos)
		}
		var ri cryptobyte.String
		var tag casn1.Tag
		if !set.ReadAnyASN1(&ri, &tag) {
			return nil, envErrf(ErrMalformed, "RecipientInfo %d", n)
		}
		switch tag {
		case casn1.SEQUENCE:
			r, err := envParseKTRI(ri)
			if err != nil {
				return nil, fmt.Errorf("%w (RecipientInfo %d)", err, n)
			}
			out = append(out, r)
		case envTagCons1:
			rs, err := envParseKARI(ri)
			if err != nil {
				return nil, fmt.Errorf("%w (RecipientInfo %d)", err, n)
			}
			out = append(out, rs...)
		case envTagCons2: // KEKRecipientInfo: version, kekid, keyEncryptionAlgorithm, encryptedKey
			r := envRecipientInfo{Recipient: Recipient{Kind: "kekri"}}
			var a envAlgID
			if ri.SkipASN1(casn1.INTEGER) && ri.SkipASN1(casn1.SEQUENCE) && envReadAlgID(&ri, &a) {
				r.KeyTransport = a.OID.String()
			}
			out = append(out, r)
		case envTagCons3: // PasswordRecipientInfo: version, [0] keyDerivationAlgorithm OPTIONAL, keyEncryptionAlgorithm, encryptedKey
			r := envRecipientInfo{Recipient: Recipient{Kind: "pwri"}}
			var a envAlgID
			if ri.SkipASN1(casn1.INTEGER) && ri.SkipOptionalASN1(envTagCons0) && envReadAlgID(&ri, &a) {
				r.KeyTransport = a.OID.String()
			}
			out = append(out, r)
		case envTagCons4: // OtherRecipientInfo: oriType, oriValue
			r := envRecipientInfo{Recipient: Recipient{Kind: "ori"}}
			var oid asn1.ObjectIdentifier
			if ri.ReadASN1ObjectIdentifier(&oid) {
				r.KeyTransport = oid.String()
			}
			out = append(out, r)
		default:
			out = append(out, envRecipientInfo{Recipient: Recipient{Kind: "unknown"}})
		}
	}
	return out, nil
}

// envParseKTRI reads the body of a KeyTransRecipientInfo:
// version, rid, keyEncryptionAlgorithm, encryptedKey.
func envParseKTRI(s cryptobyte.String) (envRecipientInfo, error) {
	r := envRecipientInfo{Recipient: Recipient{Kind: "ktri"}}
	var rid cryptobyte.String
	var tag casn1.Tag
	if !s.SkipASN1(casn1.INTEGER) || !s.ReadAnyASN1Element(&rid, &tag) {
		return r, envErrf(ErrMalformed, "KeyTransRecipientInfo: rid")
	}
	id, err := parseIdentifier(rid)
	if err != nil {
		return r, err
	}
	r.ID = id
	if !envReadAlgID(&s, &r.keyAlg) || !s.ReadASN1Bytes(&r.encryptedKey, casn1.OCTET_STRING) || !s.Empty() {
		return r, envErrf(ErrMalformed, "KeyTransRecipientInfo: keyEncryptionAlgorithm or encryptedKey")
	}
	switch {
	case r.keyAlg.OID.Equal(envOIDRSAEncryption):
		r.KeyTransport = "rsa-pkcs1v15"
	case r.keyAlg.OID.Equal(envOIDRSAESOAEP):
		r.KeyTransport = "rsa-oaep"
	default:
		r.KeyTransport = r.keyAlg.OID.String()
	}
	return r, nil
}

func (env *envEnvelope) listing() []Recipient {
	out := make([]Recipient, len(env.recipients))
	for i := range env.recipients {
		out[i] = env.recipients[i].Recipient
	}
	return out
}

// Recipients lists the recipients of an EnvelopedData or AuthEnvelopedData
// without decrypting.
func Recipients(ci *ContentInfo) ([]Recipient, error) {
	env, err := envParse(ci)
	if err != nil {
		return nil, err
	}
	return env.listing(), nil
}

// Decrypt decrypts an EnvelopedData or AuthEnvelopedData (ci.Type
// OIDEnvelopedData or OIDAuthEnvelopedData) with the first of keys that
// works. Every (recipient, key) pair whose identifier names the key's
// certificate is tried in message order; a pair that fails does not stop
// the others.
//
// Errors: ErrNoRecipient when no recipient names any key's certificate
// (the message lists the recipients); ErrDecrypt when a recipient matched
// but its key or the content could not be decrypted; ErrUnsupported for
// algorithms this package does not implement; ErrMalformed for bad
// structure.
func Decrypt(ci *ContentInfo, keys []*Key) (*Decrypted, error) {
	return decrypt(ci, keys, false)
}

// DecryptInPlace is Decrypt for a caller that owns the memory of
// ci.Content and needs it no more: the content may be decrypted where its
// ciphertext lies (CBC content in one piece), which saves a buffer of the
// message's size. A failed attempt leaves the ciphertext as it was, so
// every matching recipient is still tried.
func DecryptInPlace(ci *ContentInfo, keys []*Key) (*Decrypted, error) {
	return decrypt(ci, keys, true)
}

func decrypt(ci *ContentInfo, keys []*Key, inPlace bool) (*Decrypted, error) {
	env, err := envParse(ci)
	if err != nil {
		return nil, err
	}
	type pair struct {
		ri  *envRecipientInfo
		key *Key
	}
	var pairs []pair
	nkeys := 0
	for _, k := range keys {
		if k != nil && k.Cert != nil {
			nkeys++
		}
	}
	for i := range env.recipients {
		ri := &env.recipients[i]
		if ri.Kind != "ktri" && ri.Kind != "kari" {
			continue
		}
		for _, k := range keys {
			if k != nil && ri.ID.Matches(k.Cert) {
				pairs = append(pairs, pair{ri, k})
			}
		}
	}
	if len(pairs) == 0 {
		var list []string
		for i := range env.recipients {
			if i == envMaxListed {
				list = append(list, fmt.Sprintf("and %d more", len(env.recipients)-i))
				break
			}
			list = append(list, env.recipients[i].String())
		}
		s := "s"
		if nkeys == 1 {
			s = ""
		}
		return nil, envErrf(ErrNoRecipient, "%d key%s tried; recipients: %s", nkeys, s, strings.Join(list, ", "))
	}
	// A hostile message can name our certificate thousands of times; each
	// try costs a private-key operation and a pass over the content.
	skipped := 0
	if len(pairs) > envMaxAttempts {
		skipped = len(pairs) - envMaxAttempts
		pairs = pairs[:envMaxAttempts]
	}

	cc, err := envParseContentCipher(env.contentAlg)
	if err != nil {
		return nil, err
	}
	if cc.aead != env.auth {
		if env.auth {
			return nil, envErrf(ErrMalformed, "AuthEnvelopedData with the non-authenticating cipher %s", cc.name)
		}
		return nil, envErrf(ErrMalformed, "EnvelopedData with the authenticated cipher %s (needs AuthEnvelopedData)", cc.name)
	}
	if env.content == nil {
		return nil, envErrf(ErrUnsupported, "detached encrypted content")
	}
	src, err := envParseOctets(env.content)
	if err != nil {
		return nil, fmt.Errorf("%w (encryptedContent)", err)
	}
	buf, err := cc.buffer(src, env.mac, inPlace)
	if err != nil {
		return nil, err
	}

	var failures []string
	var kinds []error
	for _, p := range pairs {
		pt, err := envDecryptWith(env, cc, src, buf, p.ri, p.key)
		if err != nil {
			failures = append(failures, p.ri.String()+": "+envErrDetail(err))
			kinds = append(kinds, err)
			continue
		}
		return &Decrypted{
			Content:      pt,
			ContentType:  env.contentType,
			Cipher:       cc.name,
			KeyTransport: p.ri.KeyTransport,
			Key:          p.key,
			Recipients:   env.listing(),
		}, nil
	}
	kind := ErrMalformed
	for _, k := range []error{ErrDecrypt, ErrUnsupported} {
		found := false
		for _, e := range kinds {
			if errors.Is(e, k) {
				found = true
				break
			}
		}
		if found {
			kind = k
			break
		}
	}
	if skipped > 0 {
		failures = append(failures, fmt.Sprintf("%d more matching recipients not tried", skipped))
	}
	return nil, envErrf(kind, "%s", strings.Join(failures, "; "))
}

// envDecryptWith recovers the content encryption key for one (recipient, key)
// pair and decrypts the content into buf.
func envDecryptWith(env *envEnvelope, cc *envContentCipher, src envOctets, buf []byte, ri *envRecipientInfo, k *Key) ([]byte, error) {
	if err := envKeyMatchesCert(k); err != nil {
		return nil, err
	}
	var cek []byte
	var err error
	switch ri.Kind {
	case "ktri":
		cek, err = envKTRICEK(ri, k, cc.keyLen)
	case "kari":
		cek, err = envKARICEK(ri, k, cc.keyLen)
	default:
		return nil, envErrf(ErrUnsupported, "%s recipients", ri.Kind)
	}
	if err != nil {
		return nil, err
	}
	defer clear(cek)
	return cc.open(cek, src, buf, env.mac, env.aad)
}

// envKeyMatchesCert refuses a Key whose private key does not belong to its
// certificate: with PKCS #1 v1.5 such a key would yield a random content
// key, and CBC padding alone cannot reliably tell that from the right one.
func envKeyMatchesCert(k *Key) error {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	var pub crypto.PublicKey
	switch p := k.Private.(type) {
	case *ecdh.PrivateKey:
		cp, ok := k.Cert.PublicKey.(*ecdsa.PublicKey)
		if !ok {
			return envErrf(ErrDecrypt, "private key (ECDH) does not belong to the certificate (%T)", k.Cert.PublicKey)
		}
		ce, err := cp.ECDH()
		if err != nil || !p.PublicKey().Equal(ce) {
			return envErrf(ErrDecrypt, "private key does not belong to the certificate")
		}
		return nil
	case crypto.Signer:
		pub = p.Public()
	case crypto.Decrypter:
		pub = p.Public()
	default:
		return envErrf(ErrUnsupported, "private key type %T", k.Private)
	}
	if e, ok := pub.(equaler); !ok || !e.Equal(k.Cert.PublicKey) {
		return envErrf(ErrDecrypt, "private key does not belong to the certificate")
	}
	return nil
}

// envKTRICEK decrypts the content encryption key of a KeyTransRecipientInfo.
func envKTRICEK(ri *envRecipientInfo, k *Key, keyLen int) ([]byte, error) {
	dec, ok := k.Private.(crypto.Decrypter)
	if !ok {
		return nil, envErrf(ErrUnsupported, "key transport needs an RSA key, have %T", k.Private)
	}
	pub, ok := dec.Public().(*rsa.PublicKey)
	if !ok {
		return nil, envErrf(ErrUnsupported, "key transport needs an RSA key, have %T", dec.Public())
	}
	encryptedKey := ri.encryptedKey
	switch {
	case len(encryptedKey) > pub.Size():
		return nil, envErrf(ErrDecrypt, "key transport: encrypted key is %d bytes, the RSA modulus %d", len(encryptedKey), pub.Size())
	case len(encryptedKey) < pub.Size():
		// Some encoders drop leading zero bytes of the ciphertext
		// integer; OpenSSL accepts that, and so do we.
		padded := make([]byte, pub.Size())
		copy(padded[pub.Size()-len(encryptedKey):], encryptedKey)
		encryptedKey = padded
	}
	switch {
	case ri.keyAlg.OID.Equal(envOIDRSAEncryption):
		// With SessionKeyLen set, a padding failure yields a random key of
		// that length instead of an error (RFC 3218 section 2.3.2), so a
		// wrong key fails later, at the content, like a tampered one.
		cek, err := dec.Decrypt(rand.Reader, encryptedKey, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: keyLen})
		if err != nil {
			return nil, envErrf(ErrDecrypt, "key transport: RSA PKCS #1 v1.5 decryption failed")
		}
		if len(cek) != keyLen {
			clear(cek)
			return nil, envErrf(ErrDecrypt, "key transport: content key has the wrong length")
		}
		return cek, nil
	case ri.keyAlg.OID.Equal(envOIDRSAESOAEP):
		opts, err := envParseOAEPParams(ri.keyAlg)
		if err != nil {
			return nil, err
		}
		cek, err := dec.Decrypt(rand.Reader, encryptedKey, opts)
		if err != nil {
			return nil, envErrf(ErrDecrypt, "key transport: RSA-OAEP decryption failed")
		}
		if len(cek) != keyLen {
			clear(cek)
			return nil, envErrf(ErrDecrypt, "key transport: content key is %d bytes, the cipher needs %d", len(cek), keyLen)
		}
		return cek, nil
	}
	return nil, envErrf(ErrUnsupported, "key transport algorithm %s", ri.keyAlg.OID)
}

// envHashByOID maps a digest AlgorithmIdentifier OID to a crypto.Hash.
func envHashByOID(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	switch {
	case oid.Equal(envOIDSHA1):
		return crypto.SHA1, true
	case oid.Equal(envOIDSHA224):
		return crypto.SHA224, true
	case oid.Equal(envOIDSHA256):
		return crypto.SHA256, true
	case oid.Equal(envOIDSHA384):
		return crypto.SHA384, true
	case oid.Equal(envOIDSHA512):
		return crypto.SHA512, true
	}
	return 0, false
}

// envParseOAEPParams reads RSAES-OAEP-params (RFC 3560 section 3; RFC 8017
// appendix A.2.1):
//
//	RSAES-OAEP-params ::= SEQUENCE {
//	  hashFunc    [0] AlgorithmIdentifier DEFAULT sha1Identifier,
//	  maskGenFunc [1] AlgorithmIdentifier DEFAULT mgf1SHA1Identifier,
//	  pSourceFunc [2] AlgorithmIdentifier DEFAULT pSpecifiedEmptyIdentifier }
//
// Absent or NULL parameters are taken as all defaults.
func envParseOAEPParams(a envAlgID) (*rsa.OAEPOptions, error) {
	opts := &rsa.OAEPOptions{Hash: crypto.SHA1, MGFHash: crypto.SHA1}
	if a.paramsAbsent() {
		return opts, nil
	}
	bad := func(what string) error { return envErrf(ErrMalformed, "RSAES-OAEP-params: %s", what) }
	in := cryptobyte.String(a.Params)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, casn1.SEQUENCE) || !in.Empty() {
		return nil, bad("not a SEQUENCE")
	}
	if seq.PeekASN1Tag(envTagCons0) {
		var e cryptobyte.String
		var h envAlgID
		if !seq.ReadASN1(&e, envTagCons0) || !envReadAlgID(&e, &h) || !e.Empty() {
			return nil, bad("hashFunc")
		}
		hh, ok := envHashByOID(h.OID)
		if !ok {
			return nil, envErrf(ErrUnsupported, "RSA-OAEP hash %s", h.OID)
		}
		opts.Hash = hh
	}
	if seq.PeekASN1Tag(envTagCons1) {
		var e cryptobyte.String
		var m, h envAlgID
		if !seq.ReadASN1(&e, envTagCons1) || !envReadAlgID(&e, &m) || !e.Empty() {
			return nil, bad("maskGenFunc")
		}
		if !m.OID.Equal(envOIDMGF1) {
			return nil, envErrf(ErrUnsupported, "RSA-OAEP mask generation function %s", m.OID)
		}
		p := cryptobyte.String(m.Params)
		if !envReadAlgID(&p, &h) || !p.Empty() {
			return nil, bad("MGF1 hash")
		}
		hh, ok := envHashByOID(h.OID)
		if !ok {
			return nil, envErrf(ErrUnsupported, "RSA-OAEP MGF1 hash %s", h.OID)
		}
		opts.MGFHash = hh
	}
	if seq.PeekASN1Tag(envTagCons2) {
		var e cryptobyte.String
		var ps envAlgID
		if !seq.ReadASN1(&e, envTagCons2) || !envReadAlgID(&e, &ps) || !e.Empty() {
			return nil, bad("pSourceFunc")
		}
		if !ps.OID.Equal(envOIDPSpecified) {
			return nil, envErrf(ErrUnsupported, "RSA-OAEP pSourceFunc %s", ps.OID)
		}
		p := cryptobyte.String(ps.Params)
		var label []byte
		if !p.ReadASN1Bytes(&label, casn1.OCTET_STRING) || !p.Empty() {
			return nil, bad("pSpecified label")
		}
		opts.Label = label
	}
	if !seq.Empty() {
		return nil, bad("trailing data")
	}
	return opts, nil
}
