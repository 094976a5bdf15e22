package archive

// Seals: every so often the records since the last seal are summed up in
// a Merkle tree (merkle.go) whose root goes, with the ids it covers, the
// previous seal's hash and the chain head, into a seal record appended
// to the chain like any record (Kind "seal"). The seal's statement
// (Seal.Statement) is what trusted timestamping authorities sign
// (RFC 3161): the daemon sends its SHA-256 to each configured TSA after
// the seal is committed, and keeps each answer beside the archive:
//
//	evidence/SEAL/TSA.tsr   the TimeStampResp (DER) as the TSA sent it
//	evidence/SEAL/TSA.pem   the certificates that verify it: the TSA's
//	                        certificate and intermediates from the token,
//	                        then the configured trust anchor
//
// SEAL is the seal record's id, TSA a name derived from the TSA's URL
// (TSAName). A whole chain recomputed from an earlier point changes the
// statements of the seals after it, which no longer match the tokens.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/harvest/state"
)

// bucketSeals lists the ids of the seal records (id → nothing).
var bucketSeals = []byte("archive_seals")

func init() {
	state.Register(state.Bucket{Name: string(bucketSeals), Version: 1})
}

// ErrNotMessage is returned, wrapped, by Get for a record that is not a
// message (a seal).
var ErrNotMessage = errors.New("archive: not a message record")

// IsMessage reports whether the record is an archived message.
func (r *Record) IsMessage() bool { return r.Kind == KindMessage }

// Seal is what a seal record says.
type Seal struct {
	First uint64 `json:"first"` // the first record covered
	Last  uint64 `json:"last"`  // the last record covered
	Count int    `json:"count"` // Last-First+1: the leaves
	Root  string `json:"root"`  // Merkle root over their chain hashes (hex)
	// PrevSeal is the previous seal's id and PrevSealHash its chain hash
	// (0 and all zeros for the first seal).
	PrevSeal     uint64 `json:"prev_seal"`
	PrevSealHash string `json:"prev_seal_hash"`
	// Head is the chain hash of record Last: the chain head when the seal
	// was made.
	Head string `json:"head"`
	// AuditID and AuditHash are the audit log's head when the seal was
	// made (audit.go): holds, restrictions, purges, trust and every read
	// up to there come under the seal's timestamps. 0 and "" in seals
	// made before the audit log was sealed, or while it was empty.
	AuditID   uint64 `json:"audit_id,omitempty"`
	AuditHash string `json:"audit_hash,omitempty"`
}

// Statement is the text a TSA timestamps (its SHA-256 is the request's
// imprint), for seal record id: seven lines, each ending in "\n":
//
//	smimed seal v1
//	seal ID
//	first FIRST
//	last LAST
//	root ROOT
//	prev_seal PREVID PREVHASH
//	head HEAD
//
// numbers in decimal, hashes in lower-case hex. A seal that names the
// audit log's head says "smimed seal v2" and has an eighth line:
//
//	audit AUDITID AUDITHASH
func (s *Seal) Statement(id uint64) []byte {
	version := 1
	if s.AuditID != 0 {
		version = 2
	}
	b := fmt.Appendf(nil, "smimed seal v%d\nseal %d\nfirst %d\nlast %d\nroot %s\nprev_seal %d %s\nhead %s\n",
		version, id, s.First, s.Last, s.Root, s.PrevSeal, s.PrevSealHash, s.Head)
	if s.AuditID != 0 {
		b = fmt.Appendf(b, "audit %d %s\n", s.AuditID, s.AuditHash)
	}
	return b
}

// Digest is SHA-256 of the statement.
func (s *Seal) Digest(id uint64) [sha256.Size]byte { return sha256.Sum256(s.Statement(id)) }

