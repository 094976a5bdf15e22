package cms

// Writing EnvelopedData (RFC 5652 section 6) with AES-256-CBC (RFC 3565)
// and AuthEnvelopedData (RFC 5083) with AES-256-GCM (RFC 5084) for
// outgoing mail. Recipients get a KeyTransRecipientInfo (RSA PKCS #1 v1.5
// or RSAES-OAEP with SHA-256, RFC 3560/RFC 4055) or, for EC keys, a
// KeyAgreeRecipientInfo (ephemeral-static ECDH with the X9.63 KDF over
// SHA-256 and AES-256 key wrap, RFC 5753 and RFC 3394).
//
// The output is DER with definite lengths, which the content length known
// up front makes possible without holding the ciphertext: CBC content is
// encrypted as it is read; GCM needs the whole plaintext in one buffer
// (crypto/cipher's AEAD seals in one call), which is encrypted in place.

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrCannotEncrypt is returned when a certificate cannot be encrypted to
// (CanEncryptTo).
var ErrCannotEncrypt = errors.New("cms: cannot encrypt to this certificate")

// Content ciphers Seal writes.
const (
	CipherAES256CBC = "aes-256-cbc" // EnvelopedData
	CipherAES256GCM = "aes-256-gcm" // AuthEnvelopedData
)

// Key management names, as Decrypted.KeyTransport and Recipient.KeyTransport
// report them.
const (
	KeyRSAPKCS1v15 = "rsa-pkcs1v15"
	KeyRSAOAEP     = "rsa-oaep"
	KeyECDH        = "ecdh"
)

// SealRecipient is one recipient of Seal.
type SealRecipient struct {
	Cert *x509.Certificate
	// OAEP selects RSAES-OAEP (SHA-256) for an RSA key instead of
	// PKCS #1 v1.5. It is ignored for EC keys.
	OAEP bool
}

// KeyManagement is the key management Seal uses for r: KeyRSAOAEP,
// KeyRSAPKCS1v15 or KeyECDH.
func (r SealRecipient) KeyManagement() string {
	if r.Cert != nil {
		if _, ok := r.Cert.PublicKey.(*ecdsa.PublicKey); ok {
			return KeyECDH
		}
	}
	if r.OAEP {
		return KeyRSAOAEP
	}
	return KeyRSAPKCS1v15
}

// CanEncryptTo checks that mail can be encrypted to cert: an RSA key or an
// EC key on P-256, P-384 or P-521 within CheckCertificateKey's limits and
// of at least 2048 bits for RSA; KeyUsage (when present) with
// keyEncipherment for RSA or keyAgreement for EC; ExtKeyUsage (when
// present) with emailProtection or any. It does not check validity dates,
// the chain or revocation.
func CanEncryptTo(cert *x509.Certificate) error {
	if cert == nil {
		return fmt.Errorf("%w: no certificate", ErrCannotEncrypt)
	}
	if err := CheckCertificateKey(cert); err != nil {
		return fmt.Errorf("%w: %v", ErrCannotEncrypt, err)
	}
	switch k := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("%w: %d-bit RSA key (at least 2048 bits)", ErrCannotEncrypt, k.N.BitLen())
		}
		if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
			return fmt.Errorf("%w: key usage has no keyEncipherment", ErrCannotEncrypt)
		}
	case *ecdsa.PublicKey:
		if _, err := k.ECDH(); err != nil {
			return fmt.Errorf("%w: EC key: %v", ErrCannotEncrypt, err)
		}
		if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageKeyAgreement == 0 {
			return fmt.Errorf("%w: key usage has no keyAgreement", ErrCannotEncrypt)
		}
	default:
		return fmt.Errorf("%w: %s keys are not supported", ErrCannotEncrypt, cert.PublicKeyAlgorithm)
	}
	if !emailEKU(cert) {
		return fmt.Errorf("%w: extended key usage does not allow emailProtection", ErrCannotEncrypt)
	}
	return nil
}

