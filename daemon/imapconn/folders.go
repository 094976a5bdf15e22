package imapconn

// Folder names as the server has them. Servers place a user's own folders
// differently: Dovecot (and Cyrus with altnamespace) at the top level,
// Cyrus and Courier as Debian ships them under "INBOX." (RFC 2342
// NAMESPACE: (("INBOX." "."))), where a top-level "Decrypted" is refused.
// A configured name is therefore read as relative to the personal
// namespace unless it is written in full. Whether a folder exists is
// asked with LIST, never read from the text of a NO (Dovecot says
// [ALREADYEXISTS], Cyrus "Mailbox already exists", Courier "Cannot create
// this folder."). Copies never go into a folder whose special use (RFC
// 6154) is \Sent, \Trash, \Junk, \Drafts or \All.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
)

// ErrSpecialUse means the folder is one the user's client uses for sent,
// deleted, junk or draft mail: copies are never stored there.
var ErrSpecialUse = errors.New("imapconn: folder has a special use")

// namespace is the personal namespace (RFC 2342) the server reported
// and the prefixes of the others.
type namespace struct {
	prefix string   // personal prefix, "" for the top level
	delim  rune     // its hierarchy delimiter, 0 when flat
	others []string // other users' and shared prefixes
}

// readNamespace asks NAMESPACE when the server has it. Without it, the
// personal namespace is the top level: names stay as written.
func (c *Conn) readNamespace(ctx context.Context) error {
	if !c.caps.Has(imap.CapNamespace) && !c.caps.Has(imap.CapIMAP4rev2) {
		return nil
	}
	var data *imap.NamespaceData
	err := c.run(ctx, 0, "NAMESPACE", func() error {
		var err error
		data, err = c.client.Namespace().Wait()
		return err
	})
	if err != nil {
		return err
	}
	if len(data.Personal) > 0 {
		c.ns.prefix, c.ns.delim = data.Personal[0].Prefix, data.Personal[0].Delim
	}
	for _, d := range append(data.Other, data.Shared...) {
		if d.Prefix != "" {
			c.ns.others = append(c.ns.others, d.Prefix)
		}
	}
	return nil
}

// Resolve is the server's full name of a configured folder name: INBOX,
// and a name that starts with the personal prefix, with "INBOX" and the
// delimiter, or with another namespace's prefix, stay as written; any
// other name is placed under the personal prefix.
func (c *Conn) Resolve(name string) string {
	full := c.ns.resolve(name)
	c.noteResolved(name, full)
	return full
}

func (ns namespace) resolve(name string) string {
	if strings.EqualFold(name, "INBOX") || ns.prefix == "" {
		return name
	}
	if hasFolderPrefix(name, ns.prefix) {
		return name
	}
	if ns.delim != 0 && hasFolderPrefix(name, "INBOX"+string(ns.delim)) {
		return name
	}
	for _, p := range ns.others {
		if strings.HasPrefix(name, p) {
			return name
		}
	}
	if ns.delim != 0 && !strings.HasSuffix(ns.prefix, string(ns.delim)) {
		return ns.prefix + string(ns.delim) + name
	}
	return ns.prefix + name
}

// hasFolderPrefix reports whether name starts with prefix, whose leading
// "INBOX" may be written in any case (RFC 3501 5.1).
func hasFolderPrefix(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	if len(prefix) >= 5 && strings.EqualFold(prefix[:5], "INBOX") {
		return strings.EqualFold(name[:5], "INBOX") && name[5:len(prefix)] == prefix[5:]
	}
	return strings.HasPrefix(name, prefix)
}

// resolvedOnce remembers which names were logged, so that the choice is
// said once per server, user and name, not at every connection.
var resolvedOnce sync.Map

func (c *Conn) noteResolved(name, full string) {
	key := c.cfg.Addr + "\x00" + c.cfg.Username + "\x00" + name
	if _, seen := resolvedOnce.LoadOrStore(key, true); seen {
		return
	}
	delim := ""
	if c.ns.delim != 0 {
		delim = string(c.ns.delim)
	}
	c.log.Info("imap folder name", "configured", name, "server_name", full, "personal_namespace", c.ns.prefix, "delimiter", delim)
}

