package testenv

import (
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// OCSPResponse is the DER OCSP response the CA's `openssl ocsp` responder
// gives for cert (a PEM file), answered offline from a request file as a
// signer's client would have fetched it to enclose.
func (ca *CA) OCSPResponse(tb testing.TB, cert string) []byte {
	tb.Helper()
	req, resp := filepath.Join(ca.Dir, "ocsp-req.der"), filepath.Join(ca.Dir, "ocsp-resp.der")
	OpenSSL(tb, ca.Dir, "ocsp", "-issuer", "ca.crt", "-cert", cert, "-no_nonce", "-reqout", req)
	OpenSSL(tb, ca.Dir, "ocsp", "-index", "index.txt", "-rsigner", "ca.crt", "-rkey", "ca.key", "-CA", "ca.crt",
		"-ndays", "1", "-reqin", req, "-respout", resp)
	der, err := os.ReadFile(resp)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// oidOCSPResponse is id-ri-ocsp-response (RFC 5940 section 3).
var oidOCSPResponse = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 16, 2}

// SignEnclosing is Sign with crls (DER CertificateLists) and ocsps (DER
// OCSPResponses) enclosed in the SignedData's RevocationInfoChoices, as
// RFC 5652 10.2.1 and RFC 5940 lay them out: openssl signs (detached,
// DER), the test inserts the [1] field before signerInfos (outside what
// the signature covers), and openssl must still verify the result, so the
// layout is checked by a parser other than smimed's.
func (ca *CA) SignEnclosing(tb testing.TB, cert, key, from, subject, body string, crls, ocsps [][]byte) []byte {
	tb.Helper()
	entity := "Content-Type: text/plain\r\n\r\n" + body + "\r\n"
	sig := OpenSSLInput(tb, ca.Dir, []byte(entity), "cms", "-sign", "-binary", "-outform", "DER",
		"-signer", cert, "-inkey", key, "-md", "sha256")
	out, err := EncloseRevocationInfo(sig, crls, ocsps)
	if err != nil {
		tb.Fatalf("openssl's SignedData: %v", err)
	}
	sigFile := filepath.Join(ca.Dir, "enclosing.p7s")
	if err := os.WriteFile(sigFile, out, 0o600); err != nil {
		tb.Fatal(err)
	}
	OpenSSLInput(tb, ca.Dir, []byte(entity), "cms", "-verify", "-binary", "-inform", "DER", "-in", sigFile,
		"-content", "/dev/stdin", "-CAfile", "ca.crt", "-purpose", "any", "-out", "/dev/null")
	const boundary = "----enclosing-boundary"
	return []byte("From: " + from + "\r\nTo: ceo@org.example\r\nSubject: " + subject + "\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"" + boundary + "\"\r\n\r\n" +
		"--" + boundary + "\r\n" + entity + "\r\n--" + boundary + "\r\n" +
		"Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n" + Base64Lines(out) + "\r\n--" + boundary + "--\r\n")
}

// EncloseRevocationInfo inserts crls (DER CertificateLists) and ocsps (DER
// OCSPResponses, as RFC 5940 encloses them) into the SignedData of the DER
// ContentInfo sig, which must have none yet, as its RevocationInfoChoices
// (RFC 5652 10.2.1), just before signerInfos.
func EncloseRevocationInfo(sig []byte, crls, ocsps [][]byte) ([]byte, error) {
	var ci struct {
		Type    asn1.ObjectIdentifier
		Content asn1.RawValue `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(sig, &ci); err != nil {
		return nil, err
	}
	var sd asn1.RawValue
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, err
	}
	var fields []asn1.RawValue
	for rest := sd.Bytes; len(rest) > 0; {
		var f asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &f); err != nil {
			return nil, err
		}
		fields = append(fields, f)
	}
	if len(fields) < 4 {
		return nil, errors.New("not a SignedData")
	}
	var infos []byte
	for _, c := range crls {
		infos = append(infos, c...)
	}
	oid, err := asn1.Marshal(oidOCSPResponse)
	if err != nil {
		return nil, err
	}
	for _, o := range ocsps {
		other, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: append(append([]byte{}, oid...), o...)})
		if err != nil {
			return nil, err
		}
		infos = append(infos, other...)
	}
	field := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: infos}
	fields = append(fields[:len(fields)-1], field, fields[len(fields)-1])
	var inner []byte
	for _, f := range fields {
		b, err := asn1.Marshal(f)
		if err != nil {
			return nil, err
		}
		inner = append(inner, b...)
	}
	sdDER, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: inner})
	if err != nil {
		return nil, err
	}
	ci.Content = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: sdDER}
	return asn1.Marshal(ci)
}

// Base64Lines is b in base64, 76 characters a line, each ended by CRLF
// (RFC 2045 6.8), as a message body.
func Base64Lines(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	out.WriteString(s + "\r\n")
	return out.String()
}
