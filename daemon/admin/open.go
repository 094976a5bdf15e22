package admin

// Open is the one place where a command opens smimed's state: the state
// file (certificate store, archive index, audit log, checkpoints), the
// archive directory and the engine, each as the command's Mode needs.
// The service opens the same things for itself (package daemon); the
// commands that talk to a running service over the control socket open
// nothing (Archive, Certs and Status below try the socket first).

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/archive/worm"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/revocation"
	"github.com/smimed/smimed/harvest/state"
)

// Mode says what a command opens.
type Mode int

const (
	// Inspect loads the keys and trust anchors for an engine that
	// harvests nothing. The state file is read when it exists, for the
	// certificates it holds; when it cannot be read, that is a warning.
	Inspect Mode = iota
	// Harvest is Inspect with the state file opened for writing
	// (created when missing) and an engine that harvests into it.
	Harvest
	// Read opens the state file read-only; it must exist.
	Read
	// Write opens the state file and the archive for writing; the state
	// file must exist.
	Write
	// Reprocess is Write with the keys and trust anchors and an engine
	// that harvests, as the service's (archive retry).
	Reprocess
)

// ConfigError is a failure that is the configuration's fault: a key or
// trust anchor file that cannot be used. Commands exit 2 on it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// ErrNoState is returned, wrapped with the path, when a mode that needs
// the state file finds none.
var ErrNoState = errors.New("no state file")

// Env is what Open opened. Close releases it.
type Env struct {
	Config *config.Config
	// State is the state file; the store, the archive index, the audit
	// log and the checkpoints are in it. nil: none (Inspect without a
	// state file).
	State   *state.DB
	Store   *harvest.Store   // the certificate store in State
	Archive *archive.Archive // Write and Reprocess
	Engine  *harvest.Engine  // Inspect, Harvest and Reprocess
	// Crypto is the keys and trust anchors the engine was built with.
	Crypto *config.Crypto
	// Warnings are problems that did not stop Open, one line each (a
	// state file Inspect could not read).
	Warnings []string
	// Snapshot is the running daemon's certificates, read through its
	// control socket (Inspect while a daemon holds the store).
	Snapshot *harvest.CertSnapshot
}

// Open opens what mode needs of cfg's state.
func Open(cfg *config.Config, mode Mode) (*Env, error) {
	env := &Env{Config: cfg}
	var cr *config.Crypto
	if mode == Inspect || mode == Harvest || mode == Reprocess {
		var err error
		if cr, err = cfg.LoadCrypto(); err != nil {
			return nil, &ConfigError{err}
		}
		env.Crypto = cr
	}
	path := cfg.StorePath()
	_, statErr := os.Stat(path)
	missing := errors.Is(statErr, os.ErrNotExist)
	switch mode {
	case Inspect:
		// A running daemon holds the store: its certificates are read
		// through the control socket, at once, instead of waiting for
		// the lock.
		if api, err := DialConfigCerts(cfg); err == nil {
			snap, serr := Snapshot(context.Background(), api)
			api.Close()
			if serr == nil {
				env.Snapshot = snap
				break
			}
			env.Warnings = append(env.Warnings, fmt.Sprintf("the running daemon's certificates could not be read: %v", serr))
		}
		if !missing {
			db, err := state.Open(path, true)
			if err != nil {
				// Reading mail works without it; say what is missing.
				env.Warnings = append(env.Warnings, fmt.Sprintf("certificate store not used: %v", err))
			} else {
				env.State, env.Store = db, harvest.NewStore(db)
			}
		}
	case Harvest:
		if api, err := DialConfigCerts(cfg); err == nil {
			api.Close()
			return nil, fmt.Errorf("the running smimed holds the certificate store %s: --harvest writes to it, so stop smimed first (or let it read the mail)", path)
		}
		db, err := openState(path, false)
		if err != nil {
			return nil, err
		}
		env.State, env.Store = db, harvest.NewStore(db)
	default:
		if missing {
			return nil, fmt.Errorf("%w at %s: smimed has not archived or watched anything with this configuration (state_dir %s)", ErrNoState, path, cfg.StateDir)
		}
		db, err := openState(path, mode == Read)
		if err != nil {
			return nil, err
		}
		env.State, env.Store = db, harvest.NewStore(db)
		if mode != Read {
			if env.Archive, err = archive.Open(cfg.ArchiveDir(), db); err != nil {
				db.Close()
				return nil, err
			}
			env.Archive.SetRetention(cfg.Archive.Retention.Policy())
			if cfg.Archive.Worm != nil {
				// A hold changed here reaches the WORM copy through
				// the outbox: the service's uploader sets it.
				env.Archive.SetHoldObserver(worm.HoldObserver(db, env.Archive, nil))
			}
		}
	}
	if cr != nil {
		opts := cfg.EngineOptions(cr, env.Store, mode != Inspect, config.NewNetwork(env.State, nil))
		if env.Snapshot != nil {
			opts.Certs = env.Snapshot
		}
		env.Engine = harvest.New(opts)
	}
	return env, nil
}

