package archive

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func TestRetainUntilYearEnds(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	for _, tc := range []struct {
		received string
		years    int
		loc      *time.Location
		want     string
	}{
		{"2024-12-31T23:59:59Z", 6, nil, "2030-12-31T23:59:59Z"},
		{"2025-01-01T00:00:00Z", 6, nil, "2031-12-31T23:59:59Z"},
		{"2024-02-29T12:00:00Z", 8, nil, "2032-12-31T23:59:59Z"}, // leap day in, leap year out
		{"2023-06-15T08:00:00Z", 10, nil, "2033-12-31T23:59:59Z"},
		{"2024-01-01T00:00:00Z", 0, nil, "2024-12-31T23:59:59Z"},
		// 00:30 on January 1 in Berlin is still December 31 in UTC: the
		// Berlin calendar counts.
		{"2024-12-31T23:30:00Z", 6, berlin, "2031-12-31T22:59:59Z"},
		{"2024-12-31T22:30:00Z", 6, berlin, "2030-12-31T22:59:59Z"},
	} {
		rec, _ := time.Parse(time.RFC3339, tc.received)
		if got := RetainUntil(rec, tc.years, tc.loc).Format(time.RFC3339); got != tc.want {
			t.Errorf("RetainUntil(%s, %d, %v) = %s, want %s", tc.received, tc.years, tc.loc, got, tc.want)
		}
	}
	r := &Record{RetainUntil: time.Date(2030, 12, 31, 23, 59, 59, 0, time.UTC)}
	for _, tc := range []struct {
		now  time.Time
		want bool
	}{
		{time.Date(2030, 12, 31, 23, 59, 59, 999999999, time.UTC), false},
		{time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC), false},
	} {
		if got := r.Expired(tc.now); got != tc.want {
			t.Errorf("Expired(%s) = %v, want %v", tc.now, got, tc.want)
		}
	}
	if (&Record{}).Expired(time.Now()) {
		t.Error("a record without retain-until expired")
	}
}

// testPolicy: letters 6y (default), bookings 8y (e-invoices and mail
// from the tax adviser), books 10y (the ledger folder).
func testPolicy() *Retention {
	return &Retention{
		Classes: map[string]int{"letters": 6, "bookings": 8, "books": 10},
		Default: "letters", EInvoiceClass: "bookings",
		Rules: []RetentionRule{
			{Class: "books", Folders: []string{"Ledger"}},
			{Class: "bookings", FromDomains: []string{"tax.example"}},
			{Class: "letters", ToDomains: []string{"press.example"}, Accounts: []string{"ceo"}},
		},
	}
}

func TestClassesByRuleAndEInvoice(t *testing.T) {
	a, _ := openTest(t)
	a.SetRetention(testPolicy())
	eng := engine(t)
	at := func(uid uint32, folder string) Source {
		return Source{Account: "ceo", Folder: folder, UIDValidity: 1, UID: uid, InternalDate: time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)}
	}
	for _, tc := range []struct {
		src   Source
		raw   []byte
		class string
		until int // year
	}{
		{at(1, "INBOX"), synthetic("x@partner.example", "ceo@org.example", "hi", 1), "letters", 2030},
		{at(2, "Ledger"), synthetic("x@partner.example", "ceo@org.example", "ledger", 2), "books", 2034},
		{at(3, "INBOX"), synthetic("adviser@TAX.example", "ceo@org.example", "tax", 3), "bookings", 2032},
		{at(4, "INBOX"), mailWith("application/xml", "r.xml", []byte(ublInvoice)), "bookings", 2032},
		// A rule picks books, the e-invoice does not shorten it.
		{at(5, "Ledger"), mailWith("application/pdf", "r.pdf", pdfWith("zugferd-invoice.xml", ciiInvoice, "x")), "books", 2034},
		// A rule picks letters, the e-invoice makes it bookings.
		{at(6, "INBOX"), append(mailWith("application/xml", "r.xml", []byte(ciiInvoice)), []byte{}...), "bookings", 2032},
	} {
		raw := tc.raw
		if tc.src.UID == 6 {
			raw = []byte(strings.Replace(string(raw), "To: ap@org.example", "To: desk@press.example", 1))
		}
		r, _ := put(t, a, eng, tc.src, raw)
		if r.Class != tc.class || r.RetainUntil.Year() != tc.until || r.RetainUntil.Month() != 12 || r.RetainUntil.Day() != 31 {
			t.Errorf("message %d: class %q until %s, want %q until %d-12-31", tc.src.UID, r.Class, r.RetainUntil, tc.class, tc.until)
		}
		got, err := a.Get(r.ID)
		if err != nil || got.Class != tc.class || !got.RetainUntil.Equal(r.RetainUntil) || got.RetentionFromConfig {
			t.Errorf("message %d as stored: %+v, %v", tc.src.UID, got, err)
		}
	}
}

