package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/daemon/testenv"
)

func tsaOf(t *testing.T, tsa *testenv.TSA) TSA {
	t.Helper()
	b, err := os.ReadFile(tsa.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(b)
	return TSA{URL: tsa.URL, Roots: p, RootsPEM: b}
}

// sealed makes an archive with n messages, sealed every `every` records,
// each seal stamped by tsa.
func sealed(t *testing.T, tsa TSA, n, every int) (*Archive, *bbolt.DB, []*Record) {
	t.Helper()
	a, db := openTest(t)
	eng := engine(t, "org-new")
	var recs []*Record
	for i := 1; i <= n; i++ {
		r, _ := put(t, a, eng, src(uint32(i)), synthetic("a@x.example", "b@y.example", "s"+strconv.Itoa(i), i))
		recs = append(recs, r)
		if i%every == 0 {
			sealAndStamp(t, a, tsa)
		}
	}
	return a, db, recs
}

func sealAndStamp(t *testing.T, a *Archive, tsa TSA) *Record {
	t.Helper()
	s, err := a.SealRecords()
	if err != nil || s == nil {
		t.Fatalf("SealRecords() = %v, %v", s, err)
	}
	if tsa.URL != "" {
		if _, err := a.Stamp(context.Background(), s.ID, tsa); err != nil {
			t.Fatalf("Stamp(%d) = %v", s.ID, err)
		}
	}
	return s
}

// docRoot is the Merkle root as docs/evidence.md defines it, written
// out here on its own.
func docRoot(hashes [][]byte) []byte {
	if len(hashes) == 1 {
		h := sha256.Sum256(append([]byte{0}, hashes[0]...))
		return h[:]
	}
	k := 1
	for k*2 < len(hashes) {
		k *= 2
	}
	l, r := docRoot(hashes[:k]), docRoot(hashes[k:])
	h := sha256.Sum256(append(append([]byte{1}, l...), r...))
	return h[:]
}

func evOpts(tsa TSA, openssl bool) EvidenceOptions {
	return EvidenceOptions{Roots: tsa.Roots, RootsPEM: tsa.RootsPEM, Require: 1, OpenSSL: openssl}
}

func TestSealsVerify(t *testing.T) {
	ttsa := testenv.NewTSA(t, nil, "Test TSA", time.Time{}, time.Time{})
	tsa := tsaOf(t, ttsa)
	a, _, recs := sealed(t, tsa, 7, 3) // seals over 1-3 and 5-7 (ids 4 and 8), records 9.. unsealed
	put(t, a, engine(t, "org-new"), src(99), synthetic("a@x.example", "b@y.example", "late", 99))
	res, err := a.VerifyEvidence(evOpts(tsa, true), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Fatalf("VerifyEvidence problems: %v", res.Problems)
	}
	if len(res.Seals) != 2 || !res.Seals[0].Sealed || !res.Seals[1].Sealed {
		t.Fatalf("Seals = %+v, want 2 sealed", res.Seals)
	}
	for _, s := range res.Seals {
		if s.Tokens[0].OpenSSL != "OK" {
			t.Errorf("seal %d: openssl says %q", s.ID, s.Tokens[0].OpenSSL)
		}
	}
	if res.Unsealed == nil || res.Unsealed.Count != 2 || res.Unsealed.First != 9 {
		t.Errorf("Unsealed = %+v, want 2 records from 9", res.Unsealed)
	}
	// The seal's root as documented, from the raw records.
	var hashes [][]byte
	a.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		for id := uint64(1); id <= 3; id++ {
			hashes = append(hashes, bytes.Clone(b.Get(u64(id))[:32]))
		}
		return nil
	})
	s, err := a.GetSeal(4)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(docRoot(hashes)); s.Seal.Root != want {
		t.Errorf("seal root %s, the documented tree gives %s", s.Seal.Root, want)
	}
	// openssl agrees that the token stamps the statement.
	toks, _ := a.Tokens(4)
	ok, detail := opensslTS(t, s.Seal.Statement(4), toks[0].Response, tsa.RootsPEM, toks[0].Chain)
	if !ok {
		t.Errorf("openssl ts -verify of seal 4: %s", detail)
	}
	// Seals are no messages.
	if _, err := a.Get(4); err == nil {
		t.Error("Get(seal) = nil error")
	}
	if n, _ := a.Count(); n != 8 {
		t.Errorf("Count() = %d, want 8 messages", n)
	}
	// Proofs: each message's path leads to its seal's root, recomputed
	// here.
	for _, r := range recs[:3] {
		p, err := a.Proof(r.ID)
		if err != nil {
			t.Fatalf("Proof(%d) = %v", r.ID, err)
		}
		if err := p.Check(); err != nil {
			t.Errorf("Proof(%d).Check() = %v", r.ID, err)
		}
		h, _ := hex.DecodeString(p.Hash)
		cur := sha256.Sum256(append([]byte{0}, h...))
		for _, st := range p.Path {
			sib, _ := hex.DecodeString(st.Hash)
			if st.Side == "L" {
				cur = sha256.Sum256(append(append([]byte{1}, sib...), cur[:]...))
			} else {
				cur = sha256.Sum256(append(append([]byte{1}, cur[:]...), sib...))
			}
		}
		if hex.EncodeToString(cur[:]) != s.Seal.Root {
			t.Errorf("proof of %d leads to %x, seal root %s", r.ID, cur, s.Seal.Root)
		}
	}
	if _, err := a.Proof(9); err == nil {
		t.Error("Proof(unsealed record) = nil error")
	}
}

