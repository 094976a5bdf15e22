package harvest

// This file is the certificate store: the partners' certificates harvested
// from signed mail, kept in buckets of the state file
// (state_dir/smimed.db, package harvest/state), which records their
// version (StoreSchema) with those of the other owners' buckets.
//
// Layout (version 1 of each bucket):
//
//	certs          fingerprint → DER of an end-entity certificate
//	addresses      email → JSON addressRecord (per fingerprint: first/last
//	               seen, message-id, SMIMECapabilities, quarantine state,
//	               when a valid signature last chose it for encryption,
//	               who trusted it when)
//	intermediates  fingerprint → DER of a CA certificate seen in a chain
//
// Fingerprints are the lower-case hex SHA-256 of the DER, as
// `openssl x509 -fingerprint -sha256` prints them without colons. A
// certificate is usable for an address once a signature by it validated
// (Harvest), an administrator trusted it (Trust) or imported it (Import,
// recipient.go); until then it is
// quarantined and listed, but never offered for encryption. A trusted
// certificate is also a pinned leaf for that address (Pinned): the engine
// accepts its signatures without a CA chain. Untrust withdraws both.
//
// The certificate to encrypt to (preferred) is the one a valid signature
// bound to the address chose last ("chosen": the signer's certificate, or
// the one its SMIMEEncryptionKeyPreference names; an administrator's trust
// or import is a choice too), as long as it is usable, valid now and can
// encrypt (encryptProblem). RecipientCert is what the gateway asks.
// Expiry dates never decide, and a quarantine sighting never chooses.
// Records written before "chosen" existed fall back: the certificate the
// sender last named (preferred_encryption, at preferred_seen) counts as
// chosen then; usable certificates never chosen rank below every chosen
// one, the most recently first seen first.
//
// The JSON records belong to version 1: a change to their meaning bumps
// the version of the bucket (StoreSchema, with a state.Migration from the
// old one), and an older smimed refuses a newer file instead of misreading
// it.

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/harvest/state"
)

// StoreSchema is the version of the certificate store's buckets (certs,
// addresses, intermediates) this code reads and writes.
const StoreSchema = 1

func init() {
	for _, b := range [][]byte{bucketCerts, bucketAddresses, bucketIntermediates} {
		state.Register(state.Bucket{Name: string(b), Version: StoreSchema})
	}
}

// Store errors; returned errors wrap them.
var (
	ErrNotFound       = errors.New("harvest: certificate not found")
	ErrAmbiguous      = errors.New("harvest: fingerprint prefix matches several certificates")
	ErrBadFingerprint = errors.New("harvest: malformed fingerprint")
	ErrBadAddress     = errors.New("harvest: not an email address")
)

// MinFingerprintPrefix is the shortest fingerprint prefix (hex digits) that
// lookups accept in place of a full fingerprint; a prefix must match exactly
// one certificate.
const MinFingerprintPrefix = 8

var (
	bucketCerts         = []byte("certs")
	bucketAddresses     = []byte("addresses")
	bucketIntermediates = []byte("intermediates")
)

// Store is the certificate store. It is safe for concurrent use.
type Store struct {
	db    *bbolt.DB
	st    *state.DB // for the writes of the hot path (group commit)
	path  string
	close func() error // OpenStore's state file; nil for NewStore
	// certs keeps the certificates read from the file parsed: every
	// message with a store asks for the intermediates (cache.go).
	certs *certCache
}

// NewStore is the certificate store in the state file db (whose Open
// created and migrated its buckets). The owner of db closes it. The
// certificates its methods return are shared: nobody may change them.
func NewStore(db *state.DB) *Store {
	return &Store{db: db.Bolt(), st: db, path: db.Path(), certs: newCertCache()}
}

// OpenStore opens the state file at path, read-only or read-write
// (state.Open: its errors, its lock), for a command that needs only the
// certificate store; Close closes the file.
func OpenStore(path string, readOnly bool) (*Store, error) {
	db, err := state.Open(path, readOnly)
	if err != nil {
		return nil, err
	}
	s := NewStore(db)
	s.close = db.Close
	return s, nil
}

