package cms

// Content-encryption algorithms: AES-CBC (RFC 3565), DES-EDE3-CBC (RFC
// 3370 section 5.1) and AES-GCM (RFC 5084). Decryption writes into one
// buffer of the ciphertext's size; the ciphertext itself is read from the
// (possibly chunked) encryptedContent in place.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"encoding/asn1"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

type envCipherKind int

const (
	envKindUnsupported envCipherKind = iota
	envKindAESCBC
	envKind3DESCBC
	envKindAESGCM
)

var envContentCiphers = []struct {
	oid    asn1.ObjectIdentifier
	name   string
	kind   envCipherKind
	keyLen int
}{
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}, "aes-128-cbc", envKindAESCBC, 16},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}, "aes-192-cbc", envKindAESCBC, 24},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, "aes-256-cbc", envKindAESCBC, 32},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}, "des-ede3-cbc", envKind3DESCBC, 24},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}, "aes-128-gcm", envKindAESGCM, 16},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 26}, "aes-192-gcm", envKindAESGCM, 24},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}, "aes-256-gcm", envKindAESGCM, 32},

	// Known, not implemented.
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 2}, "rc2-cbc", envKindUnsupported, 0},
	{asn1.ObjectIdentifier{1, 3, 14, 3, 2, 7}, "des-cbc", envKindUnsupported, 0},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 7}, "aes-128-ccm", envKindUnsupported, 0},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 27}, "aes-192-ccm", envKindUnsupported, 0},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 47}, "aes-256-ccm", envKindUnsupported, 0},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 18}, "chacha20-poly1305", envKindUnsupported, 0},
	{asn1.ObjectIdentifier{1, 2, 392, 200011, 61, 1, 1, 1, 2}, "camellia-128-cbc", envKindUnsupported, 0},
	{asn1.ObjectIdentifier{1, 2, 392, 200011, 61, 1, 1, 1, 3}, "camellia-192-cbc", envKindUnsupported, 0},
	{asn1.ObjectIdentifier{1, 2, 392, 200011, 61, 1, 1, 1, 4}, "camellia-256-cbc", envKindUnsupported, 0},
}

// CipherName gives the short name of a content-encryption algorithm
// ("aes-256-cbc", "des-ede3-cbc", "aes-128-gcm", "rc2-cbc", ...), or the
// OID in dotted form when it is not known.
func CipherName(oid asn1.ObjectIdentifier) string {
	for _, c := range envContentCiphers {
		if c.oid.Equal(oid) {
			return c.name
		}
	}
	return oid.String()
}

// envContentCipher is a parsed contentEncryptionAlgorithm.
type envContentCipher struct {
	name   string
	kind   envCipherKind
	keyLen int
	aead   bool
	iv     []byte // CBC
	nonce  []byte // GCM
	tagLen int    // GCM
}