func opensslTS(t *testing.T, data, tsr, ca, chain []byte) (bool, string) {
	t.Helper()
	dir := t.TempDir()
	for n, b := range map[string][]byte{"d": data, "r.tsr": tsr, "ca.pem": ca, "chain.pem": chain} {
		os.WriteFile(filepath.Join(dir, n), b, 0o600)
	}
	out, err := testenv.OpenSSLTry(t, dir, nil, "ts", "-verify", "-data", "d", "-in", "r.tsr", "-CAfile", "ca.pem", "-untrusted", "chain.pem")
	return err == nil && strings.Contains(string(out), "Verification: OK"), string(out)
}

func TestSealTampering(t *testing.T) {
	ttsa := testenv.NewTSA(t, nil, "Test TSA", time.Time{}, time.Time{})
	tsa := tsaOf(t, ttsa)
	expect := func(t *testing.T, a *Archive, id uint64, what ...string) {
		t.Helper()
		res, err := a.VerifyEvidence(evOpts(tsa, false), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range res.Problems {
			all := p.ID == id
			for _, w := range what {
				all = all && strings.Contains(p.String(), w)
			}
			if all {
				return
			}
		}
		t.Errorf("problems %v; want record %d with %q", res.Problems, id, what)
	}
	t.Run("record edited, named with its seal", func(t *testing.T) {
		a, db, recs := sealed(t, tsa, 6, 3)
		db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketRecords)
			k := u64(recs[1].ID)
			v := bytes.Replace(bytes.Clone(b.Get(k)), []byte(`"subject":"`), []byte(`"subject":"X`), 1)
			return b.Put(k, v)
		})
		expect(t, a, recs[1].ID, "record altered", "sealed by seal 4", "timestamped")
	})
	t.Run("whole chain rewritten from an earlier point", func(t *testing.T) {
		a, db, recs := sealed(t, tsa, 6, 3) // records 1-3, seal 4, records 5-7, seal 8
		_ = recs
		rewrite(t, db, 2)
		res, err := a.VerifyEvidence(evOpts(tsa, false), nil)
		if err != nil {
			t.Fatal(err)
		}
		// The chain itself is consistent again: only the tokens tell.
		for _, p := range res.Problems {
			if !strings.Contains(p.What, "stamps other data") {
				t.Errorf("unexpected problem %v", p)
			}
		}
		expect(t, a, 4, "stamps other data")
		expect(t, a, 8, "stamps other data")
	})
	t.Run("seal removed", func(t *testing.T) {
		a, db, _ := sealed(t, tsa, 6, 3)
		removeSeal(db, 4)
		expect(t, a, 4, "missing")
		expect(t, a, 4, "not a seal in the chain")
		expect(t, a, 8, "covers records 5 to 7, but the records since the previous seal are 1 to 7")
	})
	t.Run("seal removed and chain rewritten", func(t *testing.T) {
		a, db, _ := sealed(t, tsa, 6, 3)
		removeSeal(db, 4)
		rewrite(t, db, 1)
		expect(t, a, 4, "not a seal in the chain")
	})
	t.Run("token swapped", func(t *testing.T) {
		a, _, _ := sealed(t, tsa, 6, 3)
		ev := a.EvidenceDir()
		name := TSAName(tsa.URL) + ".tsr"
		b, _ := os.ReadFile(filepath.Join(ev, "4", name))
		os.WriteFile(filepath.Join(ev, "8", name), b, 0o600)
		expect(t, a, 8, "stamps other data", name)
	})
	t.Run("token of another TSA", func(t *testing.T) {
		stranger := testenv.NewTSA(t, nil, "Stranger", time.Time{}, time.Time{})
		a, _, _ := sealed(t, tsa, 3, 3)
		if _, err := a.Stamp(context.Background(), 4, tsaOf(t, stranger)); err != nil {
			t.Fatal(err)
		}
		expect(t, a, 4, "does not prove this seal", "certificate")
	})
}

