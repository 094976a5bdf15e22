package admin

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"

	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/revocation"
)

// The certs_* ops of the control socket, on the daemon's side: reads of
// the certificate store, trust and untrust, and the revocation lists, with
// LocalCerts's rules.

// doCerts runs a certs_* request.
func (s *controlServer) doCerts(ctx context.Context, api ArchiveAPI, req *controlRequest, fw *frameWriter, log *slog.Logger) (*controlFrame, error) {
	certs := s.opts.Certs
	if l, ok := api.(*Local); certs == nil && ok && l.Store != nil {
		certs = &LocalCerts{Store: l.Store, Revocation: l.Revocation, CAs: l.CAs}
	}
	if certs == nil {
		return nil, errors.New("certificates: this daemon does not serve its store")
	}
	var es []harvest.Entry
	var err error
	switch req.Op {
	case opCertsList:
		es, err = certs.List(ctx)
	case opCertsEmail:
		es, err = certs.ByEmail(ctx, req.Match)
	case opCertsFingerprint:
		es, err = certs.ByFingerprint(ctx, req.Match)
	case opCertsCertificate:
		var c *x509.Certificate
		if c, err = certs.Certificate(ctx, req.Match); err == nil && c != nil {
			err = fw.frame(&controlFrame{Certificate: c.Raw})
		}
	case opCertsIMs:
		var ims []*x509.Certificate
		ims, err = certs.Intermediates(ctx)
		for i := 0; err == nil && i < len(ims); i++ {
			err = fw.frame(&controlFrame{Certificate: ims[i].Raw})
		}
	case opCertsTrust, opCertsUntrust:
		// A trust changes every later verdict for the address and decides
		// which key the organisation encrypts to; LocalCerts applies the
		// rules (who may, --all, audited before it happens), as it does
		// for a command on the state file itself. So does its withdrawal.
		l, ok := api.(*Local)
		if !ok {
			err = errors.New(writeOps[req.Op] + ": the caller is unknown")
			break
		}
		lc := &LocalCerts{Store: l.Store, Archive: l.Archive, Caller: l.Caller, ServiceUID: s.policy.uid}
		var e *harvest.Entry
		done := "certificate trusted"
		if req.Op == opCertsTrust {
			e, err = lc.Trust(ctx, req.Match, req.All)
		} else {
			done = "certificate untrusted"
			e, err = lc.Untrust(ctx, req.Match)
		}
		if err == nil {
			log.Info(done, "fingerprint", e.Fingerprint, "email", e.Email, "uid", l.Caller.UID)
			es = []harvest.Entry{*e}
		}
	case opCertsImport:
		// Like a trust: the gateway encrypts to what is imported;
		// LocalCerts applies the rules (who may, the chain, audited
		// before it happens).
		l, ok := api.(*Local)
		if !ok {
			err = errors.New(writeOps[req.Op] + ": the caller is unknown")
			break
		}
		engine := l.Engine
		lc := &LocalCerts{Store: l.Store, Archive: l.Archive, Caller: l.Caller, ServiceUID: s.policy.uid,
			Engine: func() (*harvest.Engine, error) { return engine, nil }}
		if es, err = lc.Import(ctx, req.Data, req.Emails, req.Trust); err == nil {
			for _, e := range es {
				log.Info("certificate imported", "fingerprint", e.Fingerprint, "email", e.Email, "trusted", !e.TrustedAt.IsZero(), "uid", l.Caller.UID)
			}
		}
	case opCRLs:
		var list []revocation.Info
		list, err = certs.CRLs(ctx)
		for i := 0; err == nil && i < len(list); i++ {
			err = fw.frame(&controlFrame{CRL: &list[i]})
		}
	case opCRLImport:
		// Like a trust: it changes later verdicts; LocalCerts applies the
		// rules (who may, audited before it happens).
		l, ok := api.(*Local)
		if !ok {
			err = errors.New(writeOps[req.Op] + ": the caller is unknown")
			break
		}
		lc := &LocalCerts{Store: l.Store, Archive: l.Archive, Caller: l.Caller, ServiceUID: s.policy.uid, Revocation: l.Revocation, CAs: l.CAs}
		var in *revocation.Info
		if in, err = lc.ImportCRL(ctx, req.Data); err == nil {
			log.Info("CRL imported", "issuer", in.Issuer, "entries", in.Entries, "next_update", in.NextUpdate, "uid", l.Caller.UID)
			err = fw.frame(&controlFrame{CRL: in})
		}
	}
	for i := 0; err == nil && i < len(es); i++ {
		err = fw.frame(&controlFrame{Entry: wireEntry(&es[i])})
	}
	if err == nil {
		err = fw.err
	}
	return &controlFrame{End: true}, err
}
