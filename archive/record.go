package archive

import (
	"bufio"
	"bytes"
	"io"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/smimed/smimed/harvest"
)

// Status values of a record; a record may have several (a message can be
// decrypted and signed-valid, or signed by one signer whose certificate
// expired and by another who is not trusted). They are what `archive list
// --status` filters on.
const (
	StatusDecrypted     = "decrypted"     // an encryption layer was removed
	StatusUndecryptable = "undecryptable" // encrypted, but to no key we hold (or broken)
	StatusSignedValid   = "signed-valid"  // signed, and every verdict is valid
	// One per non-valid signature verdict (harvest.Status*): a record
	// carries each that occurs.
	StatusSignedPartial   = "signed-partial"   // a valid signature that covers only part of what a client shows
	StatusSignedUntrusted = "signed-untrusted" // no chain to a trust anchor, or not allowed to sign mail
	StatusSignedExpired   = "signed-expired"   // certificate not valid at the signing time
	StatusSignedMismatch  = "signed-mismatch"  // From is not the certificate's address
	StatusSignedRevoked   = "signed-revoked"   // certificate revoked
	StatusSignedInvalid   = "signed-invalid"   // digest or signature broken, or a rejected weak digest
	StatusSignedError     = "signed-error"     // the signature structure could not be judged
	StatusCertsOnly       = "certs-only"       // a certs-only message: certificates, no signature
	StatusPlain           = "plain"            // no S/MIME layer at all
	StatusError           = "error"            // not (fully) readable, or not fetched
)

// Statuses lists every status value, for flag checking: those of
// incoming mail, then the decisions of outgoing mail (Decisions).
var Statuses = append([]string{StatusDecrypted, StatusUndecryptable, StatusSignedValid,
	StatusSignedPartial, StatusSignedUntrusted, StatusSignedExpired, StatusSignedMismatch,
	StatusSignedRevoked, StatusSignedInvalid, StatusSignedError,
	StatusCertsOnly, StatusPlain, StatusError}, Decisions...)

// layerCertsOnly is the report's name of a certs-only layer (the harvest
// engine's).
const layerCertsOnly = "certs-only"

// verdictStatuses maps each non-valid signature verdict to its record
// status, in the order a record lists them. A verdict not listed here (a
// future one) is signed-error: never taken for valid.
var verdictStatuses = []struct{ verdict, status string }{
	{harvest.StatusPartial, StatusSignedPartial},
	{harvest.StatusUntrusted, StatusSignedUntrusted},
	{harvest.StatusExpired, StatusSignedExpired},
	{harvest.StatusMismatch, StatusSignedMismatch},
	{harvest.StatusRevoked, StatusSignedRevoked},
	{harvest.StatusInvalid, StatusSignedInvalid},
	{harvest.StatusError, StatusSignedError},
}

// Record is one archived message version. Its JSON form is what `smimed
// archive list --json` prints; the fields from layers to error have the
// shape of `smimed inspect --json`.
type Record struct {
	ID uint64 `json:"id"`
	// Kind is what the record is: "" (KindMessage) an archived message
	// (records written before kinds existed have none), KindSeal a seal
	// (seal.go), whose Seal field says what it seals, KindTombstone the
	// record of a purge, KindPurged a message record whose content a
	// purge removed (its chain hash is kept).
	Kind string `json:"kind,omitempty"`
	Seal *Seal  `json:"seal,omitempty"`
	// Version is 1 for the record written when the message arrived, and
	// one more for each later re-processing (archive retry), which writes a
	// new record naming the one it Supersedes; history is never rewritten.
	Version    int    `json:"version"`
	Supersedes uint64 `json:"supersedes,omitempty"`

	// Direction is DirectionIn for mail fetched from a mailbox (records
	// written before outgoing mail existed have none: they read as in),
	// DirectionOut for mail the gateway sent, whose Outgoing part says
	// what it did; outgoing records have no account, folder or UIDs.
	Direction string    `json:"direction,omitempty"`
	Outgoing  *Outgoing `json:"outgoing,omitempty"`

	Account     string `json:"account"`
	Folder      string `json:"folder"`
	UIDValidity uint32 `json:"uidvalidity"`
	UID         uint32 `json:"uid"`

	MessageID string    `json:"message_id"`
	From      string    `json:"from"`
	To        []string  `json:"to"` // To and Cc addresses
	Subject   string    `json:"subject"`
	Date      time.Time `json:"date,omitzero"`     // the Date field, as the sender wrote it
	Received  time.Time `json:"received,omitzero"` // the IMAP INTERNALDATE
	// ArchivedAt is when this record was written.
	ArchivedAt time.Time `json:"archived_at"`

	OriginalSHA256  string `json:"original_sha256"`
	OriginalSize    int64  `json:"original_size"`
	PlaintextSHA256 string `json:"plaintext_sha256"`
	PlaintextSize   int64  `json:"plaintext_size"`
	// PlaintextFile is the plaintext's unique name in the Maildir (the part
	// before any ":2," flags a mail reader may add).
	PlaintextFile string `json:"plaintext_file"`

	Status     []string            `json:"status"`
	Layers     []string            `json:"layers"`
	Decryption harvest.Decryption  `json:"decryption"`
	Signatures []harvest.Signature `json:"signatures"`
	Harvested  []harvest.Harvested `json:"harvested"`
	Recipients []string            `json:"recipients,omitempty"`
	// Unprotected keeps the outer header values that differ from the
	// protected header section the plaintext shows (RFC 9788).
	Unprotected []harvest.HeaderField `json:"unprotected,omitempty"`
	Notes       []string              `json:"notes,omitempty"`
	Error       string                `json:"error"`

	// Class is the retention class (retention.go), RetainUntil the last
	// second the message must be kept. RetentionFromConfig marks a record
	// archived before retention existed: both were computed from the
	// current configuration when it was read, and are not in the chain.
	Class               string    `json:"class,omitempty"`
	RetainUntil         time.Time `json:"retain_until,omitzero"`
	RetentionFromConfig bool      `json:"retention_from_config,omitempty"`

	// PurgedBy is the tombstone of a KindPurged record; Tombstone the
	// purge a KindTombstone record holds (purge.go).
	PurgedBy  uint64     `json:"purged_by,omitempty"`
	Tombstone *Tombstone `json:"tombstone,omitempty"`

	// Prev is the hash of the record before this one in the chain (hex,
	// all zeros for the first); Hash this record's own (see chainHash).
	Prev string `json:"prev"`
	Hash string `json:"hash,omitempty"`
}