// rewrite recomputes every record's chain hash from record `from` on, as
// an administrator who rewrote history would: records re-linked, seals
// given new roots, heads and previous-seal hashes, the head moved. The
// first record from `from` on also gets a changed subject.
func rewrite(t *testing.T, db *bbolt.DB, from uint64) {
	t.Helper()
	err := db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		prev := make([]byte, 32)
		lastSeal := make([]byte, 32)
		var lastSealID uint64
		var leaves [][]byte
		var first uint64 = 1
		var ids []uint64
		b.ForEach(func(k, _ []byte) error { ids = append(ids, binary.BigEndian.Uint64(k)); return nil })
		changed := false
		for _, id := range ids {
			v := b.Get(u64(id))
			m, err := bodyMap(v)
			if err != nil {
				return err
			}
			if id >= from {
				m["prev"] = hex.EncodeToString(prev)
				if m["kind"] == "seal" {
					s := m["seal"].(map[string]any)
					s["first"], s["last"], s["count"] = first, id-1, len(leaves)
					s["root"] = hex.EncodeToString(docRoot(leaves))
					s["prev_seal"], s["prev_seal_hash"] = lastSealID, hex.EncodeToString(lastSeal)
					s["head"] = hex.EncodeToString(prev)
				} else if !changed {
					m["subject"] = "rewritten"
					changed = true
				}
			}
			body, _ := json.Marshal(m)
			if id < from {
				body = v[32:]
			}
			h := sha256.New()
			h.Write([]byte("smimed archive record v1\n"))
			h.Write(prev)
			h.Write(u64(id))
			h.Write(body)
			hash := h.Sum(nil)
			b.Put(u64(id), append(bytes.Clone(hash), body...))
			if m["kind"] == "seal" {
				lastSeal, lastSealID, leaves, first = hash, id, nil, id+1
			} else {
				leaves = append(leaves, hash)
			}
			prev = hash
		}
		return tx.Bucket(bucketMeta).Put(keyHead, append(u64(ids[len(ids)-1]), prev...))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRequireTwoTSAs(t *testing.T) {
	up := tsaOf(t, testenv.NewTSA(t, nil, "Up TSA", time.Time{}, time.Time{}))
	down := testenv.NewTSA(t, nil, "Down TSA", time.Time{}, time.Time{})
	down.SetDown(true)
	a, _, _ := sealed(t, up, 3, 3)
	if _, err := a.Stamp(context.Background(), 4, tsaOf(t, down)); err == nil {
		t.Fatal("Stamp(down TSA) = nil error")
	}
	roots := x509.NewCertPool()
	pemAll := append(bytes.Clone(up.RootsPEM), tsaOf(t, down).RootsPEM...)
	roots.AppendCertsFromPEM(pemAll)
	for _, tc := range []struct {
		require int
		sealed  bool
	}{{1, true}, {2, false}} {
		res, err := a.VerifyEvidence(EvidenceOptions{Roots: roots, RootsPEM: pemAll, Require: tc.require}, nil)
		if err != nil || !res.OK() {
			t.Fatalf("VerifyEvidence: %v %v", res.Problems, err)
		}
		if res.Seals[0].Sealed != tc.sealed {
			t.Errorf("require %d: Sealed = %v, want %v", tc.require, res.Seals[0].Sealed, tc.sealed)
		}
	}
}

// removeSeal deletes seal record id, as an administrator hiding it would.
func removeSeal(db *bbolt.DB, id uint64) {
	db.Update(func(tx *bbolt.Tx) error {
		tx.Bucket(bucketSeals).Delete(u64(id))
		return tx.Bucket(bucketRecords).Delete(u64(id))
	})
}

// TestSealExpiredTSACertificate: a seal timestamped while the TSA's
// certificate was valid still verifies after it expired, by smimed and
// by openssl ts -verify at the token's time (--openssl), which agree.
func TestSealExpiredTSACertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a certificate to expire")
	}
	notAfter := time.Now().Add(3 * time.Second).Truncate(time.Second)
	tsa := tsaOf(t, testenv.NewTSA(t, nil, "Short TSA", time.Now().Add(-time.Hour), notAfter))
	a, _, _ := sealed(t, tsa, 3, 3)
	time.Sleep(time.Until(notAfter) + 1500*time.Millisecond)
	res, err := a.VerifyEvidence(evOpts(tsa, true), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || len(res.Seals) != 1 || !res.Seals[0].Sealed || res.Seals[0].Tokens[0].OpenSSL != "OK" {
		t.Errorf("VerifyEvidence after the TSA certificate expired: %v %+v", res.Problems, res.Seals)
	}
	// openssl at the current time refuses it: the reason smimed judges
	// (and asks openssl to judge) at the token's time.
	s, _ := a.GetSeal(4)
	toks, _ := a.Tokens(4)
	if ok, _ := opensslTS(t, s.Seal.Statement(4), toks[0].Response, tsa.RootsPEM, toks[0].Chain); ok {
		t.Log("openssl ts -verify without -attime accepts the expired TSA certificate")
	}
}
