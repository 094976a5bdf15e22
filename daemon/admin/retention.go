package admin

// Retention, holds, restrictions and purges through the admin API, and
// the roles that may ask for them.
//
// Roles (Caller.Role), decided the same way at both ends: over the
// control socket from the peer's credentials, for a command that opens
// the state file itself from the process's:
//
//   - admin: root or the service user (isAdmin). Everything.
//   - auditor: a member of [archive.access] auditor_group who is no
//     admin (the narrower role wins over membership of the service's
//     group). Reads and exports only (list, show, export, verify),
//     restricted mail included, limited by auditor_query when set;
//     everything else is refused and the refusal audited.
//   - reader: a member of the service's group. Reads; restricted mail
//     is hidden.
//
// A purge plan needs two people: the approver's Login (the kernel's
// audit login uid of the process, which su and sudo keep, else its uid)
// must differ from the planner's. Two admins who are both root through
// sudo are two people; one person cannot approve their own plan by
// switching to root or to the service user. SUDO_UID is not trusted: any
// root process can set it.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/config"
)

// Roles of a caller.
const (
	RoleAdmin   = "admin"
	RoleReader  = "reader"
	RoleAuditor = "auditor"
)

// Access is who is what: the service user, the auditors' group and what
// they may see.
type Access struct {
	ServiceUID   int
	AuditorGID   int            // -1: no auditors
	AuditorQuery *archive.Query // nil: auditors see every message
}

// AccessOf is cfg's access rules for a service running as serviceUID;
// an auditor group that does not exist has no members.
func AccessOf(cfg *config.Config, serviceUID int) Access {
	a := Access{ServiceUID: serviceUID, AuditorGID: -1, AuditorQuery: cfg.Archive.Access.AuditorQuery}
	if name := cfg.Archive.Access.AuditorGroup; name != "" {
		if g, err := user.LookupGroup(name); err == nil {
			a.AuditorGID, _ = strconv.Atoi(g.Gid)
		}
	}
	return a
}

// role decides c's role; groupsOf lists a uid's supplementary groups.
func (a Access) role(c Caller, groupsOf func(int) ([]int, error)) string {
	if isAdmin(c, a.ServiceUID) {
		return RoleAdmin
	}
	if a.AuditorGID >= 0 {
		if c.GID == a.AuditorGID {
			return RoleAuditor
		}
		if gs, err := groupsOf(c.UID); err == nil && slices.Contains(gs, a.AuditorGID) {
			return RoleAuditor
		}
	}
	return RoleReader
}

