package admin

// The client of the control socket (control.go): an ArchiveAPI that asks
// the running daemon (certsapi.go has the CertsAPI, status.go the status).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/archive/worm"
	"github.com/smimed/smimed/daemon/config"
)

// ErrNoDaemon is returned, wrapped, when no daemon answers on the control
// socket: the file is missing or nothing listens on it. The admin
// commands then open the store themselves.
var ErrNoDaemon = errors.New("daemon: no smimed daemon answers on the control socket")

const (
	// dialTimeout bounds connecting and the ping of DialControl.
	dialTimeout = 5 * time.Second
	// maxFrameSize bounds one reply line (a verify result naming every
	// file of a large archive is the longest).
	maxFrameSize = 256 << 20
)

// DaemonError is an error the daemon reported. Its message is the
// daemon's; errors.Is finds the archive's sentinel errors (ErrNotFound,
// …), ErrNotAudited and ErrPeerRefused in it.
type DaemonError struct {
	Message string
	Codes   []string
}

func (e *DaemonError) Error() string { return e.Message }

func (e *DaemonError) Unwrap() []error {
	var out []error
	for _, c := range errorCodes {
		if slices.Contains(e.Codes, c.code) {
			out = append(out, c.err)
		}
	}
	return out
}

// controlClient is ArchiveAPI over the control socket: one connection per
// call.
type controlClient struct {
	path string
}

var _ ArchiveAPI = (*controlClient)(nil)

// DialControl checks that a daemon answers on the socket at path and
// accepts this process, and returns an ArchiveAPI that asks it. A missing
// socket or one nobody listens on gives ErrNoDaemon; a refusal gives the
// daemon's message (a *DaemonError wrapping ErrPeerRefused).
func DialControl(path string) (ArchiveAPI, error) {
	_, err := dialControl(path)
	if err != nil {
		return nil, err
	}
	return &controlClient{path: path}, nil
}

// dialControl pings the daemon on path and returns its state_dir.
func dialControl(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	c := &controlClient{path: path}
	end, err := c.call(ctx, &controlRequest{Op: "ping"}, nil)
	if err != nil {
		return "", err
	}
	return end.StateDir, nil
}

// DialConfig finds the daemon of cfg on cfg.ControlSocketPaths and
// returns an ArchiveAPI that asks it; a daemon that serves another
// state_dir is passed over. ErrNoDaemon when none answers.
func DialConfig(cfg *config.Config) (ArchiveAPI, error) {
	path, err := findDaemon(cfg)
	if err != nil {
		return nil, err
	}
	return &controlClient{path: path}, nil
}

// findDaemon returns the socket of cfg's daemon: the first of
// cfg.ControlSocketPaths whose daemon answers and serves cfg.StateDir.
func findDaemon(cfg *config.Config) (string, error) {
	var tried []string
	for _, p := range cfg.ControlSocketPaths() {
		stateDir, err := dialControl(p)
		switch {
		case errors.Is(err, ErrNoDaemon):
			tried = append(tried, p)
			continue
		case err != nil:
			return "", err
		case !sameDir(stateDir, cfg.StateDir):
			tried = append(tried, fmt.Sprintf("%s (a daemon with state_dir %s)", p, stateDir))
			continue
		}
		return p, nil
	}
	return "", fmt.Errorf("%w: tried %s", ErrNoDaemon, strings.Join(tried, ", "))
}

func sameDir(a, b string) bool {
	if a == b {
		return true
	}
	fa, erra := os.Stat(a)
	fb, errb := os.Stat(b)
	if erra == nil && errb == nil && os.SameFile(fa, fb) {
		return true
	}
	return filepath.Clean(a) == filepath.Clean(b)
}

// call sends req and passes every frame before the end to fn; it returns
// the end frame. A frame with an error ends the call with a *DaemonError.
func (c *controlClient) call(ctx context.Context, req *controlRequest, fn func(*controlFrame) error) (*controlFrame, error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w: %s: %w", ErrNoDaemon, c.path, err)
		}
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("control socket %s: permission denied (only root, the service user and members of its group may use it): %w", c.path, err)
		}
		return nil, fmt.Errorf("control socket %s: %w", c.path, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	wrap := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("control socket %s: %w", c.path, err)
	}

	line, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("control request: %w", err)
	}
	if limit := maxRequestSize; len(line) >= limit && (!importOp(req.Op) || len(line) >= maxImportRequestSize) {
		if importOp(req.Op) {
			limit = maxImportRequestSize
		}
		return nil, fmt.Errorf("control request: %d bytes, more than the daemon takes (%d KiB)", len(line), limit>>10)
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	if _, err := conn.Write(append(line, '\n')); err != nil {
		// A refused peer is told why and disconnected, perhaps before
		// the request is read: look for that answer first.
		if f, rerr := readFrame(br); rerr == nil && f.Error != "" {
			return nil, &DaemonError{Message: f.Error, Codes: f.Codes}
		}
		return nil, wrap(err)
	}
	for {
		f, err := readFrame(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the daemon closed the connection before the end of its answer (stopped?)")
			}
			return nil, wrap(err)
		}
		switch {
		case f.Error != "":
			return nil, &DaemonError{Message: f.Error, Codes: f.Codes}
		case f.End:
			return f, nil
		case fn == nil:
			return nil, wrap(errors.New("unexpected reply line"))
		}
		if err := fn(f); err != nil {
			return nil, err
		}
	}
}

