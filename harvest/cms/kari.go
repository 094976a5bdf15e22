package cms

// KeyAgreeRecipientInfo with ephemeral-static ECDH (RFC 5753 section 3.1,
// RFC 8418 for the hash choices): the originator sends an ephemeral public
// key, both sides derive a key-encryption key with the ANSI X9.63 KDF, and
// the content-encryption key is wrapped under it with AES key wrap (RFC
// 3394) or, for des-ede3-cbc content, Triple-DES key wrap (RFC 3217).

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"encoding/asn1"
	"encoding/binary"

	_ "crypto/sha1"   // KDF hashes
	_ "crypto/sha256" // (and SHA-224)
	_ "crypto/sha512" // (and SHA-384)

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	envOIDECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	envOIDP256        = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	envOIDP384        = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	envOIDP521        = asn1.ObjectIdentifier{1, 3, 132, 0, 35}

	envOIDAES128Wrap = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 5}
	envOIDAES192Wrap = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 25}
	envOIDAES256Wrap = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}
	envOID3DESWrap   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 6}
)

// envECDHSchemes maps the key agreement algorithms to the KDF hash. The
// cofactor variants equal the standard ones on the prime curves (cofactor 1).
var envECDHSchemes = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{
	{asn1.ObjectIdentifier{1, 3, 133, 16, 840, 63, 0, 2}, crypto.SHA1}, // dhSinglePass-stdDH-sha1kdf-scheme
	{asn1.ObjectIdentifier{1, 3, 132, 1, 11, 0}, crypto.SHA224},        // dhSinglePass-stdDH-sha224kdf-scheme
	{asn1.ObjectIdentifier{1, 3, 132, 1, 11, 1}, crypto.SHA256},
	{asn1.ObjectIdentifier{1, 3, 132, 1, 11, 2}, crypto.SHA384},
	{asn1.ObjectIdentifier{1, 3, 132, 1, 11, 3}, crypto.SHA512},
	{asn1.ObjectIdentifier{1, 3, 133, 16, 840, 63, 0, 3}, crypto.SHA1}, // dhSinglePass-cofactorDH-sha1kdf-scheme
	{asn1.ObjectIdentifier{1, 3, 132, 1, 14, 0}, crypto.SHA224},
	{asn1.ObjectIdentifier{1, 3, 132, 1, 14, 1}, crypto.SHA256},
	{asn1.ObjectIdentifier{1, 3, 132, 1, 14, 2}, crypto.SHA384},
	{asn1.ObjectIdentifier{1, 3, 132, 1, 14, 3}, crypto.SHA512},
}

func envECDHKDFHash(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	for _, s := range envECDHSchemes {
		if s.oid.Equal(oid) {
			return s.hash, true
		}
	}
	return 0, false
}

// envKARIShared holds the fields of a KeyAgreeRecipientInfo that all its
// RecipientEncryptedKeys share.
type envKARIShared struct {
	originator []byte // full encoding of the OriginatorIdentifierOrKey CHOICE
	ukm        []byte
	hasUKM     bool
}

