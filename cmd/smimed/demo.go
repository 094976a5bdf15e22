package main

// This file is `smimed demo`: the whole service on a machine with nothing
// set up. It starts go-imap's in-memory IMAP server on loopback (package
// demoimap), writes a configuration with freshly made keys (demo_mail.go),
// runs the real service (daemon.Service, exactly what `smimed run` runs)
// against it, delivers the partner's S/MIME mail into the demo INBOX while
// the watcher is in IDLE, and prints what came of it: the harvested
// certificate, the archive with its verdicts, and the readable copies in
// the "Decrypted" folder as a mail client sees them.

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/cmd/smimed/demoimap"
	"github.com/smimed/smimed/daemon"
	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/imapconn"
)

const demoUsage = `Usage: smimed demo [--dir DIR] [--listen ADDR] [--once]

Shows the whole service with nothing set up: starts an IMAP server in
this process (in memory, on loopback), makes a demo organisation key and
a partner's certificate, runs the service (as smimed run does) on the
demo INBOX and delivers signed, encrypted, signed+encrypted, plain and
tampered mail into it. Then it prints the harvested certificate, the
archive with its verdicts and the readable copies in the "Decrypted"
folder, the commands to explore the state it leaves in DIR, and the IMAP
settings for a mail client; it keeps running until Ctrl-C.

  --dir DIR       where the configuration, keys and state go (default: a new
                  smimed-demo-* directory in the temporary directory); an
                  existing one must be empty or a previous demo's
  --listen ADDR   the IMAP server's loopback address (default 127.0.0.1:0,
                  any free port)
  --once          deliver, wait until everything is processed, print, stop
`

// demoTimeout bounds each wait of the demo: for the watcher to reach
// IDLE, and for every message to be processed.
const demoTimeout = 30 * time.Second

// demoMarker names a demo directory, so that a later `smimed demo --dir`
// may replace what is in it.
const demoMarker = ".smimed-demo"

// demoAuthservID is the demo's authserv-id in the copies'
// Authentication-Results.
const demoAuthservID = "smimed-demo.example"

// demoOptions are the demo's flags.
type demoOptions struct {
	dir    string // "" = a new temporary directory
	listen string
	once   bool
}

func demoMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo")
	opts := demoOptions{}
	fs.StringVar(&opts.dir, "dir", "", "")
	fs.StringVar(&opts.listen, "listen", "127.0.0.1:0", "")
	fs.BoolVar(&opts.once, "once", false, "")
	rest, code, done := parseFlags(fs, args, stdout, stderr, demoUsage)
	if done {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "smimed demo: unexpected argument %q (see smimed demo --help)\n", rest[0])
		return exitUsage
	}

	// Ctrl-C (or SIGTERM) stops the demo cleanly; a second one at once.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	finished := make(chan struct{})
	defer close(finished)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-finished:
			return
		}
		select {
		case <-sigs:
			fmt.Fprintln(stderr, "smimed demo: second signal: exiting at once")
			os.Exit(exitFailed)
		case <-finished:
		}
	}()
	return runDemo(ctx, opts, stdout, stderr)
}

// demoUsageError is a problem with the demo's flags or directory (exit 2).
type demoUsageError struct{ msg string }

func (e *demoUsageError) Error() string { return e.msg }

