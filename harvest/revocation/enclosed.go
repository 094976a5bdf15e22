package revocation

// Revocation information a signer encloses in its message (RFC 5652
// 10.2.1 RevocationInfoChoices; OCSP responses as RFC 5940 section 3
// encloses them). It is used before anything is fetched, whether or not
// [trust] ocsp is on: it costs no request and tells no responder who
// writes to whom. It is the CA's signed word, so the sender cannot forge
// it; what it can do is enclose an old answer, so an answer counts only
// when it was current when the message arrived, as a fetched one must be.

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Enclosed is the revocation information of one SignedData, as DER, not
// yet checked.
type Enclosed struct {
	CRLs [][]byte
	OCSP [][]byte
}

// SourceEnclosed is the Source of a CRL kept after it came enclosed in a
// message.
const SourceEnclosed = "enclosed"

// fromEnclosed answers for cert, issued by issuer, at time at from what
// the message encloses: an OCSP response about cert signed for issuer, or
// a CRL issuer signed that covers cert, current at at. ok is false when
// nothing enclosed answers. A CRL that answers and is newer than the one
// kept is kept, as if fetched.
func (c *Checker) fromEnclosed(cert, issuer *x509.Certificate, at time.Time, enc Enclosed) (Answer, bool) {
	ans, ok := c.enclosedAnswer(cert, issuer, at, enc)
	if ok && ans.Status == Good {
		// The sender picks what it encloses: an answer from before a
		// revocation the service knows already must not hide it.
		if kept := c.keptRevocation(cert, issuer, at); kept.Status == Revoked {
			return kept, true
		}
	}
	return ans, ok
}

// keptRevocation is what is known without a fetch (the kept CRLs, the
// OCSP answers in memory) when it says revoked; else an Unknown answer.
func (c *Checker) keptRevocation(cert, issuer *x509.Certificate, at time.Time) Answer {
	now := c.cfg.Now()
	if cr := c.current(issuerKey(issuer), cert, httpPoints(cert.CRLDistributionPoints), now); cr != nil {
		if ans := answerFrom(cr, cert, at); ans.Status == Revoked {
			return ans
		}
	}
	c.mu.Lock()
	kept, have := c.ocsp[ocspKey(cert, issuer)]
	c.mu.Unlock()
	if have && now.Before(kept.until) && kept.resp.Status == ocsp.Revoked {
		if ans := ocspRevoked(kept.resp, at, "the OCSP responder "+kept.url); ans.Status == Revoked {
			return ans
		}
	}
	return Answer{Status: Unknown}
}

// enclosedAnswer is fromEnclosed from the enclosed information alone.
func (c *Checker) enclosedAnswer(cert, issuer *x509.Certificate, at time.Time, enc Enclosed) (Answer, bool) {
	for _, der := range enc.OCSP {
		r, err := c.enclosedOCSP(der, cert, issuer)
		if err != nil || !ocspCurrentAt(r, at) {
			continue
		}
		switch r.Status {
		case ocsp.Good:
			return Answer{Status: Good}, true
		case ocsp.Revoked:
			return ocspRevoked(r, at, "the OCSP answer enclosed in the message"), true
		}
	}
	dps := httpPoints(cert.CRLDistributionPoints)
	for _, der := range enc.CRLs {
		cr, err := c.enclosedCRL(der, issuer)
		if err != nil || !cr.freshAt(at) || !cr.covers(cert, dps) {
			continue
		}
		if now := c.cfg.Now(); cr.freshAt(now) {
			if err := c.keep(cr, SourceEnclosed, now); err != nil && !errors.Is(err, ErrNotNewer) {
				c.cfg.Log.Warn("enclosed CRL not kept", "issuer", cr.issuerName, "err", err)
			}
		}
		ans := answerFrom(cr, cert, at)
		if ans.Status == Revoked {
			ans.Reason += " (enclosed in the message)"
		}
		return ans, true
	}
	return Answer{}, false
}

// ocspCurrentAt reports whether r speaks for time t: issued by then
// (allowing for a responder's clock ahead), and t before its nextUpdate
// (or within ocspNoNextUpdate of its thisUpdate when it names none).
func ocspCurrentAt(r *ocsp.Response, t time.Time) bool {
	until := r.NextUpdate
	if until.IsZero() {
		until = r.ThisUpdate.Add(ocspNoNextUpdate)
	}
	return !r.ThisUpdate.After(t.Add(ocspSkew)) && t.Before(until)
}

// ocspRevoked is the answer of an OCSP response that says revoked, judged
// at time at (a revocation after at leaves the message good); who names
// the response's origin.
func ocspRevoked(r *ocsp.Response, at time.Time, who string) Answer {
	if r.RevokedAt.After(at) {
		return Answer{Status: Good}
	}
	return Answer{Status: Revoked, At: r.RevokedAt, Code: r.RevocationReason,
		Reason: fmt.Sprintf("revoked %s (%s) says %s", r.RevokedAt.UTC().Format(time.RFC3339), ReasonName(r.RevocationReason), who)}
}

// maxEnclosedCache bounds the enclosed answers kept checked.
const maxEnclosedCache = 4096

// enclosedOCSP is parseOCSP, remembered: a sender encloses
// the same response in every message until it fetches the next, and its
// signature is checked once.
func (c *Checker) enclosedOCSP(der []byte, cert, issuer *x509.Certificate) (*ocsp.Response, error) {
	key := enclosedKey(der, ocspKey(cert, issuer))
	if r, ok := c.enclosedGet(key).(*ocsp.Response); ok {
		return r, nil
	}
	r, err := parseOCSP(der, cert, issuer)
	if err == nil {
		c.enclosedPut(key, r)
	}
	return r, err
}

// enclosedCRL is parseCRL, remembered like enclosedOCSP.
func (c *Checker) enclosedCRL(der []byte, issuer *x509.Certificate) (*crl, error) {
	key := enclosedKey(der, issuerKey(issuer))
	if cr, ok := c.enclosedGet(key).(*crl); ok {
		return cr, nil
	}
	cr, err := parseCRL(der, issuer)
	if err == nil {
		c.enclosedPut(key, cr)
	}
	return cr, err
}

func enclosedKey(der []byte, about string) string {
	h := sha256.Sum256(der)
	return string(h[:]) + about
}

func (c *Checker) enclosedGet(key string) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enclosed[key]
}

func (c *Checker) enclosedPut(key string, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.enclosed) >= maxEnclosedCache {
		clear(c.enclosed)
	}
	c.enclosed[key] = v
}
