package state_test

// A state file written before the registry (testdata/state, by the code of
// commit bade7ee) is opened by this code with every owner linked in, as
// the smimed binary has them: everything in it is read through the owners'
// public APIs and matches what that commit's APIs read back
// (v1-expected.json), read-only before the first read-write open and after
// it; the read-write open records the versions and leaves every other
// byte of the owners' buckets as it was.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/state"
)

const fixtureDir = "../../testdata/state"

type v1Cert struct {
	Email       string    `json:"email"`
	Fingerprint string    `json:"fingerprint"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	MessageID   string    `json:"message_id"`
	Quarantined bool      `json:"quarantined"`
	Preferred   bool      `json:"preferred"`
	TrustedBy   string    `json:"trusted_by,omitempty"`
}

type v1Checkpoint struct {
	Account     string `json:"account"`
	Folder      string `json:"folder"`
	UIDValidity uint32 `json:"uidvalidity"`
	UID         uint32 `json:"uid"`
}

// v1Copy is a stored user's copy as the code of the fixture's time
// returned it.
type v1Copy struct {
	Folder     string    `json:"folder"`
	UID        uint32    `json:"uid,omitempty"`
	AppendedAt time.Time `json:"appended_at,omitzero"`
	Error      string    `json:"error,omitempty"`
	FailedAt   time.Time `json:"failed_at,omitzero"`
}

// state is the copy's state as archive.CopyState has it.
func (c v1Copy) state() archive.CopyState {
	if c.Error != "" {
		return archive.CopyState{Kind: archive.CopyPending, Folder: c.Folder, Reason: c.Error, At: c.FailedAt}
	}
	return archive.CopyState{Kind: archive.CopyStored, Folder: c.Folder, UID: c.UID, At: c.AppendedAt}
}

// v1Expected is testdata/state/v1-expected.json.
type v1Expected struct {
	Certs         []v1Cert             `json:"certs"`
	Intermediates []string             `json:"intermediates"`
	Records       []json.RawMessage    `json:"records"`
	HeadID        uint64               `json:"head_id"`
	HeadHash      string               `json:"head_hash"`
	Copies        map[uint64]v1Copy    `json:"copies"`
	Pending       []uint64             `json:"pending"`
	Audit         []archive.AuditEntry `json:"audit"`
	Checkpoints   []v1Checkpoint       `json:"checkpoints"`
}

// v1File unpacks the fixture into a new directory; it returns the state
// file's path.
func v1File(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtureDir, "v1-smimed.db.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state", "smimed.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func v1Want(t *testing.T) *v1Expected {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, "v1-expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exp v1Expected
	if err := json.Unmarshal(data, &exp); err != nil {
		t.Fatal(err)
	}
	if len(exp.Certs) == 0 || len(exp.Records) == 0 || len(exp.Audit) == 0 || len(exp.Checkpoints) == 0 || len(exp.Copies) == 0 || len(exp.Pending) == 0 {
		t.Fatalf("v1-expected.json lacks a part: %+v", exp)
	}
	return &exp
}

// rawBuckets reads every bucket's keys and values with bbolt alone.
func rawBuckets(t *testing.T, path string) map[string]map[string]string {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]map[string]string{}
	db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			m := map[string]string{}
			out[string(name)] = m
			return b.ForEach(func(k, v []byte) error {
				m[string(k)] = string(v)
				return nil
			})
		})
	})
	return out
}

func TestV1File(t *testing.T) {
	path, exp := v1File(t), v1Want(t)
	before := rawBuckets(t, path)
	if got := before["meta"]; len(got) != 1 || got["schema"] != "1" {
		t.Fatalf("the fixture's meta = %q, want only schema=1 (a file written before the registry)", got)
	}

	// Read-only first, as `smimed status` or `smimed certs list` would
	// after an upgrade, before the daemon ran.
	db, err := state.Open(path, true)
	if err != nil {
		t.Fatalf("Open(v1, read-only) = %v", err)
	}
	if v, err := db.Versions(); err != nil || len(v) != 0 {
		t.Errorf("Versions() read-only = %v, %v; want none recorded yet", v, err)
	}
	checkV1(t, db, exp)
	db.Close()
	if after := rawBuckets(t, path); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a read-only open changed the file")
	}

	// The first read-write open records the versions and nothing else.
	db, err = state.Open(path, false)
	if err != nil {
		t.Fatalf("Open(v1, read-write) = %v", err)
	}
	v, err := db.Versions()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range state.Registered() {
		names = append(names, b.Name)
		if v[b.Name] != b.Version || b.Version != 1 {
			t.Errorf("bucket %s: version recorded %d, registered %d; want 1", b.Name, v[b.Name], b.Version)
		}
	}
	slices.Sort(names)
	want := []string{"addresses", "archive_appending", "archive_audit", "archive_copies", "archive_index", "archive_keys", "archive_meta",
		"archive_pending", "archive_records", "archive_seals", "certs", "checkpoints", "intermediates", "revocation_crls"}
	// Buckets registered after v1 are created, empty.
	added := []string{"archive_appending", "archive_seals", "revocation_crls"}
	if !slices.Equal(names, want) || len(v) != len(want) {
		t.Errorf("registered buckets %v, recorded %v; want %v", names, v, want)
	}
	checkV1(t, db, exp)
	db.Close()

	after := rawBuckets(t, path)
	for name, kv := range before {
		if name != "meta" && fmt.Sprint(after[name]) != fmt.Sprint(kv) {
			t.Errorf("bucket %s changed by the read-write open", name)
		}
	}
	for _, name := range added {
		if _, had := before[name]; had || len(after[name]) != 0 {
			t.Errorf("bucket %s: in the v1 file %v, after the open %d entries; want absent, then empty", name, had, len(after[name]))
		}
	}
	if len(after) != len(before)+len(added) {
		t.Errorf("buckets after the read-write open: %d, before: %d; want %d more", len(after), len(before), len(added))
	}
	wantMeta := map[string]string{"schema": "1"}
	for _, n := range want {
		wantMeta["version/"+n] = "1"
	}
	if fmt.Sprint(after["meta"]) != fmt.Sprint(wantMeta) {
		t.Errorf("meta = %v, want %v", after["meta"], wantMeta)
	}

	// And it goes on working: both chains take new entries, the
	// checkpoints a new value, and a read-only open reads it all.
	db, err = state.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	arc, err := archive.Open(filepath.Join(t.TempDir(), "archive"), db)
	if err != nil {
		t.Fatal(err)
	}
	if err := arc.Audit(archive.AuditEntry{Via: "direct", Action: archive.AuditVerify, Detail: "after the upgrade"}); err != nil {
		t.Fatal(err)
	}
	cps, err := daemon.NewCheckpoints(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := cps.Set("ceo", "INBOX", daemon.Checkpoint{UIDValidity: 7, UID: 15}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = state.Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	arc, err = archive.Open(filepath.Join(t.TempDir(), "archive"), db)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := arc.VerifyAudit(); err != nil || !res.OK() || res.Records != len(exp.Audit)+1 {
		t.Errorf("VerifyAudit() after a new entry = %+v, %v; want %d entries, no problem", res, err, len(exp.Audit)+1)
	}
	list, err := daemon.StoreCheckpoints(db)
	if err != nil || len(list) != len(exp.Checkpoints) {
		t.Fatalf("StoreCheckpoints() = %v, %v", list, err)
	}
	for _, f := range list {
		if f.Account == "ceo" && f.Folder == "INBOX" && (f.UIDValidity != 7 || f.CheckpointUID != 15) {
			t.Errorf("checkpoint ceo/INBOX = %d/%d, want 7/15", f.UIDValidity, f.CheckpointUID)
		}
	}
}

// checkV1 reads every bucket of the fixture through its owner's API.
func checkV1(t *testing.T, db *state.DB, exp *v1Expected) {
	t.Helper()
	ro := db.ReadOnly()

	// certs, addresses: by email (and the whole list).
	st := harvest.NewStore(db)
	all, err := st.List()
	if err != nil || len(all) != len(exp.Certs) {
		t.Errorf("List() = %d entries, %v; want %d", len(all), err, len(exp.Certs))
	}
	for _, c := range exp.Certs {
		es, err := st.ByEmail(c.Email)
		if err != nil || len(es) != 1 {
			t.Errorf("ByEmail(%s) = %d entries, %v; want 1", c.Email, len(es), err)
			continue
		}
		e := es[0]
		got := v1Cert{e.Email, e.Fingerprint, e.FirstSeen, e.LastSeen, e.MessageID, e.Quarantined, e.EncryptionPreferred, e.TrustedBy}
		if !sameJSON(got, c) || harvest.Fingerprint(e.Cert) != c.Fingerprint {
			t.Errorf("ByEmail(%s) = %+v, want %+v", c.Email, got, c)
		}
	}
	// intermediates
	inter, err := st.Intermediates()
	var fps []string
	for _, c := range inter {
		fps = append(fps, harvest.Fingerprint(c))
	}
	slices.Sort(fps)
	if err != nil || !slices.Equal(fps, exp.Intermediates) {
		t.Errorf("Intermediates() = %v, %v; want %v", fps, err, exp.Intermediates)
	}

	// archive_records by id, archive_keys (Lookup), archive_index (List
	// by sender), archive_meta (Head), archive_copies, archive_pending.
	arc, err := archive.Open(filepath.Join(t.TempDir(), "archive"), db)
	if err != nil {
		t.Fatalf("archive.Open(read-only=%v) = %v", ro, err)
	}
	for _, want := range exp.Records {
		var id struct {
			ID uint64 `json:"id"`
		}
		json.Unmarshal(want, &id)
		r, err := arc.Get(id.ID)
		if err != nil {
			t.Errorf("Get(%d) = %v", id.ID, err)
			continue
		}
		got, _ := json.Marshal(r)
		var w bytes.Buffer
		json.Compact(&w, want)
		if !bytes.Equal(got, w.Bytes()) {
			t.Errorf("Get(%d) =\n%s\nwant\n%s", id.ID, got, w.Bytes())
		}
		if cur, err := arc.Lookup(r.Source(), r.OriginalSHA256); err != nil || cur == nil || cur.ID != r.ID {
			t.Errorf("Lookup(record %d) = %v, %v", r.ID, cur, err)
		}
		var byFrom []uint64
		err = arc.List(archive.Query{From: r.From, Account: r.Account}, func(x *archive.Record) error {
			byFrom = append(byFrom, x.ID)
			return nil
		})
		if err != nil || !slices.Contains(byFrom, r.ID) {
			t.Errorf("List(from %s) = %v, %v; want it to hold %d", r.From, byFrom, err, r.ID)
		}
		c, err := arc.GetCopy(r.ID)
		if wc, ok := exp.Copies[r.ID]; err != nil || (c == nil) == ok || (ok && !sameJSON(*c, wc.state())) {
			t.Errorf("GetCopy(%d) = %+v, %v; want %+v", r.ID, c, err, exp.Copies[r.ID])
		}
	}
	if n, err := arc.Count(); err != nil || n != len(exp.Records) {
		t.Errorf("Count() = %d, %v; want %d", n, err, len(exp.Records))
	}
	if id, hash, err := arc.Head(); err != nil || id != exp.HeadID || hash != exp.HeadHash {
		t.Errorf("Head() = %d, %s, %v; want %d, %s", id, hash, err, exp.HeadID, exp.HeadHash)
	}
	if p, err := arc.PendingCopies(); err != nil || !slices.Equal(p, exp.Pending) {
		t.Errorf("PendingCopies() = %v, %v; want %v", p, err, exp.Pending)
	}
	// The chain and the indexes verify; only the message files are not
	// part of the fixture.
	res, err := arc.Verify(nil)
	if err != nil || res.Records != len(exp.Records) || res.HeadID != exp.HeadID {
		t.Errorf("Verify() = %+v, %v", res, err)
	} else {
		for _, p := range res.Problems {
			if p.What != "file missing" {
				t.Errorf("Verify(): %s", p)
			}
		}
	}

	// archive_audit (and its head in archive_meta).
	var audit []archive.AuditEntry
	err = arc.AuditLog(time.Time{}, func(e archive.AuditEntry) error {
		audit = append(audit, e)
		return nil
	})
	if err != nil || !sameJSON(audit, exp.Audit) {
		t.Errorf("AuditLog() = %+v, %v; want %+v", audit, err, exp.Audit)
	}
	if res, err := arc.VerifyAudit(); err != nil || !res.OK() || res.Records != len(exp.Audit) {
		t.Errorf("VerifyAudit() = %+v, %v", res, err)
	}

	// checkpoints
	list, err := daemon.StoreCheckpoints(db)
	var got []v1Checkpoint
	for _, f := range list {
		got = append(got, v1Checkpoint{f.Account, f.Folder, f.UIDValidity, f.CheckpointUID})
	}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(exp.Checkpoints) {
		t.Errorf("StoreCheckpoints() = %v, %v; want %v", got, err, exp.Checkpoints)
	}
	if !ro {
		cps, err := daemon.NewCheckpoints(db)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range exp.Checkpoints {
			cp, ok, err := cps.Get(c.Account, c.Folder)
			if err != nil || !ok || cp.UIDValidity != c.UIDValidity || cp.UID != c.UID {
				t.Errorf("Get(%s, %s) = %+v, %v, %v; want %+v", c.Account, c.Folder, cp, ok, err, c)
			}
		}
	}
}

// sameJSON compares two values by their JSON forms (times by instant).
func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}
