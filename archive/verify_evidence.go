package archive

// verify --evidence: every seal's Merkle root and links (checked by every
// Verify), and every kept timestamp token (VerifyEvidence).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/archive/timestamp"
	"github.com/smimed/smimed/harvest"
)

// SealCheck is what verify found out about one seal.
type SealCheck struct {
	ID    uint64 `json:"id"`
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
	// Sealed: at least Require tokens verify (only known when the
	// evidence was checked).
	Sealed bool         `json:"sealed"`
	Tokens []TokenCheck `json:"tokens,omitempty"`

	statement []byte
}

// TokenCheck is the verdict on one TSA's token for a seal.
type TokenCheck struct {
	TSA     string    `json:"tsa"`
	GenTime time.Time `json:"gen_time,omitzero"`
	OK      bool      `json:"ok"`
	Error   string    `json:"error,omitempty"`
	// OpenSSL is `openssl ts -verify`'s verdict ("OK" or "FAILED: …"),
	// when asked for.
	OpenSSL string `json:"openssl,omitempty"`
}

// Unsealed is the records after the last seal.
type Unsealed struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
	Count int    `json:"count"`
}

// EvidenceOptions say how to judge the timestamp tokens.
type EvidenceOptions struct {
	// Roots are the TSAs' trust anchors (the configured ca_files), RootsPEM
	// the same as PEM (for openssl).
	Roots    *x509.CertPool
	RootsPEM []byte
	// Require is how many TSAs must have answered for a seal to count as
	// sealed (at least 1).
	Require int
	// OpenSSL: check every token with `openssl ts -verify` too, and
	// report where it disagrees.
	OpenSSL bool
}

// VerifyEvidence is Verify plus every seal's timestamp tokens: the
// signature, the TSA's chain to ev.Roots judged at the token's own time,
// and the imprint (SHA-256 of the seal's statement). A record found
// changed is named with the seal that proves its original.
func (a *Archive) VerifyEvidence(ev EvidenceOptions, progress func(done, total int)) (*VerifyResult, error) {
	if ev.Require < 1 {
		ev.Require = 1
	}
	return a.verify(&ev, progress)
}

// seal checks a seal record against the records walked since the last
// one; prev is the chain hash before it, stored its own.
func (v *verifier) seal(r *Record, prev, stored []byte) {
	bad := func(format string, args ...any) {
		v.res.Problems = append(v.res.Problems, Problem{ID: r.ID, What: "seal: " + fmt.Sprintf(format, args...)})
	}
	s := r.Seal
	leaves := v.leaves
	first, prevSealHash := v.lastSeal+1, hex.EncodeToString(v.sealHash)
	v.leaves, v.lastSeal, v.sealHash = nil, r.ID, bytes.Clone(stored)
	if s == nil {
		bad("the record says nothing it seals")
		return
	}
	v.res.Seals = append(v.res.Seals, SealCheck{ID: r.ID, First: s.First, Last: s.Last, statement: s.Statement(r.ID)})
	switch {
	case s.First != first || s.Last != r.ID-1 || s.Count != len(leaves):
		bad("covers records %d to %d, but the records since the previous seal are %d to %d (a seal removed or records inserted)", s.First, s.Last, first, r.ID-1)
	case s.PrevSeal != first-1 || s.PrevSealHash != prevSealHash:
		bad("names seal %d as the previous one, but that is %d with another hash (a seal removed or replaced)", s.PrevSeal, first-1)
	}
	if s.Head != hex.EncodeToString(prev) {
		bad("its chain head is not the previous record's hash")
	}
	if s.Root != hex.EncodeToString(merkleRoot(leaves)) {
		bad("the Merkle root of records %d to %d does not match: a record was changed after sealing", s.First, s.Last)
	}
	if s.AuditID != 0 {
		v.sealedAudit = append(v.sealedAudit, sealedAudit{seal: r.ID, id: s.AuditID, hash: s.AuditHash})
	}
}

