package cms

import (
	"encoding/asn1"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// enclosingSeeds are the signed seeds (OpenSSL output) with revocation
// information enclosed: two CertificateLists, an OCSP response, and an
// OtherRevocationInfoFormat of another kind, which is skipped. The
// "CRLs" and the "response" are placeholders (a certificate's DER, a
// minimal OCSPResponse); the parser hands them on unchecked.
func enclosingSeeds(tb testing.TB) (seeds [][]byte, crls, ocsps [][]byte) {
	seed, err := os.ReadFile(filepath.Join("testdata", "signed-seeds", "rsa-detached.der"))
	if err != nil {
		tb.Fatal(err)
	}
	ci, err := ParseContentInfo(seed)
	if err != nil {
		tb.Fatal(err)
	}
	sd, err := ParseSignedData(ci)
	if err != nil || len(sd.Certificates) == 0 {
		tb.Fatalf("seed: %v", err)
	}
	// OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED (tryLater) }
	ocsp := []byte{0x30, 0x03, 0x0a, 0x01, 0x03}
	crls = [][]byte{sd.Certificates[0].Raw, sd.Certificates[0].RawTBSCertificate}
	ocsps = [][]byte{ocsp}
	withInfo, err := testenv.EncloseRevocationInfo(seed, crls, ocsps)
	if err != nil {
		tb.Fatal(err)
	}
	return [][]byte{withInfo}, crls, ocsps
}

// TestRevocationInfoChoices: the CRLs and OCSP responses a SignedData
// encloses are read out (RFC 5652 10.2.1, RFC 5940), the signature still
// verifies, and more than MaxRevocationInfos are cut off, not refused.
func TestRevocationInfoChoices(t *testing.T) {
	seeds, crls, ocsps := enclosingSeeds(t)
	ci, err := ParseContentInfo(seeds[0])
	if err != nil {
		t.Fatal(err)
	}
	sd, err := ParseSignedData(ci)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(sd.CRLs, crls, slices.Equal) || !slices.EqualFunc(sd.OCSPResponses, ocsps, slices.Equal) {
		t.Fatalf("read %d CRLs, %d OCSP responses; want %d, %d", len(sd.CRLs), len(sd.OCSPResponses), len(crls), len(ocsps))
	}
	if err := sd.Verify(sd.Signers[0], sd.FindCertificate(sd.Signers[0], nil), []byte(fuzzSignedContent)); err != nil {
		t.Fatalf("the signature after enclosing: %v", err)
	}

	// Another format ([1] { an OID not id-ri-ocsp-response, NULL }) is
	// skipped; more than MaxRevocationInfos are cut off.
	seed, _ := os.ReadFile(filepath.Join("testdata", "signed-seeds", "rsa-detached.der"))
	oid, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 2, 3, 4})
	other, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: append(oid, 0x05, 0x00)})
	for _, tc := range []struct {
		enclosed [][]byte
		want     int
	}{
		{[][]byte{other, crls[0]}, 1},
		{slices.Repeat([][]byte{crls[0]}, MaxRevocationInfos+4), MaxRevocationInfos},
	} {
		b, err := testenv.EncloseRevocationInfo(seed, tc.enclosed, nil)
		if err != nil {
			t.Fatal(err)
		}
		ci, _ = ParseContentInfo(b)
		if sd, err = ParseSignedData(ci); err != nil || len(sd.CRLs) != tc.want || len(sd.OCSPResponses) != 0 {
			t.Errorf("%d enclosed: %d CRLs, %d OCSP responses, %v; want %d CRLs", len(tc.enclosed), len(sd.CRLs), len(sd.OCSPResponses), err, tc.want)
		}
	}
}
