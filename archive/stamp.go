package archive

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"

	"github.com/smimed/smimed/archive/timestamp"
)

// TSA is one trusted timestamping authority (RFC 3161) the seals are
// sent to.
type TSA struct {
	URL string
	// Roots is its trust anchor (the configured ca_file), RootsPEM the
	// same file's bytes, kept beside each token.
	Roots    *x509.CertPool
	RootsPEM []byte
	HTTP     *http.Client // nil: http.DefaultClient; ctx bounds the time
}

// Stamp asks t for a timestamp token over seal id's statement, verifies
// the answer (imprint, nonce, signature, the TSA certificate's chain to
// t.Roots at the token's time) and keeps it in the evidence directory
// with the certificates that verify it. It returns the token's time.
func (a *Archive) Stamp(ctx context.Context, id uint64, t TSA) (*timestamp.Verified, error) {
	r, err := a.GetSeal(id)
	if err != nil {
		return nil, err
	}
	digest := r.Seal.Digest(id)
	req, err := timestamp.NewRequest(digest)
	if err != nil {
		return nil, err
	}
	der, resp, err := (&timestamp.Client{URL: t.URL, HTTP: t.HTTP}).Stamp(ctx, req)
	if err != nil {
		return nil, err
	}
	vf, err := resp.Verify(digest[:], t.Roots, nil)
	if err != nil {
		return nil, err
	}
	var chain bytes.Buffer
	for _, c := range vf.Chain[:len(vf.Chain)-1] { // the anchor follows as configured
		pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	// The configured anchor as given (it may hold several certificates).
	chain.Write(t.RootsPEM)
	if err := a.StoreToken(id, Token{TSA: TSAName(t.URL), Response: der, Chain: chain.Bytes()}); err != nil {
		return nil, err
	}
	return vf, nil
}

// HasToken reports whether an answer of the TSA at tsaURL is kept for
// seal id.
func (a *Archive) HasToken(id uint64, tsaURL string) bool {
	ts, err := a.Tokens(id)
	if err != nil {
		return false
	}
	name := TSAName(tsaURL)
	for _, t := range ts {
		if t.TSA == name {
			return true
		}
	}
	return false
}
