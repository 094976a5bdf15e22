package harvest

// This file checks a signer certificate's chain to a trust anchor (or an
// administrator's pin), and stores what a verdict lets the engine keep:
// harvested certificates, quarantined ones, the encryption preference.

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/smimed/smimed/harvest/cms"
)

// checkChain builds a chain from cert to a trust anchor, valid at time at,
// allowed for email protection, with a KeyUsage that allows signing.
func (w *walker) checkChain(cert *x509.Certificate, inter *chainPool, at time.Time) ([]*x509.Certificate, string, string) {
	chain, status, reason := w.chainVerdict(cert, inter, at)
	if status != StatusValid {
		return nil, status, reason
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return nil, StatusUntrusted, "certificate key usage allows neither digitalSignature nor nonRepudiation"
	}
	return chain, status, reason
}

// chainVerdict is checkChain without the signing KeyUsage: the chain to a
// trust anchor (or a pin), valid at at, allowed for email protection.
func (w *walker) chainVerdict(cert *x509.Certificate, inter *chainPool, at time.Time) ([]*x509.Certificate, string, string) {
	chain, err := w.verifyCert(cert, inter, at)
	if err != nil {
		var inv x509.CertificateInvalidError
		var ua x509.UnknownAuthorityError
		switch {
		case errors.Is(err, ErrTooExpensive):
			return nil, StatusError, "not judged: " + err.Error()
		case errors.As(err, &inv) && inv.Reason == x509.Expired:
			// Expired, or also untrusted? Check the chain inside the leaf's own validity.
			mid := cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) / 2)
			if _, err2 := w.verifyCert(cert, inter, mid); errors.As(err2, &ua) {
				return nil, StatusUntrusted, reasonNoChain
			}
			return nil, StatusExpired, fmt.Sprintf("certificate not valid at %s (valid %s to %s)",
				at.UTC().Format(time.RFC3339), cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
		case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
			return nil, StatusUntrusted, "certificate may not be used for email protection (extended key usage)"
		case errors.As(err, &ua) && strings.Contains(err.Error(), "insecure algorithm"):
			// Go refuses certificates signed with MD5 or SHA-1.
			return nil, StatusUntrusted, "the chain holds a certificate signed with an insecure algorithm (MD5 or SHA-1), which is not accepted"
		case errors.As(err, &ua):
			return nil, StatusUntrusted, reasonNoChain
		}
		return nil, StatusUntrusted, fmt.Sprintf("certificate chain: %v", err)
	}
	if len(chain) == 1 {
		if trusted, ok := w.pinned(cert); ok {
			return chain, StatusValid, fmt.Sprintf("trusted by admin on %s (no CA chain)", trusted.UTC().Format(time.DateOnly))
		}
	}
	return chain, StatusValid, ""
}

// verifyCert builds cert's chain to a trust anchor, valid at time at and
// allowed for email protection. A certificate an administrator trusted
// for the From address (a pinned leaf) is its own anchor: only the missing
// CA chain is forgiven, never its validity period or extended key usage.
//
// A chain built before for the same certificates at an equivalent time
// is taken from the engine's chain cache (chaincache.go) instead.
func (w *walker) verifyCert(cert *x509.Certificate, inter *chainPool, at time.Time) ([]*x509.Certificate, error) {
	if err := w.spend(costChain); err != nil {
		return nil, err
	}
	if chain, ok := w.e.chains.lookup(cert, inter, at); ok {
		return chain, nil
	}
	opts := x509.VerifyOptions{
		Roots:         w.e.opts.Roots,
		Intermediates: inter.pool,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	}
	chains, err := cert.Verify(opts)
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		if _, ok := w.pinned(cert); ok {
			opts.Roots, opts.Intermediates = x509.NewCertPool(), nil
			opts.Roots.AddCert(cert)
			if chains, err = cert.Verify(opts); err != nil {
				return nil, err
			}
			return chains[0], nil
		}
	}
	if err != nil {
		return nil, err
	}
	w.e.chains.store(cert, inter, at, chains[0])
	return chains[0], nil
}

// pinned reports whether an administrator trusted exactly cert for the
// From address (certs trust), and when.
func (w *walker) pinned(cert *x509.Certificate) (time.Time, bool) {
	r := w.e.reader()
	if r == nil || w.from == "" || w.fromIssue != "" {
		return time.Time{}, false
	}
	at, ok, err := r.Pinned(w.from, cert)
	return at, ok && err == nil
}

// encryptionPreference returns the certificate the signer prefers for
// encryption (RFC 8551 section 2.5.3) when it is in the message, vouched for
// the From address by a valid chain, and may encrypt; else nil.
func (w *walker) encryptionPreference(si *cms.SignerInfo, sd *cms.SignedData, leaf *x509.Certificate) *x509.Certificate {
	if si.EncryptionKeyPreference == nil {
		return nil
	}
	for _, c := range sd.Certificates {
		if !si.EncryptionKeyPreference.Matches(c) {
			continue
		}
		if c.KeyUsage != 0 && c.KeyUsage&(x509.KeyUsageKeyEncipherment|x509.KeyUsageKeyAgreement) == 0 {
			return nil
		}
		if c.Equal(leaf) {
			return c
		}
		chain, err := w.verifyCert(c, w.pool(sd), w.received)
		if err != nil || !contains(BoundEmails(c, chain), w.from) {
			return nil
		}
		return c
	}
	return nil
}