// ensureFolder makes sure the folder full (a resolved name) exists and may
// take copies: LIST it, CREATE it when missing, and LIST again when CREATE
// is refused (another client may have created it meanwhile). A folder
// found once is remembered for the connection.
func (c *Conn) ensureFolder(ctx context.Context, full string) error {
	if c.known[full] {
		return nil
	}
	exists, err := c.listFolder(ctx, full)
	if err != nil {
		return err
	}
	if !exists {
		cerr := c.run(ctx, 0, "CREATE "+full, func() error { return c.client.Create(full, nil).Wait() })
		if cerr != nil && !IsRefusal(cerr) {
			return cerr
		}
		if exists, err = c.listFolder(ctx, full); err != nil {
			return err
		}
		if !exists {
			if cerr == nil {
				cerr = fmt.Errorf("imapconn: CREATE %s: the server said OK but does not list it", full)
			}
			return cerr
		}
	}
	if c.known == nil {
		c.known = map[string]bool{}
	}
	c.known[full] = true
	return nil
}

// listFolder LISTs full and reports whether it exists as a folder that
// can hold messages; one with a special use that must not take copies is
// ErrSpecialUse: \Sent, \Trash, \Junk, \Drafts, and \All (Gmail's
// "[Gmail]/All Mail", where every message is already).
func (c *Conn) listFolder(ctx context.Context, full string) (bool, error) {
	attrs, exists, err := c.folderAttrs(ctx, full)
	if err != nil || !exists {
		return false, err
	}
	for _, a := range attrs {
		for _, bad := range []imap.MailboxAttr{imap.MailboxAttrSent, imap.MailboxAttrTrash, imap.MailboxAttrJunk, imap.MailboxAttrDrafts, imap.MailboxAttrAll} {
			if strings.EqualFold(string(a), string(bad)) {
				return false, fmt.Errorf("%w: %s is the %s folder; choose another archive_folder", ErrSpecialUse, full, a)
			}
		}
	}
	return true, nil
}

// folderAttrs LISTs full (with its special use where the server can say
// it) and returns its attributes; exists is false when the server lists
// no such folder or one that cannot hold messages.
func (c *Conn) folderAttrs(ctx context.Context, full string) (attrs []imap.MailboxAttr, exists bool, err error) {
	var opts *imap.ListOptions
	if c.caps.Has(imap.CapSpecialUse) && (c.caps.Has(imap.CapListExtended) || c.caps.Has(imap.CapIMAP4rev2)) {
		opts = &imap.ListOptions{ReturnSpecialUse: true}
	}
	var list []*imap.ListData
	err = c.run(ctx, 0, "LIST "+full, func() error {
		var err error
		list, err = c.client.List("", full, opts).Collect()
		return err
	})
	if err != nil {
		return nil, false, err
	}
	for _, l := range list {
		if l.Mailbox != full && !(strings.EqualFold(full, "INBOX") && strings.EqualFold(l.Mailbox, "INBOX")) {
			continue // a wildcard in the name matched another folder
		}
		for _, a := range l.Attrs {
			if strings.EqualFold(string(a), string(imap.MailboxAttrNoSelect)) || strings.EqualFold(string(a), string(imap.MailboxAttrNonExistent)) {
				return l.Attrs, false, nil
			}
		}
		return l.Attrs, true, nil
	}
	return nil, false, nil
}

// leaveFolder closes the folder this connection has selected, if any,
// before an APPEND (Courier refuses to APPEND to a folder the connection
// has EXAMINEd: "Current box is selected READ-ONLY"). UNSELECT (RFC 3691)
// where the server has it; else CLOSE, which expunges nothing on a folder
// opened read-only — so one opened read-write is EXAMINEd first.
func (c *Conn) leaveFolder(ctx context.Context) error {
	if c.selected == "" {
		return nil
	}
	folder, rw := c.selected, c.selectedRW
	if c.caps.Has(imap.CapUnselect) || c.caps.Has(imap.CapIMAP4rev2) {
		if err := c.run(ctx, 0, "UNSELECT", func() error { return c.client.Unselect().Wait() }); err != nil {
			return err
		}
		c.selected = ""
		return nil
	}
	if rw {
		err := c.run(ctx, 0, "EXAMINE "+folder, func() error {
			_, err := c.client.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
			return err
		})
		if err != nil {
			return err
		}
	}
	if err := c.run(ctx, 0, "CLOSE", func() error { return c.client.UnselectAndExpunge().Wait() }); err != nil {
		return err
	}
	c.selected = ""
	return nil
}
