// Package pkcs12 reads PKCS#12 (RFC 7292) files: the .p12/.pfx exports of
// Thunderbird and Firefox (NSS), OpenSSL, Windows and Java that carry a
// private key with its certificates.
//
// Unlike decoders that insist on DER, it accepts BER at every level: NSS
// writes indefinite lengths and chunked OCTET STRINGs in the PFX, in the
// AuthenticatedSafe and inside the encrypted SafeContents. Each level is
// rewritten with cms.ToDER before it is parsed; the MAC is computed over the
// joined content octets of the AuthenticatedSafe, which are the same in the
// BER and the DER form.
//
// Supported:
//
//   - integrity: the PKCS#12 MAC (KDF of RFC 7292 appendix B.2, HMAC with
//     SHA-1, SHA-224, SHA-256, SHA-384 or SHA-512) and PBMAC1 (RFC 9579,
//     PBKDF2 with the same hashes); a file without MAC is accepted;
//   - privacy: PBES1 of PKCS#12 (pbeWithSHAAnd3-KeyTripleDES-CBC,
//     pbeWithSHAAnd2-KeyTripleDES-CBC, pbeWithSHAAnd128BitRC2-CBC,
//     pbeWithSHAAnd40BitRC2-CBC) and PBES2 (RFC 8018: PBKDF2 with
//     HMAC-SHA-1/224/256/384/512, then AES-128/192/256-CBC or DES-EDE3-CBC);
//   - bags: keyBag, pkcs8ShroudedKeyBag and certBag with an X.509
//     certificate; other bags are ignored.
//
// Public-key integrity and privacy modes (signedData, envelopedData) are
// not supported.
package pkcs12

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/smimed/smimed/harvest/cms"
)

// Errors returned by Decode; the returned errors wrap them with details.
var (
	// ErrIncorrectPassword means the MAC did not match, or decryption
	// produced bad padding (or, in a file without MAC, undecodable data).
	ErrIncorrectPassword = errors.New("pkcs12: wrong password")
	// ErrUnsupported names an algorithm (by OID) or a parameter this
	// package does not handle.
	ErrUnsupported = errors.New("pkcs12: unsupported")
	// ErrMalformed means the data is not a well-formed PKCS#12 file.
	ErrMalformed = errors.New("pkcs12: malformed data")
	// ErrNoPrivateKey means the file holds no private key that could be
	// loaded.
	ErrNoPrivateKey = errors.New("pkcs12: no private key")
)

// MaxIterations is the largest iteration count accepted for one key
// derivation (MAC key, encryption key or IV). Real files use 1 to a few
// hundred thousand; a hostile file could otherwise name 2^31 iterations and
// keep the decoder busy for hours. All derivations of one file together may
// not exceed twice this number.
const MaxIterations = 10_000_000

type limits struct {
	maxIter int // per derivation
	budget  int // for the whole file
}

var defaultLimits = limits{maxIter: MaxIterations, budget: 2 * MaxIterations}

var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	oidEncryptedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}

	oidKeyBag         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 1}
	oidShroudedKeyBag = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidCertBag        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 3}
	oidX509Cert       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 22, 1}

	oidPBEWithSHA3KeyTripleDES = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 3}
	oidPBEWithSHA2KeyTripleDES = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 4}
	oidPBEWithSHA128BitRC2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 5}
	oidPBEWithSHA40BitRC2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 6}

	oidPBKDF2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidPBES2  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBMAC1 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 14}

	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}

	oidDSA = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}
	// Key algorithms x509.ParsePKCS8PrivateKey knows: a parse failure with
	// one of these is a broken key, with any other an unsupported one.
	knownKeyOIDs = []asn1.ObjectIdentifier{
		{1, 2, 840, 113549, 1, 1, 1}, // rsaEncryption
		{1, 2, 840, 10045, 2, 1},     // id-ecPublicKey
		{1, 3, 101, 110},             // X25519
		{1, 3, 101, 112},             // Ed25519
	}
)

// ASN.1 structures of RFC 7292, RFC 5652 and RFC 8018.