func envParseContentCipher(a envAlgID) (*envContentCipher, error) {
	cc := &envContentCipher{kind: envKindUnsupported}
	found := false
	for _, c := range envContentCiphers {
		if c.oid.Equal(a.OID) {
			cc.name, cc.kind, cc.keyLen, found = c.name, c.kind, c.keyLen, true
			break
		}
	}
	if !found {
		return nil, envErrf(ErrUnsupported, "content encryption algorithm %s", a.OID)
	}
	p := cryptobyte.String(a.Params)
	switch cc.kind {
	case envKindAESCBC, envKind3DESCBC:
		bs := aes.BlockSize
		if cc.kind == envKind3DESCBC {
			bs = des.BlockSize
		}
		// The parameters are the IV as an OCTET STRING.
		if !p.ReadASN1Bytes(&cc.iv, casn1.OCTET_STRING) || !p.Empty() || len(cc.iv) != bs {
			return nil, envErrf(ErrMalformed, "%s: IV parameter", cc.name)
		}
		return cc, nil
	case envKindAESGCM:
		// GCMParameters ::= SEQUENCE {
		//   aes-nonce   OCTET STRING, -- recommended size is 12 octets
		//   aes-ICVlen  AES-GCM-ICVlen DEFAULT 12 }
		cc.aead = true
		var seq cryptobyte.String
		if !p.ReadASN1(&seq, casn1.SEQUENCE) || !p.Empty() ||
			!seq.ReadASN1Bytes(&cc.nonce, casn1.OCTET_STRING) {
			return nil, envErrf(ErrMalformed, "%s: GCMParameters", cc.name)
		}
		icv := int64(12)
		if seq.PeekASN1Tag(casn1.INTEGER) && !seq.ReadASN1Integer(&icv) {
			return nil, envErrf(ErrMalformed, "%s: aes-ICVlen", cc.name)
		}
		if !seq.Empty() {
			return nil, envErrf(ErrMalformed, "%s: GCMParameters: trailing data", cc.name)
		}
		if icv < 12 || icv > 16 {
			return nil, envErrf(ErrMalformed, "%s: aes-ICVlen %d is not in 12..16", cc.name, icv)
		}
		if len(cc.nonce) == 0 {
			return nil, envErrf(ErrMalformed, "%s: empty nonce", cc.name)
		}
		cc.tagLen = int(icv)
		if len(cc.nonce) != 12 && cc.tagLen != 16 {
			return nil, envErrf(ErrUnsupported, "%s with a %d-byte nonce and a %d-byte tag", cc.name, len(cc.nonce), cc.tagLen)
		}
		return cc, nil
	}
	return nil, envErrf(ErrUnsupported, "content encryption algorithm %s (%s)", cc.name, a.OID)
}

// envOctets is the encryptedContent [0] IMPLICIT OCTET STRING, primitive or
// (after BER normalisation) constructed from primitive OCTET STRING chunks.
type envOctets struct {
	body        []byte
	constructed bool
	n           int // total content length
}

func envParseOctets(full []byte) (envOctets, error) {
	s := cryptobyte.String(full)
	var body cryptobyte.String
	var tag casn1.Tag
	if !s.ReadAnyASN1(&body, &tag) || !s.Empty() {
		return envOctets{}, envErrf(ErrMalformed, "bad OCTET STRING")
	}
	o := envOctets{body: body, n: len(body)}
	if tag&0x20 == 0 {
		return o, nil
	}
	o.constructed, o.n = true, 0
	for t := body; !t.Empty(); {
		var c cryptobyte.String
		if !t.ReadASN1(&c, casn1.OCTET_STRING) {
			return envOctets{}, envErrf(ErrMalformed, "chunked string holds a non-OCTET STRING")
		}
		o.n += len(c)
	}
	return o, nil
}

// in reports whether buf is the content itself (decryption in place).
func (o envOctets) in(buf []byte) bool {
	return !o.constructed && len(buf) > 0 && len(o.body) == len(buf) && &o.body[0] == &buf[0]
}

// fill copies the content into dst, which is o.n bytes long.
func (o envOctets) fill(dst []byte) {
	if !o.constructed {
		copy(dst, o.body)
		return
	}
	off := 0
	for t := cryptobyte.String(o.body); !t.Empty(); {
		var c cryptobyte.String
		if !t.ReadASN1(&c, casn1.OCTET_STRING) {
			return // checked by envParseOctets
		}
		off += copy(dst[off:], c)
	}
}

// buffer checks the ciphertext length and returns the one buffer that
// decryption works in: a new one, or with inPlace the ciphertext itself
// when it is CBC content in one piece.
func (cc *envContentCipher) buffer(src envOctets, mac []byte, inPlace bool) ([]byte, error) {
	if cc.aead {
		if len(mac) != cc.tagLen {
			return nil, envErrf(ErrDecrypt, "content: mac is %d bytes, aes-ICVlen says %d", len(mac), cc.tagLen)
		}
		return make([]byte, src.n+cc.tagLen), nil
	}
	bs := len(cc.iv)
	if src.n == 0 || src.n%bs != 0 {
		return nil, envErrf(ErrDecrypt, "content: ciphertext length %d is not a positive multiple of the %d-byte block", src.n, bs)
	}
	if inPlace && !src.constructed {
		return src.body, nil
	}
	return make([]byte, src.n), nil
}

