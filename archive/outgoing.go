package archive

// Outgoing mail (issue 13): what the gateway signs, encrypts, refuses or
// passes is archived like incoming mail, in the same hash chain and file
// layout: the plaintext as submitted in the Maildir, the message as sent
// (the "original") among the originals. Its record has Direction "out" and
// the Outgoing part (envelope, policy decision, certificates and
// algorithms used); it has no IMAP source, so it is never copied to a
// user's folder and never re-processed.
//
// The files are copied from the caller's files, hashed on the way, so a
// large message is never held in memory.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/harvest"
)

// Directions of a record (Record.Direction). Records written before
// outgoing mail existed have none and read as DirectionIn.
const (
	DirectionIn  = "in"
	DirectionOut = "out"
)

// Decisions of the gateway's policy for one outgoing message
// (Outgoing.Decision); each is also a status of its record (archive list
// --status).
const (
	DecisionSigned      = "signed"           // signed with a [[signing]] identity
	DecisionEncrypted   = "encrypted"        // encrypted to every recipient (and escrow)
	DecisionUnsigned    = "sent-unsigned"    // sign = always, but no identity covers the sender
	DecisionUnencrypted = "sent-unencrypted" // encrypt = if-possible, and a recipient had no certificate
	DecisionRefused     = "refused"          // refused by policy: nothing was sent
	DecisionPassed      = "passed"           // not from the organisation: passed unchanged
)

// Decisions lists the outgoing decisions, for flag checking.
var Decisions = []string{DecisionSigned, DecisionEncrypted, DecisionUnsigned, DecisionUnencrypted, DecisionRefused, DecisionPassed}

// ErrOutgoing refuses what only incoming mail has (a re-processing, a
// user's copy).
var ErrOutgoing = errors.New("archive: outgoing mail")

// Outgoing is what the gateway records of one message it handled, beside
// the two files. It is kept in the record as it is given (addresses
// lower-cased, text cleaned of control characters).
type Outgoing struct {
	// ID is the gateway's name for this message (its session and
	// transaction), unique per message: PutOutgoing with an ID already
	// archived writes nothing and returns that record. Empty: a random
	// one is made.
	ID string `json:"id"`
	// MailFrom and RcptTo are the SMTP envelope.
	MailFrom string   `json:"mail_from"`
	RcptTo   []string `json:"rcpt_to"`
	// Accepted is when the gateway received the message (zero: now).
	Accepted time.Time `json:"accepted,omitzero"`
	// Decision lists what the policy did (Decision* constants), Reasons
	// why, in words: "no signing identity for x@org.example", "no
	// certificate for a@partner.example".
	Decision []string `json:"decision"`
	Reasons  []string `json:"reasons,omitempty"`
	// Signer is the fingerprint (SHA-256 hex) of the certificate that
	// signed, SignatureAlgorithm its algorithm ("rsassa-pkcs1-v1_5-sha256",
	// "rsassa-pss-sha256", "ecdsa-sha256"); empty when not signed.
	Signer             string `json:"signer,omitempty"`
	SignatureAlgorithm string `json:"signature_algorithm,omitempty"`
	// ContentCipher is the content encryption ("aes256-gcm",
	// "aes256-cbc"); empty when not encrypted.
	ContentCipher string `json:"content_cipher,omitempty"`
	// Recipients are the certificates encrypted to, one per recipient
	// and escrow certificate.
	Recipients []OutgoingRecipient `json:"recipients,omitempty"`
	// Relay is the next hop's answer ("250 2.0.0 Ok: queued as X"), when
	// the gateway archives after relaying; empty otherwise.
	Relay string `json:"relay,omitempty"`
}