// Close closes the state file if OpenStore opened it; a Store of NewStore
// leaves that to the file's owner.
func (s *Store) Close() error {
	if s.close == nil {
		return nil
	}
	return s.close()
}

// Path is the state file's name.
func (s *Store) Path() string { return s.path }

// Sighting is the message a certificate was seen in.
type Sighting struct {
	MessageID string
	Seen      time.Time // zero means now
}

// Entry is one certificate as known for one address.
type Entry struct {
	Email       string
	Fingerprint string // SHA-256, lower-case hex
	Cert        *x509.Certificate
	FirstSeen   time.Time
	LastSeen    time.Time
	MessageID   string // of the message it was last seen in

	// Quarantined entries came from a correct signature whose chain did
	// not validate; they are not usable until Trust. Callers that want
	// only usable certificates skip these (see Usable).
	Quarantined      bool
	QuarantineReason string

	// EncryptionPreferred marks the one usable certificate of the address
	// to encrypt to.
	EncryptionPreferred bool
	Capabilities        []string // SMIMECapabilities names, from the last sighting

	// TrustedAt is when an administrator trusted the certificate for
	// this address (zero: never, or withdrawn), TrustedBy who. A trusted
	// certificate is a pinned leaf: its signatures need no CA chain.
	TrustedAt time.Time
	TrustedBy string

	// RevokedAt is when the certificate's revocation takes effect (zero:
	// not known to be revoked). A certificate revoked by now is never
	// preferred for encryption.
	RevokedAt     time.Time
	RevokedReason string

	// ImportedAt is when an administrator imported the certificate for
	// this address (certs import: a partner who never signed to us; zero:
	// harvested), ImportedBy who. An import is a choice to encrypt to it.
	ImportedAt time.Time
	ImportedBy string
}

// Usable returns the entries that are neither quarantined nor revoked, in
// order.
func Usable(entries []Entry) []Entry {
	var out []Entry
	now := time.Now()
	for _, e := range entries {
		if !e.Quarantined && !e.Revoked(now) {
			out = append(out, e)
		}
	}
	return out
}

// Revoked reports whether the certificate is known revoked at t.
func (e Entry) Revoked(t time.Time) bool {
	return !e.RevokedAt.IsZero() && !t.Before(e.RevokedAt)
}

// addressRecord is the JSON value of the addresses bucket (schema 1).
type addressRecord struct {
	Certs map[string]*certRecord `json:"certs"`
	// PreferredEncryption is the fingerprint the sender last named in an
	// SMIMEEncryptionKeyPreference attribute, PreferredSeen when. Only
	// records written before certRecord.Chosen existed have it; it is
	// read as a choice made then, and no longer written.
	PreferredEncryption string    `json:"preferred_encryption,omitempty"`
	PreferredSeen       time.Time `json:"preferred_seen,omitzero"`
}

type certRecord struct {
	FirstSeen        time.Time `json:"first_seen"`
	LastSeen         time.Time `json:"last_seen"`
	MessageID        string    `json:"message_id,omitempty"`
	Capabilities     []string  `json:"capabilities,omitempty"`
	Quarantined      bool      `json:"quarantined,omitempty"`
	QuarantineReason string    `json:"quarantine_reason,omitempty"`
	// Chosen is when a valid signature bound to the address (or an
	// administrator's trust) last chose this certificate to encrypt to.
	Chosen time.Time `json:"chosen,omitzero"`
	// TrustedAt and TrustedBy: the administrator's trust (pinned leaf).
	TrustedAt time.Time `json:"trusted_at,omitzero"`
	TrustedBy string    `json:"trusted_by,omitempty"`
	// RevokedAt is when the certificate's revocation takes effect, as its
	// CA's CRL says (zero: not known to be revoked); RevokedReason says
	// what the CRL says.
	RevokedAt     time.Time `json:"revoked_at,omitzero"`
	RevokedReason string    `json:"revoked_reason,omitempty"`
	// ImportedAt and ImportedBy: an administrator's import (certs
	// import). Records without them were harvested; no migration needed.
	ImportedAt time.Time `json:"imported_at,omitzero"`
	ImportedBy string    `json:"imported_by,omitempty"`
}