// open decrypts src into buf with the content encryption key and returns
// the plaintext, a prefix of buf.
func (cc *envContentCipher) open(cek []byte, src envOctets, buf, mac, aad []byte) ([]byte, error) {
	if len(cek) != cc.keyLen {
		return nil, envErrf(ErrDecrypt, "content: key is %d bytes, %s needs %d", len(cek), cc.name, cc.keyLen)
	}
	var block cipher.Block
	var err error
	if cc.kind == envKind3DESCBC {
		block, err = des.NewTripleDESCipher(cek)
	} else {
		block, err = aes.NewCipher(cek)
	}
	if err != nil {
		return nil, envErrf(ErrDecrypt, "content: %v", err)
	}
	if cc.aead {
		var aead cipher.AEAD
		if len(cc.nonce) == 12 {
			aead, err = cipher.NewGCMWithTagSize(block, cc.tagLen)
		} else {
			aead, err = cipher.NewGCMWithNonceSize(block, len(cc.nonce))
		}
		if err != nil {
			return nil, envErrf(ErrUnsupported, "%s: %v", cc.name, err)
		}
		ct := len(buf) - cc.tagLen
		src.fill(buf[:ct])
		copy(buf[ct:], mac)
		pt, err := aead.Open(buf[:0], cc.nonce, buf, aad)
		if err != nil {
			return nil, envErrf(ErrDecrypt, "content: %s authentication failed (wrong key or altered message)", cc.name)
		}
		return pt, nil
	}

	if !src.in(buf) {
		src.fill(buf)
	}
	bs := block.BlockSize()
	n := len(buf)
	// Check the padding of the last block first, so that a wrong key (a
	// random key from PKCS #1 v1.5) costs one block, not the whole message.
	var last [aes.BlockSize]byte
	prev := cc.iv
	if n > bs {
		prev = buf[n-2*bs : n-bs]
	}
	// This check also keeps buf as it was when it fails: decryption in
	// place (DecryptInPlace) relies on that to try the next recipient.
	block.Decrypt(last[:bs], buf[n-bs:])
	subtle.XORBytes(last[:bs], last[:bs], prev)
	_, ok := envPKCS7Unpad(last[:bs], bs)
	clear(last[:])
	if !ok {
		return nil, envErrf(ErrDecrypt, "content: bad CBC padding (wrong key or altered message)")
	}
	cipher.NewCBCDecrypter(block, cc.iv).CryptBlocks(buf, buf)
	m, ok := envPKCS7Unpad(buf, bs)
	if !ok {
		// Not reached: the last block decrypts as it did above.
		clear(buf)
		return nil, envErrf(ErrDecrypt, "content: bad CBC padding")
	}
	return buf[:m], nil
}

// envPKCS7Unpad checks the PKCS #7 padding (RFC 5652 section 6.3) of b, whose
// length must be a positive multiple of bs, and returns the length of the
// content. The pad length must be 1..bs and all pad bytes equal to it. The
// check looks at the whole last block in constant time.
func envPKCS7Unpad(b []byte, bs int) (int, bool) {
	n := len(b)
	if bs <= 0 || bs > 255 || n == 0 || n%bs != 0 {
		return 0, false
	}
	pad := int(b[n-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, bs)
	for i := 1; i <= bs; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, pad)
		eq := subtle.ConstantTimeByteEq(b[n-i], byte(pad))
		good &= eq | (inPad ^ 1)
	}
	if good != 1 {
		return 0, false
	}
	return n - pad, true
}
