package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
)

// childArgEnv carries the child's argument (a plan, a record id).
const childArgEnv = "SMIMED_CONTROL_TEST_ARG"

// retentionChildOp runs one retention op in TestControlHelperProcess's
// child and prints its outcome.
func retentionChildOp(ctx context.Context, api ArchiveAPI, op string) {
	arg := os.Getenv(childArgEnv)
	id, _ := strconv.ParseUint(arg, 10, 64)
	switch op {
	case "purge_approve":
		t, err := api.PurgeApprove(ctx, arg)
		if t != nil {
			fmt.Printf("purge_approve: tombstone %d purged %d, %v\n", t.ID, len(t.Tombstone.Purged), err)
			return
		}
		fmt.Printf("purge_approve: %v\n", err)
	case "purge_plan":
		_, err := api.PurgePlan(ctx)
		fmt.Printf("purge_plan: %v\n", err)
	case "hold_add":
		_, err := api.HoldAdd(ctx, "child-case", archive.Query{}, "")
		fmt.Printf("hold_add: %v\n", err)
	case "hold_list":
		_, err := api.Holds(ctx)
		fmt.Printf("hold_list: %v\n", err)
	case "restrict":
		_, err := api.Restrict(ctx, id, "child", false)
		fmt.Printf("restrict: %v\n", err)
	case "show":
		var b bytes.Buffer
		err := api.Message(ctx, id, false, &b)
		fmt.Printf("show: %d bytes, %v\n", b.Len(), err)
	case "audit":
		err := api.Audit(ctx, time.Time{}, func(archive.AuditEntry) error { return nil })
		fmt.Printf("audit: %v\n", err)
	}
}

// retentionFixture is the control fixture with a retention policy and
// three letters received in 2015 (retention ended in 2021).
func retentionFixture(t *testing.T) (*controlFixture, []uint64) {
	t.Helper()
	f := newControlFixture(t, nil)
	f.arc.SetRetention(&archive.Retention{Classes: map[string]int{"letters": 6, "bookings": 8}, Default: "letters", EInvoiceClass: "bookings"})
	var old []uint64
	for i := range 3 {
		raw := []byte(fmt.Sprintf("From: a@oldpartner.example\r\nTo: ceo@org.example\r\nSubject: old letter %d\r\nMessage-ID: <old%d@x>\r\n\r\n%s old %d\r\n", i, i, bodyMarker, i))
		src := archive.Source{Account: "ceo", Folder: "Old", UIDValidity: 1, UID: uint32(i + 1), InternalDate: time.Date(2015, 6, 1, 12, i, 0, 0, time.UTC)}
		res, err := f.eng.Process(raw, src.InternalDate)
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := f.arc.Put(src, raw, res)
		if err != nil {
			t.Fatal(err)
		}
		if r.Class != "letters" || r.RetainUntil.Year() != 2021 {
			t.Fatalf("old letter: class %q until %s", r.Class, r.RetainUntil)
		}
		f.raw[r.ID] = raw
		old = append(old, r.ID)
	}
	return f, old
}

func admin0(f *controlFixture) *Local {
	return &Local{Archive: f.arc, Store: f.store, State: f.state, Caller: Caller{UID: 0, GID: 0, PID: os.Getpid(), Via: "direct", Role: RoleAdmin, Login: 0}}
}

// auditOf lists "action detail" of uid's audit entries.
func auditOf(t *testing.T, f *controlFixture, uid int) []string {
	t.Helper()
	var out []string
	f.arc.AuditLog(time.Time{}, func(e archive.AuditEntry) error {
		if e.UID == uid {
			out = append(out, e.Action+" "+e.Detail)
		}
		return nil
	})
	return out
}

func hasEntry(entries []string, prefix string) bool {
	return slices.ContainsFunc(entries, func(e string) bool { return strings.HasPrefix(e, prefix) })
}

