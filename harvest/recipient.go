package harvest

// This file is the certificate store as the outgoing gateway sees it: the
// certificate to encrypt a recipient's mail to (RecipientCert), and the
// certificates an administrator imports for partners who never signed to
// us (Import).

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// RecipientCert returns the certificate to encrypt mail for email to at
// now, or nil (and no error) when the address has none usable. Usable
// means: harvested from a valid signature (or trusted or imported by an
// administrator) and not quarantined, valid at now, not revoked by now,
// with a key and KeyUsage / extended key usage that allow encryption
// (EncryptionProblem). Among those, the one the address's latest valid
// signature chose (its signer certificate, or the one its
// SMIMEEncryptionKeyPreference named), an administrator's trust or
// import counting as a choice made then: the certificate the store marks
// EncryptionPreferred at now.
//
// The returned Entry's Capabilities are the SMIMECapabilities to choose
// algorithms by: those of the certificate's latest sighting, or, for a
// certificate the address never announced any with (an imported one, or
// one named by a preference attribute of an older signature), those of
// the address's latest sighting that had any. Empty means nothing was
// announced: the caller falls back to what every client can read.
//
// The address is compared as the store keeps addresses (lower-cased).
func (s *Store) RecipientCert(email string, now time.Time) (*Entry, error) {
	addr, err := normalizeEmail(email)
	if err != nil {
		return nil, err
	}
	var out *Entry
	err = s.db.View(func(tx *bbolt.Tx) error {
		rec, err := getRecord(tx, addr)
		if err != nil || len(rec.Certs) == 0 {
			return err
		}
		es, err := entries(s.certs, tx, addr, rec, now)
		if err != nil {
			return err
		}
		for i := range es {
			if es[i].EncryptionPreferred {
				out = &es[i]
			}
		}
		if out == nil || len(out.Capabilities) > 0 {
			return nil
		}
		var latest time.Time
		for _, e := range es {
			if !e.Quarantined && len(e.Capabilities) > 0 && e.LastSeen.After(latest) {
				latest, out.Capabilities = e.LastSeen, e.Capabilities
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("harvest: certificate for %s: %w", addr, err)
	}
	return out, nil
}

// ErrNotForAddress refuses an Import for an address the certificate does
// not name.
var ErrNotForAddress = errors.New("harvest: the certificate does not name the address")

// Import records cert, brought by an administrator (by names them), as
// usable for each of emails, chosen to encrypt to from now (until a later
// valid signature of the address chooses another), marked imported; chain
// (the CA certificates that came with it) adds its intermediates. pinned
// also makes it a pinned leaf, as Trust does, for a certificate whose
// chain does not lead to a trust anchor: the caller decides that (the
// store does not know the trust anchors). Every address must be among
// the certificate's own (CertEmails), else ErrNotForAddress. It returns
// the entries, one per address.
func (s *Store) Import(cert *x509.Certificate, chain []*x509.Certificate, emails []string, by string, pinned bool) ([]Entry, error) {
	if cert == nil {
		return nil, errors.New("harvest: Import without a certificate")
	}
	if len(emails) == 0 {
		return nil, fmt.Errorf("%w: no address given", ErrNotForAddress)
	}
	own := CertEmails(cert)
	var addrs []string
	for _, e := range emails {
		addr, err := normalizeEmail(e)
		if err != nil {
			return nil, err
		}
		if !contains(own, addr) {
			return nil, fmt.Errorf("%w: %s (it names %v)", ErrNotForAddress, addr, own)
		}
		if !contains(addrs, addr) {
			addrs = append(addrs, addr)
		}
	}
	now := time.Now().UTC()
	fp := Fingerprint(cert)
	var out []Entry
	err := s.db.Update(func(tx *bbolt.Tx) error {
		out = nil
		if _, err := putCert(tx.Bucket(bucketCerts), cert); err != nil {
			return err
		}
		if err := putIntermediates(tx, chain); err != nil {
			return err
		}
		for _, addr := range addrs {
			rec, err := getRecord(tx, addr)
			if err != nil {
				return err
			}
			cr, _ := rec.sight(fp, Sighting{Seen: now}, nil)
			cr.Quarantined, cr.QuarantineReason = false, ""
			cr.ImportedAt, cr.ImportedBy = now, by
			if pinned {
				cr.TrustedAt, cr.TrustedBy = now, by
			}
			cr.choose(now)
			if err := putRecord(tx, addr, rec); err != nil {
				return err
			}
			es, err := entriesOf(s.certs, tx, addr, rec, now, fp)
			if err != nil {
				return err
			}
			out = append(out, es...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("harvest: import %s: %w", fp, err)
	}
	return out, nil
}
