package imapconn

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/emersion/go-imap/v2"
)

// Append stores the message in the file at path into folder (a configured
// name, see Resolve) with no flags (so it is unread) and INTERNALDATE
// date, creating the folder when missing. It returns the new UID when the
// server has UIDPLUS (RFC 4315), else 0.
//
// The folder is made sure of first (LIST, CREATE when missing) rather
// than on NO [TRYCREATE], because a refusal of APPEND can desynchronise
// go-imap's literal; a folder this connection has selected is left first.
// Use a Conn of its own for appends, not the watcher's, and drop it on any
// error.
func (c *Conn) Append(ctx context.Context, folder, path string, date time.Time) (uint32, error) {
	file, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("imapconn: %w", err)
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return 0, fmt.Errorf("imapconn: %w", err)
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("imapconn: append %s: not a regular file", path)
	}
	size := st.Size()

	folder = c.Resolve(folder)
	if err := c.ensureFolder(ctx, folder); err != nil {
		return 0, err
	}
	if err := c.leaveFolder(ctx); err != nil {
		return 0, err
	}

	var data *imap.AppendData
	err = c.runMoving(ctx, "APPEND "+folder, func(moved func()) error {
		cmd := c.client.Append(folder, size, &imap.AppendOptions{Time: date})
		n, werr := io.Copy(movingWriter{cmd, moved}, io.LimitReader(file, size))
		if werr == nil && n != size {
			werr = fmt.Errorf("%s changed size while appending (%d of %d bytes)", path, n, size)
		}
		if werr != nil {
			// A short literal would desynchronise the stream: give up
			// on the connection.
			c.client.Close()
			cmd.Close()
			return werr
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		var err error
		data, err = cmd.Wait()
		return err
	})
	if err != nil {
		return 0, err
	}
	return uint32(data.UID), nil
}

// Create creates folder (a configured name, see Resolve) unless LIST
// shows it exists already.
func (c *Conn) Create(ctx context.Context, folder string) error {
	return c.ensureFolder(ctx, c.Resolve(folder))
}

// FindCopies returns the UIDs of the messages in folder whose header has
// every field of want with exactly that value (unfolded, surrounding
// white space ignored). folder (a configured name, see Resolve) is
// created when missing and stays selected (read-only) until Append. The
// server's HEADER search is only a substring match, so the candidates'
// fields are fetched and compared here.
func (c *Conn) FindCopies(ctx context.Context, folder string, want map[string]string) ([]uint32, error) {
	if len(want) == 0 {
		return nil, fmt.Errorf("%w: FindCopies needs at least one field", ErrConfig)
	}
	folder = c.Resolve(folder)
	if err := c.ensureFolder(ctx, folder); err != nil {
		return nil, err
	}
	names := slices.Sorted(maps.Keys(want))
	// Every field in one SEARCH (its criteria are ANDed), so that the
	// candidates are few however many copies the folder holds.
	if _, err := c.examine(ctx, folder); err != nil {
		return nil, err
	}
	crit := &imap.SearchCriteria{}
	for _, n := range names {
		crit.Header = append(crit.Header, imap.SearchCriteriaHeaderField{Key: n, Value: want[n]})
	}
	uids, err := c.search(ctx, "UID SEARCH HEADER", crit, 0)
	if err != nil || len(uids) == 0 {
		return nil, err
	}
	var set imap.UIDSet
	for _, u := range uids {
		set.AddNum(imap.UID(u))
	}
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: names, Peek: true}
	var found []uint32
	err = c.run(ctx, 0, "UID FETCH (BODY.PEEK[HEADER.FIELDS])", func() error {
		msgs, err := c.client.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		for _, m := range msgs {
			if m.UID != 0 && headerHas(m.FindBodySection(section), want) {
				found = append(found, uint32(m.UID))
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(found)
	return found, nil
}

// headerHas reports whether the raw header block has each field of want
// exactly once with that value.
func headerHas(block []byte, want map[string]string) bool {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(block)))
	if err != nil && h.Len() == 0 {
		return false
	}
	for k, v := range want {
		got := h.Values(k)
		if len(got) != 1 || unfold(got[0]) != unfold(v) {
			return false
		}
	}
	return true
}

func unfold(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Remove deletes message uid from folder, one of our own folders (the
// archive folder), never a watched one — and only when its header still
// has every field of want (the folder may have been recreated since the
// UID was noted, and the UID now names another message): SELECT, UID
// STORE +FLAGS.SILENT (\Deleted), and UID EXPUNGE of that UID when the
// server has UIDPLUS (RFC 4315). Without UIDPLUS the message is only
// flagged \Deleted: a plain EXPUNGE would also remove what the user
// flagged. It reports whether the message is gone; a UID that is not
// there or is another message is left alone (false, nil).
func (c *Conn) Remove(ctx context.Context, folder string, uid uint32, want map[string]string) (bool, error) {
	if len(want) == 0 {
		return false, fmt.Errorf("%w: Remove needs the fields to check", ErrConfig)
	}
	folder = c.Resolve(folder)
	c.selected = ""
	err := c.run(ctx, 0, "SELECT "+folder, func() error {
		_, err := c.client.Select(folder, nil).Wait()
		return err
	})
	if err != nil {
		return false, err
	}
	c.selected, c.selectedRW = folder, true
	set := imap.UIDSetNum(imap.UID(uid))
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: slices.Sorted(maps.Keys(want)), Peek: true}
	same := false
	err = c.run(ctx, 0, fmt.Sprintf("UID FETCH %d (BODY.PEEK[HEADER.FIELDS])", uid), func() error {
		msgs, err := c.client.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		for _, m := range msgs {
			if uint32(m.UID) == uid && headerHas(m.FindBodySection(section), want) {
				same = true
			}
		}
		return err
	})
	if err != nil || !same {
		return false, err
	}
	err = c.run(ctx, 0, fmt.Sprintf("UID STORE %d +FLAGS.SILENT (\\Deleted)", uid), func() error {
		return c.client.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	})
	if err != nil {
		return false, err
	}
	if !c.caps.Has(imap.CapUIDPlus) && !c.caps.Has(imap.CapIMAP4rev2) {
		return false, nil
	}
	err = c.run(ctx, 0, fmt.Sprintf("UID EXPUNGE %d", uid), func() error {
		return c.client.UIDExpunge(set).Close()
	})
	return err == nil, err
}