func TestPurgeByTwoPeopleOverTheSocket(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("a second person needs a second user: run the tests as root (archive's TestPurgeHoldsRestrictionsAndTombstone covers the rule)")
	}
	f, old := retentionFixture(t)
	ctx := context.Background()
	root := admin0(f)
	// One held, one restricted (hold and restriction added first: they
	// are what the plan is made under).
	if _, err := root.HoldAdd(ctx, "case-1", archive.Query{Subject: "old letter 0"}, "tax audit 2015"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.arc.Restrict(old[1], "art. 18", "test", time.Now().AddDate(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	plan, err := root.PurgePlan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Records) != 1 || plan.Records[0].ID != old[2] {
		t.Fatalf("plan %+v: want only record %d (the others are held and restricted)", plan.Records, old[2])
	}
	// The same person (this process, root) over the socket: refused.
	api := f.dial(t)
	if _, err := api.PurgeApprove(ctx, plan.ID); !errors.Is(err, archive.ErrSamePerson) {
		t.Fatalf("approve by the planner over the socket: %v, want ErrSamePerson", err)
	}
	// Another person: uid 4343, the service user here.
	const other = 4343
	f.srv.policy.uid = other
	opath := f.arc.OriginalPath(plan.Records[0].OriginalSHA256)
	out := runChild(t, f, other, other, childOpsEnv+"=purge_approve", childArgEnv+"="+plan.ID)
	if !strings.Contains(out, "purge_approve: tombstone ") || !strings.Contains(out, "purged 1, <nil>") {
		t.Fatalf("the other admin's approve: %s", out)
	}
	if _, err := os.Stat(opath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("original of the purged message: %v, want gone", err)
	}
	res, err := root.Verify(ctx, nil)
	if err != nil || !res.OK() {
		t.Fatalf("verify after the purge: %+v %v", res, err)
	}
	if len(res.Purges) != 1 || res.Purges[0].Approver.UID != other || res.Purges[0].Planner.UID != 0 || !slices.Equal(res.Purges[0].Records, []uint64{old[2]}) {
		t.Errorf("verify's gap: %+v", res.Purges)
	}
	if got := auditOf(t, f, 0); !hasEntry(got, "purge-plan plan="+plan.ID) || !hasEntry(got, "refused archive purge --approve plan="+plan.ID) || !hasEntry(got, "hold-add case=\"case-1\"") {
		t.Errorf("root's audit entries: %q", got)
	}
	if got := auditOf(t, f, other); !hasEntry(got, "purge-approve plan="+plan.ID+" tombstone=") {
		t.Errorf("the approver's audit entries: %q", got)
	}
	// A hold added after a plan makes it stale.
	f.arc.SetRetention(&archive.Retention{Classes: map[string]int{"letters": 0}, Default: "letters"})
	root.HoldRemove(ctx, "case-1")
	plan2, err := root.PurgePlan(ctx)
	if err != nil || len(plan2.Records) == 0 {
		t.Fatalf("second plan %+v %v", plan2, err)
	}
	root.HoldAdd(ctx, "case-2", archive.Query{From: "someone@else.example"}, "")
	out = runChild(t, f, other, other, childOpsEnv+"=purge_approve", childArgEnv+"="+plan2.ID)
	if !strings.Contains(out, "the purge plan is stale") {
		t.Errorf("approve of a stale plan: %s", out)
	}
}

func TestRestrictAndAuditorOverTheSocket(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("an auditor needs a second user: run the tests as root")
	}
	f, old := retentionFixture(t)
	ctx := context.Background()
	root := admin0(f)
	// Letters of 2015 have expired: restricting them is refused; a
	// message of 2026 is restricted.
	if _, err := root.Restrict(ctx, old[0], "art. 18", false); err == nil || !strings.Contains(err.Error(), "purge it") {
		t.Errorf("restrict of an expired message: %v", err)
	}
	var recent uint64
	for id := range f.raw {
		if !slices.Contains(old, id) && (recent == 0 || id < recent) {
			recent = id
		}
	}
	x, err := root.Restrict(ctx, recent, "GDPR art. 18 request 2026-17", false)
	if err != nil || x.Until.Year() != 2032 {
		t.Fatalf("restrict: %+v %v", x, err)
	}
	api := f.dial(t)
	for _, a := range []ArchiveAPI{root, api} {
		if ids := listIDs(t, a, archive.Query{}); slices.ContainsFunc(ids, func(ih idHash) bool { return ih.ID == recent }) {
			t.Errorf("an admin lists the restricted record: %v", ids)
		}
		if _, err := a.Get(ctx, recent); !errors.Is(err, archive.ErrNotFound) {
			t.Errorf("an admin gets the restricted record: %v", err)
		}
		if err := a.Message(WithAuditCommand(ctx, CommandExport), recent, false, io.Discard); !errors.Is(err, archive.ErrNotFound) {
			t.Errorf("an admin exports the restricted record: %v", err)
		}
	}
	// The auditor: gid 4444, limited to mail from oldpartner.example.
	const auditor, agid = 65534, 4444
	f.srv.policy.auditorGID = agid
	f.srv.policy.auditorQuery = &archive.Query{From: "@oldpartner.example"}
	out := runChild(t, f, auditor, agid, childOpsEnv+"=list,show,hold_add,hold_list,restrict,purge_plan,retry,audit", childArgEnv+"="+strconv.FormatUint(old[0], 10))
	refusal := func(what string) string {
		return fmt.Sprintf("permission denied: %s: uid %d is an auditor and may only read and export", what, auditor)
	}
	// The auditor's query: the three old letters.
	want := fmt.Sprintf("uid %d: <nil>\nlist: 3 records, <nil>\nshow: %d bytes, <nil>\nhold_add: %s\nhold_list: %s\nrestrict: %s\npurge_plan: %s\nretry: %s\naudit: %s\n",
		auditor, len(f.raw[old[0]]), refusal("archive hold add"), refusal("holds"), refusal("archive restrict"), refusal("archive purge --plan"), refusal("archive retry"), refusal("audit"))
	if out != want {
		t.Errorf("the auditor's session:\n%s\nwant\n%s", out, want)
	}
	entries := auditOf(t, f, auditor)
	for _, w := range []string{"list all", "show id=", "refused archive hold add", "refused holds", "refused archive restrict", "refused archive purge --plan", "refused archive retry", "refused audit"} {
		if !hasEntry(entries, w) {
			t.Errorf("the auditor's audit entries lack %q: %q", w, entries)
		}
	}
	// Without a saved query the auditor sees the restricted message too.
	f.srv.policy.auditorQuery = nil
	out = runChild(t, f, auditor, agid, childOpsEnv+"=list,show", childArgEnv+"="+strconv.FormatUint(recent, 10))
	if want := fmt.Sprintf("uid %d: <nil>\nlist: %d records, <nil>\nshow: %d bytes, <nil>\n", auditor, len(f.raw), len(f.raw[recent])); out != want {
		t.Errorf("the auditor without a query:\n%s\nwant\n%s", out, want)
	}
	// Lifted: the admins see it again; audited.
	if _, err := root.Restrict(ctx, recent, "", true); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Get(ctx, recent); err != nil {
		t.Errorf("after lifting: %v", err)
	}
	if got := auditOf(t, f, 0); !hasEntry(got, fmt.Sprintf("restrict id=%d reason=", recent)) || !hasEntry(got, fmt.Sprintf("restrict-lift id=%d", recent)) {
		t.Errorf("root's audit entries: %q", got)
	}
	// The restricted message is outside the auditor's query: not there.
	f.srv.policy.auditorQuery = &archive.Query{From: "@oldpartner.example"}
	out = runChild(t, f, auditor, agid, childOpsEnv+"=show", childArgEnv+"="+strconv.FormatUint(recent, 10))
	if !strings.Contains(out, "show: 0 bytes") || !strings.Contains(out, "no such record") {
		t.Errorf("the auditor shows a message outside the query: %s", out)
	}
}
