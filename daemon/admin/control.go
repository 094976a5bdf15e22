package admin

// The control socket: while the daemon runs it holds the store's lock, so
// `smimed archive …`, `smimed certs …` and `smimed status` reach it through
// a unix socket instead (control_client.go is its client). Who may connect
// is decided twice: the socket file is mode 0660 in the service's group,
// and every connection's peer credentials (SO_PEERCRED, which the kernel
// fills in and the peer cannot forge) must name root, the daemon's own
// user, or a member of the service's group. Members of the group may only
// read; the ops that write (writeOps: retry, backup, certs_trust,
// certs_untrust) need root
// or the service user, and a refusal is audited. Every read of the archive
// is audited as the peer (via "socket").
//
// Protocol, one request per connection, every line a JSON object ending
// in "\n":
//
//	client → {"op":"list","query":{…},"command":"failed"}   at most 64 KiB (certs_crl_import: 1.4 MiB), within 10 s
//	daemon → {"record":{…}}            list, get
//	         {"data":"base64…"}        message, backup: chunks of the bytes
//	         {"progress":[done,total]} verify
//	         {"verify":{…}}            verify: the result ("evidence":true in the request: with the seals' tokens)
//	         {"proof":{…}}             proof: a record's inclusion proof and its seal's tokens
//	         {"verify":{…}}            verify: the result
//	         {"worm_verify":{…}}       verify_worm: the result
//	         {"retry":{…}}             retry: one per record
//	         {"audit":{…}}             audit: one per entry
//	         {"entry":{…,"der":"…"}}   certs_*: one per certificate and address
//	         {"certificate":"base64…"} certs_certificate: the DER, when found; certs_intermediates: one per intermediate kept
//	         {"crl":{…}}               certs_crls: one per CRL kept; certs_crl_import: the one imported
//	         {"status":{…}}            status
//	         {"end":true,"n":…}        success (n: bytes of a backup; state_dir for ping)
//	         {"error":"…","codes":[…]} failure; nothing follows (codes: errorCodes)
//
// Ops: ping (not audited; DialControl's check), list, get, message, verify, proof,
// verify_worm, retry, backup, audit; certs_list, certs_email, certs_fingerprint,
// certs_certificate, certs_intermediates (what inspect and decrypt read
// while the daemon holds the store), certs_trust and certs_untrust ("match": the address
// or fingerprint; reads are not audited, as they read no mail; a trust or
// untrust is audited and logged); certs_crls, certs_crl_import ("data":
// the CRL; audited and logged like a trust); certs_import ("data": the
// certificates, "emails", "trust"; audited and logged like a trust);
// status (not audited). The client keeps
// its side open until the last line: a closed client cancels the request.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/archive/worm"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/revocation"
)

const (
	// maxRequestSize bounds the request line of every op but
	// certs_crl_import, whose line carries a CRL (base64) and may be
	// maxImportRequestSize.
	maxRequestSize       = 64 << 10
	maxImportRequestSize = MaxCRLImport*4/3 + maxRequestSize
	// maxRetryIDs bounds the record ids of one retry request.
	maxRetryIDs = 4096
	// dataChunk is the number of bytes in one data frame.
	dataChunk = 32 << 10
)

var (
	// requestTimeout is how long a client has to send its request.
	requestTimeout = 10 * time.Second
	// frameTimeout is how long one reply line may wait for a client that
	// does not read; then the request is abandoned (a backup holds a read
	// transaction meanwhile).
	frameTimeout = 5 * time.Minute
	// progressInterval spaces verify's progress lines.
	progressInterval = 250 * time.Millisecond
)

// ErrPeerRefused is the refusal of a connecting process that is neither
// root, the service user, nor in the service's group.
var ErrPeerRefused = errors.New("permission denied")

// ControlOptions configure ServeControl.
type ControlOptions struct {
	// Path is the socket file (Config.ControlSocketPath).
	Path string
	// GID is the service's group: the socket file's group, and the group
	// whose members may connect. Negative: the daemon's own group.
	GID int
	// StateDir is told to clients, which check that they reached the
	// daemon of their own configuration.
	StateDir string
	// Open returns the archive acting for one caller, the connection's
	// peer; it is called once per request and its Close when the request
	// is done, so it must not close the daemon's store.
	Open func(Caller) ArchiveAPI
	// Certs, if set, is the certificate store for the certs_* ops; else
	// the Store of the *Local that Open returns serves them.
	Certs CertsAPI
	// Status, if set, answers the status op.
	Status func() (*DaemonStatus, error)
	Log    *slog.Logger
	// Auditors, if set, names the auditors' group and what they may see
	// (AccessOf; its ServiceUID is ignored: the daemon's own user is the
	// service user).
	Auditors *Access
}

