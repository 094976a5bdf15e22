package harvest

// This file is an administrator's trust in the certificate store: Trust
// pins a certificate (usable, valid without a CA chain, chosen to encrypt
// to), Untrust withdraws it, Pinned is what the engine asks.

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// ErrNotTrusted is returned by Untrust for a certificate no administrator
// trusted.
var ErrNotTrusted = errors.New("harvest: certificate is not trusted by an administrator")

// Trust makes a certificate usable and a pinned leaf for every address it
// is bound to in the store (quarantined or not): its signatures from that
// address are valid without a CA chain (see Pinned), and the trust counts
// as a choice for encrypting to the address. by names the administrator,
// for the record. fingerprint is SHA-256 hex in either case, colons
// allowed, or a unique prefix of at least MinFingerprintPrefix digits. It
// returns the certificate's entry (for the first address, by email).
// ErrNotFound when no address has the certificate.
func (s *Store) Trust(fingerprint, by string) (*Entry, error) {
	now := time.Now().UTC()
	return s.updateCert(fingerprint, func(cr *certRecord) bool {
		cr.Quarantined, cr.QuarantineReason = false, ""
		cr.TrustedAt, cr.TrustedBy = now, by
		cr.choose(now)
		return true
	})
}

// Untrust withdraws an administrator's trust: for every address the
// certificate was trusted for, it is quarantined again (until a signature
// with a valid CA chain shows it), no longer pinned and no longer chosen.
// ErrNotTrusted when no address has it trusted; fingerprint as for Trust.
func (s *Store) Untrust(fingerprint, by string) (*Entry, error) {
	now := time.Now().UTC()
	e, err := s.updateCert(fingerprint, func(cr *certRecord) bool {
		if cr.TrustedAt.IsZero() {
			return false
		}
		cr.Quarantined = true
		cr.QuarantineReason = fmt.Sprintf("trust withdrawn by %s on %s", by, now.Format(time.DateOnly))
		cr.TrustedAt, cr.TrustedBy, cr.Chosen = time.Time{}, "", time.Time{}
		return true
	})
	if errors.Is(err, errUnchanged) {
		return nil, fmt.Errorf("%w: %s", ErrNotTrusted, fingerprint)
	}
	return e, err
}

var errUnchanged = errors.New("harvest: nothing changed")

// MarkRevoked records, for every address that has the certificate, that
// its CA revoked it with effect from at (the earliest time known is
// kept), for the reason given. It reports whether anything changed; a
// certificate not in the store is no error.
func (s *Store) MarkRevoked(fingerprint string, at time.Time, reason string) (bool, error) {
	at = at.UTC()
	_, err := s.updateCert(fingerprint, func(cr *certRecord) bool {
		if !cr.RevokedAt.IsZero() && !at.Before(cr.RevokedAt) {
			return false
		}
		cr.RevokedAt, cr.RevokedReason = at, reason
		return true
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errUnchanged), errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, err
}

// updateCert applies change to the certificate's record of every address
// that has it, and returns the entry of the first address (by email) that
// change altered; errUnchanged when it altered none.
func (s *Store) updateCert(fingerprint string, change func(*certRecord) bool) (*Entry, error) {
	want, err := normalizeFingerprint(fingerprint)
	if err != nil {
		return nil, err
	}
	var entry *Entry
	err = s.db.Update(func(tx *bbolt.Tx) error {
		fp, err := resolve(tx.Bucket(bucketCerts), want)
		if err != nil {
			return err
		}
		if fp == "" {
			return fmt.Errorf("%w: %s", ErrNotFound, fingerprint)
		}
		var emails []string
		err = tx.Bucket(bucketAddresses).ForEach(func(k, v []byte) error {
			if bytes.Contains(v, []byte(fp)) { // cheap filter before decoding
				emails = append(emails, string(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		bound := false
		for _, email := range emails {
			rec, err := getRecord(tx, email)
			if err != nil {
				return err
			}
			cr, ok := rec.Certs[fp]
			if !ok {
				continue
			}
			bound = true
			if !change(cr) {
				continue
			}
			if err := putRecord(tx, email, rec); err != nil {
				return err
			}
			if entry == nil {
				es, err := entriesOf(s.certs, tx, email, rec, time.Now(), fp)
				if err != nil {
					return err
				}
				if len(es) > 0 {
					entry = &es[len(es)-1]
				}
			}
		}
		switch {
		case !bound:
			return fmt.Errorf("%w: %s is not bound to any address", ErrNotFound, fingerprint)
		case entry == nil:
			return errUnchanged
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return entry, nil
}

// Pinned reports whether an administrator trusted cert for email, and
// when: the engine then accepts cert's signatures from email without a CA
// chain. Only that exact certificate (by fingerprint) is pinned.
func (s *Store) Pinned(email string, cert *x509.Certificate) (time.Time, bool, error) {
	addr, err := normalizeEmail(email)
	if err != nil || cert == nil {
		return time.Time{}, false, nil
	}
	var at time.Time
	err = s.db.View(func(tx *bbolt.Tx) error {
		rec, err := getRecord(tx, addr)
		if err != nil {
			return err
		}
		if cr, ok := rec.Certs[Fingerprint(cert)]; ok && !cr.Quarantined {
			at = cr.TrustedAt
		}
		return nil
	})
	return at, err == nil && !at.IsZero(), err
}
