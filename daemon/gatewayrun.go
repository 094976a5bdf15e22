package daemon

// This file runs the SMTP gateway (daemon/gateway) inside `smimed run`
// when the configuration has a [gateway]: its listeners, its runtime
// (policy, certificates, signing identities, escrow) built by load so
// that a configuration is refused whole, and put in force again by a
// reload without dropping a session.

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/gateway"
	"github.com/smimed/smimed/harvest"
)

// gatewayLoaded is what the gateway needs from files, read by load.
type gatewayLoaded struct {
	tls    *tls.Config
	escrow []gateway.Recipient
	relay  gateway.RelayConfig
	policy *gateway.Policy
	signer func(addr string) *gateway.Signer
}

// loadGateway reads the gateway's certificates, settings and signing
// identities of cfg.
func loadGateway(cfg *config.Config) (*gatewayLoaded, error) {
	gl, err := gatewayFiles(cfg)
	if err != nil || gl == nil {
		return nil, err
	}
	if gl.signer, err = loadSigners(cfg); err != nil {
		return nil, err
	}
	return gl, nil
}

// gatewayFiles reads the gateway's own files: TLS certificate, escrow
// certificates, relay CA.
func gatewayFiles(cfg *config.Config) (*gatewayLoaded, error) {
	g := cfg.Gateway
	if g == nil {
		return nil, nil
	}
	gl := &gatewayLoaded{policy: gateway.PolicyOf(g)}
	var err error
	if gl.tls, err = cfg.GatewayTLS(); err != nil {
		return nil, err
	}
	certs, err := cfg.GatewayEscrow(time.Now())
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		gl.escrow = append(gl.escrow, gateway.Escrow(c))
	}
	host, _ := os.Hostname()
	if gl.relay, err = gateway.RelayConfigOf(g, host); err != nil {
		return nil, &config.Error{Path: cfg.Path, Problems: []string{err.Error()}}
	}
	return gl, nil
}

// runtime is the gateway's runtime for the store.
func (gl *gatewayLoaded) runtime(store *harvest.Store, now func() time.Time) *gateway.Runtime {
	return &gateway.Runtime{Policy: gl.policy, Escrow: gl.escrow,
		Lookup: &storeLookup{certs: recipientCerts(store), signer: gl.signer, now: now}}
}

// storeLookup finds partners' certificates in the store and the
// organisation's signing identities.
type storeLookup struct {
	certs  func(email string, now time.Time) (*harvest.Entry, error)
	signer func(addr string) *gateway.Signer
	now    func() time.Time
}

func (l *storeLookup) RecipientCert(addr string) (*gateway.Recipient, error) {
	e, err := l.certs(addr, l.now())
	if err != nil || e == nil {
		return nil, err
	}
	return &gateway.Recipient{Address: addr, Cert: e.Cert, Capabilities: e.Capabilities}, nil
}

func (l *storeLookup) Signer(addr string) *gateway.Signer { return l.signer(addr) }

// gatewayRun is the running gateway.
type gatewayRun struct {
	gw     *gateway.Gateway
	cfg    *config.Gateway
	listen string
}

// startGateway opens the listeners (at NewService, so that a port in use
// is a start error) and makes the gateway.
func (s *Service) startGateway(cfg *config.Config, gl *gatewayLoaded) (*gatewayRun, error) {
	g := cfg.Gateway
	ln, err := net.Listen("tcp", g.Listen)
	if err != nil {
		return nil, fmt.Errorf("gateway.listen: %w", err)
	}
	var lnTLS net.Listener
	if g.ListenTLS != "" {
		if lnTLS, err = net.Listen("tcp", g.ListenTLS); err != nil {
			ln.Close()
			return nil, fmt.Errorf("gateway.listen_tls: %w", err)
		}
	}
	host, _ := os.Hostname()
	gw, err := gateway.New(gateway.Config{
		Mode: g.Mode, Listen: ln, ListenTLS: lnTLS, TLS: gl.tls, Relay: gl.relay, Domain: host,
		MaxMessageSize: g.MaxMessageSize, MaxRecipients: g.MaxRecipients, MaxSessions: g.MaxSessions,
		CommandTimeout: g.CommandTimeout, DataTimeout: g.DataTimeout,
		TempDir:           filepath.Join(cfg.StateDir, "tmp"),
		AllowInsecureAuth: gl.tls == nil, // only on loopback: config refuses it elsewhere
		Composer:          gateway.Compose{}, Archiver: s.arch,
		Monitor: s.metrics.gateway, Log: s.log.With("pkg", "gateway"),
	}, gl.runtime(s.store, time.Now))
	if err != nil {
		ln.Close()
		if lnTLS != nil {
			lnTLS.Close()
		}
		return nil, err
	}
	return &gatewayRun{gw: gw, cfg: g, listen: ln.Addr().String()}, nil
}

// serve runs the gateway until ctx ends.
func (r *gatewayRun) serve(ctx context.Context, log *slog.Logger) error {
	if err := r.gw.Serve(ctx); err != nil {
		log.Error("gateway stopped", "err", err)
		return err
	}
	return nil
}

