package revocation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// fuzzCA is a CA made in memory for the seeds.
func fuzzCA(tb testing.TB) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Fuzz CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return ca, key
}

// fuzzSeeds are CRLs of the CA: plain, with an invalidity date, with an
// issuing distribution point naming a URI, and restricted to CA
// certificates.
func fuzzSeeds(tb testing.TB, ca *x509.Certificate, key *ecdsa.PrivateKey) [][]byte {
	inval, _ := asn1.MarshalWithParams(time.Now().Add(-2*time.Hour).UTC(), "generalized")
	uri := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte("http://crl.example/ca.crl")}
	// SEQUENCE { [0] { [0] { [6] URI } } }: distributionPoint (explicit,
	// a CHOICE), fullName (GeneralNames), uniformResourceIdentifier.
	fullName := mustMarshal(tb, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustMarshal(tb, uri)})
	dp := mustMarshal(tb, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: fullName})
	idpURI := mustMarshal(tb, asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: dp})
	idpCA, _ := asn1.Marshal(struct {
		CA bool `asn1:"tag:2"`
	}{true})
	var seeds [][]byte
	for i, exts := range [][]pkix.Extension{nil, nil, {{Id: oidIssuingDistributionPoint, Critical: true, Value: idpURI}}, {{Id: oidIssuingDistributionPoint, Critical: true, Value: idpCA}}} {
		entry := x509.RevocationListEntry{SerialNumber: big.NewInt(4660), RevocationTime: time.Now().Add(-time.Hour), ReasonCode: 1}
		if i == 1 {
			entry.ExtraExtensions = []pkix.Extension{{Id: oidInvalidityDate, Value: inval}}
		}
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(int64(i + 1)), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
			RevokedCertificateEntries: []x509.RevocationListEntry{entry}, ExtraExtensions: exts,
		}, ca, key)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, der)
	}
	return seeds
}

func mustMarshal(tb testing.TB, v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestFuzzSeeds: the seeds parse as meant, so the fuzzer starts from CRLs
// that reach every branch.
func TestFuzzSeeds(t *testing.T) {
	ca, key := fuzzCA(t)
	seeds := fuzzSeeds(t, ca, key)
	for i, want := range []string{"", "", "http://crl.example/ca.crl", "refused"} {
		c, err := parseCRL(seeds[i], ca)
		switch {
		case want == "refused":
			if !errors.Is(err, ErrCRL) {
				t.Errorf("seed %d: %v, want refused", i, err)
			}
		case err != nil:
			t.Errorf("seed %d: %v", i, err)
		case strings.Join(c.scopes, " ") != want:
			t.Errorf("seed %d: scopes %q, want %q", i, c.scopes, want)
		}
	}
	c, err := parseCRL(seeds[1], ca)
	if err != nil {
		t.Fatal(err)
	}
	r := c.entries[big.NewInt(4660).Text(16)]
	if r.invalidity.IsZero() || !effective(r).Equal(r.invalidity) {
		t.Errorf("seed 1: invalidity date %v, effective %v; want the invalidity date to count", r.invalidity, effective(r))
	}
}

// FuzzParseCRL: a hostile CRL (or issuing distribution point) never
// panics, and is refused only with ErrCRL.
//
//	go test -run x -fuzz FuzzParseCRL -fuzztime 2m ./harvest/revocation
func FuzzParseCRL(f *testing.F) {
	ca, key := fuzzCA(f)
	for _, s := range fuzzSeeds(f, ca, key) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := Decode(data); err != nil && !errors.Is(err, ErrCRL) {
			t.Fatalf("Decode: %v", err)
		}
		if _, _, err := parseIDP(data); err != nil && !errors.Is(err, ErrCRL) {
			t.Fatalf("parseIDP: %v", err)
		}
		c, err := parseCRL(data, ca)
		if err != nil {
			if !errors.Is(err, ErrCRL) {
				t.Fatalf("parseCRL: %v", err)
			}
			return
		}
		c.lookup(big.NewInt(4660), time.Now())
		c.covers(ca, []string{"http://crl.example/ca.crl"})
	})
}