// ServeControl listens on the control socket until ctx ends or stop is
// called; stop closes every connection and returns once their requests
// have ended. A stale socket file is replaced; any other file at Path, or
// a socket some process still answers on, is an error.
func ServeControl(ctx context.Context, o ControlOptions) (stop func(), err error) {
	s, err := startControl(ctx, o)
	if err != nil {
		return nil, err
	}
	return s.stop, nil
}

// controlServer is one listening control socket.
type controlServer struct {
	ln     *net.UnixListener
	opts   ControlOptions
	policy peerPolicy
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu    sync.Mutex
	conns map[*net.UnixConn]struct{}
	// active counts connections being served, for the tests.
	active atomic.Int32
	// requestTimeout is the package's, when the server started.
	requestTimeout time.Duration
}

func startControl(ctx context.Context, o ControlOptions) (*controlServer, error) {
	if o.Open == nil {
		return nil, errors.New("control socket: no archive to serve")
	}
	if o.GID < 0 {
		o.GID = os.Getgid()
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("pkg", "daemon", "socket", o.Path)
	ln, err := listenControl(o.Path, o.GID)
	if err != nil {
		return nil, err
	}
	s := &controlServer{
		ln:             ln,
		opts:           o,
		log:            log,
		conns:          map[*net.UnixConn]struct{}{},
		requestTimeout: requestTimeout,
		policy: peerPolicy{
			uid: os.Getuid(), gid: o.GID, group: groupName(o.GID), groupsOf: supplementaryGroups, auditorGID: -1,
		},
	}
	if o.Auditors != nil {
		s.policy.auditorGID, s.policy.auditorQuery = o.Auditors.AuditorGID, o.Auditors.AuditorQuery
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-s.ctx.Done()
		s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	}()
	s.wg.Add(1)
	go s.accept()
	log.Info("control socket listening", "gid", o.GID)
	return s, nil
}

func (s *controlServer) stop() {
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.log.Info("control socket closed")
	})
}

// listenControl creates the socket file: mode 0660, group gid.
func listenControl(path string, gid int) (*net.UnixListener, error) {
	if len(path) > config.MaxSocketPath {
		return nil, fmt.Errorf("control socket %s: the path is longer than %d bytes (set [daemon] control_socket)", path, config.MaxSocketPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control socket %s: exists and is not a socket; not removing it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another process is listening on it (is smimed already running?)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket %s: removing the stale socket: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// A new file has the process's group already — under the shipped
	// unit, smimed's — so chown(2) is called only when it differs: the
	// unit's system-call filter refuses it.
	if fi, err := os.Stat(path); err != nil || fileGID(fi) != gid {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("control socket %s: group %d: %w", path, gid, err)
		}
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return ln, nil
}

func (s *controlServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			// Out of file descriptors, say: wait a little, go on.
			s.log.Warn("control socket: accept failed", "err", err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.active.Add(1)
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

// serve answers one connection.
func (s *controlServer) serve(c *net.UnixConn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.active.Add(-1)
		s.wg.Done()
	}()
	fw := &frameWriter{conn: c, bw: bufio.NewWriter(c)}
	cred, err := peerCredentials(c)
	if err != nil {
		s.log.Warn("control socket: connection without credentials", "err", err)
		fw.fail(err)
		return
	}
	caller := Caller{UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid), Via: "socket", Login: loginUID(int(cred.Pid), int(cred.Uid))}
	caller.Role = s.policy.access().role(caller, s.policy.groupsOf)
	log := s.log.With("uid", caller.UID, "gid", caller.GID, "pid", caller.PID)
	if err := s.policy.allow(*cred); err != nil {
		log.Warn("control socket: connection refused", "err", err)
		api := s.opts.Open(caller)
		if l, ok := api.(*Local); ok {
			if aerr := l.audit(archive.AuditRefused, "connection refused"); aerr != nil {
				log.Error("control socket: refusal not audited", "err", aerr)
			}
		}
		api.Close()
		fw.fail(err)
		return
	}

	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(s.requestTimeout))
	line, err := readLine(br, maxImportRequestSize)
	var req *controlRequest
	if err == nil {
		req, err = decodeRequest(line)
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("no request within %s", s.requestTimeout)
		}
		log.Warn("control socket: bad request", "err", err)
		fw.fail(fmt.Errorf("bad request: %w", err))
		return
	}
	c.SetReadDeadline(time.Time{})

	// The client sends nothing more; when its side closes, the request
	// is abandoned. The watcher ends when c is closed below.
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		io.Copy(io.Discard, br)
		cancel()
	}()
	defer func() {
		c.Close()
		<-watched
	}()
	fw.ctx = ctx

	start := time.Now()
	api := s.opts.Open(caller)
	defer api.Close()
	if l, ok := api.(*Local); ok && l.AuditorQuery == nil {
		l.AuditorQuery = s.policy.auditorQuery
	}
	if err := s.policy.mayWrite(caller, req.Op); err != nil {
		// A member of the group may read, not change: refused, audited,
		// one line to the caller.
		log.Warn("control socket: request refused", "op", req.Op, "err", err)
		if l, ok := api.(*Local); ok {
			if aerr := l.audit(archive.AuditRefused, refusedDetail(req)); aerr != nil {
				log.Error("control socket: refusal not audited", "err", aerr)
			}
		}
		fw.fail(err)
		return
	}
	end, err := s.do(ctx, api, req, fw, log)
	if err == nil {
		err = fw.frame(end)
	} else {
		fw.fail(err)
	}
	if err != nil {
		log.Warn("control request failed", "op", req.Op, "err", err, "duration", time.Since(start).Round(time.Millisecond))
		return
	}
	log.Debug("control request", "op", req.Op, "duration", time.Since(start).Round(time.Millisecond))
}

