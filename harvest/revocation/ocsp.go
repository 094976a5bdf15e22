package revocation

// OCSP (RFC 6960), opt-in ([trust] ocsp): the responder a certificate
// names in its authority information access is asked first; when it gives
// no answer (down, unknown, an answer that does not check out), the CRL
// is asked as before. Requests carry a nonce; an answer that echoes
// another nonce is refused, one without a nonce is taken (many responders
// do not echo it, and answer from precomputed responses). Answers are kept
// in memory until their nextUpdate.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Bounds of OCSP.
const (
	maxOCSPResponse = 64 << 10
	// ocspNoNextUpdate is how long an answer without nextUpdate is kept.
	ocspNoNextUpdate = time.Hour
	// ocspSkew is how far a responder's clock may be ahead.
	ocspSkew     = 5 * time.Minute
	maxOCSPCache = 10000
)

var oidOCSPNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

type ocspAnswer struct {
	resp  *ocsp.Response
	url   string
	until time.Time
}

// checkOCSP asks cert's OCSP responders (http only) about cert, issued by
// issuer, and reports the answer for time at; ok false when none could be
// had, with why.
func (c *Checker) checkOCSP(ctx context.Context, cert, issuer *x509.Certificate, at time.Time) (ans Answer, ok bool, why string) {
	key := ocspKey(cert, issuer)
	now := c.cfg.Now()
	c.mu.Lock()
	kept, have := c.ocsp[key]
	c.mu.Unlock()
	if !have || !now.Before(kept.until) {
		var errs []string
		for _, u := range httpPoints(cert.OCSPServer) {
			a, err := c.askOCSP(ctx, u, cert, issuer)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			kept, have = a, true
			break
		}
		if !have {
			if len(errs) == 0 {
				return Answer{}, false, "OCSP: no http responder named"
			}
			return Answer{}, false, "OCSP: " + strings.Join(errs, "; ")
		}
	}
	switch kept.resp.Status {
	case ocsp.Good:
		return Answer{Status: Good}, true, ""
	case ocsp.Revoked:
		return ocspRevoked(kept.resp, at, "the OCSP responder "+kept.url), true, ""
	}
	return Answer{}, false, "OCSP: " + kept.url + " does not know the certificate"
}

func ocspKey(cert, issuer *x509.Certificate) string {
	s := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(s[:]) + "\x00" + issuerKey(issuer)
}

// askOCSP sends one request with a nonce to the responder at u and checks
// the answer: signed by the issuer or a responder it delegated to, about
// cert, current, and with our nonce if it has one.
func (c *Checker) askOCSP(ctx context.Context, u string, cert, issuer *x509.Certificate) (ocspAnswer, error) {
	// A responder that failed for one certificate of a CA is not asked
	// about the CA's others for a while either.
	down := "ocsp-down\x00" + fetchKey(u, issuer)
	c.mu.Lock()
	f, isDown := c.respDown[down]
	c.mu.Unlock()
	if isDown && c.cfg.Now().Before(f.until) {
		return ocspAnswer{}, f.err
	}
	// One request at a time per certificate and responder.
	key := u + "\x00ocsp\x00" + ocspKey(cert, issuer)
	a, err := c.flights.do(ctx, key, func(ctx context.Context) (any, error) {
		a, err := c.askOCSPOnce(ctx, u, cert, issuer)
		if err == nil {
			// Kept even when the caller stopped waiting.
			c.mu.Lock()
			if len(c.ocsp) >= maxOCSPCache {
				clear(c.ocsp)
			}
			c.ocsp[ocspKey(cert, issuer)] = a
			c.mu.Unlock()
		}
		return a, err
	}, func(err error) {
		c.mu.Lock()
		if len(c.respDown) >= maxFailures {
			clear(c.respDown)
		}
		c.respDown[down] = failure{until: c.cfg.Now().Add(retryFailed), err: err}
		c.mu.Unlock()
		c.cfg.Log.Warn("OCSP responder gave no answer; not asked again for 5m", "url", u, "err", err)
	})
	if err != nil {
		return ocspAnswer{}, err
	}
	return a.(ocspAnswer), nil
}