func TestRecordsBeforeRetentionGetItOnRead(t *testing.T) {
	a, _ := openTest(t)
	eng := engine(t)
	old, _ := put(t, a, eng, src(1), synthetic("x@partner.example", "ceo@org.example", "old", 1))
	if old.Class != "" || !old.RetainUntil.IsZero() {
		t.Fatalf("without a policy: class %q until %s", old.Class, old.RetainUntil)
	}
	a.SetRetention(testPolicy())
	got, err := a.Get(old.ID)
	if err != nil || got.Class != "letters" || got.RetainUntil.Year() != 2032 || !got.RetentionFromConfig {
		t.Errorf("old record read under a policy: %q %s computed %v (%v); want letters until 2032, computed", got.Class, got.RetainUntil, got.RetentionFromConfig, err)
	}
	res, err := a.Verify(nil)
	if err != nil || !res.OK() {
		t.Errorf("verify after reading an old record: %+v %v", res, err)
	}
}

// purgeFixture archives four letters received in 2015 (retain until
// 2021) and one in 2025, and sets the clock to 2026.
func purgeFixture(t *testing.T) (*Archive, []*Record) {
	t.Helper()
	a, _ := openTest(t)
	a.SetRetention(testPolicy())
	eng := engine(t)
	var recs []*Record
	for i := range 5 {
		year := 2015
		if i == 4 {
			year = 2025
		}
		s := Source{Account: "ceo", Folder: "INBOX", UIDValidity: 1, UID: uint32(i + 1), InternalDate: time.Date(year, 3, 1, 9, i, 0, 0, time.UTC)}
		r, _ := put(t, a, eng, s, synthetic("x@partner.example", "ceo@org.example", "letter", i))
		recs = append(recs, r)
	}
	a.now = func() time.Time { return time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC) }
	return a, recs
}