// OutgoingRecipient is one certificate an outgoing message was encrypted
// to.
type OutgoingRecipient struct {
	Address     string `json:"address,omitempty"` // "" for an escrow certificate
	Fingerprint string `json:"fingerprint"`
	// KeyManagement is how the content key reached it: "rsaes-oaep",
	// "rsaes-pkcs1-v1_5", "ecdh-stdDH-sha256kdf-aes256-wrap".
	KeyManagement string `json:"key_management"`
	Escrow        bool   `json:"escrow,omitempty"`
}

// outgoingKeyPrefix starts the idempotency key of an outgoing record. An
// incoming key starts with the account's name, which never starts with
// 0xff (no UTF-8 text does, and idemKey refuses it).
const outgoingKeyPrefix = "\xffout\x00"

func outgoingKey(id string) []byte { return []byte(outgoingKeyPrefix + id) }

// key is the record's idempotency key (archive_keys): its source and the
// original's SHA-256 for incoming mail, the gateway's ID for outgoing.
func (r *Record) key() ([]byte, error) {
	if r.Outgoing != nil {
		if r.Outgoing.ID == "" {
			return nil, fmt.Errorf("%w: record %d: outgoing without an id", ErrCorrupt, r.ID)
		}
		return outgoingKey(r.Outgoing.ID), nil
	}
	return idemKey(r.Source(), r.OriginalSHA256)
}

// IsOutgoing reports whether the record is of a message the gateway sent.
func (r *Record) IsOutgoing() bool { return r.Direction == DirectionOut }

// maxOutgoingID bounds Outgoing.ID (it is part of a bbolt key).
const maxOutgoingID = 256

// PutOutgoing archives one message the gateway handled: plaintextPath
// holds it as submitted, sentPath as it was sent ("" when nothing was
// sent: refused, or passed unchanged, when the two are the same bytes).
// Both are copied into the archive (hashed while copied, never read into
// memory whole), each synced, and the record is committed in the same
// hash chain and group commit as incoming mail; PutOutgoing returns only
// then. The caller's files are left alone. A second call with the same
// o.ID writes nothing and returns the record archived first. o.Decision
// must name at least one of Decisions.
func (a *Archive) PutOutgoing(o Outgoing, plaintextPath, sentPath string) (*Record, error) {
	if a.readOnly {
		return nil, ErrReadOnly
	}
	if o.ID == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		o.ID = hex.EncodeToString(b[:])
	}
	if len(o.ID) > maxOutgoingID || strings.ContainsAny(o.ID, "\x00\r\n") {
		return nil, fmt.Errorf("archive: outgoing id %q: at most %d bytes, no NUL or line break", headerValue(o.ID), maxOutgoingID)
	}
	if len(o.Decision) == 0 {
		return nil, fmt.Errorf("archive: outgoing %s: no decision", o.ID)
	}
	for _, d := range o.Decision {
		if !slices.Contains(Decisions, d) {
			return nil, fmt.Errorf("archive: outgoing %s: unknown decision %q (want %s)", o.ID, headerValue(d), strings.Join(Decisions, ", "))
		}
	}
	if existing, err := a.lookupKey(outgoingKey(o.ID)); err != nil || existing != nil {
		return existing, err
	}
	o = cleanOutgoing(o)
	if o.Accepted.IsZero() {
		o.Accepted = a.now()
	}
	o.Accepted = o.Accepted.UTC().Truncate(time.Millisecond)
	r := &Record{
		Version: 1, Direction: DirectionOut, Outgoing: &o,
		ArchivedAt: a.now().UTC().Truncate(time.Millisecond),
		Received:   o.Accepted,
		Status:     slices.Clone(o.Decision),
		Layers:     []string{}, Signatures: []harvest.Signature{}, Harvested: []harvest.Harvested{},
		Decryption: harvest.Decryption{Status: harvest.DecryptNone},
	}
	dirs, err := a.storeOutgoingFiles(r, plaintextPath, sentPath)
	if err != nil {
		return nil, err
	}
	rec, _, err := a.commit(r, 0, dirs)
	return rec, err
}

