package archive

// Re-processing a record: its stored original through the engine again
// (`smimed archive retry`), a new version when the outcome changed, and
// how to say what changed.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/smimed/smimed/harvest"
)

// Processor is what Reprocess runs a stored original through: the
// harvest engine (*harvest.Engine) of the running configuration.
type Processor interface {
	// ProcessFor reads a message of the mailbox account (harvest.Engine).
	ProcessFor(raw []byte, received time.Time, account string) (*harvest.Result, error)
}

// Reprocess runs eng again on the stored original of the message record
// id belongs to (after an old key was added, say). When the outcome
// differs, a new version is written (new plaintext, new record that
// supersedes the current one; the old stays in the chain) and returned
// with changed == true; otherwise the current record is returned.
func (a *Archive) Reprocess(id uint64, eng Processor) (rec *Record, changed bool, err error) {
	if a.readOnly {
		return nil, false, ErrReadOnly
	}
	a.retryMu.Lock()
	defer a.retryMu.Unlock()
	cur, err := a.Current(id)
	if err != nil {
		return nil, false, err
	}
	if cur.IsOutgoing() {
		return nil, false, fmt.Errorf("%w: record %d was sent by the gateway; only fetched mail is processed again", ErrOutgoing, cur.ID)
	}
	original, err := a.ReadOriginal(cur)
	if err != nil {
		return nil, false, err
	}
	received := cur.Received
	if received.IsZero() {
		received = cur.ArchivedAt
	}
	res, err := eng.ProcessFor(original, received, cur.Account)
	if err != nil {
		return nil, false, fmt.Errorf("archive: reprocess record %d: %w", cur.ID, err)
	}
	r := a.newRecord(cur.Source(), &res.Report)
	r.Version = cur.Version + 1
	r.OriginalSHA256, r.OriginalSize = cur.OriginalSHA256, cur.OriginalSize
	if Sum(res.Plaintext) == cur.PlaintextSHA256 && sameOutcome(r, cur) {
		return cur, false, nil
	}
	dirs, err := a.storeFiles(r, original, res.Plaintext)
	if err != nil {
		return nil, false, err
	}
	a.classify(r, res.Plaintext)
	if cur.RetainUntil.After(r.RetainUntil) {
		// A new version never shortens what the first promised.
		r.Class, r.RetainUntil = cur.Class, cur.RetainUntil
	}
	rec, _, err = a.commit(r, cur.ID, dirs)
	return rec, err == nil, err
}

// Change says in words what a new version of a message changed against
// the version it superseded, as `archive retry` prints it: "decrypted
// now" (only when old was not decrypted), "verdict untrusted → valid"
// (the signature verdicts, in order, "none" without signatures), "still
// undecryptable" (other recipients read than before), or else "status A →
// B"; several joined by ", ". "unchanged" when nothing differs.
func Change(old, cur *Record) string {
	var parts []string
	if cur.Has(StatusDecrypted) && !old.Has(StatusDecrypted) {
		parts = append(parts, "decrypted now")
	}
	if ov, nv := verdictList(old), verdictList(cur); ov != nv {
		parts = append(parts, "verdict "+ov+" → "+nv)
	}
	switch {
	case len(parts) > 0:
	case cur.Has(StatusUndecryptable) && old.Has(StatusUndecryptable):
		parts = append(parts, "still undecryptable")
	case !slices.Equal(old.Status, cur.Status):
		parts = append(parts, "status "+statusList(old)+" → "+statusList(cur))
	default:
		return "unchanged"
	}
	return strings.Join(parts, ", ")
}

func verdictList(r *Record) string {
	if len(r.Signatures) == 0 {
		return "none"
	}
	vs := make([]string, len(r.Signatures))
	for i, s := range r.Signatures {
		vs[i] = s.Status
	}
	return strings.Join(vs, ",")
}

func statusList(r *Record) string {
	if len(r.Status) == 0 {
		return "none"
	}
	return strings.Join(r.Status, ",")
}

// sameOutcome compares what the engine found, not when, and not how it
// put a failure into words: the text of a failed decryption names how many
// keys were tried, which changes with every key added, while the message
// stays as undecryptable as before.
func sameOutcome(a, b *Record) bool {
	key := func(r *Record) []byte {
		d, e := r.Decryption, r.Error
		if d.Status == harvest.DecryptFailed {
			d.Error, e = "", "" // both hold the failure's text
		}
		j, _ := json.Marshal([]any{r.Status, r.Layers, d, r.Signatures, r.Recipients, e})
		return j
	}
	return slices.Equal(key(a), key(b))
}