// envParseKARI reads the body of a KeyAgreeRecipientInfo ([1] IMPLICIT):
//
//	version CMSVersion,  -- always 3
//	originator [0] EXPLICIT OriginatorIdentifierOrKey,
//	ukm [1] EXPLICIT UserKeyingMaterial OPTIONAL,
//	keyEncryptionAlgorithm KeyEncryptionAlgorithmIdentifier,
//	recipientEncryptedKeys SEQUENCE OF RecipientEncryptedKey
//
// It returns one envRecipientInfo per RecipientEncryptedKey. The originator
// is only checked when a key is tried, so that an unusual originator does
// not hide the message's other recipients.
func envParseKARI(s cryptobyte.String) ([]envRecipientInfo, error) {
	sh := &envKARIShared{}
	var orig, origEl, reks cryptobyte.String
	var tag casn1.Tag
	var keyAlg envAlgID
	if !s.SkipASN1(casn1.INTEGER) ||
		!s.ReadASN1(&orig, envTagCons0) || !orig.ReadAnyASN1Element(&origEl, &tag) || !orig.Empty() {
		return nil, envErrf(ErrMalformed, "KeyAgreeRecipientInfo: originator")
	}
	sh.originator = origEl
	if s.PeekASN1Tag(envTagCons1) {
		var u cryptobyte.String
		if !s.ReadASN1(&u, envTagCons1) || !u.ReadASN1Bytes(&sh.ukm, casn1.OCTET_STRING) || !u.Empty() {
			return nil, envErrf(ErrMalformed, "KeyAgreeRecipientInfo: ukm")
		}
		sh.hasUKM = true
	}
	if !envReadAlgID(&s, &keyAlg) || !s.ReadASN1(&reks, casn1.SEQUENCE) || !s.Empty() {
		return nil, envErrf(ErrMalformed, "KeyAgreeRecipientInfo: keyEncryptionAlgorithm or recipientEncryptedKeys")
	}
	kt := keyAlg.OID.String()
	if _, ok := envECDHKDFHash(keyAlg.OID); ok {
		kt = "ecdh"
	}
	var out []envRecipientInfo
	for !reks.Empty() {
		var rek, rid cryptobyte.String
		r := envRecipientInfo{Recipient: Recipient{Kind: "kari", KeyTransport: kt}, keyAlg: keyAlg, kari: sh}
		if !reks.ReadASN1(&rek, casn1.SEQUENCE) || !rek.ReadAnyASN1Element(&rid, &tag) ||
			!rek.ReadASN1Bytes(&r.encryptedKey, casn1.OCTET_STRING) || !rek.Empty() {
			return nil, envErrf(ErrMalformed, "RecipientEncryptedKey")
		}
		if tag == envTagCons0 {
			// rKeyId [0] IMPLICIT RecipientKeyIdentifier ::= SEQUENCE {
			//   subjectKeyIdentifier, date GeneralizedTime OPTIONAL,
			//   other OtherKeyAttribute OPTIONAL }
			var body cryptobyte.String
			var ski []byte
			if !rid.ReadASN1(&body, envTagCons0) || !body.ReadASN1Bytes(&ski, casn1.OCTET_STRING) {
				return nil, envErrf(ErrMalformed, "RecipientEncryptedKey: rKeyId")
			}
			if ski == nil {
				ski = []byte{}
			}
			r.ID = Identifier{SKI: ski}
		} else {
			id, err := parseIdentifier(rid)
			if err != nil {
				return nil, err
			}
			r.ID = id
		}
		out = append(out, r)
	}
	return out, nil
}

// envECDHKey returns the ECDH form of an EC private key.
func envECDHKey(priv crypto.PrivateKey) (*ecdh.PrivateKey, error) {
	switch p := priv.(type) {
	case *ecdh.PrivateKey:
		return p, nil
	case *ecdsa.PrivateKey:
		k, err := p.ECDH()
		if err != nil {
			return nil, envErrf(ErrUnsupported, "key agreement: EC key on an unsupported curve")
		}
		return k, nil
	}
	return nil, envErrf(ErrUnsupported, "key agreement needs an EC key, have %T", priv)
}

func envCurveOID(c ecdh.Curve) asn1.ObjectIdentifier {
	switch c {
	case ecdh.P256():
		return envOIDP256
	case ecdh.P384():
		return envOIDP384
	case ecdh.P521():
		return envOIDP521
	}
	return nil
}

// envKARICEK derives the key-encryption key and unwraps the content-encryption
// key of one RecipientEncryptedKey.
func envKARICEK(ri *envRecipientInfo, k *Key, keyLen int) ([]byte, error) {
	h, ok := envECDHKDFHash(ri.keyAlg.OID)
	if !ok {
		return nil, envErrf(ErrUnsupported, "key agreement algorithm %s", ri.keyAlg.OID)
	}
	if !h.Available() {
		return nil, envErrf(ErrUnsupported, "KDF hash %v", h)
	}
	// The parameters are the key-wrap AlgorithmIdentifier (RFC 5753
	// section 7.1.5); its encoding goes into the KDF as received.
	var wrap envAlgID
	p := cryptobyte.String(ri.keyAlg.Params)
	if !envReadAlgID(&p, &wrap) || !p.Empty() {
		return nil, envErrf(ErrMalformed, "key agreement: key wrap algorithm")
	}
	var kekLen int
	switch {
	case wrap.OID.Equal(envOIDAES128Wrap):
		kekLen = 16
	case wrap.OID.Equal(envOIDAES192Wrap):
		kekLen = 24
	case wrap.OID.Equal(envOIDAES256Wrap):
		kekLen = 32
	case wrap.OID.Equal(envOID3DESWrap):
		kekLen = 24
	default:
		return nil, envErrf(ErrUnsupported, "key wrap algorithm %s", wrap.OID)
	}

	priv, err := envECDHKey(k.Private)
	if err != nil {
		return nil, err
	}
	pub, err := envOriginatorKey(ri.kari.originator, priv.Curve())
	if err != nil {
		return nil, err
	}
	z, err := priv.ECDH(pub)
	if err != nil {
		return nil, envErrf(ErrDecrypt, "key agreement: ECDH failed")
	}
	defer clear(z)

	sharedInfo, err := envSharedInfo(wrap.Raw, ri.kari.ukm, ri.kari.hasUKM, kekLen)
	if err != nil {
		return nil, err
	}
	kek := envX963KDF(h, z, sharedInfo, kekLen)
	defer clear(kek)
	var cek []byte
	if wrap.OID.Equal(envOID3DESWrap) {
		cek, err = envDES3KeyUnwrap(kek, ri.encryptedKey)
	} else {
		cek, err = envAESKeyUnwrap(kek, ri.encryptedKey)
	}
	if err != nil {
		return nil, err
	}
	if len(cek) != keyLen {
		clear(cek)
		return nil, envErrf(ErrDecrypt, "key agreement: content key is %d bytes, the cipher needs %d", len(cek), keyLen)
	}
	return cek, nil
}