func (c *Checker) askOCSPOnce(ctx context.Context, u string, cert, issuer *x509.Certificate) (ocspAnswer, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return ocspAnswer{}, err
	}
	req, err := ocspRequest(cert, issuer, nonce)
	if err != nil {
		return ocspAnswer{}, fmt.Errorf("%s: %w", u, err)
	}
	body, err := fetchBounded(ctx, c.client, c.cfg.Timeout, http.MethodPost, u, req, maxOCSPResponse)
	if err != nil {
		return ocspAnswer{}, err
	}
	r, err := parseOCSP(body, cert, issuer)
	if err != nil {
		return ocspAnswer{}, fmt.Errorf("%s: %w", u, err)
	}
	if got, has := responseNonce(body); has && !bytes.Equal(got, nonce) {
		return ocspAnswer{}, fmt.Errorf("%s: the answer carries another nonce than the request's (replayed?)", u)
	}
	now := c.cfg.Now()
	if r.ThisUpdate.After(now.Add(ocspSkew)) || !r.NextUpdate.IsZero() && !now.Before(r.NextUpdate) {
		return ocspAnswer{}, fmt.Errorf("%s: the answer is valid %s to %s, not now", u, r.ThisUpdate.UTC().Format(time.RFC3339), r.NextUpdate.UTC().Format(time.RFC3339))
	}
	until := r.NextUpdate
	if until.IsZero() {
		until = now.Add(ocspNoNextUpdate)
	}
	return ocspAnswer{resp: r, url: u, until: until}, nil
}

// ocspRequest is an OCSP request for cert with a nonce extension (RFC
// 6960 4.4.1): x/crypto/ocsp builds the request, the nonce is added to
// its requestExtensions.
func ocspRequest(cert, issuer *x509.Certificate, nonce []byte) ([]byte, error) {
	der, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, err
	}
	var req struct {
		TBS struct {
			Version     int `asn1:"explicit,tag:0,default:0,optional"`
			RequestList []asn1.RawValue
			Extensions  []pkix.Extension `asn1:"explicit,tag:2,optional"`
		}
	}
	if _, err := asn1.Unmarshal(der, &req); err != nil {
		return nil, err
	}
	value, err := asn1.Marshal(nonce)
	if err != nil {
		return nil, err
	}
	req.TBS.Extensions = append(req.TBS.Extensions, pkix.Extension{Id: oidOCSPNonce, Value: value})
	return asn1.Marshal(req)
}

// responseNonce reads the nonce of an OCSP answer's responseExtensions.
func responseNonce(body []byte) ([]byte, bool) {
	var resp struct {
		Status asn1.Enumerated
		Bytes  struct {
			Type     asn1.ObjectIdentifier
			Response []byte
		} `asn1:"explicit,tag:0,optional"`
	}
	if _, err := asn1.Unmarshal(body, &resp); err != nil {
		return nil, false
	}
	var basic struct {
		TBS struct {
			Version     int `asn1:"optional,default:0,explicit,tag:0"`
			ResponderID asn1.RawValue
			ProducedAt  time.Time `asn1:"generalized"`
			Responses   []asn1.RawValue
			Extensions  []pkix.Extension `asn1:"explicit,tag:1,optional"`
		}
		SignatureAlgorithm pkix.AlgorithmIdentifier
		Signature          asn1.BitString
		Certificates       asn1.RawValue `asn1:"explicit,tag:0,optional"`
	}
	if _, err := asn1.Unmarshal(resp.Bytes.Response, &basic); err != nil {
		return nil, false
	}
	for _, e := range basic.TBS.Extensions {
		if e.Id.Equal(oidOCSPNonce) {
			var n []byte
			if _, err := asn1.Unmarshal(e.Value, &n); err != nil {
				return e.Value, true // some responders put the bytes bare
			}
			return n, true
		}
	}
	return nil, false
}

// parseOCSP is ocsp.ParseResponseForCert with the check it leaves out: a
// response not signed by the issuer itself must be signed by a responder
// the issuer delegated to (RFC 6960 4.2.2.2: its certificate issued by
// the issuer, with the id-kp-OCSPSigning extended key usage), valid when
// the response was produced, and never by the certificate asked about
// (else a key holder could vouch for its own revoked certificate).
func parseOCSP(der []byte, cert, issuer *x509.Certificate) (*ocsp.Response, error) {
	r, err := ocsp.ParseResponseForCert(der, cert, issuer)
	if err != nil {
		return nil, err
	}
	if rc := r.Certificate; rc != nil && !rc.Equal(issuer) {
		switch {
		case rc.Equal(cert):
			return nil, errors.New("ocsp: the response is signed by the certificate it is about")
		case !slices.Contains(rc.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning):
			return nil, errors.New("ocsp: the response's signer is not an OCSP responder of the issuer (no id-kp-OCSPSigning)")
		case r.ProducedAt.Before(rc.NotBefore) || r.ProducedAt.After(rc.NotAfter):
			return nil, errors.New("ocsp: the responder's certificate was not valid when the response was produced")
		}
	}
	return r, nil
}