// runDemo is the demo until ctx ends (or, with opts.once, until it has
// printed what happened).
func runDemo(ctx context.Context, opts demoOptions, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			err = errors.New("interrupted")
		}
		fmt.Fprintf(stderr, "smimed demo: %v\n", err)
		var ue *demoUsageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitFailed
	}
	host, _, err := net.SplitHostPort(opts.listen)
	if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
		return fail(&demoUsageError{fmt.Sprintf("--listen %q: must be a loopback host:port such as 127.0.0.1:1143 (the demo server has no TLS)", opts.listen)})
	}
	dir, err := demoDir(opts.dir)
	if err != nil {
		return fail(err)
	}
	started := time.Now()

	pki, err := newDemoPKI()
	if err != nil {
		return fail(fmt.Errorf("keys: %w", err))
	}
	if err := pki.write(dir); err != nil {
		return fail(err)
	}
	mails, err := newDemoMail(pki, started)
	if err != nil {
		return fail(err)
	}
	mailDir := filepath.Join(dir, "mail")
	if err := os.Mkdir(mailDir, 0o755); err != nil {
		return fail(err)
	}
	for _, m := range mails {
		if err := demoWriteFile(filepath.Join(mailDir, m.name+".eml"), m.raw, 0o644); err != nil {
			return fail(err)
		}
	}

	// The IMAP server, with one user whose first IDLE we hear of.
	password := demoRandomHex(12)
	srv, err := demoimap.Start(ctx, opts.listen, "demo", password, "INBOX")
	if err != nil {
		return fail(fmt.Errorf("IMAP server on %s: %w", opts.listen, err))
	}
	defer srv.Close()

	cfgPath, err := demoWriteConfig(dir, srv.Addr(), password, started)
	if err != nil {
		return fail(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fail(err)
	}
	// The service logs warnings and errors only, so the printout stays
	// readable; `smimed run` logs a line per message.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := daemon.NewService(cfg, log, nil)
	if err != nil {
		return fail(err)
	}
	defer svc.Close()
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	run := &demoRun{done: make(chan struct{})}
	go func() {
		run.err = svc.Run(runCtx)
		close(run.done)
	}()
	// stop ends the service (messages in hand finished, checkpoints
	// committed) before the server goes away.
	stop := func() error {
		stopRun()
		select {
		case <-run.done:
			return run.err
		case <-time.After(shutdownGrace):
			return fmt.Errorf("the service did not stop within %s", shutdownGrace)
		}
	}
	defer stop()

	fmt.Fprintf(stdout, "smimed demo: the service on a mailbox of its own\n\n")
	fmt.Fprintf(stdout, "Directory:    %s (smimed.toml, keys, state/, the messages in mail/)\n", dir)
	fmt.Fprintf(stdout, "IMAP server:  %s, in this process (go-imap's in-memory server), user demo\n", srv.Addr())
	fmt.Fprintf(stdout, "Organisation: %s, RSA key %s, certificate %s\n", demoOrgAddr, demoOrgKeyFile, demoOrgCertFile)
	fmt.Fprintf(stdout, "Partner:      %s, certificate %s, issued by %s (the only trust anchor)\n\n", demoPartnerAddr, demoPartnerCert, demoPartnerCAFile)

	// Deliver once the watcher waits in IDLE, so that the mail arrives
	// as new mail does.
	if err := demoWaitIdle(ctx, srv, run); err != nil {
		return fail(fmt.Errorf("the watcher did not start: %w (status: %s)", err, svc.Metrics().Status()))
	}
	fmt.Fprintf(stdout, "The service watches demo/INBOX (in IDLE). Delivering %d messages from %s:\n", len(mails), demoPartnerAddr)
	for _, m := range mails {
		if err := srv.Append("INBOX", m.raw, time.Now()); err != nil {
			return fail(fmt.Errorf("deliver %s: %w", m.name, err))
		}
		fmt.Fprintf(stdout, "  %-24s %s\n", m.name+".eml", m.what)
	}
	wantCopies := 0
	for _, m := range mails {
		if m.smime {
			wantCopies++ // archive_folder_messages = "smime"
		}
	}
	recs, err := demoWaitProcessed(ctx, cfg, srv, svc, run, len(mails), wantCopies)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "All %d processed %.1f s after the start.\n\n", len(mails), time.Since(started).Seconds())

	demoPrintHarvested(stdout, recs)
	demoPrintArchive(stdout, recs)
	if err := demoPrintCopies(ctx, stdout, srv.Addr(), password, cfg.StateDir); err != nil {
		return fail(err)
	}
	demoPrintExplore(stdout, dir, cfgPath, srv.Addr(), password, recs, opts.once)

	if !opts.once {
		demoWatchStatus(ctx, stdout, svc, run)
	}
	if err := stop(); err != nil {
		return fail(fmt.Errorf("stopping the service: %w", err))
	}
	if !opts.once {
		fmt.Fprintf(stdout, "\nStopped. %s is left as it is: try the commands above (rm -r %s when done).\n", dir, dir)
	}
	return exitOK
}

