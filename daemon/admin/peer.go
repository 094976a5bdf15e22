package admin

// Who may use the control socket and what for: the peer's credentials
// (SO_PEERCRED), its groups, the role they give it and the operations
// that write.

import (
	"fmt"
	"net"
	"os/user"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/smimed/smimed/archive"
)

// peerPolicy decides who may use the control socket.
type peerPolicy struct {
	uid      int    // the daemon's own user
	gid      int    // the service's group
	group    string // its name, for the refusal
	groupsOf func(uid int) ([]int, error)
	// auditorGID is the auditors' group (-1: none), auditorQuery what
	// they may see.
	auditorGID   int
	auditorQuery *archive.Query
}

// access is the policy as the roles see it.
func (p *peerPolicy) access() Access {
	return Access{ServiceUID: p.uid, AuditorGID: p.auditorGID, AuditorQuery: p.auditorQuery}
}

// allow accepts root, the daemon's user, and members of its group (the
// peer's primary group, or one of its user's supplementary groups).
func (p *peerPolicy) allow(cred unix.Ucred) error {
	uid, gid := int(cred.Uid), int(cred.Gid)
	if uid == 0 || uid == p.uid || gid == p.gid {
		return nil
	}
	if groups, err := p.groupsOf(uid); err == nil && (slices.Contains(groups, p.gid) || (p.auditorGID >= 0 && slices.Contains(groups, p.auditorGID))) {
		return nil
	}
	if p.auditorGID >= 0 && gid == p.auditorGID {
		return nil
	}
	return fmt.Errorf("%w: uid %d is not root, the service user, or in group %s", ErrPeerRefused, uid, p.group)
}

// writeOps are the ops that change the store or the archive, or copy all
// of it (backup: every record and certificate at once): only root and the
// service user may ask for them. Members of the group read: list, get,
// message (show, export), verify, audit, status and the certs_* reads.
var writeOps = map[string]string{
	"retry":        "archive retry",
	"backup":       "backup",
	opCertsTrust:   "certs trust",
	opCertsUntrust: "certs untrust",
	opCRLImport:    "certs crl import",
	opCertsImport:  "certs import",
	opHoldAdd:      "archive hold add",
	opHoldRemove:   "archive hold remove",
	opRestrict:     "archive restrict",
	opPurgePlan:    "archive purge --plan",
	opPurgeApprove: "archive purge --approve",
}

// mayWrite refuses a write op (writeOps) to anyone but root and the
// daemon's own user; every other op passes (allow decided who connects).
func (p *peerPolicy) mayWrite(c Caller, op string) error {
	if c.Role == RoleAuditor && !slices.Contains(auditorOps, op) {
		return fmt.Errorf("%w: %s: uid %d is an auditor and may only read and export", ErrPeerRefused, opName(op), c.UID)
	}
	name, write := writeOps[op]
	if !write || isAdmin(c, p.uid) {
		return nil
	}
	return fmt.Errorf("%w: %s needs root or the service user; uid %d, a member of group %s, may only read", ErrPeerRefused, name, c.UID, p.group)
}

// isAdmin is the rule for every change of smimed's state through the
// admin API (writeOps): root and the service user may, nobody else.
func isAdmin(c Caller, serviceUID int) bool {
	return c.UID == 0 || c.UID == serviceUID
}

// refusedDetail describes a refused request for the audit log.
func refusedDetail(req *controlRequest) string {
	d := opName(req.Op)
	if req.Match != "" {
		d += " certificate=" + req.Match
	}
	if len(req.IDs) > 0 {
		d += fmt.Sprintf(" ids=%d", len(req.IDs))
	}
	return d
}

// opName is how a refusal names op.
func opName(op string) string {
	if n, ok := writeOps[op]; ok {
		return n
	}
	return op
}

// supplementaryGroups are the groups uid's user is a member of.
func supplementaryGroups(uid int) ([]int, error) {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return nil, err
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, err
	}
	var out []int
	for _, id := range ids {
		if n, err := strconv.Atoi(id); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}

func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

// peerCredentials reads the connecting process's pid, uid and gid as the
// kernel recorded them at connect time.
func peerCredentials(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", err)
	}
	return cred, nil
}