// SealRecords appends a seal over the records since the last seal and
// returns it, or nil when there is none to seal. Mail is not held up: the
// seal is one more write in the group commit.
func (a *Archive) SealRecords() (*Record, error) {
	if a.readOnly {
		return nil, ErrReadOnly
	}
	var out *Record
	err := a.st.Commit(func(tx *bbolt.Tx) error {
		out = nil // fn may run again
		recs, meta, seals := tx.Bucket(bucketRecords), tx.Bucket(bucketMeta), tx.Bucket(bucketSeals)
		head := meta.Get(keyHead)
		if head == nil {
			return nil
		}
		if len(head) != 8+sha256.Size {
			return fmt.Errorf("%w: chain head", ErrCorrupt)
		}
		headID := binary.BigEndian.Uint64(head)
		s := &Seal{PrevSealHash: hex.EncodeToString(make([]byte, sha256.Size))}
		if k, _ := seals.Cursor().Last(); k != nil {
			s.PrevSeal = binary.BigEndian.Uint64(k)
			v := recs.Get(k)
			if len(v) < sha256.Size {
				return fmt.Errorf("%w: seal record %d", ErrCorrupt, s.PrevSeal)
			}
			s.PrevSealHash = hex.EncodeToString(v[:sha256.Size])
		}
		if headID <= s.PrevSeal {
			return nil // nothing since the last seal
		}
		var hashes [][]byte
		c := recs.Cursor()
		for k, v := c.Seek(u64(s.PrevSeal + 1)); k != nil; k, v = c.Next() {
			if len(v) < sha256.Size {
				return fmt.Errorf("%w: record %x", ErrCorrupt, k)
			}
			hashes = append(hashes, v[:sha256.Size])
		}
		s.First, s.Last, s.Count = s.PrevSeal+1, headID, len(hashes)
		if uint64(len(hashes)) != s.Last-s.First+1 {
			return fmt.Errorf("%w: records %d to %d are not all there", ErrCorrupt, s.First, s.Last)
		}
		s.Root = hex.EncodeToString(merkleRoot(hashes))
		s.Head = hex.EncodeToString(head[8:])
		if ah := meta.Get(keyAuditHead); ah != nil {
			if len(ah) != 8+sha256.Size {
				return fmt.Errorf("%w: audit chain head", ErrCorrupt)
			}
			s.AuditID, s.AuditHash = binary.BigEndian.Uint64(ah), hex.EncodeToString(ah[8:])
		}
		id, err := recs.NextSequence()
		if err != nil {
			return err
		}
		r := &Record{Kind: KindSeal, Seal: s, ArchivedAt: a.now().UTC().Truncate(1e6)}
		if err := appendRecord(tx, r, id); err != nil {
			return err
		}
		if err := seals.Put(u64(id), nil); err != nil {
			return err
		}
		out = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("archive: seal: %w", err)
	}
	return out, nil
}

// SealIDs returns the ids of the seal records, oldest first.
func (a *Archive) SealIDs() ([]uint64, error) { return a.bucketIDs(bucketSeals) }

// Unsealed returns the first record after the last seal and the chain
// head's id; first > head when every record is sealed.
func (a *Archive) Unsealed() (first, head uint64, err error) {
	err = a.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketSeals); b != nil {
			if k, _ := b.Cursor().Last(); len(k) == 8 {
				first = binary.BigEndian.Uint64(k)
			}
		}
		if m := tx.Bucket(bucketMeta); m != nil {
			if h := m.Get(keyHead); len(h) == 8+sha256.Size {
				head = binary.BigEndian.Uint64(h)
			}
		}
		return nil
	})
	return first + 1, head, err
}