// envSharedInfo encodes the KDF input of RFC 5753 section 7.2:
//
//	ECC-CMS-SharedInfo ::= SEQUENCE {
//	  keyInfo         AlgorithmIdentifier,  -- the key wrap algorithm
//	  entityUInfo [0] EXPLICIT OCTET STRING OPTIONAL,  -- the ukm
//	  suppPubInfo [2] EXPLICIT OCTET STRING }  -- KEK length in bits, 32-bit big-endian
func envSharedInfo(wrapAlg, ukm []byte, hasUKM bool, kekLen int) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(wrapAlg)
		if hasUKM {
			b.AddASN1(envTagCons0, func(b *cryptobyte.Builder) { b.AddASN1OctetString(ukm) })
		}
		b.AddASN1(envTagCons2, func(b *cryptobyte.Builder) {
			var bits [4]byte
			binary.BigEndian.PutUint32(bits[:], uint32(kekLen*8))
			b.AddASN1OctetString(bits[:])
		})
	})
	out, err := b.Bytes()
	if err != nil {
		return nil, envErrf(ErrMalformed, "key agreement: ECC-CMS-SharedInfo: %v", err)
	}
	return out, nil
}

// envOriginatorKey reads the originator's ephemeral public key:
//
//	OriginatorIdentifierOrKey ::= CHOICE {
//	  issuerAndSerialNumber IssuerAndSerialNumber,
//	  subjectKeyIdentifier [0] SubjectKeyIdentifier,
//	  envOriginatorKey [1] OriginatorPublicKey }
//	OriginatorPublicKey ::= SEQUENCE {
//	  algorithm AlgorithmIdentifier, publicKey BIT STRING }
//
// Only originatorKey is supported (ephemeral-static ECDH); the other two
// name a static originator certificate (RFC 5753 section 3.2, 1-pass ECMQV
// or static-static), which S/MIME clients do not send.
func envOriginatorKey(full []byte, curve ecdh.Curve) (*ecdh.PublicKey, error) {
	in := cryptobyte.String(full)
	if !in.PeekASN1Tag(envTagCons1) {
		return nil, envErrf(ErrUnsupported, "key agreement with an originator certificate (static-static ECDH)")
	}
	var body cryptobyte.String
	var alg envAlgID
	var point []byte
	if !in.ReadASN1(&body, envTagCons1) || !envReadAlgID(&body, &alg) ||
		!body.ReadASN1BitStringAsBytes(&point) || !body.Empty() {
		return nil, envErrf(ErrMalformed, "key agreement: originatorKey")
	}
	if !alg.OID.Equal(envOIDECPublicKey) {
		return nil, envErrf(ErrUnsupported, "key agreement: originator key algorithm %s", alg.OID)
	}
	// RFC 5753 says the parameters are absent or NULL; some senders name
	// the curve. It must then be the recipient's.
	if !alg.paramsAbsent() {
		p := cryptobyte.String(alg.Params)
		var oid asn1.ObjectIdentifier
		if !p.ReadASN1ObjectIdentifier(&oid) || !p.Empty() {
			return nil, envErrf(ErrUnsupported, "key agreement: originator key with explicit curve parameters")
		}
		if !oid.Equal(envCurveOID(curve)) {
			return nil, envErrf(ErrDecrypt, "key agreement: originator key on curve %s, the recipient key on %s", oid, envCurveOID(curve))
		}
	}
	pub, err := curve.NewPublicKey(point)
	if err != nil {
		return nil, envErrf(ErrMalformed, "key agreement: originator public key is not an uncompressed point on the recipient's curve")
	}
	return pub, nil
}

// envX963KDF is the ANSI X9.63 key derivation function (SEC 1 section 3.6.1):
// Hash(Z || counter || SharedInfo) for counter = 1, 2, ... until n bytes.
func envX963KDF(h crypto.Hash, z, sharedInfo []byte, n int) []byte {
	out := make([]byte, 0, n+h.Size())
	var ctr [4]byte
	for i := uint32(1); len(out) < n; i++ {
		binary.BigEndian.PutUint32(ctr[:], i)
		d := h.New()
		d.Write(z)
		d.Write(ctr[:])
		d.Write(sharedInfo)
		out = d.Sum(out)
	}
	clear(out[n:])
	return out[:n]
}