// cleanOutgoing lower-cases the envelope addresses and cleans every text
// field as the archive cleans header values.
func cleanOutgoing(o Outgoing) Outgoing {
	o.MailFrom = addressValue(o.MailFrom)
	rcpt := make([]string, 0, len(o.RcptTo))
	for _, t := range o.RcptTo {
		rcpt = append(rcpt, addressValue(t))
	}
	o.RcptTo = rcpt
	clean := func(list []string) []string {
		out := make([]string, 0, len(list))
		for _, s := range list {
			out = append(out, headerValue(s))
		}
		return out
	}
	o.Decision, o.Reasons = clean(o.Decision), clean(o.Reasons)
	o.Signer, o.SignatureAlgorithm, o.ContentCipher = headerValue(o.Signer), headerValue(o.SignatureAlgorithm), headerValue(o.ContentCipher)
	o.Relay = headerValue(o.Relay)
	rs := make([]OutgoingRecipient, 0, len(o.Recipients))
	for _, r := range o.Recipients {
		rs = append(rs, OutgoingRecipient{Address: addressValue(r.Address), Fingerprint: headerValue(r.Fingerprint), KeyManagement: headerValue(r.KeyManagement), Escrow: r.Escrow})
	}
	o.Recipients = rs
	return o
}

// lookupKey returns the current record of an idempotency key, nil when
// there is none.
func (a *Archive) lookupKey(key []byte) (*Record, error) {
	var rec *Record
	err := a.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		if b == nil {
			return nil
		}
		id := b.Get(key)
		if id == nil {
			return nil
		}
		var err error
		rec, err = getRecord(tx, binary.BigEndian.Uint64(id))
		return err
	})
	return rec, err
}

// storeOutgoingFiles copies the plaintext into the Maildir and the sent
// message among the originals (each synced and renamed into place), fills
// in the record's file fields and header fields, and returns the
// directories to sync before the commit, as storeFiles does.
func (a *Archive) storeOutgoingFiles(r *Record, plaintextPath, sentPath string) ([]string, error) {
	md := a.MaildirPath()
	h := sha256.Sum256([]byte(outgoingKeyPrefix + r.Outgoing.ID))
	r.PlaintextFile = fmt.Sprintf("%d.%s.out.smimed", max(r.Received.Unix(), 0), hex.EncodeToString(h[:16]))
	final := filepath.Join(md, "new", r.PlaintextFile)
	psha, psize, err := copySynced(plaintextPath, filepath.Join(md, "tmp", r.PlaintextFile), final)
	if err != nil {
		return nil, fmt.Errorf("archive: plaintext of outgoing %s: %w", r.Outgoing.ID, err)
	}
	r.PlaintextSHA256, r.PlaintextSize = psha, psize
	if err := a.outgoingHeader(r, final); err != nil {
		return nil, err
	}
	same := sentPath == ""
	if same {
		r.OriginalSHA256, r.OriginalSize = psha, psize
	} else {
		// Hash first to learn the original's name; the copy is hashed
		// again and must give the same.
		sha, size, err := fileSum(sentPath)
		if err != nil {
			return nil, fmt.Errorf("archive: sent message of outgoing %s: %w", r.Outgoing.ID, err)
		}
		r.OriginalSHA256, r.OriginalSize = sha, size
	}
	odir, err := a.storeOriginal(r, final, same, func(tmp, opath string) error {
		sha, _, err := copySynced(sentPath, tmp, opath)
		if err == nil && sha != r.OriginalSHA256 {
			os.Remove(opath)
			err = errors.New("the sent message changed while it was archived")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return []string{filepath.Dir(final), odir}, nil
}

// outgoingHeader fills the record's From, To (the To and Cc fields, then
// the envelope recipients not among them), Subject, Message-ID and Date
// from the plaintext's header, read from the archived file.
func (a *Archive) outgoingHeader(r *Record, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	defer f.Close()
	head := make([]byte, maxHeaderRead)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return fmt.Errorf("archive: %w", err)
	}
	head = head[:n]
	r.To, r.Date = headerFields(head)
	th, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(head)))
	h := mail.Header{Header: message.Header{Header: th}}
	if as := addresses(sanitize(h.Get("From"), false, 0)); len(as) > 0 {
		r.From = as[0]
	}
	subject, err := h.Subject()
	if err != nil {
		subject = h.Get("Subject")
	}
	r.Subject = headerValue(subject)
	r.MessageID = headerValue(h.Get("Message-Id"))
	for _, t := range r.Outgoing.RcptTo {
		if t != "" && !slices.Contains(r.To, t) && len(r.To) < maxIndexedAddresses {
			r.To = append(r.To, t)
		}
	}
	return nil
}