// Seal reads exactly n bytes of content (a MIME entity, content type
// id-data) from src, encrypts them with cipherName (CipherAES256CBC or
// CipherAES256GCM) under a fresh key for every recipient, and writes the
// DER ContentInfo to dst. It returns the key management used for each
// recipient, in order. For GCM it holds the content in memory (n bytes
// plus the 16-byte tag); for CBC it streams.
func Seal(dst io.Writer, src io.Reader, n int64, cipherName string, recips []SealRecipient) ([]string, error) {
	if len(recips) == 0 {
		return nil, fmt.Errorf("cms: seal: no recipients")
	}
	if n < 0 {
		return nil, fmt.Errorf("cms: seal: negative content length")
	}
	cek := make([]byte, 32)
	defer clear(cek)
	if _, err := rand.Read(cek); err != nil {
		return nil, fmt.Errorf("cms: seal: %w", err)
	}
	var infos [][]byte
	var kms []string
	hasKARI := false
	for i, r := range recips {
		if err := CanEncryptTo(r.Cert); err != nil {
			return nil, fmt.Errorf("recipient %d: %w", i+1, err)
		}
		km := r.KeyManagement()
		var ri []byte
		var err error
		if km == KeyECDH {
			ri, err = sealKARI(r.Cert, cek)
			hasKARI = true
		} else {
			ri, err = sealKTRI(r.Cert, cek, r.OAEP)
		}
		if err != nil {
			return nil, fmt.Errorf("recipient %d (%s): %w", i+1, r.Cert.Subject, err)
		}
		infos = append(infos, ri)
		kms = append(kms, km)
	}
	riSet := derSetOf(infos)
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, fmt.Errorf("cms: seal: %w", err)
	}
	switch cipherName {
	case CipherAES256CBC:
		version := int64(0)
		if hasKARI {
			version = 2 // RFC 5652 section 6.1: a RecipientInfo of version 3
		}
		return kms, sealCBC(dst, src, n, block, riSet, version)
	case CipherAES256GCM:
		return kms, sealGCM(dst, src, n, block, riSet)
	}
	return nil, fmt.Errorf("%w: content cipher %q", ErrUnsupported, cipherName)
}

// sealKTRI encodes a KeyTransRecipientInfo (version 0, issuerAndSerialNumber).
func sealKTRI(cert *x509.Certificate, cek []byte, oaep bool) ([]byte, error) {
	pub := cert.PublicKey.(*rsa.PublicKey)
	var ek, alg []byte
	var err error
	if oaep {
		ek, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, cek, nil)
		alg = algID(envOIDRSAESOAEP, oaepSHA256Params())
	} else {
		ek, err = rsa.EncryptPKCS1v15(rand.Reader, pub, cek)
		alg = algID(envOIDRSAEncryption, []byte{0x05, 0x00})
	}
	if err != nil {
		return nil, fmt.Errorf("cms: key transport: %w", err)
	}
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddBytes(issuerAndSerialDER(cert))
		b.AddBytes(alg)
		b.AddASN1OctetString(ek)
	})
	return b.Bytes()
}

// sealKARI encodes a KeyAgreeRecipientInfo for one EC recipient with a
// fresh ephemeral key on its curve.
func sealKARI(cert *x509.Certificate, cek []byte) ([]byte, error) {
	pub, err := cert.PublicKey.(*ecdsa.PublicKey).ECDH()
	if err != nil {
		return nil, fmt.Errorf("cms: key agreement: %w", err)
	}
	eph, err := pub.Curve().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cms: key agreement: %w", err)
	}
	z, err := eph.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("cms: key agreement: %w", err)
	}
	defer clear(z)
	wrapAlg := algID(envOIDAES256Wrap, nil)
	info, err := envSharedInfo(wrapAlg, nil, false, 32)
	if err != nil {
		return nil, err
	}
	kek := envX963KDF(crypto.SHA256, z, info, 32)
	defer clear(kek)
	wrapped, err := envAESKeyWrap(kek, cek)
	if err != nil {
		return nil, err
	}
	curve := envCurveOID(pub.Curve())
	var b cryptobyte.Builder
	b.AddASN1(envTagCons1, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(3)
		b.AddASN1(envTagCons0, func(b *cryptobyte.Builder) { // originator [0] EXPLICIT
			b.AddASN1(envTagCons1, func(b *cryptobyte.Builder) { // originatorKey [1] IMPLICIT
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(envOIDECPublicKey)
					b.AddASN1ObjectIdentifier(curve)
				})
				b.AddASN1BitString(eph.PublicKey().Bytes())
			})
		})
		b.AddBytes(algID(oidECDHSHA256KDF, wrapAlg))
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // recipientEncryptedKeys
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(issuerAndSerialDER(cert))
				b.AddASN1OctetString(wrapped)
			})
		})
	})
	return b.Bytes()
}

// derHeader is the identifier and length octets of a DER value.
func derHeader(tag byte, n int64) []byte {
	if n < 0x80 {
		return []byte{tag, byte(n)}
	}
	var l []byte
	for v := n; v > 0; v >>= 8 {
		l = append([]byte{byte(v)}, l...)
	}
	return append([]byte{tag, 0x80 | byte(len(l))}, l...)
}

// derTLVLen is the length of a DER value whose content is n bytes long.
func derTLVLen(n int64) int64 { return int64(len(derHeader(0, n))) + n }

