package cms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	_ "crypto/sha1" // register crypto.SHA1
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
)

type sdAlgorithm struct {
	oid    asn1.ObjectIdentifier
	params asn1.RawValue // FullBytes nil when absent
}

// sdParseAlgorithm reads AlgorithmIdentifier ::= SEQUENCE { algorithm OID,
// parameters ANY OPTIONAL }.
func sdParseAlgorithm(v asn1.RawValue) (sdAlgorithm, error) {
	var a sdAlgorithm
	if !sdIsUniversal(v, asn1.TagSequence, true) {
		return a, fmt.Errorf("not a SEQUENCE")
	}
	o, rest, err := sdNext(v.Bytes)
	if err != nil || !sdIsUniversal(o, asn1.TagOID, false) {
		return a, fmt.Errorf("no algorithm OID")
	}
	if _, err := asn1.Unmarshal(o.FullBytes, &a.oid); err != nil {
		return a, err
	}
	if len(rest) > 0 {
		if a.params, rest, err = sdNext(rest); err != nil {
			return a, err
		}
		if len(rest) != 0 {
			return a, fmt.Errorf("trailing data")
		}
	}
	return a, nil
}

func sdNextAlgorithm(b []byte) (sdAlgorithm, []byte, error) {
	v, rest, err := sdNext(b)
	if err != nil {
		return sdAlgorithm{}, nil, err
	}
	a, err := sdParseAlgorithm(v)
	return a, rest, err
}

type sdOIDName struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
	name string
}

var (
	sdOIDSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	sdOIDSHA224 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}
	sdOIDSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	sdOIDSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	sdOIDSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}

	sdOIDRSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	sdOIDRSAPSS = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	sdOIDMGF1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
)

// sdDigestAlgs maps digestAlgorithm OIDs. Some producers put a signature
// algorithm OID there; like OpenSSL, the hash it names is used.
var sdDigestAlgs = []sdOIDName{
	{sdOIDSHA1, crypto.SHA1, "sha-1"},
	{sdOIDSHA224, crypto.SHA224, "sha-224"},
	{sdOIDSHA256, crypto.SHA256, "sha-256"},
	{sdOIDSHA384, crypto.SHA384, "sha-384"},
	{sdOIDSHA512, crypto.SHA512, "sha-512"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}, 0, "md5"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 4}, 0, "md4"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 2}, 0, "md2"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}, crypto.SHA1, "sha-1"},
	{asn1.ObjectIdentifier{1, 3, 14, 3, 2, 29}, crypto.SHA1, "sha-1"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 14}, crypto.SHA224, "sha-224"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, crypto.SHA256, "sha-256"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}, crypto.SHA384, "sha-384"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}, crypto.SHA512, "sha-512"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}, 0, "md5"},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}, crypto.SHA1, "sha-1"},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 1}, crypto.SHA224, "sha-224"},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, crypto.SHA256, "sha-256"},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, crypto.SHA384, "sha-384"},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, crypto.SHA512, "sha-512"},
}

func sdDigestByOID(oid asn1.ObjectIdentifier) (crypto.Hash, string) {
	for _, d := range sdDigestAlgs {
		if d.oid.Equal(oid) {
			return d.hash, d.name
		}
	}
	return 0, oid.String()
}

const (
	sdAlgRSA    = "rsa-pkcs1v15"
	sdAlgRSAPSS = "rsa-pss"
	sdAlgECDSA  = "ecdsa"

	sdAlgDSA = "dsa"
)

// sdSigAlgs maps signatureAlgorithm OIDs. The hash a combined OID names is
// not used: like OpenSSL, the SignerInfo's digestAlgorithm decides (and
// PKCS #1 v1.5 binds it in the DigestInfo).
var sdSigAlgs = []sdOIDName{
	{sdOIDRSA, 0, sdAlgRSA},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}, 0, sdAlgRSA},  // md5WithRSAEncryption
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}, 0, sdAlgRSA},  // sha1WithRSAEncryption
	{asn1.ObjectIdentifier{1, 3, 14, 3, 2, 29}, 0, sdAlgRSA},          // sha1WithRSASignature (OIW)
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 14}, 0, sdAlgRSA}, // sha224WithRSAEncryption
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, 0, sdAlgRSA}, // sha256WithRSAEncryption
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}, 0, sdAlgRSA}, // sha384WithRSAEncryption
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}, 0, sdAlgRSA}, // sha512WithRSAEncryption
	{sdOIDRSAPSS, 0, sdAlgRSAPSS},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}, 0, sdAlgECDSA}, // id-ecPublicKey
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}, 0, sdAlgECDSA},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 1}, 0, sdAlgECDSA},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, 0, sdAlgECDSA},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, 0, sdAlgECDSA},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, 0, sdAlgECDSA},
	{asn1.ObjectIdentifier{1, 3, 101, 112}, 0, "ed25519"},
	{asn1.ObjectIdentifier{1, 3, 101, 113}, 0, "ed448"},
	{asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}, 0, sdAlgDSA},
	{asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 3}, 0, sdAlgDSA},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 1}, 0, sdAlgDSA},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 2}, 0, sdAlgDSA},
}