func ids(t *testing.T, a *Archive, q Query) []uint64 {
	t.Helper()
	var out []uint64
	if err := a.List(q, func(r *Record) error { out = append(out, r.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

var (
	alice = Person{UID: 0, Login: 1001, User: "root"}
	bob   = Person{UID: 0, Login: 1002, User: "root"}
)

// auditPlan writes the audit entry the admin layer writes for a plan.
func auditPlan(t *testing.T, a *Archive, p *PurgePlan) {
	t.Helper()
	if err := a.Audit(AuditEntry{UID: p.Planner.UID, Via: "direct", Action: AuditPurgePlan, Detail: "plan=" + p.ID + " records=1"}); err != nil {
		t.Fatal(err)
	}
}

func TestPurgeHoldsRestrictionsAndTombstone(t *testing.T) {
	a, recs := purgeFixture(t)
	if got, want := ids(t, a, Query{Expired: true}), []uint64{1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Fatalf("expired: %v, want %v", got, want)
	}
	// Two holds on record 1, one on 2; record 3 restricted.
	if _, err := a.AddHold(Hold{Case: "case-a", Query: Query{Subject: "letter", Until: time.Date(2015, 3, 1, 9, 1, 0, 0, time.UTC)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddHold(Hold{Case: "case-b", Query: Query{Until: time.Date(2015, 3, 1, 9, 2, 0, 0, time.UTC)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddHold(Hold{Case: "case-b", Query: Query{}}); !errors.Is(err, ErrExists) {
		t.Errorf("second hold case-b: %v, want ErrExists", err)
	}
	if c, _ := a.HeldBy(recs[0]); !slices.Equal(c, []string{"case-a", "case-b"}) {
		t.Errorf("record 1 held by %v, want case-a and case-b", c)
	}
	if _, err := a.Restrict(recs[2].ID, "art. 18", "uid 0", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, a, Query{HideRestricted: true}); slices.Contains(got, recs[2].ID) || len(got) != 4 {
		t.Errorf("list hiding restricted: %v", got)
	}
	if got, want := ids(t, a, Query{Expired: true}), []uint64{4}; !slices.Equal(got, want) {
		t.Fatalf("expired with holds and a restriction: %v, want %v", got, want)
	}
	p, err := a.PlanPurge(alice)
	if err != nil || len(p.Records) != 1 || p.Records[0].ID != 4 {
		t.Fatalf("plan: %+v, %v; want record 4 only", p, err)
	}
	auditPlan(t, a, p)
	if _, err := a.ApprovePurge(p.ID, Person{UID: 0, Login: 1001}); !errors.Is(err, ErrSamePerson) {
		t.Errorf("approved by the planner: %v, want ErrSamePerson", err)
	}
	// A hold added meanwhile makes the plan stale, even when removed again…
	a.AddHold(Hold{Case: "case-c", Query: Query{From: "nobody@x.example"}})
	if _, err := a.ApprovePurge(p.ID, bob); !errors.Is(err, ErrStale) {
		t.Errorf("approve after a hold was added: %v, want ErrStale", err)
	}
	a.RemoveHold("case-c")
	p, err = a.PlanPurge(alice)
	if err != nil {
		t.Fatal(err)
	}
	// …and an edited plan is refused.
	edited, _ := os.ReadFile(a.PlanDir() + "/" + p.ID + ".json")
	os.WriteFile(a.PlanDir()+"/"+p.ID+".json", []byte(strings.Replace(string(edited), `"id": 4`, `"id": 1`, 1)), 0o600)
	if _, err := a.ApprovePurge(p.ID, bob); !errors.Is(err, ErrCorrupt) {
		t.Errorf("approve of an edited plan: %v, want ErrCorrupt", err)
	}
	a.now = func() time.Time { return time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC) }
	p, _ = a.PlanPurge(alice)
	if _, err := a.ApprovePurge(p.ID, bob); !errors.Is(err, ErrCorrupt) {
		t.Errorf("approve of a plan the audit log does not know: %v, want ErrCorrupt", err)
	}
	auditPlan(t, a, p)
	opath := a.OriginalPath(recs[3].OriginalSHA256)
	ppath, _ := a.PlaintextPath(recs[3])
	tomb, err := a.ApprovePurge(p.ID, bob)
	if err != nil {
		t.Fatalf("approve by another person: %v", err)
	}
	for _, f := range []string{opath, ppath} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after the purge (%v)", f, err)
		}
	}
	if _, err := a.ApprovePurge(p.ID, bob); !errors.Is(err, ErrNotFound) {
		t.Errorf("second approve of the same plan: %v, want ErrNotFound", err)
	}
	if got := ids(t, a, Query{}); slices.Contains(got, recs[3].ID) {
		t.Errorf("purged record still listed: %v", got)
	}
	if got := ids(t, a, Query{Subject: "letter"}); slices.Contains(got, recs[3].ID) {
		t.Errorf("purged record still found by subject: %v", got)
	}
	gone, err := a.Get(recs[3].ID)
	if err != nil || gone.Kind != KindPurged || gone.Subject != "" || gone.From != "" || gone.MessageID != "" || gone.PurgedBy != tomb.ID {
		t.Errorf("purged record: %+v, %v", gone, err)
	}
	if _, err := a.ReadPlaintext(gone); !errors.Is(err, ErrNotFound) {
		t.Errorf("reading a purged message: %v", err)
	}
	res, err := a.Verify(nil)
	if err != nil || !res.OK() {
		t.Fatalf("verify after the purge: %+v, %v", res, err)
	}
	if len(res.Purges) != 1 || res.Purges[0].Tombstone != tomb.ID || !slices.Equal(res.Purges[0].Records, []uint64{recs[3].ID}) || res.Purges[0].Approver.Login != bob.Login {
		t.Errorf("verify's gaps: %+v", res.Purges)
	}
	// Archiving goes on after a tombstone.
	put(t, a, engine(t), Source{Account: "ceo", Folder: "INBOX", UIDValidity: 1, UID: 99, InternalDate: time.Now()}, synthetic("a@b.example", "c@d.example", "after", 99))
	if res, err := a.Verify(nil); err != nil || !res.OK() {
		t.Fatalf("verify after archiving past the tombstone: %+v, %v", res, err)
	}

	// Tampering: a changed tombstone, a record emptied without one.
	tamper := func(id uint64, fn func(v []byte) []byte) {
		t.Helper()
		err := a.db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketRecords)
			return b.Put(u64(id), fn(append([]byte{}, b.Get(u64(id))...)))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var saved []byte
	a.db.View(func(tx *bbolt.Tx) error {
		saved = append([]byte{}, tx.Bucket(bucketRecords).Get(u64(tomb.ID))...)
		return nil
	})
	tamper(tomb.ID, func(v []byte) []byte { return []byte(strings.Replace(string(v), `"login":1002`, `"login":1001`, 1)) })
	if res, _ := a.Verify(nil); res.OK() || !strings.Contains(problems(res), "record altered") {
		t.Errorf("verify with a changed tombstone: %s", problems(res))
	}
	tamper(tomb.ID, func([]byte) []byte { return saved })
	tamper(recs[4].ID, func(v []byte) []byte {
		r, _ := decodeRecord(recs[4].ID, v)
		_, body, _ := emptyRecord(r, r, tomb.ID)
		return append(v[:32:32], body...)
	})
	if res, _ := a.Verify(nil); res.OK() || !strings.Contains(problems(res), "no tombstone names it") {
		t.Errorf("verify with a record emptied behind the chain's back: %s", problems(res))
	}
}

func problems(res *VerifyResult) string {
	var s []string
	for _, p := range res.Problems {
		s = append(s, p.String())
	}
	return strings.Join(s, "; ")
}

func TestPurgeKeepsSharedOriginalAndVersions(t *testing.T) {
	a, recs := purgeFixture(t)
	// The same bytes as record 1 in another folder, received later:
	// not expired, so the shared original stays.
	raw := synthetic("x@partner.example", "ceo@org.example", "letter", 0)
	s := Source{Account: "ceo", Folder: "Archive", UIDValidity: 1, UID: 1, InternalDate: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	res, _ := engine(t).Process(raw, s.InternalDate)
	if _, _, err := a.Put(s, raw, res); err != nil {
		t.Fatal(err)
	}
	p, err := a.PlanPurge(alice)
	if err != nil || len(p.Records) != 4 {
		t.Fatalf("plan %+v %v", p, err)
	}
	auditPlan(t, a, p)
	if _, err := a.ApprovePurge(p.ID, bob); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.OriginalPath(recs[0].OriginalSHA256)); err != nil {
		t.Errorf("original shared with a kept message: %v", err)
	}
	if _, err := os.Stat(a.OriginalPath(recs[1].OriginalSHA256)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("original of a purged message: %v", err)
	}
	if res, err := a.Verify(nil); err != nil || !res.OK() {
		t.Errorf("verify: %s %v", problems(res), err)
	}
}

type holdLog struct{ calls []string }

func (h *holdLog) HoldChanged(hold Hold, added bool, ids []uint64) error {
	h.calls = append(h.calls, fmt.Sprintf("%s %v %v", hold.Case, added, ids))
	return nil
}

func TestHoldObserver(t *testing.T) {
	a, recs := purgeFixture(t)
	var log holdLog
	a.SetHoldObserver(&log)
	q1 := Query{Until: time.Date(2015, 3, 1, 9, 2, 0, 0, time.UTC)} // records 1, 2
	q2 := Query{Until: time.Date(2015, 3, 1, 9, 1, 0, 0, time.UTC)} // record 1
	a.AddHold(Hold{Case: "a", Query: q1})
	a.AddHold(Hold{Case: "b", Query: q2})
	a.RemoveHold("a") // record 2 is free, record 1 still held by b
	a.RemoveHold("b")
	want := []string{
		fmt.Sprintf("a true [%d %d]", recs[1].ID, recs[0].ID),
		fmt.Sprintf("b true [%d]", recs[0].ID),
		fmt.Sprintf("a false [%d]", recs[1].ID),
		fmt.Sprintf("b false [%d]", recs[0].ID),
	}
	if !slices.Equal(log.calls, want) {
		t.Errorf("observer calls %q, want %q", log.calls, want)
	}
}