// GetSeal returns seal record id.
func (a *Archive) GetSeal(id uint64) (*Record, error) {
	var r *Record
	err := a.db.View(func(tx *bbolt.Tx) error {
		var err error
		r, err = getRecord(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if r.Kind != KindSeal || r.Seal == nil {
		return nil, fmt.Errorf("%w: record %d is not a seal", ErrNotFound, id)
	}
	return r, nil
}

// EvidenceDir is where the timestamp answers are kept.
func (a *Archive) EvidenceDir() string { return filepath.Join(a.dir, "evidence") }

// TSAName is the file name a TSA's answers are kept under: its host
// name, "-", and the first 8 hex digits of SHA-256 of the URL (two TSAs
// on one host stay apart).
func TSAName(tsaURL string) string {
	host := "tsa"
	if u, err := url.Parse(tsaURL); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, host)
	sum := sha256.Sum256([]byte(tsaURL))
	return host + "-" + hex.EncodeToString(sum[:4])
}

// Token is one TSA's answer for a seal, as kept.
type Token struct {
	TSA      string `json:"tsa"`      // TSAName
	Response []byte `json:"response"` // TimeStampResp DER
	Chain    []byte `json:"chain"`    // PEM certificates
}

// StoreToken keeps a TSA's answer for seal id (durably: file and
// directory synced).
func (a *Archive) StoreToken(id uint64, t Token) error {
	if a.readOnly {
		return ErrReadOnly
	}
	if !validTSAName(t.TSA) {
		return fmt.Errorf("archive: bad TSA name %q", t.TSA)
	}
	dir := filepath.Join(a.EvidenceDir(), strconv.FormatUint(id, 10))
	if err := mkdirDurable(a.EvidenceDir()); err != nil {
		return fmt.Errorf("archive: evidence: %w", err)
	}
	if err := mkdirDurable(dir); err != nil {
		return fmt.Errorf("archive: evidence: %w", err)
	}
	if err := writeDurable(filepath.Join(dir, t.TSA+".pem.tmp"), filepath.Join(dir, t.TSA+".pem"), t.Chain); err != nil {
		return fmt.Errorf("archive: evidence of seal %d: %w", id, err)
	}
	if err := writeDurable(filepath.Join(dir, t.TSA+".tsr.tmp"), filepath.Join(dir, t.TSA+".tsr"), t.Response); err != nil {
		return fmt.Errorf("archive: evidence of seal %d: %w", id, err)
	}
	return nil
}

func validTSAName(n string) bool {
	return n != "" && n[0] != '.' && !strings.ContainsAny(n, "/\\\x00") && len(n) < 200
}

// maxEvidenceFile bounds a kept answer or chain read back.
const maxEvidenceFile = 1 << 20

// Tokens returns the answers kept for seal id, by TSA name.
func (a *Archive) Tokens(id uint64) ([]Token, error) {
	dir := filepath.Join(a.EvidenceDir(), strconv.FormatUint(id, 10))
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("archive: evidence of seal %d: %w", id, err)
	}
	var out []Token
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".tsr")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		t := Token{TSA: name}
		if t.Response, err = readBounded(filepath.Join(dir, e.Name())); err != nil {
			return nil, err
		}
		t.Chain, _ = readBounded(filepath.Join(dir, name+".pem"))
		out = append(out, t)
	}
	return out, nil
}

func readBounded(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if fi.Size() > maxEvidenceFile {
		return nil, fmt.Errorf("archive: %s is larger than %d bytes", path, maxEvidenceFile)
	}
	return os.ReadFile(path)
}

