package imapconn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// The capability lists are those the servers send (Gmail's and Exchange
// Online's as published in their documentation and client bug reports,
// Dovecot's and Cyrus's as seen here); only X-GM-EXT-1 selects a profile.
func TestProfileOf(t *testing.T) {
	for _, tc := range []struct {
		name, caps string
		want       Profile
	}{
		{"gmail", "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS COMPRESS=DEFLATE ENABLE MOVE CONDSTORE ESEARCH UTF8=ACCEPT LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE APPENDLIMIT=35651584", ProfileGmail},
		{"exchange", "IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+", ProfileStandard},
		{"dovecot", "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE", ProfileStandard},
		{"lower-case", "imap4rev1 x-gm-ext-1", ProfileGmail},
	} {
		caps := imap.CapSet{}
		for _, c := range strings.Fields(tc.caps) {
			caps[imap.Cap(c)] = struct{}{}
		}
		if got := profileOf(caps); got != tc.want {
			t.Errorf("%s: profileOf = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// fakeGmail is a scripted server with Gmail's folder layout: INBOX, a
// label "Work" and "[Gmail]/All Mail" listed with \All (as Gmail lists it,
// RETURN (SPECIAL-USE) or not). caps is its CAPABILITY line. It records the
// commands it was sent.
type fakeGmail struct {
	addr string
	mu   sync.Mutex
	cmds []string
}

var listArgRE = regexp.MustCompile(`^LIST "" "((?:[^"\\]|\\.)*)"`)

func startFakeGmail(t *testing.T, caps string) *fakeGmail {
	t.Helper()
	f := &fakeGmail{}
	folders := map[string]string{"INBOX": `\HasNoChildren`, "Work": `\HasNoChildren`, "[Gmail]/All Mail": `\HasNoChildren \All`}
	f.addr = scriptedServer(t, func(conn net.Conn) {
		r := bufio.NewReader(conn)
		fmt.Fprintf(conn, "* OK [CAPABILITY %s] Gimap ready\r\n", caps)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			f.mu.Lock()
			f.cmds = append(f.cmds, rest)
			f.mu.Unlock()
			verb, _, _ := strings.Cut(rest, " ")
			switch strings.ToUpper(verb) {
			case "CAPABILITY":
				fmt.Fprintf(conn, "* CAPABILITY %s\r\n%s OK done\r\n", caps, tag)
			case "LOGIN":
				fmt.Fprintf(conn, "%s OK [CAPABILITY %s] u authenticated (Success)\r\n", tag, caps)
			case "NAMESPACE":
				fmt.Fprintf(conn, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n%s OK Success\r\n", tag)
			case "LIST":
				if m := listArgRE.FindStringSubmatch(rest); m != nil {
					if attrs, ok := folders[m[1]]; ok {
						fmt.Fprintf(conn, "* LIST (%s) \"/\" %q\r\n", attrs, m[1])
					}
				}
				fmt.Fprintf(conn, "%s OK Success\r\n", tag)
			case "EXAMINE":
				fmt.Fprintf(conn, "* FLAGS (\\Seen)\r\n* OK [UIDVALIDITY 7] UIDs valid\r\n* 0 EXISTS\r\n* OK [UIDNEXT 1] next\r\n%s OK [READ-ONLY] Success\r\n", tag)
			case "LOGOUT":
				fmt.Fprintf(conn, "* BYE LOGOUT Requested\r\n%s OK bye\r\n", tag)
				return
			default:
				fmt.Fprintf(conn, "%s BAD unexpected\r\n", tag)
			}
		}
	})
	return f
}

func (f *fakeGmail) sent(verb string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.cmds {
		if strings.HasPrefix(strings.ToUpper(c), verb+" ") {
			out = append(out, c)
		}
	}
	return out
}

const gmailCaps = "IMAP4rev1 UNSELECT IDLE NAMESPACE ID CHILDREN X-GM-EXT-1 UIDPLUS MOVE LIST-EXTENDED SPECIAL-USE"

// TestGmailAllMail: on a server with Gmail's profile, the \All folder is
// neither watched (each message would be archived twice) nor given copies;
// INBOX and labels are watched as anywhere. Without X-GM-EXT-1 a folder
// listed \All is watched as configured (the profile decides), but still
// takes no copies. Before, both were EXAMINEd and a copy went into \All.
func TestGmailAllMail(t *testing.T) {
	ctx := context.Background()
	dial := func(caps string) (*fakeGmail, *Conn) {
		f := startFakeGmail(t, caps)
		c, err := Dial(ctx, Config{Addr: f.addr, TLS: "none", Username: "u", Password: "p", Auth: "login"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return f, c
	}

	f, c := dial(gmailCaps)
	if p := c.Profile(); p != ProfileGmail {
		t.Fatalf("Profile() = %s, want gmail", p)
	}
	if _, err := c.Examine(ctx, "[Gmail]/All Mail"); !errors.Is(err, ErrSpecialUse) || !IsRefusal(err) {
		t.Errorf("Examine([Gmail]/All Mail) = %v, want a refusal wrapping ErrSpecialUse", err)
	}
	if ex := f.sent("EXAMINE"); len(ex) != 0 {
		t.Errorf("the \\All folder was opened: %q", ex)
	}
	for _, folder := range []string{"INBOX", "Work"} {
		if mb, err := c.Examine(ctx, folder); err != nil || mb.UIDValidity != 7 {
			t.Errorf("Examine(%s) = %+v, %v; want UIDVALIDITY 7 as the fake sent", folder, mb, err)
		}
	}
	if err := c.ensureFolder(ctx, "[Gmail]/All Mail"); !errors.Is(err, ErrSpecialUse) {
		t.Errorf("ensureFolder([Gmail]/All Mail) = %v, want ErrSpecialUse", err)
	}
	if cr := f.sent("CREATE"); len(cr) != 0 {
		t.Errorf("CREATE sent for the \\All folder: %q", cr)
	}

	_, c = dial(strings.Replace(gmailCaps, " X-GM-EXT-1", "", 1))
	if p := c.Profile(); p != ProfileStandard {
		t.Fatalf("Profile() without X-GM-EXT-1 = %s, want standard", p)
	}
	if _, err := c.Examine(ctx, "[Gmail]/All Mail"); err != nil {
		t.Errorf("standard profile: Examine of a \\All folder = %v, want it watched as configured", err)
	}
	if err := c.ensureFolder(ctx, "[Gmail]/All Mail"); !errors.Is(err, ErrSpecialUse) {
		t.Errorf("standard profile: ensureFolder of a \\All folder = %v, want ErrSpecialUse", err)
	}
}