// demoDir returns the demo's directory: a new temporary one when path is
// "", else path, which must be missing, empty, or a previous demo's (whose
// keys, state and messages are then replaced).
func demoDir(path string) (string, error) {
	marker := []byte("made by smimed demo, which may replace what is in this directory\n")
	if path == "" {
		dir, err := os.MkdirTemp("", "smimed-demo-")
		if err != nil {
			return "", err
		}
		return dir, demoWriteFile(filepath.Join(dir, demoMarker), marker, 0o644)
	}
	dir, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		return dir, demoWriteFile(filepath.Join(dir, demoMarker), marker, 0o644)
	case err != nil:
		return "", &demoUsageError{fmt.Sprintf("--dir: %v", err)}
	case len(entries) == 0:
		// An existing empty directory may be open to others (0777): the
		// keys and passwords go in, so only we may change what is there.
		if err := os.Chmod(dir, 0o700); err != nil {
			return "", &demoUsageError{fmt.Sprintf("--dir: %v", err)}
		}
		return dir, demoWriteFile(filepath.Join(dir, demoMarker), marker, 0o644)
	}
	if _, err := os.Stat(filepath.Join(dir, demoMarker)); err != nil {
		return "", &demoUsageError{fmt.Sprintf("--dir %s: not empty and not a previous demo's directory (no %s in it); give a new or empty one", dir, demoMarker)}
	}
	stateDir := filepath.Join(dir, "state")
	if api, err := admin.DialControl(filepath.Join(stateDir, "control.sock")); err == nil {
		api.Close()
		return "", &demoUsageError{fmt.Sprintf("--dir %s: a demo is running there; stop it first", dir)}
	}
	for _, sub := range []string{stateDir, filepath.Join(dir, "mail")} {
		if err := os.RemoveAll(sub); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func demoRandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// demoWriteConfig writes DIR/smimed.toml and the IMAP password file, and
// returns the configuration's path.
func demoWriteConfig(dir, addr, password string, now time.Time) (string, error) {
	if err := demoWriteFile(filepath.Join(dir, "demo.pass"), []byte(password+"\n"), 0o600); err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`# Written by smimed demo on %s. The keys are the demo's own, made for it;
# the IMAP server at %s lived only as long as the demo did.
state_dir = "state"

[trust]
system_roots = false
ca_files = [%q]              # the partner's CA: its signatures are "valid"

[[keys]]                          # the organisation's key: mail to it is decrypted
cert_file = %q
key_file = %q

[daemon]
workers = 1                       # one message at a time: archive IDs follow the delivery order
authserv_id = %q
control_socket = "state/control.sock"

[[accounts]]
name = "demo"
server = %q
tls = "none"                      # loopback only
username = "demo"
password_file = "demo.pass"
folders = ["INBOX"]
archive_folder = "Decrypted"
archive_folder_messages = "smime" # copies of decrypted and of signed mail
`, now.UTC().Format(time.RFC3339), addr, demoPartnerCAFile, demoOrgCertFile, demoOrgKeyFile, demoAuthservID, addr)
	path := filepath.Join(dir, "smimed.toml")
	return path, demoWriteFile(path, []byte(cfg), 0o600)
}

// demoRun is the service's Run in its goroutine: err is set when done is
// closed.
type demoRun struct {
	done chan struct{}
	err  error
}

// stoppedErr says that the service stopped before the demo asked it to.
func (r *demoRun) stoppedErr() error {
	if r.err == nil {
		return errors.New("the service stopped unexpectedly")
	}
	return fmt.Errorf("the service stopped: %w", r.err)
}

// demoWaitIdle waits until a session of srv is in IDLE, the service
// stopped, ctx ended or demoTimeout passed.
func demoWaitIdle(ctx context.Context, srv *demoimap.Server, run *demoRun) error {
	select {
	case <-srv.Idling():
		return nil
	case <-run.done:
		return run.stoppedErr()
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(demoTimeout):
		return fmt.Errorf("no IDLE within %s", demoTimeout)
	}
}

