// Package timestamp is an RFC 3161 Time-Stamp Protocol client: it builds
// a TimeStampReq over a SHA-256 digest, sends it to a TSA over HTTP(S)
// (RFC 3161 section 3.4, application/timestamp-query), and parses and
// verifies the TimeStampResp. A token is a CMS SignedData (RFC 5652)
// whose eContent is a TSTInfo; its signature is checked with package
// harvest/cms, its ESS signingCertificate or signingCertificateV2
// attribute (RFC 2634, RFC 5035) must name the signer's certificate, and
// that certificate must carry the extended key usage id-kp-timeStamping
// alone, marked critical (RFC 3161 section 2.3), and chain to one of the
// trust anchors at the token's own genTime, so that a token stays valid
// after its TSA certificate expired.
//
// Everything a TSA answers is hostile input: sizes are bounded and the
// parsers return errors, never panic.
package timestamp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"time"

	"github.com/smimed/smimed/harvest/cms"
)

// Errors; returned errors wrap them.
var (
	ErrMalformed = errors.New("timestamp: malformed answer")
	ErrRefused   = errors.New("timestamp: the TSA refused the request")
	ErrInvalid   = errors.New("timestamp: token does not verify")
)

// MaxResponse bounds a TimeStampResp read from a TSA or a file.
const MaxResponse = 256 << 10

// Object identifiers used here.
var (
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA1            = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidTSTInfo         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	oidSigningCert     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 12}
	oidSigningCertV2   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}
	oidExtKeyUsage     = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidKPTimeStamping  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
	maxNonceBits       = 160
	maxTokenCertsChain = 8
)

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type messageImprint struct {
	HashAlgorithm algorithmIdentifier
	HashedMessage []byte
}

type timeStampReq struct {
	Version        int
	MessageImprint messageImprint
	Nonce          *big.Int `asn1:"optional"`
	CertReq        bool     `asn1:"optional,default:false"`
}

// Request is one TimeStampReq.
type Request struct {
	Digest [sha256.Size]byte // SHA-256 of the data to be stamped
	Nonce  *big.Int
}

// NewRequest returns a request for the SHA-256 digest with a random
// 64-bit nonce.
func NewRequest(digest [sha256.Size]byte) (*Request, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, fmt.Errorf("timestamp: nonce: %w", err)
	}
	return &Request{Digest: digest, Nonce: n}, nil
}

// Marshal returns the DER TimeStampReq (version 1, SHA-256 imprint with
// NULL parameters, the nonce, certReq TRUE).
func (r *Request) Marshal() ([]byte, error) {
	return asn1.Marshal(timeStampReq{
		Version: 1,
		MessageImprint: messageImprint{
			HashAlgorithm: algorithmIdentifier{Algorithm: oidSHA256, Parameters: asn1.NullRawValue},
			HashedMessage: r.Digest[:],
		},
		Nonce:   r.Nonce,
		CertReq: true,
	})
}

// Client asks one TSA.
type Client struct {
	URL  string
	HTTP *http.Client // nil: http.DefaultClient (the caller's context bounds the time)
}