// revokedBy reports whether the certificate is revoked at t.
func (cr *certRecord) revokedBy(t time.Time) bool {
	return !cr.RevokedAt.IsZero() && !t.Before(cr.RevokedAt)
}

// choose records that the certificate was chosen at t, unless a later
// choice is already recorded (mail processed out of order).
func (cr *certRecord) choose(t time.Time) {
	if t.After(cr.Chosen) {
		cr.Chosen = t
	}
}

// normalizeFingerprint accepts hex in either case, with colons or spaces,
// optionally after openssl's "sha256 Fingerprint=".
func normalizeFingerprint(fp string) (string, error) {
	s := fp
	if _, after, ok := strings.Cut(s, "="); ok {
		s = after
	}
	s = strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(s)))
	if len(s) < MinFingerprintPrefix || len(s) > sha256.Size*2 {
		return "", fmt.Errorf("%w: %q (want %d hex digits, or a prefix of at least %d)", ErrBadFingerprint, fp, sha256.Size*2, MinFingerprintPrefix)
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("%w: %q", ErrBadFingerprint, fp)
		}
	}
	return s, nil
}

// resolve turns a full fingerprint or a unique prefix into the key of
// bucket b; "" when nothing matches.
func resolve(b *bbolt.Bucket, fp string) (string, error) {
	if b == nil {
		return "", nil
	}
	if len(fp) == sha256.Size*2 {
		if b.Get([]byte(fp)) != nil {
			return fp, nil
		}
		return "", nil
	}
	c := b.Cursor()
	k, _ := c.Seek([]byte(fp))
	if k == nil || !bytes.HasPrefix(k, []byte(fp)) {
		return "", nil
	}
	found := string(k)
	if k2, _ := c.Next(); k2 != nil && bytes.HasPrefix(k2, []byte(fp)) {
		return "", fmt.Errorf("%w: %s", ErrAmbiguous, fp)
	}
	return found, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// isIntermediate reports whether c belongs in the intermediates bucket: a CA
// certificate that is not a self-signed root.
func isIntermediate(c *x509.Certificate) bool {
	return c != nil && c.BasicConstraintsValid && c.IsCA && !isSelfSigned(c)
}

func getRecord(tx *bbolt.Tx, email string) (*addressRecord, error) {
	rec := &addressRecord{}
	if b := tx.Bucket(bucketAddresses); b != nil {
		if v := b.Get([]byte(email)); v != nil {
			// json.Unmarshal copies, so v does not escape the transaction.
			if err := json.Unmarshal(v, rec); err != nil {
				return nil, fmt.Errorf("harvest: certificate store record for %s: %w", email, err)
			}
		}
	}
	if rec.Certs == nil {
		rec.Certs = map[string]*certRecord{}
	}
	return rec, nil
}

func putRecord(tx *bbolt.Tx, email string, rec *addressRecord) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketAddresses).Put([]byte(email), v)
}

func putCert(b *bbolt.Bucket, c *x509.Certificate) (string, error) {
	fp := Fingerprint(c)
	if b.Get([]byte(fp)) != nil {
		return fp, nil
	}
	return fp, b.Put([]byte(fp), bytes.Clone(c.Raw))
}

func seenTime(seen Sighting) time.Time {
	if seen.Seen.IsZero() {
		return time.Now().UTC()
	}
	return seen.Seen.UTC()
}