// certsOnly looks at a certs-only message (RFC 8551 section 3.6): nothing
// in it is signed, so anyone can send anybody's certificate in one. Its
// certificates are never made usable; one that names the From address and
// whose chain validates is quarantined for that address only, marked as
// coming from a certs-only message, until an admin trusts it. Nothing else
// is stored (no intermediates either).
func (w *walker) certsOnly(sd *cms.SignedData) {
	w.note("a certs-only message is not signed: its certificates were not harvested")
	if w.inPart > 0 || w.fromIssue != "" {
		return
	}
	for i, c := range sd.Certificates {
		if i == maxCerts {
			break
		}
		if c.IsCA || !contains(CertEmails(c), w.from) {
			continue
		}
		if _, err := w.verifyCert(c, w.pool(sd), w.received); err != nil {
			continue
		}
		w.quarantine(c, w.from, nil, reasonCertsOnly)
	}
}

// reasonCertsOnly is the quarantine reason of a certificate that came in a
// certs-only message.
const reasonCertsOnly = "from a certs-only message (unsigned): anyone can send it"

// harvest stores cert as usable for its addresses (at most maxAddresses)
// and notes it in the report; encPref, the certificate a signature chose
// to encrypt to (nil: none), applies to the From address only.
// Nothing is written unless the engine harvests.
func (w *walker) harvest(cert *x509.Certificate, chain []*x509.Certificate, addrs []string, encPref *x509.Certificate, caps []string) {
	if !w.harvestableKey(cert) {
		return
	}
	if encPref != nil && !w.harvestableKey(encPref) {
		encPref = nil
	}
	var intermediates []*x509.Certificate
	if len(chain) > 2 {
		intermediates = chain[1 : len(chain)-1]
	}
	if len(addrs) > maxAddresses {
		w.note(fmt.Sprintf("a certificate with %d addresses was harvested for the first %d", len(addrs), maxAddresses))
		addrs = addrs[:maxAddresses]
	}
	for _, email := range addrs {
		var pref *x509.Certificate
		if email == w.from {
			pref = encPref
		}
		w.record(cert, email, false, func(st *Store, seen Sighting) error {
			return st.Harvest(email, cert, intermediates, pref, caps, seen)
		})
	}
}

// quarantine keeps an untrusted certificate for one address until an admin
// trusts it.
func (w *walker) quarantine(cert *x509.Certificate, email string, caps []string, reason string) {
	w.record(cert, email, true, func(st *Store, seen Sighting) error {
		return st.Quarantine(email, cert, nil, reason, seen)
	})
}

func (w *walker) record(cert *x509.Certificate, email string, quarantined bool, write func(*Store, Sighting) error) {
	fp := Fingerprint(cert)
	for _, h := range w.rep.Harvested {
		if h.Email == email && h.Fingerprint == fp {
			return
		}
	}
	w.rep.Harvested = append(w.rep.Harvested, Harvested{Email: email, Fingerprint: fp, Quarantined: quarantined})
	w.storeWrite(fp, email, write)
}

// storeWrite runs write on the store (when the engine writes to it), or
// leaves it to the caller (Options.DeferWrites).
func (w *walker) storeWrite(fp, email string, write func(*Store, Sighting) error) {
	if !w.e.opts.Harvest || w.e.opts.Store == nil {
		return
	}
	st, seen := w.e.opts.Store, Sighting{MessageID: w.rep.MessageID, Seen: w.received}
	if w.e.opts.DeferWrites {
		w.writes = append(w.writes, func() error {
			if err := write(st, seen); err != nil {
				return fmt.Errorf("harvest %s for %s: %w", fp, email, err)
			}
			return nil
		})
		return
	}
	if err := write(st, seen); err != nil && w.storeErr == nil {
		w.storeErr = fmt.Errorf("harvest %s for %s: %w", fp, email, err)
	}
}

// CheckImport judges a certificate an administrator imports (certs
// import) as the chain of a harvested signer is judged, at now: a chain
// to the engine's trust anchors, through the certificates that came with
// it and the intermediates of the store, valid at now, allowed for email
// protection, and not revoked (when the engine checks revocation). It
// does not ask for a signing KeyUsage (an encryption-only certificate may
// be imported). It returns the chain, or the verdict's status and reason
// when the certificate is not trusted.
func (e *Engine) CheckImport(cert *x509.Certificate, with []*x509.Certificate, now time.Time) ([]*x509.Certificate, string, string) {
	w := &walker{e: e, received: now}
	defer func() {
		if w.revCancel != nil {
			w.revCancel()
		}
	}()
	var ims []*x509.Certificate
	if r := e.reader(); r != nil {
		ims, _ = r.Intermediates()
	}
	chain, status, reason := w.chainVerdict(cert, newChainPool(w.chainCandidates(with, ims)), now)
	if status != StatusValid {
		return nil, status, reason
	}
	status, reason, _ = w.checkRevocation(pendingSig{cert: cert, chain: chain, status: status}, reason, nil)
	if status != StatusValid {
		return nil, status, reason
	}
	return chain, StatusValid, ""
}