// demoWaitProcessed waits until the Decrypted folder holds wantCopies copies
// and the archive n records, and returns the records, oldest first. The
// archive is read as the admin commands read it: over the control socket
// of the service, which holds the store.
func demoWaitProcessed(ctx context.Context, cfg *config.Config, srv *demoimap.Server, svc *daemon.Service, run *demoRun, n, wantCopies int) ([]*archive.Record, error) {
	deadline := time.After(demoTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var api admin.ArchiveAPI
	defer func() {
		if api != nil {
			api.Close()
		}
	}()
	nextList := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-run.done:
			return nil, run.stoppedErr()
		case <-deadline:
			return nil, fmt.Errorf("not every message was processed within %s (status: %s); see the log above", demoTimeout, svc.Metrics().Status())
		case <-tick.C:
		}
		// The copies come last (after the record): count them first,
		// cheaply, then ask the archive (every read is audited).
		if srv.Messages("Decrypted") < wantCopies || time.Now().Before(nextList) {
			continue
		}
		nextList = time.Now().Add(500 * time.Millisecond)
		if api == nil {
			a, err := admin.DialConfig(cfg)
			if err != nil {
				return nil, err
			}
			api = a
		}
		var recs []*archive.Record
		err := api.List(ctx, archive.Query{Account: "demo"}, func(r *archive.Record) error {
			recs = append(recs, r)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(recs) >= n {
			slices.SortFunc(recs, func(a, b *archive.Record) int { return int(a.ID) - int(b.ID) })
			return recs, nil
		}
	}
}

// demoPrintHarvested lists the certificates the records say were harvested,
// each with the verdict of the signature it came from.
func demoPrintHarvested(w io.Writer, recs []*archive.Record) {
	fmt.Fprintln(w, "Harvested certificates (kept from valid signatures only; the tampered one's is not):")
	type seen struct{ email, fp, verdict string }
	var order []seen
	from := map[seen][]string{}
	for _, r := range recs {
		for _, h := range r.Harvested {
			verdict := "-"
			for _, s := range r.Signatures {
				if s.Fingerprint == h.Fingerprint {
					verdict = strings.ToUpper(s.Status)
				}
			}
			k := seen{h.Email, h.Fingerprint, verdict}
			if h.Quarantined {
				k.verdict += " (quarantined)"
			}
			if _, ok := from[k]; !ok {
				order = append(order, k)
			}
			from[k] = append(from[k], fmt.Sprint(r.ID))
		}
	}
	if len(order) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, k := range order {
		fmt.Fprintf(w, "  %s  %s\n    SHA-256 %s, from records %s\n", clean(k.email), k.verdict, k.fp, strings.Join(from[k], ", "))
	}
	fmt.Fprintln(w)
}

// demoPrintArchive lists the records with their verdicts, oldest first.
func demoPrintArchive(w io.Writer, recs []*archive.Record) {
	fmt.Fprintln(w, "The archive (smimed archive list shows it newest first):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tSTATUS\tDECRYPTION\tSIGNATURES\tSUBJECT")
	for _, r := range recs {
		dec := string(r.Decryption.Status)
		if r.Decryption.Cipher != "" {
			dec += " " + r.Decryption.Cipher
		}
		var sigs []string
		for _, s := range r.Signatures {
			sigs = append(sigs, s.Status+" "+clean(s.Signer))
		}
		if len(sigs) == 0 {
			sigs = []string{"-"}
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", r.ID, strings.Join(r.Status, ","), dec, strings.Join(sigs, "; "), cut(clean(r.Subject), listSubjectWidth))
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// demoPrintCopies logs in to the demo mailbox as a mail client would (through
// the service's own IMAP adapter) and lists the copies in Decrypted with
// their Authentication-Results.
func demoPrintCopies(ctx context.Context, w io.Writer, addr, password, stateDir string) error {
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	c, err := imapconn.Dial(ctx, imapconn.Config{Addr: addr, TLS: "none", Username: "demo", Password: password})
	if err != nil {
		return fmt.Errorf("reading Decrypted: %w", err)
	}
	defer c.Close()
	if _, err := c.Examine(ctx, "Decrypted"); err != nil {
		return fmt.Errorf("reading Decrypted: %w", err)
	}
	uids, err := c.UIDsAfter(ctx, 0)
	if err != nil {
		return fmt.Errorf("reading Decrypted: %w", err)
	}
	fmt.Fprintf(w, "The folder Decrypted, read over IMAP (%s): readable copies with the verdicts on top:\n", plural(len(uids), "message"))
	// The service copies several messages at once, so the copies' order
	// in the folder varies: shown in the order of the mail they came from.
	type copyLine struct {
		uid, source uint64
		subject, ar string
	}
	var lines []copyLine
	tmp := filepath.Join(stateDir, "tmp")
	for _, uid := range uids {
		f, err := c.FetchToFile(ctx, uid, tmp, 0)
		if err != nil {
			return fmt.Errorf("reading Decrypted: %w", err)
		}
		h, err := demoReadHeader(f.Path)
		os.Remove(f.Path)
		if err != nil {
			return fmt.Errorf("reading Decrypted UID %d: %w", uid, err)
		}
		src := h.Get(archive.UserCopySourceField) // account/folder/UIDVALIDITY/UID
		source, _ := strconv.ParseUint(src[strings.LastIndexByte(src, '/')+1:], 10, 32)
		lines = append(lines, copyLine{uint64(uid), source, clean(h.Get("Subject")), clean(strings.Join(strings.Fields(h.Get("Authentication-Results")), " "))})
	}
	slices.SortStableFunc(lines, func(a, b copyLine) int { return cmp.Compare(a.source, b.source) })
	for _, l := range lines {
		fmt.Fprintf(w, "  UID %d  %s\n", l.uid, l.subject)
		fmt.Fprintf(w, "    Authentication-Results: %s\n", l.ar)
	}
	fmt.Fprintln(w)
	return nil
}

func demoReadHeader(path string) (textproto.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return textproto.Header{}, err
	}
	defer f.Close()
	return textproto.ReadHeader(bufio.NewReader(f))
}

// demoPrintExplore prints the commands to look further, and the mail client's
// settings.
func demoPrintExplore(w io.Writer, dir, cfgPath, addr, password string, recs []*archive.Record, once bool) {
	self := "smimed"
	if exe, err := os.Executable(); err == nil && strings.Contains(exe, string(filepath.Separator)+"go-build") {
		self = "go run ./cmd/smimed" // `go run` from the checkout
	}
	cfg := demoShellQuote(cfgPath)
	showID := uint64(0)
	for _, r := range recs {
		if slices.Contains(r.Status, "decrypted") && slices.Contains(r.Status, "signed-valid") {
			showID = r.ID
		}
	}
	now := "While the demo runs, these commands ask it over its control socket:"
	if once {
		now = "Explore what it left:"
	}
	fmt.Fprintln(w, now)
	fmt.Fprintf(w, "  %s archive list --config %s\n", self, cfg)
	if showID != 0 {
		fmt.Fprintf(w, "  %s archive show %d --config %s     # the decrypted contract offer\n", self, showID, cfg)
	}
	fmt.Fprintf(w, "  %s archive verify --config %s\n", self, cfg)
	fmt.Fprintf(w, "  %s archive audit --config %s\n", self, cfg)
	fmt.Fprintf(w, "  %s certs list --config %s\n", self, cfg)
	fmt.Fprintf(w, "  %s status --config %s\n", self, cfg)
	fmt.Fprintf(w, "  %s inspect --config %s %s\n", self, cfg, demoShellQuote(filepath.Join(dir, "mail"))+"/*.eml")
	if once {
		return
	}
	host, port, _ := net.SplitHostPort(addr)
	fmt.Fprintf(w, "\nMail client: IMAP server %s, port %s, no TLS (plain password, loopback only),\n", host, port)
	fmt.Fprintf(w, "user demo, password %s. Put a message into INBOX (the partner's are in\n", password)
	fmt.Fprintf(w, "%s): a signed or encrypted one gets its copy in Decrypted, and every\n", demoShellQuote(filepath.Join(dir, "mail")))
	fmt.Fprintln(w, "one shows in the status line below.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Running; Ctrl-C stops it.")
}

// demoShellQuote quotes s for a POSIX shell when it needs it.
func demoShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:=@%,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// demoWatchStatus prints the service's status line whenever it changes, until
// ctx ends or the service stops.
func demoWatchStatus(ctx context.Context, w io.Writer, svc *daemon.Service, run *demoRun) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := svc.Metrics().Status()
	for {
		select {
		case <-ctx.Done():
			return
		case <-run.done:
			fmt.Fprintln(w, run.stoppedErr())
			return
		case <-t.C:
		}
		if s := svc.Metrics().Status(); s != last {
			fmt.Fprintf(w, "%s  %s\n", time.Now().Format("15:04:05"), s)
			last = s
		}
	}
}
