package harvest

import (
	"crypto/x509"
	"time"
)

// CertReader is what the engine reads from a certificate store: the usable
// end-entity certificates (for a signer whose message carries none), the
// intermediates kept from verified chains, and administrators' pins. A
// *Store is one; a CertSnapshot is another, for a command that reads the
// store of a running daemon through its control socket.
type CertReader interface {
	Certificates() ([]*x509.Certificate, error)
	Intermediates() ([]*x509.Certificate, error)
	Pinned(email string, cert *x509.Certificate) (time.Time, bool, error)
}

// CertSnapshot is a CertReader over a copy of a store's contents.
type CertSnapshot struct {
	certs, intermediates []*x509.Certificate
	pins                 map[string]time.Time // address + "\x00" + fingerprint
}

// NewCertSnapshot builds a snapshot from a store's entries (as Store.List
// gives them) and its intermediates.
func NewCertSnapshot(entries []Entry, intermediates []*x509.Certificate) *CertSnapshot {
	s := &CertSnapshot{intermediates: intermediates, pins: map[string]time.Time{}}
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Quarantined || e.Cert == nil {
			continue
		}
		if !seen[e.Fingerprint] {
			seen[e.Fingerprint] = true
			s.certs = append(s.certs, e.Cert)
		}
		if !e.TrustedAt.IsZero() {
			s.pins[e.Email+"\x00"+e.Fingerprint] = e.TrustedAt
		}
	}
	return s
}

func (s *CertSnapshot) Certificates() ([]*x509.Certificate, error)  { return s.certs, nil }
func (s *CertSnapshot) Intermediates() ([]*x509.Certificate, error) { return s.intermediates, nil }

// Pinned reports whether cert was trusted for email, as Store.Pinned.
func (s *CertSnapshot) Pinned(email string, cert *x509.Certificate) (time.Time, bool, error) {
	addr, err := normalizeEmail(email)
	if err != nil || cert == nil {
		return time.Time{}, false, nil
	}
	at, ok := s.pins[addr+"\x00"+Fingerprint(cert)]
	return at, ok, nil
}