// loginUID is the audit login uid of process pid, or uid when it has
// none (not set by a login, as in containers and services).
func loginUID(pid, uid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/loginuid", pid))
	if err != nil {
		return uid
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil || n == 4294967295 {
		return uid
	}
	return int(n)
}

// person is c as a purge names it.
func (c Caller) person() archive.Person {
	return archive.Person{UID: c.UID, Login: c.Login, User: userName(c.UID)}
}

// who is c for a hold or restriction.
func (c Caller) who() string {
	if n := userName(c.UID); n != "" {
		return fmt.Sprintf("uid %d (%s)", c.UID, n)
	}
	return fmt.Sprintf("uid %d", c.UID)
}

// auditorOps are the control ops an auditor may ask for.
var auditorOps = []string{"ping", "list", "get", "message", "verify", opStatus}

// refuse audits and returns the refusal of what to c.
func (l *Local) refuse(what, detail string) error {
	var err error
	if l.Caller.Role == RoleAuditor {
		err = fmt.Errorf("%w: %s: uid %d is an auditor and may only read and export", ErrPeerRefused, what, l.Caller.UID)
	} else {
		err = fmt.Errorf("%w: %s needs root or the service user; uid %d may only read", ErrPeerRefused, what, l.Caller.UID)
	}
	if aerr := l.audit(archive.AuditRefused, strings.TrimSpace(what+" "+detail)); aerr != nil {
		return fmt.Errorf("%w (and the refusal was not audited: %v)", err, aerr)
	}
	return err
}

// mayChange refuses what to anyone but an admin.
func (l *Local) mayChange(what, detail string) error {
	if l.Caller.Role == RoleAdmin {
		return nil
	}
	return l.refuse(what, detail)
}

// visibleQuery is q as l.Caller may run it: an auditor's limited by the
// saved query, everybody else's without restricted mail.
func (l *Local) visibleQuery(q archive.Query) archive.Query {
	if l.Caller.Role == RoleAuditor {
		return q
	}
	q.HideRestricted = true
	return q
}

// visible reports whether l.Caller may see r.
func (l *Local) visible(r *archive.Record) (bool, error) {
	if l.Caller.Role == RoleAuditor {
		return l.AuditorQuery == nil || l.AuditorQuery.Matches(r), nil
	}
	x, err := l.Archive.Restriction(r)
	if err != nil {
		return false, err
	}
	return !x.Active(time.Now()), nil
}

// Holds lists the legal holds.
func (l *Local) Holds(ctx context.Context) ([]archive.Hold, error) {
	if l.Caller.Role == RoleAuditor {
		return nil, l.refuse("archive hold list", "")
	}
	if err := l.audit(archive.AuditHoldList, ""); err != nil {
		return nil, err
	}
	return l.Archive.Holds()
}

// HoldAdd adds a legal hold; it returns how many messages it covers now.
func (l *Local) HoldAdd(ctx context.Context, name string, q archive.Query, reason string) (int, error) {
	detail := "case=" + strconv.Quote(name) + " " + queryDetail(q)
	if err := l.mayChange("archive hold add", detail); err != nil {
		return 0, err
	}
	if err := l.audit(archive.AuditHoldAdd, detail); err != nil {
		return 0, err
	}
	ids, err := l.Archive.AddHold(archive.Hold{Case: name, Query: q, Reason: reason, By: l.Caller.who()})
	return len(ids), err
}

// HoldRemove removes a legal hold; it returns how many messages no hold
// covers any more.
func (l *Local) HoldRemove(ctx context.Context, name string) (int, error) {
	detail := "case=" + strconv.Quote(name)
	if err := l.mayChange("archive hold remove", detail); err != nil {
		return 0, err
	}
	if err := l.audit(archive.AuditHoldRemove, detail); err != nil {
		return 0, err
	}
	_, ids, err := l.Archive.RemoveHold(name)
	return len(ids), err
}

// Restrict restricts (or with lift, lifts the restriction of) the
// message of record id. A restriction lasts until the message's
// retain-until; a message whose retention has ended is purged, not
// restricted.
func (l *Local) Restrict(ctx context.Context, id uint64, reason string, lift bool) (*archive.Restriction, error) {
	what, action := "archive restrict", archive.AuditRestrict
	if lift {
		what, action = "archive restrict --lift", archive.AuditRestrictLift
	}
	detail := fmt.Sprintf("id=%d", id)
	if !lift {
		detail += " reason=" + strconv.Quote(reason)
	}
	if err := l.mayChange(what, detail); err != nil {
		return nil, err
	}
	if err := l.audit(action, detail); err != nil {
		return nil, err
	}
	if lift {
		return l.Archive.Unrestrict(id)
	}
	if strings.TrimSpace(reason) == "" {
		return nil, errors.New("restrict: give the reason (--reason)")
	}
	r, err := l.Archive.Get(id)
	if err != nil {
		return nil, err
	}
	if r.RetainUntil.IsZero() {
		return nil, fmt.Errorf("restrict: record %d has no retain-until (not a message?)", id)
	}
	if r.Expired(time.Now()) {
		return nil, fmt.Errorf("restrict: the retention of record %d ended %s: purge it (archive purge --plan) instead", id, r.RetainUntil.Format(time.DateOnly))
	}
	return l.Archive.Restrict(id, reason, l.Caller.who(), r.RetainUntil)
}

// PurgePlan makes a purge plan of every message retention lets go.
func (l *Local) PurgePlan(ctx context.Context) (*archive.PurgePlan, error) {
	if err := l.mayChange("archive purge --plan", ""); err != nil {
		return nil, err
	}
	p, err := l.Archive.PlanPurge(l.Caller.person())
	if err != nil {
		return nil, err
	}
	if len(p.Records) == 0 {
		return p, l.audit(archive.AuditPurgePlan, fmt.Sprintf("plan=none records=0"))
	}
	if err := l.audit(archive.AuditPurgePlan, fmt.Sprintf("plan=%s records=%d", p.ID, len(p.Records))); err != nil {
		os.Remove(l.Archive.PlanDir() + "/" + p.ID + ".json")
		return nil, err
	}
	return p, nil
}

// PurgeApprove carries out a plan made by another person.
func (l *Local) PurgeApprove(ctx context.Context, plan string) (*archive.Record, error) {
	detail := "plan=" + plan
	if err := l.mayChange("archive purge --approve", detail); err != nil {
		return nil, err
	}
	tomb, err := l.Archive.ApprovePurge(plan, l.Caller.person())
	if tomb == nil {
		if errors.Is(err, archive.ErrSamePerson) {
			if aerr := l.audit(archive.AuditRefused, "archive purge --approve "+detail+": the planner's own plan"); aerr != nil {
				return nil, fmt.Errorf("%w (and the refusal was not audited: %v)", err, aerr)
			}
		}
		return nil, err
	}
	// The purge happened: its entry is written even when files remained.
	if aerr := l.audit(archive.AuditPurgeApprove, fmt.Sprintf("plan=%s tombstone=%d records=%d", plan, tomb.ID, len(tomb.Tombstone.Purged))); aerr != nil {
		return tomb, fmt.Errorf("purge done (tombstone %d), but its audit entry was not written: %w", tomb.ID, aerr)
	}
	return tomb, err
}