// evidenceSeals lists the seal ids that have an evidence directory.
func (a *Archive) evidenceSeals() []uint64 {
	entries, _ := os.ReadDir(a.EvidenceDir())
	var ids []uint64
	for _, e := range entries {
		if id, err := strconv.ParseUint(e.Name(), 10, 64); err == nil && e.IsDir() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Proof is a message record's inclusion proof: its chain hash, the
// Merkle path to the root of the seal that covers it, and that seal.
type Proof struct {
	Record uint64      `json:"record"`
	Prev   string      `json:"prev"` // the previous record's chain hash: input to Hash
	Hash   string      `json:"hash"` // the record's chain hash
	Seal   uint64      `json:"seal"`
	Index  int         `json:"index"` // the leaf's position among the seal's Count
	Path   []ProofStep `json:"path"`
	Root   string      `json:"root"`
	// Statement is the seal's statement, the bytes the TSAs stamped.
	Statement string `json:"statement"`
	SealInfo  *Seal  `json:"seal_info"`
	// Body is the record's JSON as stored (the input to Hash).
	Body []byte `json:"body"`
}

// ErrNotSealed is returned, wrapped, by Proof for a record no seal
// covers yet.
var ErrNotSealed = errors.New("archive: record not sealed yet")

// Proof returns the inclusion proof of record id.
func (a *Archive) Proof(id uint64) (*Proof, error) {
	p := &Proof{Record: id}
	err := a.db.View(func(tx *bbolt.Tx) error {
		recs, seals := tx.Bucket(bucketRecords), tx.Bucket(bucketSeals)
		if recs == nil || seals == nil {
			return fmt.Errorf("%w: %d", ErrNotFound, id)
		}
		v := recs.Get(u64(id))
		if len(v) < sha256.Size {
			return fmt.Errorf("%w: %d", ErrNotFound, id)
		}
		r, err := decodeRecord(id, v)
		if err != nil {
			return err
		}
		if r.Kind == KindSeal {
			return fmt.Errorf("%w: record %d is a seal", ErrNotMessage, id)
		}
		p.Hash, p.Prev, p.Body = hex.EncodeToString(v[:sha256.Size]), r.Prev, slices.Clone(v[sha256.Size:])
		k, _ := seals.Cursor().Seek(u64(id + 1))
		if k == nil {
			return fmt.Errorf("%w: record %d", ErrNotSealed, id)
		}
		p.Seal = binary.BigEndian.Uint64(k)
		sr, err := getRecord(tx, p.Seal)
		if err != nil {
			return err
		}
		if sr.Seal == nil || id < sr.Seal.First || id > sr.Seal.Last {
			return fmt.Errorf("%w: seal %d does not cover record %d", ErrCorrupt, p.Seal, id)
		}
		s := sr.Seal
		var hashes [][]byte
		c := recs.Cursor()
		for k, v := c.Seek(u64(s.First)); k != nil && binary.BigEndian.Uint64(k) <= s.Last; k, v = c.Next() {
			if len(v) < sha256.Size {
				return fmt.Errorf("%w: record %x", ErrCorrupt, k)
			}
			hashes = append(hashes, v[:sha256.Size])
		}
		p.Index = int(id - s.First)
		if len(hashes) != s.Count || p.Index >= len(hashes) {
			return fmt.Errorf("%w: seal %d covers records that are not all there", ErrCorrupt, p.Seal)
		}
		p.Path = merklePath(p.Index, hashes)
		p.Root = s.Root
		p.SealInfo = s
		p.Statement = string(s.Statement(p.Seal))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Check recomputes the proof: the record hash from Prev, the id and Body,
// the root from the path, and compares the root with the seal's.
func (p *Proof) Check() error {
	prev, err := hex.DecodeString(p.Prev)
	if err != nil || len(prev) != sha256.Size {
		return fmt.Errorf("archive: proof of record %d: bad previous hash", p.Record)
	}
	h := chainHash(prev, p.Record, p.Body)
	if hex.EncodeToString(h) != p.Hash {
		return fmt.Errorf("archive: proof of record %d: the record's hash does not match its content", p.Record)
	}
	if root := proofRoot(h, p.Path); root == nil || hex.EncodeToString(root) != p.Root || p.SealInfo == nil || p.SealInfo.Root != p.Root {
		return fmt.Errorf("archive: proof of record %d: the path does not lead to seal %d's root", p.Record, p.Seal)
	}
	return nil
}

// Text is the proof in the export's format (docs/evidence.md): one
// "key value" line each, the path as "path L|R HASH" lines from the
// leaf up.
func (p *Proof) Text() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "smimed proof v1\nrecord %d\nprev %s\nhash %s\nseal %d\nindex %d\n", p.Record, p.Prev, p.Hash, p.Seal, p.Index)
	for _, s := range p.Path {
		fmt.Fprintf(&b, "path %s %s\n", s.Side, s.Hash)
	}
	fmt.Fprintf(&b, "root %s\n", p.Root)
	return b.String()
}
