package imapconn

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/emersion/go-imap/v2"
)

// Examine opens folder read-only (EXAMINE): the watched folder is never
// opened read-write, so no \Recent or \Seen changes come from us.
// folder is a configured name (see Resolve). On Gmail, its \All folder
// is refused (checkWatchable).
func (c *Conn) Examine(ctx context.Context, folder string) (Mailbox, error) {
	full := c.Resolve(folder)
	if err := c.checkWatchable(ctx, full); err != nil {
		return Mailbox{}, err
	}
	return c.examine(ctx, full)
}

// examine EXAMINEs the folder full (a resolved name).
func (c *Conn) examine(ctx context.Context, full string) (Mailbox, error) {
	folder := full
	c.selected = "" // a failed EXAMINE leaves none selected either
	var data *imap.SelectData
	err := c.run(ctx, 0, "EXAMINE "+folder, func() error {
		var err error
		data, err = c.client.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
		return err
	})
	if err != nil {
		return Mailbox{}, err
	}
	c.selected, c.selectedRW = folder, false
	if data.UIDValidity == 0 {
		return Mailbox{}, fmt.Errorf("imapconn: EXAMINE %s: server sent no UIDVALIDITY", folder)
	}
	return Mailbox{UIDValidity: data.UIDValidity, UIDNext: uint32(data.UIDNext), Exists: data.NumMessages}, nil
}

// UIDsAfter returns the UIDs greater than after in the examined folder,
// ascending (UID SEARCH UID after+1:*). By RFC 3501 6.4.8 "n:*" always
// includes the highest UID even when it is below n: such UIDs are dropped.
func (c *Conn) UIDsAfter(ctx context.Context, after uint32) ([]uint32, error) {
	if after == math.MaxUint32 {
		return nil, nil
	}
	// An EXISTS seen before this search is answered by it.
	select {
	case <-c.exists:
	default:
	}
	var set imap.UIDSet
	set.AddRange(imap.UID(after+1), 0) // 0 is "*"
	return c.search(ctx, "UID SEARCH UID", &imap.SearchCriteria{UID: []imap.UIDSet{set}}, after)
}

// SearchHeader EXAMINEs folder and returns the UIDs of messages whose header
// field contains value (UID SEARCH HEADER, RFC 3501 6.4.4: a substring match,
// case-insensitive). The folder stays selected: use a Conn of its own, not the
// watcher's.
func (c *Conn) SearchHeader(ctx context.Context, folder, field, value string) ([]uint32, error) {
	if _, err := c.Examine(ctx, folder); err != nil {
		return nil, err
	}
	crit := &imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: field, Value: value}}}
	return c.search(ctx, "UID SEARCH HEADER", crit, 0)
}

func (c *Conn) search(ctx context.Context, op string, crit *imap.SearchCriteria, after uint32) ([]uint32, error) {
	var data *imap.SearchData
	err := c.run(ctx, 0, op, func() error {
		var err error
		data, err = c.client.UIDSearch(crit, nil).Wait()
		return err
	})
	if err != nil {
		return nil, err
	}
	var uids []uint32
	for _, u := range data.AllUIDs() {
		if uint32(u) > after {
			uids = append(uids, uint32(u))
		}
	}
	slices.Sort(uids)
	return slices.Compact(uids), nil
}

// HasUID reports whether the examined folder still holds uid (UID SEARCH
// UID uid): an empty FETCH answer alone does not prove a message gone.
func (c *Conn) HasUID(ctx context.Context, uid uint32) (bool, error) {
	uids, err := c.search(ctx, "UID SEARCH UID", &imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(imap.UID(uid))}}, 0)
	return slices.Contains(uids, uid), err
}

// Status asks the server about folder (a configured name) without
// selecting it (STATUS UIDVALIDITY UIDNEXT MESSAGES): a polled folder is
// checked with it and examined only when something came.
func (c *Conn) Status(ctx context.Context, folder string) (Mailbox, error) {
	full := c.Resolve(folder)
	var data *imap.StatusData
	err := c.run(ctx, 0, "STATUS "+full, func() error {
		var err error
		data, err = c.client.Status(full, &imap.StatusOptions{UIDValidity: true, UIDNext: true, NumMessages: true}).Wait()
		return err
	})
	if err != nil {
		return Mailbox{}, err
	}
	mb := Mailbox{UIDValidity: data.UIDValidity, UIDNext: uint32(data.UIDNext)}
	if data.NumMessages != nil {
		mb.Exists = *data.NumMessages
	}
	return mb, nil
}