// sight adds a sighting to the record of fp, creating it if needed, and
// reports whether it was created. The message-id and capabilities follow
// the latest sighting, so mail processed out of order does not roll them
// back.
func (rec *addressRecord) sight(fp string, seen Sighting, caps []string) (*certRecord, bool) {
	t := seenTime(seen)
	cr, ok := rec.Certs[fp]
	if !ok {
		cr = &certRecord{FirstSeen: t, LastSeen: t, MessageID: seen.MessageID, Capabilities: caps}
		rec.Certs[fp] = cr
		return cr, true
	}
	if t.Before(cr.FirstSeen) {
		cr.FirstSeen = t
	}
	if !t.Before(cr.LastSeen) {
		cr.LastSeen = t
		cr.MessageID = seen.MessageID
		if caps != nil {
			cr.Capabilities = caps
		}
	}
	return cr, false
}

// Harvest records leaf, from a valid signature, as a usable certificate
// for email (lower-cased), plus the intermediates of chain (CA
// certificates that are not self-signed roots) in the intermediates
// bucket. chosen, if non-nil, is the certificate this signature chose for
// encrypting to email: the one its SMIMEEncryptionKeyPreference names (RFC
// 8551 section 2.5.3), else leaf itself. It is recorded as usable too and
// becomes the address's preferred encryption certificate, unless a later
// signature already chose another. chosen is nil when the signature does
// not speak for email (email is not its From address): leaf is then
// usable, but not chosen. caps are the sender's SMIMECapabilities names.
// First/last seen are updated. A quarantined certificate seen again in a
// validated signature becomes usable.
func (s *Store) Harvest(email string, leaf *x509.Certificate, chain []*x509.Certificate, chosen *x509.Certificate, caps []string, seen Sighting) error {
	addr, err := normalizeEmail(email)
	if err != nil {
		return err
	}
	if leaf == nil {
		return errors.New("harvest: Harvest without a certificate")
	}
	return s.st.Commit(func(tx *bbolt.Tx) error {
		certs := tx.Bucket(bucketCerts)
		rec, err := getRecord(tx, addr)
		if err != nil {
			return err
		}
		usable := []*x509.Certificate{leaf}
		if chosen != nil {
			usable = append(usable, chosen)
		}
		for i, c := range usable {
			fp, err := putCert(certs, c)
			if err != nil {
				return err
			}
			cr, _ := rec.sight(fp, seen, caps)
			cr.Quarantined, cr.QuarantineReason = false, ""
			if i == 1 {
				cr.choose(seenTime(seen))
			}
		}
		if err := putIntermediates(tx, chain); err != nil {
			return err
		}
		return putRecord(tx, addr, rec)
	})
}

// Quarantine records cert, from a cryptographically correct signature whose
// chain did not validate, for email. It is listed but not usable until
// Trust. A certificate already usable for the address stays usable (only
// the sighting is recorded), so a trust decision is not undone by the next
// message. chain is not stored: intermediates enter the store only from
// validated chains.
func (s *Store) Quarantine(email string, cert *x509.Certificate, chain []*x509.Certificate, reason string, seen Sighting) error {
	addr, err := normalizeEmail(email)
	if err != nil {
		return err
	}
	if cert == nil {
		return errors.New("harvest: Quarantine without a certificate")
	}
	_ = chain
	return s.st.Commit(func(tx *bbolt.Tx) error {
		fp, err := putCert(tx.Bucket(bucketCerts), cert)
		if err != nil {
			return err
		}
		rec, err := getRecord(tx, addr)
		if err != nil {
			return err
		}
		cr, created := rec.sight(fp, seen, nil)
		if created || cr.Quarantined {
			cr.Quarantined, cr.QuarantineReason = true, reason
		}
		rec.capQuarantine(MaxQuarantined)
		return putRecord(tx, addr, rec)
	})
}

// MaxQuarantined bounds the quarantined certificates kept per address, so
// that strangers sending self-made certificates cannot grow the store
// without end: beyond it the least recently seen ones are dropped.
const MaxQuarantined = 10

func (rec *addressRecord) capQuarantine(limit int) {
	for {
		n, oldest := 0, ""
		for fp, cr := range rec.Certs {
			if !cr.Quarantined {
				continue
			}
			n++
			if o := rec.Certs[oldest]; oldest == "" || cr.LastSeen.Before(o.LastSeen) || (cr.LastSeen.Equal(o.LastSeen) && fp < oldest) {
				oldest = fp
			}
		}
		if n <= limit {
			return
		}
		delete(rec.Certs, oldest)
	}
}