// GatewayAddr is the address the gateway listens on, "" when it does
// not run.
func (s *Service) GatewayAddr() string {
	if r := s.gateway; r != nil {
		return r.listen
	}
	return ""
}

// loadSigners loads the [[signing]] identities: the gateway's signer
// for an address.
func loadSigners(cfg *config.Config) (func(addr string) *gateway.Signer, error) {
	ids, err := config.LoadSigning(cfg)
	if err != nil {
		return nil, err
	}
	return func(addr string) *gateway.Signer {
		id := ids.For(addr)
		if id == nil {
			return nil
		}
		return &gateway.Signer{Cert: id.Cert, Chain: id.Chain, Key: id.Key, PSS: id.PSS, EncryptionCert: id.EncryptionCert}
	}, nil
}

// recipientCerts is the store's certificate to encrypt to.
func recipientCerts(store *harvest.Store) func(email string, now time.Time) (*harvest.Entry, error) {
	return store.RecipientCert
}

// reloadGateway puts a reloaded configuration's policy, identities and
// escrow in force for the next message; what the listeners and the
// relay were started with needs a restart (a warning says so, the
// running value is kept). Called by Reload with mu held.
func (s *Service) reloadGateway(old, cfg *config.Config, l *loaded) {
	switch {
	case s.gateway == nil && cfg.Gateway == nil:
		return
	case s.gateway == nil:
		s.log.Warn("[gateway] added; restart needed")
		cfg.Gateway = nil
		return
	case cfg.Gateway == nil:
		s.log.Warn("[gateway] removed; restart needed: the gateway keeps running")
		cfg.Gateway = old.Gateway
		return
	}
	o, n := s.gateway.cfg, cfg.Gateway
	fixed := []struct {
		key                 string
		running, configured any
	}{
		{"listen", o.Listen, n.Listen}, {"mode", o.Mode, n.Mode}, {"relay", o.Relay, n.Relay},
		{"relay_tls", o.RelayTLS, n.RelayTLS}, {"relay_tls_ca_file", o.RelayTLSCAFile, n.RelayTLSCAFile},
		{"listen_tls", o.ListenTLS, n.ListenTLS}, {"tls_cert_file", o.TLSCertFile, n.TLSCertFile},
		{"tls_key_file", o.TLSKeyFile, n.TLSKeyFile}, {"max_message_size", o.MaxMessageSize, n.MaxMessageSize},
		{"command_timeout", o.CommandTimeout, n.CommandTimeout}, {"data_timeout", o.DataTimeout, n.DataTimeout},
		{"max_recipients", o.MaxRecipients, n.MaxRecipients}, {"max_sessions", o.MaxSessions, n.MaxSessions},
	}
	for _, f := range fixed {
		if f.running != f.configured {
			s.log.Warn("gateway."+f.key+" changed; restart needed", "running", f.running, "configured", f.configured)
		}
	}
	s.gateway.gw.SetRuntime(l.gateway.runtime(s.store, time.Now))
	s.log.Info("gateway policy, signing identities and escrow reloaded", "sessions", s.gateway.gw.Sessions(), "escrow", len(l.gateway.escrow))
}

// gatewayStatus is the gateway's part of `smimed status`, nil without
// one. It takes no lock of the service.
func (s *Service) gatewayStatus() *admin.GatewayStatus {
	if s.gateway == nil {
		return nil
	}
	return s.metrics.gateway.status(s.gateway.cfg.Mode, s.gateway.listen, s.gateway.cfg.Relay)
}

// CheckGateway loads the gateway's own files of cfg (TLS certificate,
// escrow certificates, relay CA; [[signing]] is check-config's own
// check) as `smimed run` will, for check-config; "" without a
// [gateway]. It returns a one-line summary.
func CheckGateway(cfg *config.Config) (string, error) {
	gl, err := gatewayFiles(cfg)
	if err != nil || gl == nil {
		return "", err
	}
	g := cfg.Gateway
	return fmt.Sprintf("gateway %s on %s, relay %s (tls %s), %d escrow certificate(s)", g.Mode, g.Listen, g.Relay, g.RelayTLS, len(gl.escrow)), nil
}

// CheckRelay connects to the gateway's next hop of cfg as the gateway
// will and returns what it offers, for check-config --connect.
func CheckRelay(ctx context.Context, cfg *config.Config) (string, error) {
	gl, err := gatewayFiles(cfg)
	if err != nil {
		return "", err
	}
	return gateway.CheckRelay(ctx, gl.relay, cfg.Gateway.Mode == config.ModeSubmission)
}

// archiveKept archives, at start, the sent messages an archive failure
// left in state_dir/gateway-unarchived.
func (s *Service) archiveKept() {
	n, err := gateway.ArchiveKept(filepath.Join(s.stateDir, gateway.UnarchivedDir), s.arch, s.log.With("pkg", "gateway"))
	if err != nil {
		s.log.Error("gateway: sent messages kept after an archive failure could not be archived yet; they stay kept", "archived", n, "err", oneLine(err))
	}
}