type pfxPDU struct {
	Version  int
	AuthSafe contentInfo
	MacData  macData `asn1:"optional"`
}

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"optional"` // [0] EXPLICIT
}

type macData struct {
	Mac        digestInfo
	MacSalt    []byte
	Iterations int `asn1:"optional,default:1"`
}

type digestInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	Digest    []byte
}

type encryptedData struct {
	Version              int
	EncryptedContentInfo encryptedContentInfo
}

type encryptedContentInfo struct {
	ContentType                asn1.ObjectIdentifier
	ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedContent           asn1.RawValue `asn1:"optional"` // [0] IMPLICIT OCTET STRING
}

type safeBag struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue // [0] EXPLICIT
	Attributes asn1.RawValue `asn1:"optional"`
}

type certBag struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue // [0] EXPLICIT
}

type encryptedPrivateKeyInfo struct {
	Algorithm     pkix.AlgorithmIdentifier
	EncryptedData []byte
}

type privateKeyInfo struct {
	Version    int
	Algorithm  pkix.AlgorithmIdentifier
	PrivateKey []byte
}

type pbeParams struct {
	Salt       []byte
	Iterations int
}

type pbes2Params struct {
	KeyDerivationFunc pkix.AlgorithmIdentifier
	EncryptionScheme  pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt       asn1.RawValue // CHOICE { specified OCTET STRING, otherSource AlgorithmIdentifier }
	Iterations int
	KeyLength  int                      `asn1:"optional"`
	PRF        pkix.AlgorithmIdentifier `asn1:"optional"` // DEFAULT hmacWithSHA1
}

type pbmac1Params struct {
	KeyDerivationFunc pkix.AlgorithmIdentifier
	MessageAuthScheme pkix.AlgorithmIdentifier
}

// Decode reads a PFX (BER or DER) and returns its private key and every
// certificate in it, in file order. The key is an *rsa.PrivateKey,
// *ecdsa.PrivateKey or ed25519.PrivateKey, as x509.ParsePKCS8PrivateKey
// returns it.
//
// If the file holds several private keys, the first one that can be loaded
// is returned and the others are not decrypted. A DSA key is skipped; when
// no other key is found the error wraps ErrNoPrivateKey and ErrUnsupported
// and says so.
//
// The password is used as given: as a BMPString (UTF-16 with two trailing
// zero bytes) for the PKCS#12 KDF, as UTF-8 bytes for PBKDF2. For the empty
// password the KDF is also tried with an empty string, since producers
// differ. A wrong password yields an error wrapping ErrIncorrectPassword.
// Iteration counts above MaxIterations are refused (ErrUnsupported).
func Decode(data []byte, password string) (key crypto.PrivateKey, certs []*x509.Certificate, err error) {
	return decode(data, password, defaultLimits)
}

type decoder struct {
	password string
	// bmp holds the candidate encodings of the password for the PKCS#12
	// KDF; a verified MAC narrows it to the one that matched.
	bmp         [][]byte
	macVerified bool
	lim         limits
	spent       int
}

// result collects what the bags yield.
type result struct {
	key    crypto.PrivateKey
	keyErr error // why the first unusable key bag was skipped
	certs  []*x509.Certificate
}

func decode(data []byte, password string, lim limits) (crypto.PrivateKey, []*x509.Certificate, error) {
	d := &decoder{password: password, lim: lim}
	d.bmp = [][]byte{bmpPassword(password)}
	if password == "" {
		d.bmp = append(d.bmp, []byte{})
	}

	der, err := cms.ToDER(data)
	if err != nil {
		return nil, nil, malformed("PFX: %v", err)
	}
	var pfx pfxPDU
	if err := unmarshalAll(der, &pfx, "PFX"); err != nil {
		return nil, nil, err
	}
	if pfx.Version != 3 {
		return nil, nil, malformed("PFX version %d, want 3", pfx.Version)
	}
	ct := pfx.AuthSafe.ContentType
	switch {
	case ct.Equal(oidData):
	case ct.Equal(oidSignedData):
		return nil, nil, fmt.Errorf("%w: public-key integrity mode (authSafe is signedData, %s)", ErrUnsupported, ct)
	default:
		return nil, nil, malformed("authSafe content type %s, want data", ct)
	}
	authSafe, err := dataContent(pfx.AuthSafe.Content, "authSafe")
	if err != nil {
		return nil, nil, err
	}
	if pfx.MacData.Mac.Algorithm.Algorithm != nil {
		if err := d.verifyMAC(&pfx.MacData, authSafe); err != nil {
			return nil, nil, err
		}
	}

	authDER, err := cms.ToDER(authSafe)
	if err != nil {
		return nil, nil, malformed("AuthenticatedSafe: %v", err)
	}
	var infos []contentInfo
	if err := unmarshalAll(authDER, &infos, "AuthenticatedSafe"); err != nil {
		return nil, nil, err
	}
	var res result
	for i, ci := range infos {
		what := fmt.Sprintf("AuthenticatedSafe[%d]", i)
		var sc []byte
		decrypted := false
		switch {
		case ci.ContentType.Equal(oidData):
			sc, err = dataContent(ci.Content, what)
		case ci.ContentType.Equal(oidEncryptedData):
			sc, err = d.encryptedContent(ci.Content, what)
			decrypted = true
		case ci.ContentType.Equal(oidEnvelopedData):
			err = fmt.Errorf("%w: public-key privacy mode (%s is envelopedData, %s)", ErrUnsupported, what, ci.ContentType)
		default:
			err = fmt.Errorf("%w: %s has content type %s", ErrUnsupported, what, ci.ContentType)
		}
		if err != nil {
			return nil, nil, err
		}
		if err := d.safeContents(sc, decrypted, what, &res); err != nil {
			return nil, nil, err
		}
	}
	if res.key == nil {
		if res.keyErr != nil {
			return nil, nil, res.keyErr
		}
		return nil, nil, ErrNoPrivateKey
	}
	return res.key, res.certs, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// unmarshalAll parses exactly one DER value of b into v.
func unmarshalAll(b []byte, v any, what string) error {
	rest, err := asn1.Unmarshal(b, v)
	if err != nil {
		return malformed("%s: %v", what, err)
	}
	if len(rest) != 0 {
		return malformed("%s: %d trailing bytes", what, len(rest))
	}
	return nil
}

// explicit0 returns the single value inside a context-specific [0]
// EXPLICIT wrapper.
func explicit0(rv asn1.RawValue, what string) ([]byte, error) {
	if rv.Class != asn1.ClassContextSpecific || rv.Tag != 0 || !rv.IsCompound {
		return nil, malformed("%s: want [0] EXPLICIT content, got class %d tag %d", what, rv.Class, rv.Tag)
	}
	var inner asn1.RawValue
	if err := unmarshalAll(rv.Bytes, &inner, what); err != nil {
		return nil, err
	}
	return inner.FullBytes, nil
}

// dataContent returns the octets of a data ContentInfo's content
// ([0] EXPLICIT OCTET STRING, already joined by cms.ToDER).
func dataContent(rv asn1.RawValue, what string) ([]byte, error) {
	inner, err := explicit0(rv, what)
	if err != nil {
		return nil, err
	}
	var octets []byte
	if err := unmarshalAll(inner, &octets, what+" data"); err != nil {
		return nil, err
	}
	return octets, nil
}

// spend charges n iterations of one key derivation against the limits.
func (d *decoder) spend(n int) error {
	if n < 1 {
		return malformed("iteration count %d", n)
	}
	if n > d.lim.maxIter {
		return fmt.Errorf("%w: iteration count %d is above the limit of %d (refused so that a hostile file cannot keep the decoder busy for hours)",
			ErrUnsupported, n, d.lim.maxIter)
	}
	if n > d.lim.budget-d.spent {
		return fmt.Errorf("%w: the iteration counts of this file add up to more than %d (refused so that a hostile file cannot keep the decoder busy for hours)",
			ErrUnsupported, d.lim.budget)
	}
	d.spent += n
	return nil
}

// verifyMAC checks macData over content, the AuthenticatedSafe octets.
func (d *decoder) verifyMAC(md *macData, content []byte) error {
	alg := md.Mac.Algorithm
	if alg.Algorithm.Equal(oidPBMAC1) {
		return d.verifyPBMAC1(alg, md.Mac.Digest, content)
	}
	h, ok := digestByOID(alg.Algorithm)
	if !ok {
		return fmt.Errorf("%w: MAC digest algorithm %s", ErrUnsupported, alg.Algorithm)
	}
	for _, pw := range d.bmp {
		if err := d.spend(md.Iterations); err != nil {
			return err
		}
		key := pkcs12KDF(h, pw, md.MacSalt, md.Iterations, kdfMAC, h.u)
		m := hmac.New(h.new, key)
		m.Write(content)
		if hmac.Equal(m.Sum(nil), md.Mac.Digest) {
			d.bmp = [][]byte{pw}
			d.macVerified = true
			return nil
		}
	}
	return fmt.Errorf("%w (%s MAC mismatch)", ErrIncorrectPassword, h.name)
}

// verifyPBMAC1 checks a PBMAC1 MAC (RFC 9579): HMAC keyed with PBKDF2 of
// the UTF-8 password. macSalt and iterations of MacData are ignored.
func (d *decoder) verifyPBMAC1(alg pkix.AlgorithmIdentifier, digest, content []byte) error {
	var p pbmac1Params
	if err := unmarshalAll(alg.Parameters.FullBytes, &p, "PBMAC1 parameters"); err != nil {
		return err
	}
	if !p.KeyDerivationFunc.Algorithm.Equal(oidPBKDF2) {
		return fmt.Errorf("%w: PBMAC1 key derivation function %s", ErrUnsupported, p.KeyDerivationFunc.Algorithm)
	}
	kp, prf, err := parsePBKDF2(p.KeyDerivationFunc.Parameters)
	if err != nil {
		return err
	}
	if kp.KeyLength == 0 {
		return malformed("PBMAC1 requires the keyLength of PBKDF2 (RFC 9579)")
	}
	// A short key would let anyone forge the MAC by trying all keys.
	if kp.KeyLength < 20 || kp.KeyLength > 64 {
		return fmt.Errorf("%w: PBMAC1 key length %d bytes (accepted: 20 to 64)", ErrUnsupported, kp.KeyLength)
	}
	mac, ok := hmacByOID(p.MessageAuthScheme.Algorithm)
	if !ok {
		return fmt.Errorf("%w: PBMAC1 message authentication scheme %s", ErrUnsupported, p.MessageAuthScheme.Algorithm)
	}
	if err := d.spend(kp.Iterations); err != nil {
		return err
	}
	key, err := pbkdf2Key(prf, d.password, kp.Salt.Bytes, kp.Iterations, kp.KeyLength)
	if err != nil {
		return err
	}
	m := hmac.New(mac.new, key)
	m.Write(content)
	if !hmac.Equal(m.Sum(nil), digest) {
		return fmt.Errorf("%w (PBMAC1 HMAC-%s mismatch)", ErrIncorrectPassword, mac.name)
	}
	d.macVerified = true
	return nil
}

// parsePBKDF2 reads PBKDF2-params; Salt.Bytes holds the specified salt.
func parsePBKDF2(params asn1.RawValue) (pbkdf2Params, hashAlg, error) {
	var p pbkdf2Params
	if err := unmarshalAll(params.FullBytes, &p, "PBKDF2 parameters"); err != nil {
		return p, hashAlg{}, err
	}
	if p.Salt.Class != asn1.ClassUniversal || p.Salt.Tag != asn1.TagOctetString || p.Salt.IsCompound {
		return p, hashAlg{}, fmt.Errorf("%w: PBKDF2 salt other than an OCTET STRING (otherSource)", ErrUnsupported)
	}
	if p.KeyLength < 0 {
		return p, hashAlg{}, malformed("PBKDF2 key length %d", p.KeyLength)
	}
	prf := hashSHA1
	if p.PRF.Algorithm != nil {
		var ok bool
		if prf, ok = hmacByOID(p.PRF.Algorithm); !ok {
			return p, hashAlg{}, fmt.Errorf("%w: PBKDF2 pseudo-random function %s", ErrUnsupported, p.PRF.Algorithm)
		}
	}
	return p, prf, nil
}

// encryptedContent decrypts an encryptedData ContentInfo's content.
func (d *decoder) encryptedContent(rv asn1.RawValue, what string) ([]byte, error) {
	inner, err := explicit0(rv, what)
	if err != nil {
		return nil, err
	}
	var ed encryptedData
	if err := unmarshalAll(inner, &ed, what+" EncryptedData"); err != nil {
		return nil, err
	}
	eci := ed.EncryptedContentInfo
	ec := eci.EncryptedContent
	if ec.Class != asn1.ClassContextSpecific || ec.Tag != 0 {
		return nil, malformed("%s: EncryptedData without encryptedContent", what)
	}
	ciphertext, err := cms.JoinImplicitOctets(ec.FullBytes)
	if err != nil {
		return nil, malformed("%s encryptedContent: %v", what, err)
	}
	return d.decrypt(eci.ContentEncryptionAlgorithm, ciphertext)
}

// pbes1Cipher describes one PKCS#12 PBES1 scheme.
type pbes1Cipher struct {
	name   string
	keyLen int
	newCBC func(key []byte) (cipher.Block, error)
}

func pbes1ByOID(oid asn1.ObjectIdentifier) (pbes1Cipher, bool) {
	switch {
	case oid.Equal(oidPBEWithSHA3KeyTripleDES):
		return pbes1Cipher{"3-key 3DES", 24, des.NewTripleDESCipher}, true
	case oid.Equal(oidPBEWithSHA2KeyTripleDES):
		return pbes1Cipher{"2-key 3DES", 16, func(k []byte) (cipher.Block, error) {
			k3 := make([]byte, 0, 24)
			k3 = append(append(k3, k...), k[:8]...) // K1 K2 K1
			return des.NewTripleDESCipher(k3)
		}}, true
	case oid.Equal(oidPBEWithSHA128BitRC2):
		return pbes1Cipher{"RC2-128", 16, func(k []byte) (cipher.Block, error) { return newRC2(k, 128) }}, true
	case oid.Equal(oidPBEWithSHA40BitRC2):
		return pbes1Cipher{"RC2-40", 5, func(k []byte) (cipher.Block, error) { return newRC2(k, 40) }}, true
	}
	return pbes1Cipher{}, false
}

// decrypt undoes a password-based encryption scheme.
func (d *decoder) decrypt(alg pkix.AlgorithmIdentifier, ciphertext []byte) ([]byte, error) {
	if alg.Algorithm.Equal(oidPBES2) {
		return d.decryptPBES2(alg, ciphertext)
	}
	c, ok := pbes1ByOID(alg.Algorithm)
	if !ok {
		return nil, fmt.Errorf("%w: encryption algorithm %s", ErrUnsupported, alg.Algorithm)
	}
	var p pbeParams
	if err := unmarshalAll(alg.Parameters.FullBytes, &p, "PBE parameters"); err != nil {
		return nil, err
	}
	for _, pw := range d.bmp {
		// Two derivations: key and IV.
		if err := d.spend(p.Iterations); err != nil {
			return nil, err
		}
		if err := d.spend(p.Iterations); err != nil {
			return nil, err
		}
		key := pkcs12KDF(hashSHA1, pw, p.Salt, p.Iterations, kdfKey, c.keyLen)
		iv := pkcs12KDF(hashSHA1, pw, p.Salt, p.Iterations, kdfIV, 8)
		block, err := c.newCBC(key)
		if err != nil {
			return nil, malformed("%s: %v", c.name, err)
		}
		pt, err := cbcDecrypt(block, iv, ciphertext)
		if err == nil {
			return pt, nil
		}
		if !errors.Is(err, ErrIncorrectPassword) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w (%s decryption failed)", ErrIncorrectPassword, c.name)
}

func (d *decoder) decryptPBES2(alg pkix.AlgorithmIdentifier, ciphertext []byte) ([]byte, error) {
	var p pbes2Params
	if err := unmarshalAll(alg.Parameters.FullBytes, &p, "PBES2 parameters"); err != nil {
		return nil, err
	}
	if !p.KeyDerivationFunc.Algorithm.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("%w: PBES2 key derivation function %s", ErrUnsupported, p.KeyDerivationFunc.Algorithm)
	}
	kp, prf, err := parsePBKDF2(p.KeyDerivationFunc.Parameters)
	if err != nil {
		return nil, err
	}
	scheme := p.EncryptionScheme.Algorithm
	var keyLen int
	var newBlock func([]byte) (cipher.Block, error)
	var name string
	switch {
	case scheme.Equal(oidAES128CBC):
		name, keyLen, newBlock = "AES-128-CBC", 16, aes.NewCipher
	case scheme.Equal(oidAES192CBC):
		name, keyLen, newBlock = "AES-192-CBC", 24, aes.NewCipher
	case scheme.Equal(oidAES256CBC):
		name, keyLen, newBlock = "AES-256-CBC", 32, aes.NewCipher
	case scheme.Equal(oidDESEDE3CBC):
		name, keyLen, newBlock = "DES-EDE3-CBC", 24, des.NewTripleDESCipher
	default:
		return nil, fmt.Errorf("%w: PBES2 encryption scheme %s", ErrUnsupported, scheme)
	}
	if kp.KeyLength != 0 && kp.KeyLength != keyLen {
		return nil, malformed("PBKDF2 key length %d for %s", kp.KeyLength, name)
	}
	var iv []byte
	if err := unmarshalAll(p.EncryptionScheme.Parameters.FullBytes, &iv, name+" IV"); err != nil {
		return nil, err
	}
	if err := d.spend(kp.Iterations); err != nil {
		return nil, err
	}
	key, err := pbkdf2Key(prf, d.password, kp.Salt.Bytes, kp.Iterations, keyLen)
	if err != nil {
		return nil, err
	}
	block, err := newBlock(key)
	if err != nil {
		return nil, malformed("%s: %v", name, err)
	}
	pt, err := cbcDecrypt(block, iv, ciphertext)
	if errors.Is(err, ErrIncorrectPassword) {
		return nil, fmt.Errorf("%w (%s decryption failed)", ErrIncorrectPassword, name)
	}
	return pt, err
}

// cbcDecrypt decrypts CBC with PKCS#7 padding (RFC 5652 section 6.3). Bad
// padding is reported as ErrIncorrectPassword.
func cbcDecrypt(block cipher.Block, iv, ciphertext []byte) ([]byte, error) {
	bs := block.BlockSize()
	if len(iv) != bs {
		return nil, malformed("IV of %d bytes for a %d-byte block cipher", len(iv), bs)
	}
	if len(ciphertext) == 0 || len(ciphertext)%bs != 0 {
		return nil, malformed("ciphertext of %d bytes is not a positive multiple of the block size %d", len(ciphertext), bs)
	}
	pt := make([]byte, len(ciphertext))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ciphertext)
	n := int(pt[len(pt)-1])
	good := subtle.ConstantTimeLessOrEq(1, n) & subtle.ConstantTimeLessOrEq(n, bs)
	for i := 1; i <= bs; i++ {
		// Every byte within the padding must equal n.
		inPad := subtle.ConstantTimeLessOrEq(i, n)
		eq := subtle.ConstantTimeByteEq(pt[len(pt)-i], byte(n))
		good &= subtle.ConstantTimeSelect(inPad, eq, 1)
	}
	if good != 1 {
		return nil, ErrIncorrectPassword
	}
	return pt[:len(pt)-n], nil
}

// safeContents walks the bags of one SafeContents. decrypted says whether
// it came out of a decryption, for telling a wrong password from a broken
// file when there is no MAC.
func (d *decoder) safeContents(b []byte, decrypted bool, what string, res *result) error {
	wrongOr := func(err error) error {
		if decrypted {
			return d.undecodable(err)
		}
		return err
	}
	der, err := cms.ToDER(b)
	if err != nil {
		return wrongOr(malformed("%s SafeContents: %v", what, err))
	}
	var bags []safeBag
	if err := unmarshalAll(der, &bags, what+" SafeContents"); err != nil {
		return wrongOr(err)
	}
	for i, bag := range bags {
		bw := fmt.Sprintf("%s bag %d", what, i)
		switch {
		case bag.ID.Equal(oidKeyBag):
			if res.key != nil {
				continue
			}
			inner, err := explicit0(bag.Value, bw)
			if err != nil {
				return err
			}
			if err := res.addKey(inner, bw); err != nil {
				return err
			}
		case bag.ID.Equal(oidShroudedKeyBag):
			if res.key != nil {
				continue // only the first key is returned; skip the work
			}
			inner, err := explicit0(bag.Value, bw)
			if err != nil {
				return err
			}
			var epki encryptedPrivateKeyInfo
			if err := unmarshalAll(inner, &epki, bw+" EncryptedPrivateKeyInfo"); err != nil {
				return err
			}
			pt, err := d.decrypt(epki.Algorithm, epki.EncryptedData)
			if err != nil {
				return err
			}
			pkcs8, err := cms.ToDER(pt)
			if err == nil {
				var pki privateKeyInfo
				err = unmarshalAll(pkcs8, &pki, bw+" PrivateKeyInfo")
			} else {
				err = malformed("%s PrivateKeyInfo: %v", bw, err)
			}
			if err != nil {
				return d.undecodable(err)
			}
			if err := res.addKey(pkcs8, bw); err != nil {
				return err
			}
		case bag.ID.Equal(oidCertBag):
			inner, err := explicit0(bag.Value, bw)
			if err != nil {
				return err
			}
			var cb certBag
			if err := unmarshalAll(inner, &cb, bw+" CertBag"); err != nil {
				return err
			}
			if !cb.ID.Equal(oidX509Cert) {
				continue // sdsiCertificate or other: ignored
			}
			certDER, err := dataContent(cb.Value, bw+" certValue")
			if err != nil {
				return err
			}
			cert, err := x509.ParseCertificate(certDER)
			if err != nil {
				return malformed("%s: %v", bw, err)
			}
			res.certs = append(res.certs, cert)
		}
	}
	return nil
}

// undecodable reports decrypted data that does not parse: without a
// verified MAC, a wrong password is the likely cause (bad padding only
// catches 255 of 256 wrong keys).
func (d *decoder) undecodable(err error) error {
	if !d.macVerified {
		return fmt.Errorf("%w (decrypted data does not parse, and there is no MAC to tell a wrong password from a broken file: %v)",
			ErrIncorrectPassword, err)
	}
	return err
}

// addKey parses a PKCS#8 PrivateKeyInfo and keeps it if it is the first
// usable key. A key of an unsupported algorithm (DSA) is remembered as the
// reason in case no usable key follows.
func (res *result) addKey(der []byte, what string) error {
	if res.key != nil {
		return nil
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err == nil {
		res.key = k
		return nil
	}
	var pki privateKeyInfo
	if perr := unmarshalAll(der, &pki, what+" PrivateKeyInfo"); perr != nil {
		return perr
	}
	oid := pki.Algorithm.Algorithm
	for _, known := range knownKeyOIDs {
		if oid.Equal(known) {
			return malformed("%s: %v", what, err)
		}
	}
	if res.keyErr == nil {
		kind := "a private key of algorithm " + oid.String()
		if oid.Equal(oidDSA) {
			kind = "a DSA private key (" + oid.String() + ")"
		}
		res.keyErr = &multiError{
			msg:  fmt.Sprintf("pkcs12: no usable private key: %s skipped %s, which is not supported", what, kind),
			errs: []error{ErrNoPrivateKey, ErrUnsupported},
		}
	}
	return nil
}

// multiError has its own message and matches several sentinels.
type multiError struct {
	msg  string
	errs []error
}

func (e *multiError) Error() string   { return e.msg }
func (e *multiError) Unwrap() []error { return e.errs }