// Stamp sends req to the TSA and returns the TimeStampResp (DER) as
// received together with its parsed form. The answer is parsed and its
// status checked, and its imprint and nonce compared with req; the
// signature and the chain are the caller's to check (Response.Verify).
func (c *Client) Stamp(ctx context.Context, req *Request) ([]byte, *Response, error) {
	body, err := req.Marshal()
	if err != nil {
		return nil, nil, fmt.Errorf("timestamp: request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("timestamp: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/timestamp-query")
	hreq.Header.Set("Accept", "application/timestamp-reply")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hreq)
	if err != nil {
		return nil, nil, fmt.Errorf("timestamp: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, nil, fmt.Errorf("timestamp: %s answered HTTP %s", c.URL, resp.Status)
	}
	der, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return nil, nil, fmt.Errorf("timestamp: reading the answer of %s: %w", c.URL, err)
	}
	if len(der) > MaxResponse {
		return nil, nil, fmt.Errorf("%w: more than %d bytes", ErrMalformed, MaxResponse)
	}
	r, err := ParseResponse(der)
	if err != nil {
		return nil, nil, err
	}
	if err := r.Matches(req.Digest[:]); err != nil {
		return nil, nil, err
	}
	if r.Info.Nonce == nil || r.Info.Nonce.Cmp(req.Nonce) != 0 {
		return nil, nil, fmt.Errorf("%w: the nonce is not the request's", ErrInvalid)
	}
	return der, r, nil
}

// Response is a parsed TimeStampResp whose status granted a token.
type Response struct {
	Status int // 0 granted, 1 granted with modifications
	// Token is the DER ContentInfo of the timeStampToken.
	Token  []byte
	Signed *cms.SignedData
	Info   *TSTInfo
}

// TSTInfo is the signed content of a token (RFC 3161 section 2.4.2).
type TSTInfo struct {
	Policy        asn1.ObjectIdentifier
	HashAlgorithm asn1.ObjectIdentifier
	HashedMessage []byte
	SerialNumber  *big.Int
	GenTime       time.Time
	Nonce         *big.Int // nil when absent
}

type pkiStatusInfo struct {
	Status       int
	StatusString asn1.RawValue  `asn1:"optional"`
	FailInfo     asn1.BitString `asn1:"optional"`
}

type timeStampResp struct {
	Status pkiStatusInfo
	Token  asn1.RawValue `asn1:"optional"`
}

type accuracy struct {
	Seconds int `asn1:"optional"`
	Millis  int `asn1:"optional,tag:0"`
	Micros  int `asn1:"optional,tag:1"`
}

type rawTSTInfo struct {
	Version        int
	Policy         asn1.ObjectIdentifier
	MessageImprint messageImprint
	SerialNumber   *big.Int
	GenTime        asn1.RawValue
	Accuracy       accuracy      `asn1:"optional"`
	Ordering       bool          `asn1:"optional,default:false"`
	Nonce          *big.Int      `asn1:"optional"`
	TSA            asn1.RawValue `asn1:"optional,explicit,tag:0"`
	Extensions     asn1.RawValue `asn1:"optional,tag:1"`
}

// ParseResponse parses a DER TimeStampResp. A status other than granted
// (0) or grantedWithMods (1) is ErrRefused; a granted answer without a
// token, or with a token that is not a SignedData over a TSTInfo, is
// ErrMalformed.
func ParseResponse(der []byte) (*Response, error) {
	if len(der) > MaxResponse {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrMalformed, MaxResponse)
	}
	var raw timeStampResp
	if err := unmarshalDER(der, &raw, "TimeStampResp"); err != nil {
		return nil, err
	}
	if s := raw.Status.Status; s != 0 && s != 1 {
		return nil, fmt.Errorf("%w: status %d%s", ErrRefused, s, failInfo(raw.Status.FailInfo))
	}
	if len(raw.Token.FullBytes) == 0 {
		return nil, fmt.Errorf("%w: granted without a token", ErrMalformed)
	}
	r, err := ParseToken(raw.Token.FullBytes)
	if err != nil {
		return nil, err
	}
	r.Status = raw.Status.Status
	return r, nil
}

// failInfo names the set bits of a PKIFailureInfo.
func failInfo(b asn1.BitString) string {
	names := []string{"badAlg", "1", "badRequest", "3", "4", "badDataFormat", "6", "7", "8", "9", "10", "11", "12", "13", "timeNotAvailable", "unacceptedPolicy", "unacceptedExtension", "addInfoNotAvailable", "18", "19", "20", "21", "22", "23", "24", "systemFailure"}
	out := ""
	for i := 0; i < b.BitLength && i < 64; i++ {
		if b.At(i) == 1 {
			n := strconv.Itoa(i)
			if i < len(names) {
				n = names[i]
			}
			out += " " + n
		}
	}
	if out != "" {
		return " (failure:" + out + ")"
	}
	return ""
}

// ParseToken parses a timeStampToken: a DER ContentInfo holding a
// SignedData whose eContent is a TSTInfo.
func ParseToken(der []byte) (*Response, error) {
	ci, err := cms.ParseContentInfo(der)
	if err != nil {
		return nil, fmt.Errorf("%w: token: %v", ErrMalformed, err)
	}
	sd, err := cms.ParseSignedData(ci)
	if err != nil {
		return nil, fmt.Errorf("%w: token: %v", ErrMalformed, err)
	}
	if !sd.EContentType.Equal(oidTSTInfo) || sd.EContent == nil {
		return nil, fmt.Errorf("%w: token content is not a TSTInfo", ErrMalformed)
	}
	if len(sd.Signers) != 1 {
		return nil, fmt.Errorf("%w: token has %d signers, not one", ErrMalformed, len(sd.Signers))
	}
	info, err := ParseTSTInfo(sd.EContent)
	if err != nil {
		return nil, err
	}
	return &Response{Token: der, Signed: sd, Info: info}, nil
}

