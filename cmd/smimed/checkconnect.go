package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/smimed/smimed/archive/worm"
	"github.com/smimed/smimed/daemon"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/imapconn"
)

// connectTimeout bounds each account's checks.
const connectTimeout = 30 * time.Second

// checkConnect tries every mailbox of cfg as `run` will: resolve the
// server, connect with its TLS, log in (password, master user or OAuth2
// token), examine each folder and make sure the archive folder exists
// (creating it, as the first copy would). One line a check; it returns
// the number that failed.
func checkConnect(cfg *config.Config, stdout io.Writer) (failed int) {
	line := func(ok bool, acct, format string, args ...any) {
		mark := "ok  "
		if !ok {
			mark = "FAIL"
			failed++
		}
		fmt.Fprintf(stdout, "%s %s: %s\n", mark, acct, fmt.Sprintf(format, args...))
	}
	for _, a := range cfg.Accounts {
		acct := "account " + a.Name
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		host, _, _ := net.SplitHostPort(a.Server)
		addrs, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			line(false, acct, "resolve %s: %v", host, err)
			cancel()
			continue
		}
		line(true, acct, "resolve %s: %s", host, strings.Join(addrs, ", "))
		var password string
		var token func(context.Context, bool) (string, error)
		if a.OAuth2 != nil {
			src, err := cfg.TokenSource(a)
			if err != nil {
				line(false, acct, "OAuth2: %v", err)
				cancel()
				continue
			}
			token = src.Token
		} else if password, err = config.ReadAccountPassword(a); err != nil {
			line(false, acct, "password_file: %v", err)
			cancel()
			continue
		}
		ic := a.IMAP(password, token, slog.New(slog.DiscardHandler))
		conn, err := imapconn.Dial(ctx, ic)
		if err != nil {
			what, hint := dialFailure(err, a)
			line(false, acct, "%s: %v%s", what, err, hint)
			cancel()
			continue
		}
		line(true, acct, "connect %s (tls %s)", a.Server, a.TLS)
		who := a.Username
		if a.Authzid != "" {
			who += " for " + a.Authzid
		}
		line(true, acct, "log in as %s (%s)", who, a.Auth)
		for _, f := range a.Folders {
			if mb, err := conn.Examine(ctx, f); err != nil {
				line(false, acct, "folder %q: %v", f, err)
			} else {
				line(true, acct, "folder %q: %d messages", f, mb.Exists)
			}
		}
		if a.ArchiveFolder != "" {
			if err := conn.Create(ctx, a.ArchiveFolder); err != nil {
				line(false, acct, "archive_folder %q: cannot be created: %v", a.ArchiveFolder, err)
			} else {
				line(true, acct, "archive_folder %q: there (created if it was missing)", a.ArchiveFolder)
			}
		}
		conn.Close()
		cancel()
	}
	if g := cfg.Gateway; g != nil {
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		offers, err := daemon.CheckRelay(ctx, cfg)
		cancel()
		if err != nil {
			line(false, "gateway", "relay %s (tls %s): %v", g.Relay, g.RelayTLS, err)
		} else {
			line(true, "gateway", "relay %s (tls %s) answers: %s", g.Relay, g.RelayTLS, offers)
		}
	}
	if w := cfg.Archive.Worm; w != nil {
		checkWorm(w, line)
	}
	return failed
}

// checkWorm asks the WORM copy's bucket for its Object Lock
// configuration: one line, FAIL when it cannot be asked or has none.
func checkWorm(w *config.Worm, line func(ok bool, acct, format string, args ...any)) {
	const what = "archive.worm"
	c, err := w.Client()
	if err != nil {
		line(false, what, "%v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	l, err := w.CheckLock(ctx, c)
	switch {
	case errors.Is(err, worm.ErrNoObjectLock):
		line(false, what, "bucket %s at %s has no Object Lock enabled: smimed refuses to start (create the bucket with Object Lock, see docs/worm.md)", w.Bucket, w.Endpoint)
	case err != nil:
		line(false, what, "%v", err)
	default:
		def := "none"
		if l.DefaultMode != "" {
			def = l.DefaultMode
		}
		line(true, what, "bucket %s at %s: Object Lock enabled (bucket default retention: %s; smimed writes %s with each object)", w.Bucket, w.Endpoint, def, w.S3Mode())
	}
}

// dialFailure names the step of imapconn.Dial that failed and a remedy.
func dialFailure(err error, a config.Account) (what, hint string) {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &hostname):
		return "TLS", " (set tls_server_name to a name the server's certificate holds)"
	case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &verify):
		return "TLS", " (the server's certificate is not trusted: set tls_ca_file to the CA that issued it, or tls_server_name if it names another host)"
	case errors.Is(err, imapconn.ErrAuth):
		hint := ""
		if a.OAuth2 == nil {
			hint = " (check username and password_file"
			if a.Authzid != "" {
				hint += ", and that username may log in for authzid"
			}
			hint += ")"
		}
		return "log in", hint
	case strings.Contains(err.Error(), "TLS") || strings.Contains(err.Error(), "STARTTLS"):
		return "TLS", " (is tls right for this port? 993: implicit, 143: starttls)"
	}
	return "connect", ""
}