func sdSigAlgName(oid asn1.ObjectIdentifier) string {
	for _, a := range sdSigAlgs {
		if a.oid.Equal(oid) {
			return a.name
		}
	}
	return oid.String()
}

// sdCapNames names SMIMECapabilities entries.
var sdCapNames = []sdOIDName{
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, 0, "aes-256-cbc"},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}, 0, "aes-192-cbc"},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}, 0, "aes-128-cbc"},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}, 0, "aes-256-gcm"},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 26}, 0, "aes-192-gcm"},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}, 0, "aes-128-gcm"},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}, 0, "aes-256-wrap"},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 25}, 0, "aes-192-wrap"},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 5}, 0, "aes-128-wrap"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 18}, 0, "chacha20-poly1305"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}, 0, "des-ede3-cbc"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 2}, 0, "rc2-cbc"},
	{asn1.ObjectIdentifier{1, 3, 14, 3, 2, 7}, 0, "des-cbc"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}, 0, "rsaes-oaep"},
	{sdOIDRSA, 0, "rsa"},
	{sdOIDRSAPSS, 0, "rsa-pss"},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 11, 1}, 0, "prefer-binary-inside"},
	{sdOIDSHA1, 0, "sha-1"},
	{sdOIDSHA224, 0, "sha-224"},
	{sdOIDSHA256, 0, "sha-256"},
	{sdOIDSHA384, 0, "sha-384"},
	{sdOIDSHA512, 0, "sha-512"},
}

func sdCapName(oid asn1.ObjectIdentifier) string {
	for _, c := range sdCapNames {
		if c.oid.Equal(oid) {
			return c.name
		}
	}
	return oid.String()
}

// sdSigAlg is a signature algorithm ready to verify.
type sdSigAlg struct {
	name    string
	pssSalt int // rsa-pss only
}

// sdParseSigAlg checks that si's signature algorithm is supported and fits
// its digest algorithm.
func sdParseSigAlg(si *SignerInfo) (sdSigAlg, error) {
	s := sdSigAlg{name: si.Algorithm}
	switch s.name {
	case sdAlgRSA, sdAlgECDSA:
		return s, nil
	case sdAlgRSAPSS:
		return s, s.parsePSS(si)
	}
	return s, fmt.Errorf("%w: signature algorithm %s", ErrUnsupported, si.Algorithm)
}

