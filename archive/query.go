package archive

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/harvest"
)

// Index kinds: the first byte of an archive_index key.
const (
	idxAll        = 'd' // every current record, by time
	idxFrom       = 'f' // From address
	idxFromDomain = 'F' // From domain
	idxTo         = 't' // To/Cc address
	idxToDomain   = 'T' // To/Cc domain
	idxMessageID  = 'm'
	idxStatus     = 's'
	idxAccount    = 'a'
	idxBytes      = 'h' // account, folder and the original's SHA-256
	// idxOut lists outgoing records only: records of incoming mail,
	// written before outgoing mail existed, have no entry of this kind.
	idxOut = 'o'
)

// maxIndexValue bounds an indexed value (bbolt keys must stay small).
const maxIndexValue = 512

func indexPrefix(kind byte, value string) []byte {
	value = strings.ReplaceAll(value, "\x00", "")
	if len(value) > maxIndexValue {
		value = value[:maxIndexValue]
	}
	k := append([]byte{kind}, value...)
	return append(k, 0)
}

func timeKey(t time.Time) uint64 {
	if t.Before(time.Unix(0, 0)) {
		return 0
	}
	return uint64(t.UnixNano())
}

func indexKey(kind byte, value string, t time.Time, id uint64) []byte {
	k := indexPrefix(kind, value)
	k = binary.BigEndian.AppendUint64(k, timeKey(t))
	return binary.BigEndian.AppendUint64(k, id)
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// indexKeys are the secondary index entries of a current record.
func indexKeys(r *Record) [][]byte {
	t := r.When()
	keys := [][]byte{indexKey(idxAll, "", t, r.ID), indexKey(idxAccount, r.Account, t, r.ID)}
	if from := strings.ToLower(r.From); from != "" {
		keys = append(keys, indexKey(idxFrom, from, t, r.ID))
		if d := domainOf(from); d != "" {
			keys = append(keys, indexKey(idxFromDomain, d, t, r.ID))
		}
	}
	domains := map[string]bool{}
	for _, to := range r.To {
		keys = append(keys, indexKey(idxTo, to, t, r.ID))
		if d := domainOf(to); d != "" && !domains[d] {
			domains[d] = true
			keys = append(keys, indexKey(idxToDomain, d, t, r.ID))
		}
	}
	if r.MessageID != "" {
		keys = append(keys, indexKey(idxMessageID, normalizeMessageID(r.MessageID), t, r.ID))
	}
	for _, s := range r.Status {
		keys = append(keys, indexKey(idxStatus, s, t, r.ID))
	}
	if r.IsOutgoing() {
		keys = append(keys, indexKey(idxOut, "", t, r.ID))
		if r.Outgoing != nil && r.Outgoing.MailFrom != "" && r.Outgoing.MailFrom != strings.ToLower(r.From) {
			keys = append(keys, indexKey(idxFrom, r.Outgoing.MailFrom, t, r.ID))
		}
		return keys
	}
	keys = append(keys, indexKey(idxBytes, bytesValue(r.Account, r.Folder, r.OriginalSHA256), t, r.ID))
	return keys
}

// broadIndex tells the index kinds that select many records (all, by
// status, by account): their entries carry a summary, so that a Subject
// filter can skip records without reading them.
func broadIndex(kind byte) bool {
	return kind == idxAll || kind == idxStatus || kind == idxAccount || kind == idxOut
}

// maxSummary bounds the summary kept in broad index entries.
const maxSummary = 256

// indexSummary is the lower-cased Subject (cut to maxSummary bytes, with a
// marker byte saying whether it was cut).
func indexSummary(r *Record) []byte {
	s := strings.ToLower(r.Subject)
	if len(s) > maxSummary {
		return append([]byte{1}, s[:maxSummary]...)
	}
	return append([]byte{0}, s...)
}

// summaryExcludes reports whether an index entry's summary proves that the
// record's Subject does not contain sub (lower-cased); an entry without
// one, or cut short, proves nothing.
func summaryExcludes(v []byte, sub string) bool {
	if sub == "" || len(v) == 0 || v[0] != 0 {
		return false
	}
	return !strings.Contains(string(v[1:]), sub)
}

func bytesValue(account, folder, sha string) string {
	return account + "\x01" + folder + "\x01" + sha
}

func normalizeMessageID(id string) string {
	return strings.Trim(strings.TrimSpace(id), "<>")
}

// Verdicts are the signature verdicts Query.Verdict accepts.
var Verdicts = []string{harvest.StatusValid, harvest.StatusInvalid, harvest.StatusUntrusted, harvest.StatusExpired,
	harvest.StatusRevoked, harvest.StatusMismatch, harvest.StatusPartial, harvest.StatusError}

// Query selects current records. Empty fields do not filter.
type Query struct {
	// From and To match an address (case-insensitive), or a whole domain
	// when they start with "@". To matches To and Cc.
	From, To string
	Subject  string // case-insensitive substring
	Status   string // one of Statuses
	// Verdict selects records with at least one signature of this
	// verdict (one of Verdicts), whatever the record's status says.
	Verdict string
	Account string
	// Direction selects incoming (DirectionIn) or outgoing (DirectionOut)
	// mail.
	Direction string
	MessageID string    // with or without angle brackets
	Since     time.Time // arrival time on or after
	Until     time.Time // arrival time before
	Limit     int       // 0: no limit
	// Expired selects the records whose retention has ended and that may
	// be purged: neither held nor restricted (holds.go).
	Expired bool `json:"expired,omitempty"`
	// HideRestricted leaves out restricted messages (every reader but an
	// auditor). Set by the admin layer, never by a client.
	HideRestricted bool `json:"-"`
}

// Check reports the first invalid field of q.
func (q *Query) Check() error {
	if q.Status != "" && !slices.Contains(Statuses, q.Status) {
		return fmt.Errorf("unknown status %q (want one of %s)", q.Status, strings.Join(Statuses, ", "))
	}
	if q.Verdict != "" && !slices.Contains(Verdicts, q.Verdict) {
		return fmt.Errorf("unknown verdict %q (want one of %s)", q.Verdict, strings.Join(Verdicts, ", "))
	}
	if q.Direction != "" && q.Direction != DirectionIn && q.Direction != DirectionOut {
		return fmt.Errorf("unknown direction %q (want in or out)", q.Direction)
	}
	if q.Limit < 0 {
		return fmt.Errorf("limit %d is negative", q.Limit)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return fmt.Errorf("until (%s) is not after since (%s)", q.Until.Format(time.DateOnly), q.Since.Format(time.DateOnly))
	}
	return nil
}

// prefix picks the most selective index for q.
func (q *Query) prefix() []byte {
	addr := func(kind, domainKind byte, v string) []byte {
		v = strings.ToLower(strings.TrimSpace(v))
		if strings.HasPrefix(v, "@") {
			return indexPrefix(domainKind, v[1:])
		}
		return indexPrefix(kind, v)
	}
	switch {
	case q.MessageID != "":
		return indexPrefix(idxMessageID, normalizeMessageID(q.MessageID))
	case q.From != "":
		return addr(idxFrom, idxFromDomain, q.From)
	case q.To != "":
		return addr(idxTo, idxToDomain, q.To)
	case q.Status != "":
		return indexPrefix(idxStatus, q.Status)
	case q.Account != "":
		return indexPrefix(idxAccount, q.Account)
	case q.Direction == DirectionOut:
		return indexPrefix(idxOut, "")
	}
	return indexPrefix(idxAll, "")
}

// match applies the filters the chosen index did not.
func (q *Query) match(r *Record) bool {
	addrMatch := func(want string, have []string) bool {
		want = strings.ToLower(strings.TrimSpace(want))
		for _, h := range have {
			h = strings.ToLower(h)
			if h == want || (strings.HasPrefix(want, "@") && domainOf(h) == want[1:]) {
				return true
			}
		}
		return false
	}
	switch {
	case q.From != "" && !addrMatch(q.From, r.senders()):
	case q.To != "" && !addrMatch(q.To, r.To):
	case q.Status != "" && !r.Has(q.Status):
	case q.Verdict != "" && !slices.ContainsFunc(r.Signatures, func(s harvest.Signature) bool { return s.Status == q.Verdict }):
	case q.Account != "" && r.Account != q.Account:
	case q.Direction != "" && r.Direction != q.Direction:
	case q.MessageID != "" && normalizeMessageID(r.MessageID) != normalizeMessageID(q.MessageID):
	case q.Subject != "" && !strings.Contains(strings.ToLower(r.Subject), strings.ToLower(q.Subject)):
	case !q.Since.IsZero() && r.When().Before(q.Since):
	case !q.Until.IsZero() && !r.When().Before(q.Until):
	default:
		return true
	}
	return false
}

// Matches reports whether r matches q's filters (Limit aside).
func (q Query) Matches(r *Record) bool {
	q = q.clean()
	return r.Kind == KindMessage && q.match(r)
}

// listBatch is how many records one read transaction collects: fn runs
// outside transactions, so a slow consumer (an export) never holds one
// open for long.
const listBatch = 256

// List calls fn for each current record matching q, newest first, until fn
// returns an error (which List returns) or q.Limit records were passed.
func (a *Archive) List(q Query, fn func(*Record) error) error {
	if err := q.Check(); err != nil {
		return err
	}
	q = q.clean()
	prefix := q.prefix()
	// upper: keys below it are candidates.
	var upper []byte
	if !q.Until.IsZero() {
		upper = binary.BigEndian.AppendUint64(bytes.Clone(prefix), timeKey(q.Until))
	} else {
		upper = append(bytes.Clone(prefix), 0xff)
	}
	n := 0
	subject := strings.ToLower(q.Subject)
	now := a.now()
	var holds []Hold
	if q.Expired {
		var err error
		if holds, err = a.Holds(); err != nil {
			return fmt.Errorf("archive: list: %w", err)
		}
	}
	for {
		var batch []*Record
		done := false
		err := a.db.View(func(tx *bbolt.Tx) error {
			idx := tx.Bucket(bucketIndex)
			if idx == nil {
				done = true
				return nil
			}
			c := idx.Cursor()
			k, v := c.Seek(upper)
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
			for ; ; k, v = c.Prev() {
				if k == nil || !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+16 {
					done = true
					return nil
				}
				t := binary.BigEndian.Uint64(k[len(prefix):])
				if !q.Since.IsZero() && t < timeKey(q.Since) {
					done = true
					return nil
				}
				if len(batch) == listBatch {
					upper = bytes.Clone(k)
					upper = append(upper[:len(upper):len(upper)], 0) // just above k: k itself is next
					return nil
				}
				if summaryExcludes(v, subject) {
					continue
				}
				r, err := getRecord(tx, binary.BigEndian.Uint64(k[len(prefix)+8:]))
				if err != nil {
					return err
				}
				a.fillRetention(r)
				if !q.match(r) {
					continue
				}
				if q.HideRestricted || q.Expired {
					x, err := restrictionOf(tx, r)
					if err != nil {
						return err
					}
					if q.HideRestricted && x.Active(now) {
						continue
					}
					if q.Expired {
						if why, err := purgeable(tx, holds, r, now); err != nil || why != "" {
							if err != nil {
								return err
							}
							continue
						}
					}
				}
				batch = append(batch, r)
			}
		})
		if err != nil {
			return fmt.Errorf("archive: list: %w", err)
		}
		for _, r := range batch {
			if err := fn(r); err != nil {
				return err
			}
			n++
			if q.Limit > 0 && n >= q.Limit {
				return nil
			}
		}
		if done {
			return nil
		}
	}
}