// sealPrefix returns everything of the ContentInfo before the encrypted
// content's octets: outer is the content type, body the fields of the
// (Auth)EnvelopedData before the encrypted content info, alg the content
// encryption AlgorithmIdentifier, clen the ciphertext length and tail the
// length of what follows the encrypted content info (AuthEnvelopedData's
// mac).
func sealPrefix(outer []byte, body []byte, alg []byte, clen, tail int64) []byte {
	dataOID := cryptobyte.NewBuilder(nil)
	dataOID.AddASN1ObjectIdentifier(OIDData)
	oid := dataOID.BytesOrPanic()
	eciLen := int64(len(oid)+len(alg)) + derTLVLen(clen)
	envLen := int64(len(body)) + derTLVLen(eciLen) + tail
	ciLen := int64(len(outer)) + derTLVLen(derTLVLen(envLen))
	var p []byte
	p = append(p, derHeader(0x30, ciLen)...)
	p = append(p, outer...)
	p = append(p, derHeader(0xa0, derTLVLen(envLen))...)
	p = append(p, derHeader(0x30, envLen)...)
	p = append(p, body...)
	p = append(p, derHeader(0x30, eciLen)...)
	p = append(p, oid...)
	p = append(p, alg...)
	p = append(p, derHeader(0x80, clen)...) // [0] IMPLICIT OCTET STRING
	return p
}

func oidDER(o []int) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1ObjectIdentifier(o)
	return b.BytesOrPanic()
}

func intDER(v int64) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1Int64(v)
	return b.BytesOrPanic()
}

// sealChunk is how much plaintext CBC encryption reads at a time.
const sealChunk = 64 << 10

func sealCBC(dst io.Writer, src io.Reader, n int64, block cipher.Block, riSet []byte, version int64) error {
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(iv); err != nil {
		return fmt.Errorf("cms: seal: %w", err)
	}
	ivb := cryptobyte.NewBuilder(nil)
	ivb.AddASN1OctetString(iv)
	alg := algID(OIDAES256CBC, ivb.BytesOrPanic())
	clen := (n/aes.BlockSize + 1) * aes.BlockSize
	body := append(intDER(version), riSet...)
	if _, err := dst.Write(sealPrefix(oidDER(OIDEnvelopedData), body, alg, clen, 0)); err != nil {
		return err
	}
	enc := cipher.NewCBCEncrypter(block, iv)
	buf := make([]byte, min(sealChunk, n+aes.BlockSize)+aes.BlockSize)
	have := 0 // bytes in buf not yet encrypted
	left := n
	for left > 0 {
		want := int(min(int64(len(buf)-aes.BlockSize-have), left))
		m, err := io.ReadFull(src, buf[have:have+want])
		if err != nil {
			return fmt.Errorf("cms: seal: reading the content: %w", err)
		}
		left -= int64(m)
		have += m
		full := have - have%aes.BlockSize
		if full == 0 {
			continue
		}
		enc.CryptBlocks(buf[:full], buf[:full])
		if _, err := dst.Write(buf[:full]); err != nil {
			return err
		}
		have = copy(buf, buf[full:have])
	}
	// PKCS #7 padding (RFC 5652 section 6.3): 1 to 16 bytes.
	pad := aes.BlockSize - have
	for i := range pad {
		buf[have+i] = byte(pad)
	}
	enc.CryptBlocks(buf[:aes.BlockSize], buf[:aes.BlockSize])
	_, err := dst.Write(buf[:aes.BlockSize])
	clear(buf)
	return err
}

func sealGCM(dst io.Writer, src io.Reader, n int64, block cipher.Block, riSet []byte) error {
	const tagLen = 16
	if n > 1<<36 {
		return fmt.Errorf("cms: seal: %d bytes are too many for one AES-GCM message", n)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return fmt.Errorf("cms: seal: %w", err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("cms: seal: %w", err)
	}
	buf := make([]byte, n, n+tagLen)
	if _, err := io.ReadFull(src, buf); err != nil {
		return fmt.Errorf("cms: seal: reading the content: %w", err)
	}
	sealed := aead.Seal(buf[:0], nonce, buf, nil)
	ct, mac := sealed[:n], sealed[n:]

	var pb cryptobyte.Builder
	pb.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // GCMParameters
		b.AddASN1OctetString(nonce)
		b.AddASN1Int64(tagLen)
	})
	alg := algID(OIDAES256GCM, pb.BytesOrPanic())
	body := append(intDER(0), riSet...)
	macB := cryptobyte.NewBuilder(nil)
	macB.AddASN1OctetString(mac)
	macDER := macB.BytesOrPanic()
	if _, err := dst.Write(sealPrefix(oidDER(OIDAuthEnvelopedData), body, alg, n, int64(len(macDER)))); err != nil {
		return err
	}
	if _, err := dst.Write(ct); err != nil {
		return err
	}
	_, err = dst.Write(macDER)
	return err
}