// fileSum is the SHA-256 (hex) and size of a file, read in pieces.
func fileSum(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// copySynced copies src to a new file named after tmp (a unique suffix
// is added), hashing it on the way, syncs it and renames it to final, as
// writeSynced does for bytes in memory. It returns the SHA-256 (hex) and
// size of what was copied.
func copySynced(src, tmp, final string) (string, int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	h := sha256.New()
	n, err := writeFrom(tmp, final, in, h)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// normalize fills in what records written before a field existed lack:
// the direction of incoming mail.
func (r *Record) normalize() {
	if r.Direction == "" {
		r.Direction = DirectionIn
	}
}

// marker names the record's message in errors: its IMAP source, or the
// gateway's id for outgoing mail.
func (r *Record) marker() string {
	if r.Outgoing != nil {
		return "outgoing " + r.Outgoing.ID
	}
	return r.Source().Marker()
}

// senders are the addresses a From filter matches: the From field, and
// for outgoing mail the envelope sender too.
func (r *Record) senders() []string {
	if r.Outgoing != nil && r.Outgoing.MailFrom != "" {
		return []string{r.From, r.Outgoing.MailFrom}
	}
	return []string{r.From}
}

// OutgoingField is the header field an exported outgoing message carries
// on top: what the gateway did with it.
const OutgoingField = "X-Smimed-Outgoing"

// ExportCopy is a record's plaintext as `archive export` writes it: for
// incoming mail the user's copy (UserCopyRecord), for outgoing mail the
// plaintext as submitted under X-Smimed-Record and X-Smimed-Outgoing (the
// decision, the envelope, the signer and the certificates encrypted to),
// with any such fields that came with the message removed.
func ExportCopy(plaintext []byte, r *Record, authservID string) []byte {
	if !r.IsOutgoing() || r.Outgoing == nil {
		return UserCopyRecord(plaintext, r.Report(), r.Source(), authservID, r.ID)
	}
	o := r.Outgoing
	eol := "\n"
	if i := bytes.IndexByte(plaintext, '\n'); i > 0 && plaintext[i-1] == '\r' {
		eol = "\r\n"
	}
	parts := []string{"decision=" + strings.Join(o.Decision, ",") + ";", "mail-from=<" + o.MailFrom + ">;", "rcpt-to=" + strings.Join(o.RcptTo, ",") + ";"}
	if o.Signer != "" {
		parts = append(parts, "signer="+o.Signer+";")
	}
	if o.ContentCipher != "" {
		parts = append(parts, "cipher="+o.ContentCipher+";")
	}
	for _, rc := range o.Recipients {
		who := rc.Address
		if rc.Escrow {
			who = "escrow"
		}
		parts = append(parts, "encrypted-to="+who+":"+rc.Fingerprint+";")
	}
	var top strings.Builder
	writeFolded(&top, UserCopyRecordField, unstructuredPieces(strconv.FormatUint(r.ID, 10)), eol)
	writeFolded(&top, OutgoingField, unstructuredPieces(strings.Join(parts, " ")), eol)
	return withTop(top.String(), plaintext, eol, authservID)
}