// unmarshalDER parses der, which must hold nothing after it, into v; what
// names it in the error.
func unmarshalDER(der []byte, v any, what string) error {
	rest, err := asn1.Unmarshal(der, v)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: trailing data after %s", ErrMalformed, what)
	}
	return nil
}

// ParseTSTInfo parses the DER TSTInfo.
func ParseTSTInfo(der []byte) (*TSTInfo, error) {
	var raw rawTSTInfo
	if err := unmarshalDER(der, &raw, "TSTInfo"); err != nil {
		return nil, err
	}
	if raw.Version != 1 {
		return nil, fmt.Errorf("%w: TSTInfo version %d", ErrMalformed, raw.Version)
	}
	if raw.Nonce != nil && raw.Nonce.BitLen() > maxNonceBits {
		return nil, fmt.Errorf("%w: TSTInfo nonce of %d bits", ErrMalformed, raw.Nonce.BitLen())
	}
	t, err := parseGeneralizedTime(raw.GenTime)
	if err != nil {
		return nil, err
	}
	return &TSTInfo{
		Policy: raw.Policy, HashAlgorithm: raw.MessageImprint.HashAlgorithm.Algorithm,
		HashedMessage: raw.MessageImprint.HashedMessage, SerialNumber: raw.SerialNumber,
		GenTime: t, Nonce: raw.Nonce,
	}, nil
}

// parseGeneralizedTime reads genTime: YYYYMMDDhhmmss[.f…]Z (RFC 3161
// allows fractions of a second, which encoding/asn1 refuses).
func parseGeneralizedTime(v asn1.RawValue) (time.Time, error) {
	bad := func() (time.Time, error) {
		return time.Time{}, fmt.Errorf("%w: TSTInfo genTime %q", ErrMalformed, v.Bytes)
	}
	if v.Class != asn1.ClassUniversal || v.Tag != asn1.TagGeneralizedTime || v.IsCompound {
		return bad()
	}
	s := string(v.Bytes)
	if len(s) < 15 || len(s) > 40 || s[len(s)-1] != 'Z' {
		return bad()
	}
	base, frac := s[:14], s[14:len(s)-1]
	for _, c := range base {
		if c < '0' || c > '9' {
			return bad()
		}
	}
	t, err := time.Parse("20060102150405", base)
	if err != nil {
		return bad()
	}
	if frac != "" {
		if frac[0] != '.' || len(frac) < 2 || frac[len(frac)-1] == '0' {
			return bad()
		}
		ns := 0
		for i, c := range frac[1:] {
			if c < '0' || c > '9' {
				return bad()
			}
			if i < 9 {
				ns = ns*10 + int(c-'0')
			}
		}
		for i := len(frac) - 1; i < 9; i++ {
			ns *= 10
		}
		t = t.Add(time.Duration(ns))
	}
	return t.UTC(), nil
}

// Matches checks that the token stamps the SHA-256 digest.
func (r *Response) Matches(digest []byte) error {
	if !r.Info.HashAlgorithm.Equal(oidSHA256) {
		return fmt.Errorf("%w: the imprint's hash is %s, not SHA-256", ErrInvalid, r.Info.HashAlgorithm)
	}
	if !bytes.Equal(r.Info.HashedMessage, digest) {
		return fmt.Errorf("%w: the token stamps other data (imprint %x)", ErrInvalid, r.Info.HashedMessage)
	}
	return nil
}

// Verified is what Verify found out about a good token.
type Verified struct {
	GenTime time.Time
	Signer  *x509.Certificate
	Chain   []*x509.Certificate // signer first, trust anchor last
}