// AddIntermediates stores the CA certificates among certs that are not
// self-signed roots (e.g. from a certs-only message after its chain
// validated); other certificates are ignored.
func (s *Store) AddIntermediates(certs []*x509.Certificate) error {
	return s.st.Commit(func(tx *bbolt.Tx) error { return putIntermediates(tx, certs) })
}

func putIntermediates(tx *bbolt.Tx, certs []*x509.Certificate) error {
	b := tx.Bucket(bucketIntermediates)
	for _, c := range certs {
		if !isIntermediate(c) {
			continue
		}
		if _, err := putCert(b, c); err != nil {
			return err
		}
	}
	return nil
}

// parseStored parses DER read from bucket b inside a transaction (through
// the cache, which copies the DER first: x509.Certificate keeps references
// into it).
func parseStored(certs *certCache, b *bbolt.Bucket, fp string) (*x509.Certificate, error) {
	if b == nil {
		return nil, nil
	}
	v := b.Get([]byte(fp))
	if v == nil {
		return nil, nil
	}
	c, err := certs.parse(v)
	if err != nil {
		return nil, fmt.Errorf("harvest: stored certificate %s: %w", fp, err)
	}
	return c, nil
}

// entriesOf is entries restricted to the certificate fp (full).
func entriesOf(cache *certCache, tx *bbolt.Tx, email string, rec *addressRecord, now time.Time, fp string) ([]Entry, error) {
	es, err := entries(cache, tx, email, rec, now)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, e := range es {
		if e.Fingerprint == fp {
			out = append(out, e)
		}
	}
	return out, nil
}

// entries builds the entries of one address, newest not_after first.
func entries(cache *certCache, tx *bbolt.Tx, email string, rec *addressRecord, now time.Time) ([]Entry, error) {
	b := tx.Bucket(bucketCerts)
	certs := make(map[string]*x509.Certificate, len(rec.Certs))
	for fp := range rec.Certs {
		c, err := parseStored(cache, b, fp)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("harvest: certificate store: %s refers to missing certificate %s", email, fp)
		}
		certs[fp] = c
	}
	pref := preferred(rec, certs, now)
	out := make([]Entry, 0, len(rec.Certs))
	for fp, cr := range rec.Certs {
		out = append(out, Entry{
			Email:               email,
			Fingerprint:         fp,
			Cert:                certs[fp],
			FirstSeen:           cr.FirstSeen,
			LastSeen:            cr.LastSeen,
			MessageID:           cr.MessageID,
			Quarantined:         cr.Quarantined,
			QuarantineReason:    cr.QuarantineReason,
			EncryptionPreferred: fp == pref,
			Capabilities:        cr.Capabilities,
			TrustedAt:           cr.TrustedAt,
			TrustedBy:           cr.TrustedBy,
			RevokedAt:           cr.RevokedAt,
			RevokedReason:       cr.RevokedReason,
			ImportedAt:          cr.ImportedAt,
			ImportedBy:          cr.ImportedBy,
		})
	}
	sort.Slice(out, func(i, j int) bool {
		return newer(out[i].Cert, out[i].Fingerprint, out[j].Cert, out[j].Fingerprint)
	})
	return out, nil
}

// List returns every address's entries, usable and quarantined, sorted by
// email, then not_after (latest first).
func (s *Store) List() ([]Entry, error) {
	var out []Entry
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAddresses)
		if b == nil {
			return nil
		}
		now := time.Now()
		// ForEach walks keys in byte order, which for lower-cased
		// addresses is the email order.
		return b.ForEach(func(k, _ []byte) error {
			email := string(k)
			rec, err := getRecord(tx, email)
			if err != nil {
				return err
			}
			es, err := entries(s.certs, tx, email, rec, now)
			out = append(out, es...)
			return err
		})
	})
	return out, err
}

