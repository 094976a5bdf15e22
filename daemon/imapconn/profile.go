package imapconn

// Server profiles: quirks of one server family that smimed handles,
// chosen from what the server says of itself in CAPABILITY — never from
// its hostname, which says nothing about the software behind it.
//
//   - gmail (X-GM-EXT-1, Google's documented extension): folders are
//     labels, and "[Gmail]/All Mail" (special use \All; its name is
//     localised) lists every message a second time. A watched folder
//     with \All is refused (each message would be archived twice, under
//     two UIDs); no copy goes into it on any server (listFolder).
//   - standard: everything else.
//
// Exchange's IDLE drop after about 29 minutes needs no profile: every
// server gets IDLE re-issued every idle_restart (25 min, at most 29).

import (
	"context"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// Profile names a server family whose quirks smimed handles.
type Profile string

const (
	ProfileStandard Profile = "standard"
	ProfileGmail    Profile = "gmail"
)

// capGmail is Gmail's IMAP extension capability
// (developers.google.com/gmail/imap/imap-extensions).
const capGmail imap.Cap = "X-GM-EXT-1"

// profileOf chooses the profile from the server's capabilities (names
// compared without regard to case, RFC 3501 9).
func profileOf(caps imap.CapSet) Profile {
	for c := range caps {
		if strings.EqualFold(string(c), string(capGmail)) {
			return ProfileGmail
		}
	}
	return ProfileStandard
}

// Profile is the server's profile, chosen at Dial.
func (c *Conn) Profile() Profile { return profileOf(c.caps) }

// checkWatchable refuses, under the gmail profile, to watch a folder whose
// special use is \All (ErrSpecialUse, a refusal: retrying cannot help).
func (c *Conn) checkWatchable(ctx context.Context, full string) error {
	if c.Profile() != ProfileGmail {
		return nil
	}
	attrs, _, err := c.folderAttrs(ctx, full)
	if err != nil {
		return err
	}
	for _, a := range attrs {
		if strings.EqualFold(string(a), string(imap.MailboxAttrAll)) {
			return fmt.Errorf("%w: %s is Gmail's \\All folder, which holds every message again; watch INBOX or a label instead", ErrSpecialUse, full)
		}
	}
	return nil
}