func readFrame(br *bufio.Reader) (*controlFrame, error) {
	line, err := readLine(br, maxFrameSize)
	if err != nil {
		return nil, err
	}
	var f controlFrame
	if err := json.Unmarshal(line, &f); err != nil {
		return nil, fmt.Errorf("unreadable reply: %w", err)
	}
	return &f, nil
}

// unexpected is the error for a reply line that does not belong to op.
func unexpected(op string) error {
	return fmt.Errorf("control socket: unexpected reply line to %s", op)
}

// callOne makes a request whose answer is one frame carrying what pick
// finds in it: no such frame, or more than one, is an unexpected reply.
func callOne[T any](ctx context.Context, c *controlClient, req *controlRequest, pick func(*controlFrame) *T) (*T, error) {
	var v *T
	_, err := c.call(ctx, req, func(f *controlFrame) error {
		if pick(f) == nil || v != nil {
			return unexpected(req.Op)
		}
		v = pick(f)
		return nil
	})
	if err == nil && v == nil {
		err = unexpected(req.Op)
	}
	return v, err
}

func (c *controlClient) List(ctx context.Context, q archive.Query, fn func(*archive.Record) error) error {
	_, err := c.call(ctx, &controlRequest{Op: "list", Query: &q, Command: auditCommand(ctx)}, func(f *controlFrame) error {
		if f.Record == nil {
			return unexpected("list")
		}
		return fn(f.Record)
	})
	return err
}

func (c *controlClient) Get(ctx context.Context, id uint64) (*archive.Record, error) {
	return callOne(ctx, c, &controlRequest{Op: "get", ID: id}, func(f *controlFrame) *archive.Record { return f.Record })
}

func (c *controlClient) Message(ctx context.Context, id uint64, original bool, w io.Writer) error {
	_, err := c.call(ctx, &controlRequest{Op: "message", ID: id, Original: original, Command: auditCommand(ctx)}, func(f *controlFrame) error {
		if f.Data == nil {
			return unexpected("message")
		}
		_, err := w.Write(f.Data)
		return err
	})
	return err
}

func (c *controlClient) Verify(ctx context.Context, progress func(done, total int)) (*archive.VerifyResult, error) {
	return c.verify(ctx, &controlRequest{Op: "verify"}, progress)
}

func (c *controlClient) VerifyEvidence(ctx context.Context, openssl bool, progress func(done, total int)) (*archive.VerifyResult, error) {
	return c.verify(ctx, &controlRequest{Op: "verify", Evidence: true, OpenSSL: openssl}, progress)
}

func (c *controlClient) verify(ctx context.Context, req *controlRequest, progress func(done, total int)) (*archive.VerifyResult, error) {
	var res *archive.VerifyResult
	_, err := c.call(ctx, req, func(f *controlFrame) error {
		switch {
		case f.Progress != nil:
			if progress != nil {
				progress(f.Progress[0], f.Progress[1])
			}
		case f.Verify != nil:
			res = f.Verify
		default:
			return unexpected("verify")
		}
		return nil
	})
	if err == nil && res == nil {
		err = unexpected("verify")
	}
	return res, err
}

func (c *controlClient) Proof(ctx context.Context, id uint64) (*ProofResult, error) {
	return callOne(ctx, c, &controlRequest{Op: "proof", ID: id, Command: auditCommand(ctx)}, func(f *controlFrame) *ProofResult { return f.Proof })
}

// opVerifyWorm compares the WORM copy with the archive (VerifyWorm).
const opVerifyWorm = "verify_worm"

func (c *controlClient) VerifyWorm(ctx context.Context) (*worm.VerifyResult, error) {
	return callOne(ctx, c, &controlRequest{Op: opVerifyWorm}, func(f *controlFrame) *worm.VerifyResult { return f.WormVerify })
}

func (c *controlClient) Retry(ctx context.Context, ids []uint64, fn func(RetryResult) error) error {
	_, err := c.call(ctx, &controlRequest{Op: "retry", IDs: ids}, func(f *controlFrame) error {
		if f.Retry == nil {
			return unexpected("retry")
		}
		return fn(*f.Retry)
	})
	return err
}

func (c *controlClient) Backup(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	end, err := c.call(ctx, &controlRequest{Op: "backup"}, func(f *controlFrame) error {
		if f.Data == nil {
			return unexpected("backup")
		}
		k, err := w.Write(f.Data)
		n += int64(k)
		return err
	})
	if err != nil {
		return n, err
	}
	if end.N != n {
		return n, fmt.Errorf("control socket %s: backup: received %d bytes, the daemon sent %d", c.path, n, end.N)
	}
	return n, nil
}

func (c *controlClient) Audit(ctx context.Context, since time.Time, fn func(archive.AuditEntry) error) error {
	_, err := c.call(ctx, &controlRequest{Op: "audit", Since: since}, func(f *controlFrame) error {
		if f.Audit == nil {
			return unexpected("audit")
		}
		return fn(*f.Audit)
	})
	return err
}

// Close does nothing: every call has its own connection.
func (c *controlClient) Close() error { return nil }