// parsePSS reads RSASSA-PSS-params (RFC 4055 section 3.1).
func (s *sdSigAlg) parsePSS(si *SignerInfo) error {
	var p struct {
		Hash, MGF     asn1.RawValue // the values inside [0] and [1]
		Salt, Trailer int
	}
	p.Salt, p.Trailer = 20, 1
	raw := si.sigAlgParam.FullBytes
	if raw != nil && !(len(raw) == 2 && raw[0] == asn1.TagNull && raw[1] == 0) {
		seq, rest, err := sdNext(raw)
		if err != nil || len(rest) != 0 || !sdIsUniversal(seq, asn1.TagSequence, true) {
			return fmt.Errorf("%w: RSASSA-PSS parameters", ErrMalformed)
		}
		last := -1
		for b := seq.Bytes; len(b) > 0; {
			var f, inner asn1.RawValue
			if f, b, err = sdNext(b); err != nil || f.Class != asn1.ClassContextSpecific || f.Tag <= last || f.Tag > 3 || !f.IsCompound {
				return fmt.Errorf("%w: RSASSA-PSS parameters", ErrMalformed)
			}
			last = f.Tag
			if inner, rest, err = sdNext(f.Bytes); err != nil || len(rest) != 0 {
				return fmt.Errorf("%w: RSASSA-PSS parameters", ErrMalformed)
			}
			switch f.Tag {
			case 0:
				p.Hash = inner
			case 1:
				p.MGF = inner
			default:
				n := &p.Salt
				if f.Tag == 3 {
					n = &p.Trailer
				}
				if _, err := asn1.Unmarshal(inner.FullBytes, n); err != nil {
					return fmt.Errorf("%w: RSASSA-PSS parameters: %v", ErrMalformed, err)
				}
			}
		}
	}
	hash, hashName := crypto.SHA1, "sha-1"
	if p.Hash.FullBytes != nil {
		a, err := sdParseAlgorithm(p.Hash)
		if err != nil {
			return fmt.Errorf("%w: RSASSA-PSS hashAlgorithm", ErrMalformed)
		}
		hash, hashName = sdDigestByOID(a.oid)
	}
	mgfHash, mgfName := crypto.SHA1, "sha-1"
	if p.MGF.FullBytes != nil {
		a, err := sdParseAlgorithm(p.MGF)
		if err != nil {
			return fmt.Errorf("%w: RSASSA-PSS maskGenAlgorithm", ErrMalformed)
		}
		if !a.oid.Equal(sdOIDMGF1) {
			return fmt.Errorf("%w: RSASSA-PSS mask generation %s", ErrUnsupported, a.oid)
		}
		h, err := sdParseAlgorithm(a.params)
		if err != nil {
			return fmt.Errorf("%w: RSASSA-PSS MGF1 hash", ErrMalformed)
		}
		mgfHash, mgfName = sdDigestByOID(h.oid)
	}
	switch {
	case p.Trailer != 1:
		return fmt.Errorf("%w: RSASSA-PSS trailerField %d", ErrUnsupported, p.Trailer)
	case p.Salt < 0:
		return fmt.Errorf("%w: RSASSA-PSS saltLength %d", ErrMalformed, p.Salt)
	case hash == 0:
		return fmt.Errorf("%w: RSASSA-PSS hash %s", ErrUnsupported, hashName)
	case mgfHash != hash:
		return fmt.Errorf("%w: RSASSA-PSS with MGF1 hash %s and hash %s", ErrUnsupported, mgfName, hashName)
	case hash != si.Digest:
		return fmt.Errorf("%w: RSASSA-PSS hash %s differs from the digest algorithm %s",
			ErrBadSignature, hashName, si.DigestName)
	}
	s.pssSalt = p.Salt
	return nil
}

// verify checks sig over the message whose hash with h is digest.
func (s sdSigAlg) verify(cert *x509.Certificate, h crypto.Hash, digest, sig []byte) error {
	if err := CheckCertificateKey(cert); err != nil {
		return fmt.Errorf("signer certificate: %w", err)
	}
	switch s.name {
	case sdAlgRSA, sdAlgRSAPSS:
		pub := sdRSAPublicKey(cert)
		if pub == nil {
			return fmt.Errorf("%w: %s signature but the certificate key is %s", ErrBadSignature, s.name, cert.PublicKeyAlgorithm)
		}
		var err error
		if s.name == sdAlgRSA {
			err = rsa.VerifyPKCS1v15(pub, h, digest, sig)
		} else {
			// Salt length 0 means "auto" to crypto/rsa: it then accepts
			// any salt length, including the stated 0.
			err = rsa.VerifyPSS(pub, h, digest, sig, &rsa.PSSOptions{SaltLength: s.pssSalt})
		}
		if err != nil {
			if pub.N != nil && pub.N.BitLen() < 1024 {
				return fmt.Errorf("%w: %d-bit RSA key (%v)", ErrUnsupported, pub.N.BitLen(), err)
			}
			return fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		return nil
	case sdAlgECDSA:
		pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: ecdsa signature but the certificate key is %s", ErrBadSignature, cert.PublicKeyAlgorithm)
		}
		if !ecdsa.VerifyASN1(pub, digest, sig) {
			return ErrBadSignature
		}
		return nil
	}
	return fmt.Errorf("%w: signature algorithm %s", ErrUnsupported, s.name)
}

// sdRSAPublicKey returns the certificate's RSA key, also for RSASSA-PSS
// keys (id-RSASSA-PSS SubjectPublicKeyInfo), which crypto/x509 leaves
// unparsed.
func sdRSAPublicKey(cert *x509.Certificate) *rsa.PublicKey {
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); ok {
		return pub
	}
	var spki struct {
		Algorithm asn1.RawValue
		Key       asn1.BitString
	}
	if rest, err := asn1.Unmarshal(cert.RawSubjectPublicKeyInfo, &spki); err != nil || len(rest) != 0 {
		return nil
	}
	a, err := sdParseAlgorithm(spki.Algorithm)
	if err != nil || !a.oid.Equal(sdOIDRSAPSS) {
		return nil
	}
	pub, err := x509.ParsePKCS1PublicKey(spki.Key.RightAlign())
	if err != nil {
		return nil
	}
	return pub
}