// Verify checks the token: that it stamps digest (SHA-256), its CMS
// signature, that the ESS signingCertificate(V2) attribute names the
// signer's certificate, that the certificate is for timestamping only
// (critical EKU id-kp-timeStamping), and that it chains to roots at the
// token's genTime. extra are certificates to look the signer and its
// intermediates up in besides those the token carries.
func (r *Response) Verify(digest []byte, roots *x509.CertPool, extra []*x509.Certificate) (*Verified, error) {
	if err := r.Matches(digest); err != nil {
		return nil, err
	}
	si := r.Signed.Signers[0]
	signer := r.Signed.FindCertificate(si, extra)
	if signer == nil {
		return nil, fmt.Errorf("%w: the TSA certificate (%s) is neither in the token nor stored", ErrInvalid, si.ID)
	}
	if err := r.Signed.Verify(si, signer, r.Signed.EContent); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrInvalid, err)
	}
	if err := checkESS(si, signer); err != nil {
		return nil, err
	}
	if err := checkEKU(signer); err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	n := 0
	for _, c := range append(append([]*x509.Certificate{}, r.Signed.Certificates...), extra...) {
		if n < maxTokenCertsChain*4 {
			inter.AddCert(c)
			n++
		}
	}
	chains, err := signer.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: r.Info.GenTime,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: the TSA certificate %q at %s: %v", ErrInvalid, signer.Subject.CommonName, r.Info.GenTime.Format(time.RFC3339), err)
	}
	return &Verified{GenTime: r.Info.GenTime, Signer: signer, Chain: chains[0]}, nil
}

type essCertID struct {
	CertHash     []byte
	IssuerSerial asn1.RawValue `asn1:"optional"`
}

type signingCertificate struct {
	Certs    []essCertID
	Policies asn1.RawValue `asn1:"optional"`
}

type essCertIDv2 struct {
	HashAlgorithm pkix.AlgorithmIdentifier `asn1:"optional"`
	CertHash      []byte
	IssuerSerial  asn1.RawValue `asn1:"optional"`
}

type signingCertificateV2 struct {
	Certs    []essCertIDv2
	Policies asn1.RawValue `asn1:"optional"`
}

// checkESS finds the signingCertificate (SHA-1) or signingCertificateV2
// attribute and compares its first certificate hash with the signer's
// certificate (RFC 3161 section 2.4.2, RFC 5816).
func checkESS(si *cms.SignerInfo, cert *x509.Certificate) error {
	if v2, err := si.SignedAttribute(oidSigningCertV2); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	} else if len(v2) > 0 {
		var sc signingCertificateV2
		if rest, err := asn1.Unmarshal(v2[0], &sc); err != nil || len(rest) != 0 || len(sc.Certs) == 0 {
			return fmt.Errorf("%w: malformed signingCertificateV2", ErrInvalid)
		}
		id := sc.Certs[0]
		alg := id.HashAlgorithm.Algorithm
		var sum []byte
		switch {
		case len(alg) == 0 || alg.Equal(oidSHA256):
			s := sha256.Sum256(cert.Raw)
			sum = s[:]
		case alg.Equal(oidSHA1):
			s := sha1.Sum(cert.Raw)
			sum = s[:]
		default:
			return fmt.Errorf("%w: signingCertificateV2 hash %s not supported", ErrInvalid, alg)
		}
		if !bytes.Equal(sum, id.CertHash) {
			return fmt.Errorf("%w: signingCertificateV2 names another certificate than the signer's", ErrInvalid)
		}
		return nil
	}
	v1, err := si.SignedAttribute(oidSigningCert)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(v1) == 0 {
		return fmt.Errorf("%w: no ESS signingCertificate attribute", ErrInvalid)
	}
	var sc signingCertificate
	if rest, err := asn1.Unmarshal(v1[0], &sc); err != nil || len(rest) != 0 || len(sc.Certs) == 0 {
		return fmt.Errorf("%w: malformed signingCertificate", ErrInvalid)
	}
	s := sha1.Sum(cert.Raw)
	if !bytes.Equal(s[:], sc.Certs[0].CertHash) {
		return fmt.Errorf("%w: signingCertificate names another certificate than the signer's", ErrInvalid)
	}
	return nil
}

// checkEKU requires the one critical extended key usage timeStamping.
func checkEKU(c *x509.Certificate) error {
	for _, e := range c.Extensions {
		if !e.Id.Equal(oidExtKeyUsage) {
			continue
		}
		if !e.Critical {
			return fmt.Errorf("%w: the TSA certificate's extended key usage is not critical", ErrInvalid)
		}
		if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageTimeStamping || len(c.UnknownExtKeyUsage) != 0 {
			return fmt.Errorf("%w: the TSA certificate may be used for more than timestamping", ErrInvalid)
		}
		return nil
	}
	return fmt.Errorf("%w: the TSA certificate has no extended key usage timeStamping", ErrInvalid)
}