// Record kinds. Messages have none (records written before kinds
// existed too).
const (
	KindMessage   = ""
	KindSeal      = "seal"
	KindTombstone = "tombstone"
	KindPurged    = "purged"
)

// Source returns where the record's message was fetched from.
func (r *Record) Source() Source {
	return Source{Account: r.Account, Folder: r.Folder, UIDValidity: r.UIDValidity, UID: r.UID, InternalDate: r.Received}
}

// When is the time a record is sorted and filtered by: the arrival time,
// or when it was archived if the server did not say.
func (r *Record) When() time.Time {
	if !r.Received.IsZero() {
		return r.Received
	}
	return r.ArchivedAt
}

// Report returns the engine's report as stored.
func (r *Record) Report() *harvest.Report {
	return &harvest.Report{
		MessageID: r.MessageID, From: r.From, Subject: r.Subject,
		Layers: r.Layers, Decryption: r.Decryption, Signatures: r.Signatures,
		Harvested: r.Harvested, Recipients: r.Recipients, Unprotected: r.Unprotected, Notes: r.Notes, Error: r.Error,
	}
}

// Has reports whether the record has the given status.
func (r *Record) Has(status string) bool { return slices.Contains(r.Status, status) }

// statuses classifies a report.
func statuses(rep *harvest.Report) []string {
	var out []string
	switch rep.Decryption.Status {
	case harvest.DecryptOK:
		out = append(out, StatusDecrypted)
	case harvest.DecryptFailed:
		out = append(out, StatusUndecryptable)
	}
	out = append(out, signatureStatuses(rep.Signatures)...)
	if len(rep.Signatures) == 0 && slices.Contains(rep.Layers, layerCertsOnly) {
		out = append(out, StatusCertsOnly)
	}
	if len(rep.Layers) == 0 && rep.Error == "" {
		out = append(out, StatusPlain)
	}
	if rep.Error != "" {
		out = append(out, StatusError)
	}
	return out
}

// signatureStatuses is signed-valid when every verdict is valid, else one
// status per distinct non-valid verdict; nothing without signatures.
func signatureStatuses(sigs []harvest.Signature) []string {
	if len(sigs) == 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, s := range sigs {
		if s.Status != harvest.StatusValid {
			seen[s.Status] = true
		}
	}
	if len(seen) == 0 {
		return []string{StatusSignedValid}
	}
	var out []string
	for _, v := range verdictStatuses {
		if seen[v.verdict] {
			out = append(out, v.status)
			delete(seen, v.verdict)
		}
	}
	if len(seen) > 0 && !slices.Contains(out, StatusSignedError) {
		out = append(out, StatusSignedError) // a verdict this code does not know
	}
	return out
}

// maxHeaderRead bounds how much of a message is read for its index fields.
const maxHeaderRead = 256 << 10

// headerFields reads To, Cc and Date from the top-level header of msg.
// Unreadable fields are left empty: the index is a convenience, the
// message itself is kept whole.
func headerFields(msg []byte) (to []string, date time.Time) {
	if len(msg) > maxHeaderRead {
		msg = msg[:maxHeaderRead]
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil && err != io.EOF {
		// A header cut off by maxHeaderRead or without an empty line:
		// go-message returns what it read along with the error.
		if h.Len() == 0 {
			return nil, time.Time{}
		}
	}
	mh := mail.Header{}
	for _, k := range []string{"To", "Cc", "Date"} {
		for _, v := range h.Values(k) {
			// Control characters separate like spaces; invalid UTF-8
			// is U+FFFD before any address is taken out.
			mh[k] = append(mh[k], sanitize(v, false, 0))
		}
	}
	seen := map[string]bool{}
	for _, k := range []string{"To", "Cc"} {
		for _, v := range mh[k] {
			for _, a := range addresses(v) {
				if !seen[a] && len(to) < maxIndexedAddresses {
					seen[a] = true
					to = append(to, a)
				}
			}
		}
	}
	if d, err := mh.Date(); err == nil {
		date = d.UTC()
	}
	return to, date
}

// maxIndexedAddresses bounds the To/Cc addresses kept per record.
const maxIndexedAddresses = 100

// addresses returns the lower-cased addresses of an address-list field
// (each through headerValue); when it does not parse, every word that
// looks like an address.
func addresses(v string) []string {
	var out []string
	if list, err := mail.ParseAddressList(v); err == nil {
		for _, a := range list {
			out = append(out, addressValue(a.Address))
		}
		return out
	}
	for _, w := range strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == ';' || r == '<' || r == '>' || r == ' ' || r == '\t' || r == '"' || r == '\r' || r == '\n'
	}) {
		if i := strings.IndexByte(w, '@'); i > 0 && i < len(w)-1 {
			out = append(out, addressValue(w))
		}
	}
	return out
}