// do runs one request, writing its frames; it returns the end frame.
// log carries the peer.
func (s *controlServer) do(ctx context.Context, api ArchiveAPI, req *controlRequest, fw *frameWriter, log *slog.Logger) (*controlFrame, error) {
	if strings.HasPrefix(req.Op, "certs_") {
		return s.doCerts(ctx, api, req, fw, log)
	}
	ctx = WithAuditCommand(ctx, req.Command)
	end := &controlFrame{End: true}
	var err error
	switch req.Op {
	case "ping":
		end.StateDir = s.opts.StateDir
	case "list":
		err = api.List(ctx, req.query(), func(r *archive.Record) error {
			return fw.frame(&controlFrame{Record: r})
		})
	case "get":
		var r *archive.Record
		if r, err = api.Get(ctx, req.ID); err == nil {
			err = fw.frame(&controlFrame{Record: r})
		}
	case "message":
		err = api.Message(ctx, req.ID, req.Original, fw)
	case "verify":
		var last time.Time
		var res *archive.VerifyResult
		progress := func(done, total int) {
			if now := time.Now(); now.Sub(last) >= progressInterval || done == total {
				last = now
				fw.frame(&controlFrame{Progress: &[2]int{done, total}})
			}
		}
		if req.Evidence {
			res, err = api.VerifyEvidence(ctx, req.OpenSSL, progress)
		} else {
			res, err = api.Verify(ctx, progress)
		}
		if err == nil {
			err = fw.frame(&controlFrame{Verify: res})
		}
	case "proof":
		var p *ProofResult
		if p, err = api.Proof(ctx, req.ID); err == nil {
			err = fw.frame(&controlFrame{Proof: p})
		}
	case opVerifyWorm:
		var res *worm.VerifyResult
		if res, err = api.VerifyWorm(ctx); err == nil {
			err = fw.frame(&controlFrame{WormVerify: res})
		}
	case "retry":
		err = api.Retry(ctx, req.IDs, func(r RetryResult) error {
			return fw.frame(&controlFrame{Retry: &r})
		})
	case "backup":
		end.N, err = api.Backup(ctx, fw)
	case "audit":
		err = api.Audit(ctx, req.Since, func(e archive.AuditEntry) error {
			return fw.frame(&controlFrame{Audit: &e})
		})
	case opHolds, opHoldAdd, opHoldRemove, opRestrict, opPurgePlan, opPurgeApprove:
		end, err = doRetention(ctx, api, req, fw)
	case opStatus:
		if s.opts.Status == nil {
			return nil, errors.New("status: this daemon does not report one")
		}
		var st *DaemonStatus
		if st, err = s.opts.Status(); err == nil {
			st.Running = true
			err = fw.frame(&controlFrame{Status: st})
		}
	default:
		err = fmt.Errorf("unknown op %q", req.Op) // decodeRequest lets none through
	}
	if err == nil {
		err = fw.err
	}
	return end, err
}