// ByEmail returns the address's entries, usable and quarantined, latest
// not_after first; nil when the address is unknown. Callers that may only
// use trusted certificates filter on Entry.Quarantined (or call Usable);
// the one to encrypt to has EncryptionPreferred set.
func (s *Store) ByEmail(email string) ([]Entry, error) {
	addr, err := normalizeEmail(email)
	if err != nil {
		return nil, err
	}
	var out []Entry
	err = s.db.View(func(tx *bbolt.Tx) error {
		rec, err := getRecord(tx, addr)
		if err != nil || len(rec.Certs) == 0 {
			return err
		}
		out, err = entries(s.certs, tx, addr, rec, time.Now())
		return err
	})
	return out, err
}

// ByFingerprint returns the entries of one certificate, one per address it
// was seen for, sorted by email; nil when unknown. fp is as for Trust.
func (s *Store) ByFingerprint(fp string) ([]Entry, error) {
	want, err := normalizeFingerprint(fp)
	if err != nil {
		return nil, err
	}
	var out []Entry
	err = s.db.View(func(tx *bbolt.Tx) error {
		full, err := resolve(tx.Bucket(bucketCerts), want)
		if err != nil || full == "" {
			return err
		}
		b := tx.Bucket(bucketAddresses)
		if b == nil {
			return nil
		}
		now := time.Now()
		return b.ForEach(func(k, v []byte) error {
			if !bytes.Contains(v, []byte(full)) {
				return nil
			}
			email := string(k)
			rec, err := getRecord(tx, email)
			if err != nil {
				return err
			}
			if _, ok := rec.Certs[full]; !ok {
				return nil
			}
			es, err := entriesOf(s.certs, tx, email, rec, now, full)
			out = append(out, es...)
			return err
		})
	})
	return out, err
}

// Certificate returns the stored end-entity or intermediate certificate
// with this fingerprint (full or unique prefix, as for Trust), whether
// usable or quarantined; nil, nil when absent.
func (s *Store) Certificate(fp string) (*x509.Certificate, error) {
	want, err := normalizeFingerprint(fp)
	if err != nil {
		return nil, err
	}
	var cert *x509.Certificate
	err = s.db.View(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketCerts, bucketIntermediates} {
			b := tx.Bucket(name)
			full, err := resolve(b, want)
			if err != nil {
				return err
			}
			if full != "" {
				cert, err = parseStored(s.certs, b, full)
				return err
			}
		}
		return nil
	})
	return cert, err
}

// Intermediates returns every stored intermediate CA certificate, for
// building chains.
func (s *Store) Intermediates() ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		out, err = allCerts(s.certs, tx.Bucket(bucketIntermediates), nil)
		return err
	})
	return out, err
}

// Certificates returns every usable end-entity certificate (for finding a
// signer's certificate when a message carries none), in fingerprint order.
func (s *Store) Certificates() ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAddresses)
		if b == nil {
			return nil
		}
		usable := map[string]bool{}
		err := b.ForEach(func(k, _ []byte) error {
			rec, err := getRecord(tx, string(k))
			if err != nil {
				return err
			}
			for fp, cr := range rec.Certs {
				if !cr.Quarantined {
					usable[fp] = true
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		out, err = allCerts(s.certs, tx.Bucket(bucketCerts), usable)
		return err
	})
	return out, err
}

// allCerts parses the certificates of bucket b, only those in only when
// non-nil.
func allCerts(certs *certCache, b *bbolt.Bucket, only map[string]bool) ([]*x509.Certificate, error) {
	if b == nil {
		return nil, nil
	}
	var out []*x509.Certificate
	err := b.ForEach(func(k, v []byte) error {
		if only != nil && !only[string(k)] {
			return nil
		}
		c, err := certs.parse(v)
		if err != nil {
			return fmt.Errorf("harvest: stored certificate %s: %w", k, err)
		}
		out = append(out, c)
		return nil
	})
	return out, err
}