// openState opens the state file, saying who holds it when it is locked.
func openState(path string, readOnly bool) (*state.DB, error) {
	db, err := state.Open(path, readOnly)
	if errors.Is(err, state.ErrLocked) {
		return nil, fmt.Errorf("the state file %s is locked by a running smimed whose control socket did not answer; check [daemon] control_socket", path)
	}
	return db, err
}

// Close releases the state file.
func (e *Env) Close() error {
	if e.State == nil {
		return nil
	}
	return e.State.Close()
}

// DirectCaller is this process as the audit log names a command that
// works on the state file itself.
func DirectCaller() Caller {
	return Caller{UID: os.Getuid(), GID: os.Getgid(), PID: os.Getpid(), Via: "direct", Login: loginUID(os.Getpid(), os.Getuid())}
}

// Local is the archive API on env (Write or Reprocess), acting for this
// process; its Close closes env.
func (e *Env) Local() *Local {
	// The same roles as over the control socket: the service user is
	// who owns the state file.
	c := DirectCaller()
	acc := AccessOf(e.Config, OwnerOf(e.Config.StorePath()))
	c.Role = acc.role(c, supplementaryGroups)
	l := &Local{Archive: e.Archive, Store: e.Store, State: e.State, Engine: e.Engine, Caller: c, Closer: e.Close, AuditorQuery: acc.AuditorQuery, Seal: e.Config.Archive.Seal}
	if w := e.Config.Archive.Worm; w != nil {
		l.Worm = w.Client
	}
	return l

}

// ArchiveFor is the archive API of cfg for an admin command: the running
// service's over its control socket, or, when none answers, cfg's state
// opened here (Reprocess with engine: archive retry; else Write).
func ArchiveFor(cfg *config.Config, engine bool) (ArchiveAPI, error) {
	api, err := DialConfig(cfg)
	if !errors.Is(err, ErrNoDaemon) {
		return api, err
	}
	mode := Write
	if engine {
		mode = Reprocess
	}
	env, err := Open(cfg, mode)
	if err != nil {
		return nil, err
	}
	return env.Local(), nil
}

// Certs is the certificate API on env, acting for this process; its
// Close closes env. Trust and untrust need Write (the audit log).
func (e *Env) Certs() *LocalCerts {
	return &LocalCerts{Store: e.Store, Archive: e.Archive, Caller: DirectCaller(), ServiceUID: OwnerOf(e.Config.StorePath()), Closer: e.Close,
		Revocation: revocation.New(e.State, revocation.Config{}), CAs: CACandidates(e.Config, e.Store),
		Engine: func() (*harvest.Engine, error) { return importEngine(e) }}
}

// importEngine is an engine that judges chains as the service's does (the
// configuration's trust anchors and revocation settings, the store's
// intermediates and CRLs), without the organisation's keys: certs import
// needs no private key.
func importEngine(e *Env) (*harvest.Engine, error) {
	roots, err := e.Config.TrustPool()
	if err != nil {
		return nil, &ConfigError{err}
	}
	cr := &config.Crypto{Roots: roots}
	return harvest.New(e.Config.EngineOptions(cr, e.Store, e.Archive != nil, config.NewNetwork(e.State, nil))), nil
}

// CACandidates lists the CA certificates that may have signed a CRL to
// import: the trust.ca_files (the system's roots cannot be listed) and the
// intermediates harvested into store.
func CACandidates(cfg *config.Config, store *harvest.Store) func() ([]*x509.Certificate, error) {
	return func() ([]*x509.Certificate, error) {
		cas, err := cfg.CACertificates()
		if err != nil {
			return nil, err
		}
		if store != nil {
			ims, err := store.Intermediates()
			if err != nil {
				return nil, err
			}
			cas = append(cas, ims...)
		}
		return cas, nil
	}
}

// OwnerOf is the user owning path: the service user, for a command that
// works on the state file itself. -1 when unknown.
func OwnerOf(path string) int {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// CertsFor is the certificate API of cfg for `smimed certs`: the running
// service's over its control socket, or, when none answers, cfg's state
// file opened here (OpenCerts).
func CertsFor(cfg *config.Config, write bool) (CertsAPI, error) {
	api, err := DialConfigCerts(cfg)
	if !errors.Is(err, ErrNoDaemon) {
		return api, err
	}
	return OpenCerts(cfg, write)
}

// OpenCerts opens cfg's state file for the certificate API: read-only,
// or with write for trust and untrust.
func OpenCerts(cfg *config.Config, write bool) (*LocalCerts, error) {
	mode := Read
	if write {
		mode = Write
	}
	env, err := Open(cfg, mode)
	if err != nil {
		return nil, err
	}
	return env.Certs(), nil
}
