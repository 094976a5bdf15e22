package harvest

// Chains that arrive incomplete (issue 15): a partner's client may send
// its certificate without the intermediate CA. The store keeps the
// intermediates of verified chains and offers them to later chain
// building (as NSS does); with [trust] fetch_intermediates a missing
// issuer is fetched from the URL the certificate names (authority
// information access, caIssuers). The verdict's reason says when either
// completed the chain.

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"slices"

	"github.com/smimed/smimed/harvest/cms"
)

// Bounds of chain completion by fetching, per signature.
const (
	maxAIADepth     = 3 // issuers fetched one above the other
	maxAIAURLs      = 2 // caIssuers URLs tried per certificate
	maxAIACertsEach = 4 // certificates taken from one answer
)

// completeChain tries to give p, whose chain check found no chain, one by
// fetching missing issuers. It returns the chain, the URLs fetched that
// completed it, and whether it succeeded.
func (w *walker) completeChain(p pendingSig) ([]*x509.Certificate, []string, bool) {
	f := w.e.opts.Issuers
	if f == nil || len(p.cert.IssuingCertificateURL) == 0 {
		return nil, nil, false
	}
	ctx := w.netCtx()
	candidates := slices.Clone(w.pool(p.sd).certs)
	var used []string
	next := p.cert
	for range maxAIADepth {
		var fetched []*x509.Certificate
		for i, u := range next.IssuingCertificateURL {
			if i == maxAIAURLs {
				break
			}
			body, err := f.Fetch(ctx, u)
			if err != nil {
				continue
			}
			if certs := issuerCerts(body, next); len(certs) > 0 {
				fetched, used = certs, append(used, u)
				break
			}
		}
		if len(fetched) == 0 {
			return nil, nil, false
		}
		candidates = append(candidates, fetched...)
		chain, err := w.verifyCert(p.cert, newChainPool(candidates), w.received)
		if err == nil {
			return chain, used, true
		}
		next = fetched[0]
	}
	return nil, nil, false
}

// issuerCerts reads what a caIssuers URL served (a DER certificate, PEM,
// or a PKCS#7 certs-only bundle) and keeps the CA certificates named like
// the issuer of child, whose keys a real CA would use.
func issuerCerts(body []byte, child *x509.Certificate) []*x509.Certificate {
	var all []*x509.Certificate
	if c, err := x509.ParseCertificate(body); err == nil {
		all = append(all, c)
	} else if bytes.Contains(body, []byte("-----BEGIN CERTIFICATE-----")) {
		all = PEMCertificates(body, maxAIACertsEach)
	} else if ci, err := cms.ParseContentInfo(body); err == nil {
		if sd, err := cms.ParseSignedData(ci); err == nil {
			all = sd.Certificates
		}
	}
	var out []*x509.Certificate
	for _, c := range all {
		if len(out) == maxAIACertsEach {
			break
		}
		if c.IsCA && c.BasicConstraintsValid && bytes.Equal(c.RawSubject, child.RawIssuer) && cms.CheckPublicKey(c.PublicKey) == nil {
			out = append(out, c)
		}
	}
	return out
}

// completedNote says where the intermediates of a verified chain came
// from when not all were in the message: kept from earlier mail, or
// fetched (fetched: the URLs).
func completedNote(chain []*x509.Certificate, sd *cms.SignedData, fetched []string) string {
	if len(fetched) > 0 {
		return fmt.Sprintf("chain completed with the issuer fetched from %s (authority information access)", fetched[0])
	}
	for _, c := range chain[1 : len(chain)-1] {
		if !slices.ContainsFunc(sd.Certificates, func(m *x509.Certificate) bool { return m.Equal(c) }) {
			return "chain completed with an intermediate CA certificate kept from earlier mail (" + c.Subject.String() + ")"
		}
	}
	return ""
}