// sealedAuditLog checks that each audit log head a seal names is still
// there with that hash: the audit chain up to it is then as it was when
// the seal was made (its entries' hashes chain to it), even if someone
// rebuilt the whole chain after changing an entry, which VerifyAudit alone
// cannot tell.
func (v *verifier) sealedAuditLog() error {
	if len(v.sealedAudit) == 0 {
		return nil
	}
	return v.a.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		for _, sa := range v.sealedAudit {
			var got []byte
			if b != nil {
				got = b.Get(u64(sa.id))
			}
			switch {
			case len(got) < sha256.Size:
				v.res.Problems = append(v.res.Problems, Problem{ID: sa.seal, What: fmt.Sprintf("seal: the audit log entry %d it sealed is gone (audit entries deleted)", sa.id)})
			case hex.EncodeToString(got[:sha256.Size]) != sa.hash:
				v.res.Problems = append(v.res.Problems, Problem{ID: sa.seal, What: fmt.Sprintf("seal: the audit log entry %d it sealed has another hash now: the audit log up to it was changed after the seal", sa.id)})
			}
		}
		return nil
	})
}

// checkEvidence judges the tokens of every seal, and looks for evidence
// of seals that are not in the chain.
func (v *verifier) checkEvidence(ev *EvidenceOptions) {
	isSeal := map[uint64]bool{}
	for i := range v.res.Seals {
		sc := &v.res.Seals[i]
		isSeal[sc.ID] = true
		tokens, err := v.a.Tokens(sc.ID)
		if err != nil {
			v.res.Problems = append(v.res.Problems, Problem{ID: sc.ID, What: fmt.Sprintf("seal: %v", err)})
			continue
		}
		digest := sumBytes(sc.statement)
		good := 0
		for _, t := range tokens {
			tc := TokenCheck{TSA: t.TSA}
			file := filepath.Join(v.a.EvidenceDir(), strconv.FormatUint(sc.ID, 10), t.TSA+".tsr")
			resp, err := timestamp.ParseResponse(t.Response)
			if err == nil {
				tc.GenTime = resp.Info.GenTime
				var vf *timestamp.Verified
				if vf, err = resp.Verify(digest, ev.Roots, harvest.PEMCertificates(t.Chain, 16)); err == nil {
					tc.OK, tc.GenTime = true, vf.GenTime
					good++
				}
			}
			if err != nil {
				tc.Error = err.Error()
				what := fmt.Sprintf("seal: the token of %s does not prove this seal: %v", t.TSA, err)
				if resp != nil && resp.Matches(digest[:]) != nil {
					what = fmt.Sprintf("seal: the token of %s stamps other data than this seal (the seal, or records %d to %d, rewritten after timestamping, or the token swapped)", t.TSA, sc.First, sc.Last)
				}
				v.res.Problems = append(v.res.Problems, Problem{ID: sc.ID, File: file, What: what})
			}
			if ev.OpenSSL {
				at := tc.GenTime
				if at.IsZero() {
					at = time.Now()
				}
				ok, detail := timestamp.OpenSSLVerify(context.Background(), sc.statement, t.Response, ev.RootsPEM, t.Chain, at)
				tc.OpenSSL = "OK"
				if !ok {
					tc.OpenSSL = "FAILED: " + detail
				}
				if ok != tc.OK {
					v.res.Problems = append(v.res.Problems, Problem{ID: sc.ID, File: file, What: fmt.Sprintf("seal: openssl ts -verify disagrees: it says %s, smimed says ok=%v", tc.OpenSSL, tc.OK)})
				}
			}
			sc.Tokens = append(sc.Tokens, tc)
		}
		sc.Sealed = good >= ev.Require
	}
	for _, id := range v.a.evidenceSeals() {
		if !isSeal[id] && id <= v.last {
			v.res.Problems = append(v.res.Problems, Problem{ID: id, File: filepath.Join(v.a.EvidenceDir(), strconv.FormatUint(id, 10)),
				What: "timestamp tokens are kept for this record, but it is not a seal in the chain (a seal removed or replaced)"})
		}
	}
}

// nameSeals adds to each problem of a record a seal covers which seal
// proves the record's original chain hash.
func (v *verifier) nameSeals() {
	for i, p := range v.res.Problems {
		if p.ID == 0 {
			continue
		}
		for _, sc := range v.res.Seals {
			if p.ID >= sc.First && p.ID <= sc.Last {
				note := fmt.Sprintf(" [sealed by seal %d", sc.ID)
				for _, t := range sc.Tokens {
					if t.OK {
						note += fmt.Sprintf(", timestamped %s by %s", t.GenTime.UTC().Format(time.RFC3339), t.TSA)
						break
					}
				}
				v.res.Problems[i].What += note + "]"
				break
			}
		}
	}
}

func sumBytes(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