// readLine reads one line (with its "\n") of at most max bytes.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > max {
			return nil, fmt.Errorf("line larger than %d KiB", max>>10)
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line, nil
		case err == io.EOF && len(line) > 0:
			return nil, io.ErrUnexpectedEOF
		case err != bufio.ErrBufferFull:
			return nil, err
		}
	}
}

// controlFrame is one reply line.
type controlFrame struct {
	Record   *archive.Record       `json:"record,omitempty"`
	Data     []byte                `json:"data,omitempty"` // base64 in JSON
	Progress *[2]int               `json:"progress,omitempty"`
	Verify   *archive.VerifyResult `json:"verify,omitempty"`
	Proof    *ProofResult          `json:"proof,omitempty"`
	Retry    *RetryResult          `json:"retry,omitempty"`
	Audit    *archive.AuditEntry   `json:"audit,omitempty"`
	Error    string                `json:"error,omitempty"`
	Codes    []string              `json:"codes,omitempty"` // errorCodes the error wraps
	End      bool                  `json:"end,omitempty"`
	N        int64                 `json:"n,omitempty"`
	StateDir string                `json:"state_dir,omitempty"`
	// WormVerify answers verify_worm.
	WormVerify *worm.VerifyResult `json:"worm_verify,omitempty"`
	// certs_* and status
	Entry       *certEntry       `json:"entry,omitempty"`
	Certificate []byte           `json:"certificate,omitempty"` // DER, base64 in JSON
	CRL         *revocation.Info `json:"crl,omitempty"`         // certs_crls, certs_crl_import
	Status      *DaemonStatus    `json:"status,omitempty"`
	// holds, restrict, purge_plan
	Hold        *archive.Hold        `json:"hold,omitempty"`
	Restriction *archive.Restriction `json:"restriction,omitempty"`
	Plan        *archive.PurgePlan   `json:"plan,omitempty"`
}

// Error codes carry the sentinel errors an error wraps to the client.
var errorCodes = []struct {
	code string
	err  error
}{
	{"not_found", archive.ErrNotFound},
	{"not_message", archive.ErrNotMessage},
	{"not_sealed", archive.ErrNotSealed},
	{"no_worm", ErrNoWorm},
	{"corrupt", archive.ErrCorrupt},
	{"read_only", archive.ErrReadOnly},
	{"not_audited", ErrNotAudited},
	{"permission_denied", ErrPeerRefused},
	{"cancelled", context.Canceled},
	{"cert_not_found", harvest.ErrNotFound},
	{"ambiguous", harvest.ErrAmbiguous},
	{"needs_all", ErrNeedsAll},
	{"bad_fingerprint", harvest.ErrBadFingerprint},
	{"bad_address", harvest.ErrBadAddress},
	{"not_trusted", harvest.ErrNotTrusted},
	{"untrusted_chain", ErrUntrustedChain},
	{"not_for_address", harvest.ErrNotForAddress},
	{"stale", archive.ErrStale},
	{"same_person", archive.ErrSamePerson},
	{"exists", archive.ErrExists},
}

// frameWriter writes reply lines; as an io.Writer it sends data frames.
// The first write error sticks.
type frameWriter struct {
	ctx  context.Context // nil before the request is read
	conn net.Conn
	bw   *bufio.Writer
	err  error
}

func (fw *frameWriter) frame(f *controlFrame) error {
	if fw.err != nil {
		return fw.err
	}
	if fw.ctx != nil && fw.ctx.Err() != nil {
		fw.err = fw.ctx.Err()
		return fw.err
	}
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("control reply: %w", err)
	}
	fw.conn.SetWriteDeadline(time.Now().Add(frameTimeout))
	if _, err = fw.bw.Write(append(b, '\n')); err == nil {
		err = fw.bw.Flush()
	}
	if err != nil {
		fw.err = fmt.Errorf("control reply: %w", err)
	}
	return fw.err
}

// fail sends the error frame.
func (fw *frameWriter) fail(err error) {
	f := &controlFrame{Error: err.Error()}
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			f.Codes = append(f.Codes, c.code)
		}
	}
	fw.err = nil // a data write may have failed; try to say why
	fw.frame(f)
}

// Write sends p as data frames.
func (fw *frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), dataChunk)
		if err := fw.frame(&controlFrame{Data: p[:k]}); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// fileGID is the group of a file, or -1 when the system does not say.
func fileGID(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Gid)
	}
	return -1
}
