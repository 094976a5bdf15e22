package admin

// This file is the certificate store as the admin commands see it
// (`smimed certs …`): CertsAPI, implemented by LocalCerts on a store this
// process has open, and by the control socket's client while the daemon
// holds the store. Certificates travel as DER (base64 in JSON).
//
// Reading certificates is not reading the archive: nothing here is
// audited. Trust and untrust, changes, are audited before they happen and
// logged by the daemon in one line with the peer's uid and the
// fingerprint (control.go); the store records who trusted when.

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/revocation"
)

// CertsAPI is what `smimed certs` uses; the methods are the store's
// (harvest.Store), with the same results and errors.
type CertsAPI interface {
	// List returns every address's entries, usable and quarantined.
	List(ctx context.Context) ([]harvest.Entry, error)
	// ByEmail returns the address's entries, latest not_after first.
	ByEmail(ctx context.Context, email string) ([]harvest.Entry, error)
	// ByFingerprint returns one certificate's entries, one per address.
	ByFingerprint(ctx context.Context, fp string) ([]harvest.Entry, error)
	// Certificate returns the end-entity or intermediate certificate
	// with this fingerprint; nil, nil when absent.
	Certificate(ctx context.Context, fp string) (*x509.Certificate, error)
	// Intermediates returns the CA certificates kept from verified
	// chains (offered when a later chain lacks one).
	Intermediates(ctx context.Context) ([]*x509.Certificate, error)
	// Trust releases a certificate for every address it is bound to and
	// pins it (its signatures need no CA chain); the store records who
	// and when. A certificate bound to more than one address it is not
	// yet trusted for is refused with ErrNeedsAll unless all is set: one
	// look at one address must not release it for others.
	Trust(ctx context.Context, fp string, all bool) (*harvest.Entry, error)
	// Untrust withdraws a trust: the certificate is quarantined again.
	Untrust(ctx context.Context, fp string) (*harvest.Entry, error)
	// CRLs describes the certificate revocation lists kept.
	CRLs(ctx context.Context) ([]revocation.Info, error)
	// ImportCRL keeps a CRL (DER or PEM) an administrator brought, once
	// one of the CA certificates known (trust.ca_files, harvested
	// intermediates) is found to have signed it.
	ImportCRL(ctx context.Context, data []byte) (*revocation.Info, error)
	// Import keeps a certificate an administrator brings for a partner
	// who never signed to us (certs import): data holds it (PEM or DER),
	// with the CA certificates that came with it; emails the addresses
	// to import it for (each one of the certificate's; none: all of
	// them). Its chain must lead to a trust anchor, as a harvested
	// signer's must, unless trust is set: then the administrator trusts
	// it (pinned), as certs trust does. The certificate must be able to
	// receive encrypted mail now. It returns one entry per address.
	Import(ctx context.Context, data []byte, emails []string, trust bool) ([]harvest.Entry, error)
	Close() error
}

// MaxCRLImport bounds a CRL sent to the daemon to import (the control
// socket's request line holds it); a larger one is imported with the
// service stopped, on the state file itself.
const MaxCRLImport = 1 << 20

// ErrUntrustedChain refuses an Import without trust of a certificate
// whose chain does not lead to a trust anchor.
var ErrUntrustedChain = errors.New("not trusted")

// ErrNeedsAll refuses a Trust without all of a certificate bound to
// several addresses it is not trusted for.
var ErrNeedsAll = errors.New("bound to several addresses")

// adminName is "NAME (uid N)" of an administrator, as the store records
// who trusted a certificate.
func adminName(uid int) string {
	name := "uid " + strconv.Itoa(uid)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		name = u.Username + " (" + name + ")"
	}
	return name
}

// LocalCerts is CertsAPI on a store this process has open, acting for
// Caller. Its rules hold whichever way the request came (the control
// socket, or a command on the state file itself): a trust or untrust
// needs root or the service user (mayChange), is refused for several
// addresses without all, and is audited before it happens.
type LocalCerts struct {
	Store *harvest.Store
	// Archive takes the audit entries of Trust and Untrust; without it
	// they are refused.
	Archive *archive.Archive
	Caller  Caller
	// ServiceUID is the user the service runs as (the daemon's own, or
	// the owner of the state file for a direct command).
	ServiceUID int
	// Revocation keeps the revocation lists (the daemon's own checker, so
	// that an import is seen at once); nil: CRLs and ImportCRL fail.
	Revocation *revocation.Checker
	// CAs lists the CA certificates an imported CRL may be signed by.
	CAs func() ([]*x509.Certificate, error)
	// Engine judges the chain of an imported certificate (the daemon's
	// engine, or one built on the configuration's trust anchors); nil:
	// Import fails.
	Engine func() (*harvest.Engine, error)
	// Closer, if set, is called by Close (the command that opened the
	// store closes it; the daemon's store stays open).
	Closer func() error
}

var _ CertsAPI = (*LocalCerts)(nil)

func (l *LocalCerts) List(ctx context.Context) ([]harvest.Entry, error) { return l.Store.List() }

func (l *LocalCerts) ByEmail(ctx context.Context, email string) ([]harvest.Entry, error) {
	return l.Store.ByEmail(email)
}

func (l *LocalCerts) ByFingerprint(ctx context.Context, fp string) ([]harvest.Entry, error) {
	return l.Store.ByFingerprint(fp)
}

func (l *LocalCerts) Certificate(ctx context.Context, fp string) (*x509.Certificate, error) {
	return l.Store.Certificate(fp)
}

func (l *LocalCerts) Intermediates(ctx context.Context) ([]*x509.Certificate, error) {
	return l.Store.Intermediates()
}

func (l *LocalCerts) Trust(ctx context.Context, fp string, all bool) (*harvest.Entry, error) {
	if err := l.mayChange(opCertsTrust, fp); err != nil {
		return nil, err
	}
	es, err := l.Store.ByFingerprint(fp)
	if err != nil {
		return nil, err
	}
	var untrusted []string
	for _, e := range es {
		if e.TrustedAt.IsZero() {
			untrusted = append(untrusted, e.Email)
		}
	}
	if len(untrusted) > 1 && !all {
		return nil, fmt.Errorf("%s is %w (%s); check each, then repeat with --all", es[0].Fingerprint,
			fmt.Errorf("bound to %d addresses: %w", len(untrusted), ErrNeedsAll), strings.Join(untrusted, ", "))
	}
	if err := audit(l.Archive, l.Caller, archive.AuditTrust, "certificate="+fp); err != nil {
		return nil, err
	}
	return l.Store.Trust(fp, adminName(l.Caller.UID))
}

func (l *LocalCerts) Untrust(ctx context.Context, fp string) (*harvest.Entry, error) {
	if err := l.mayChange(opCertsUntrust, fp); err != nil {
		return nil, err
	}
	if err := audit(l.Archive, l.Caller, archive.AuditUntrust, "certificate="+fp); err != nil {
		return nil, err
	}
	return l.Store.Untrust(fp, adminName(l.Caller.UID))
}

func (l *LocalCerts) CRLs(ctx context.Context) ([]revocation.Info, error) {
	if l.Revocation == nil {
		return nil, errors.New("no revocation lists here")
	}
	return l.Revocation.List()
}

func (l *LocalCerts) ImportCRL(ctx context.Context, data []byte) (*revocation.Info, error) {
	if l.Revocation == nil || l.CAs == nil {
		return nil, errors.New("no revocation lists here")
	}
	if err := l.mayChange(opCRLImport, "crl"); err != nil {
		return nil, err
	}
	cas, err := l.CAs()
	if err != nil {
		return nil, err
	}
	if err := audit(l.Archive, l.Caller, archive.AuditCRLImport, fmt.Sprintf("crl bytes=%d", len(data))); err != nil {
		return nil, err
	}
	in, err := l.Revocation.Import(data, cas)
	if err != nil {
		return nil, err
	}
	return &in, nil
}

func (l *LocalCerts) Import(ctx context.Context, data []byte, emails []string, trust bool) ([]harvest.Entry, error) {
	if err := l.mayChange(opCertsImport, "import"); err != nil {
		return nil, err
	}
	certs, err := harvest.ParseCertificates(data)
	if err != nil {
		return nil, err
	}
	var leaf *x509.Certificate
	var with []*x509.Certificate
	for _, c := range certs {
		switch {
		case c.BasicConstraintsValid && c.IsCA:
			with = append(with, c)
		case leaf != nil:
			return nil, fmt.Errorf("more than one end-entity certificate (%s and %s): import one at a time", harvest.Fingerprint(leaf), harvest.Fingerprint(c))
		default:
			leaf = c
		}
	}
	if leaf == nil {
		return nil, fmt.Errorf("only CA certificates: import the partner's own certificate (with its CAs, if you like)")
	}
	fp := harvest.Fingerprint(leaf)
	own := harvest.CertEmails(leaf)
	if len(emails) == 0 {
		if emails = own; len(emails) == 0 {
			return nil, fmt.Errorf("%w: %s names no email address", harvest.ErrNotForAddress, fp)
		}
	}
	for i, e := range emails {
		// Checked before the audit entry: a refused import is no change.
		emails[i] = harvest.NormalizeAddress(strings.TrimSpace(e))
		if !slices.Contains(own, emails[i]) {
			return nil, fmt.Errorf("%w: %q (%s names %s)", harvest.ErrNotForAddress, e, fp, strings.Join(own, ", "))
		}
	}
	now := time.Now()
	if p := harvest.EncryptionProblem(leaf, now); p != "" {
		return nil, fmt.Errorf("%s cannot be encrypted to: %s", fp, p)
	}
	if l.Engine == nil {
		return nil, errors.New("certs import: no trust anchors here")
	}
	eng, err := l.Engine()
	if err == nil && eng == nil {
		err = errors.New("certs import: no engine to judge the chain")
	}
	if err != nil {
		return nil, err
	}
	chain, status, reason := eng.CheckImport(leaf, with, now)
	verdict := "chain=valid"
	if status != harvest.StatusValid {
		verdict = "chain=" + status
		if !trust {
			return nil, fmt.Errorf("%s is %w: %s (%s); compare its fingerprint with the partner's over another channel, then import it with --trust",
				fp, ErrUntrustedChain, reason, status)
		}
	}
	if trust {
		verdict += " trusted"
	}
	if err := audit(l.Archive, l.Caller, archive.AuditImport, fmt.Sprintf("certificate=%s emails=%s %s", fp, strings.Join(emails, ","), verdict)); err != nil {
		return nil, err
	}
	var intermediates []*x509.Certificate
	if len(chain) > 2 {
		intermediates = chain[1 : len(chain)-1]
	}
	return l.Store.Import(leaf, intermediates, emails, adminName(l.Caller.UID), trust)
}

// mayChange refuses a change of the store to anyone but root and the
// service user, and audits the refusal.
func (l *LocalCerts) mayChange(op, fp string) error {
	if isAdmin(l.Caller, l.ServiceUID) {
		return nil
	}
	err := fmt.Errorf("%w: %s needs root or the service user (uid %d); uid %d may only read", ErrPeerRefused, writeOps[op], l.ServiceUID, l.Caller.UID)
	if aerr := audit(l.Archive, l.Caller, archive.AuditRefused, writeOps[op]+" certificate="+fp); aerr != nil {
		return fmt.Errorf("%w (and the refusal was not audited: %v)", err, aerr)
	}
	return err
}

func (l *LocalCerts) Close() error {
	if l.Closer != nil {
		return l.Closer()
	}
	return nil
}

// certEntry is a harvest.Entry on the wire.
type certEntry struct {
	Email               string    `json:"email"`
	Fingerprint         string    `json:"fingerprint"`
	DER                 []byte    `json:"der"`
	FirstSeen           time.Time `json:"first_seen"`
	LastSeen            time.Time `json:"last_seen"`
	MessageID           string    `json:"message_id,omitempty"`
	Quarantined         bool      `json:"quarantined,omitempty"`
	QuarantineReason    string    `json:"quarantine_reason,omitempty"`
	EncryptionPreferred bool      `json:"encryption_preferred,omitempty"`
	Capabilities        []string  `json:"capabilities,omitempty"`
	TrustedAt           time.Time `json:"trusted_at,omitzero"`
	TrustedBy           string    `json:"trusted_by,omitempty"`
	RevokedAt           time.Time `json:"revoked_at,omitzero"`
	RevokedReason       string    `json:"revoked_reason,omitempty"`
	ImportedAt          time.Time `json:"imported_at,omitzero"`
	ImportedBy          string    `json:"imported_by,omitempty"`
}

func wireEntry(e *harvest.Entry) *certEntry {
	return &certEntry{
		Email: e.Email, Fingerprint: e.Fingerprint, DER: e.Cert.Raw,
		FirstSeen: e.FirstSeen, LastSeen: e.LastSeen, MessageID: e.MessageID,
		Quarantined: e.Quarantined, QuarantineReason: e.QuarantineReason,
		EncryptionPreferred: e.EncryptionPreferred, Capabilities: e.Capabilities,
		TrustedAt: e.TrustedAt, TrustedBy: e.TrustedBy,
		RevokedAt: e.RevokedAt, RevokedReason: e.RevokedReason,
		ImportedAt: e.ImportedAt, ImportedBy: e.ImportedBy,
	}
}

// entry parses the certificate and checks that it has the fingerprint
// the daemon gave.
func (w *certEntry) entry() (harvest.Entry, error) {
	c, err := parseDER(w.DER)
	if err != nil {
		return harvest.Entry{}, err
	}
	if harvest.Fingerprint(c) != w.Fingerprint {
		return harvest.Entry{}, fmt.Errorf("control socket: certificate of %s does not have the fingerprint %s", w.Email, w.Fingerprint)
	}
	return harvest.Entry{
		Email: w.Email, Fingerprint: w.Fingerprint, Cert: c,
		FirstSeen: w.FirstSeen, LastSeen: w.LastSeen, MessageID: w.MessageID,
		Quarantined: w.Quarantined, QuarantineReason: w.QuarantineReason,
		EncryptionPreferred: w.EncryptionPreferred, Capabilities: w.Capabilities,
		TrustedAt: w.TrustedAt, TrustedBy: w.TrustedBy,
		RevokedAt: w.RevokedAt, RevokedReason: w.RevokedReason,
		ImportedAt: w.ImportedAt, ImportedBy: w.ImportedBy,
	}, nil
}

func parseDER(der []byte) (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(bytes.Clone(der))
	if err != nil {
		return nil, fmt.Errorf("control socket: unreadable certificate: %w", err)
	}
	return c, nil
}

// certsClient is CertsAPI over the control socket.
type certsClient struct {
	c *controlClient
}

var _ CertsAPI = (*certsClient)(nil)

// DialConfigCerts finds the daemon of cfg as DialConfig does and returns
// a CertsAPI that asks it. ErrNoDaemon when none answers.
func DialConfigCerts(cfg *config.Config) (CertsAPI, error) {
	path, err := findDaemon(cfg)
	if err != nil {
		return nil, err
	}
	return &certsClient{c: &controlClient{path: path}}, nil
}

// entries runs an op that answers with entry frames.
func (cc *certsClient) entries(ctx context.Context, op, match string) ([]harvest.Entry, error) {
	return cc.entriesOf(ctx, &controlRequest{Op: op, Match: match})
}

// entriesOf runs a request that answers with entry frames.
func (cc *certsClient) entriesOf(ctx context.Context, req *controlRequest) ([]harvest.Entry, error) {
	var out []harvest.Entry
	_, err := cc.c.call(ctx, req, func(f *controlFrame) error {
		if f.Entry == nil {
			return unexpected(req.Op)
		}
		e, err := f.Entry.entry()
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (cc *certsClient) List(ctx context.Context) ([]harvest.Entry, error) {
	return cc.entries(ctx, opCertsList, "")
}

func (cc *certsClient) ByEmail(ctx context.Context, email string) ([]harvest.Entry, error) {
	return cc.entries(ctx, opCertsEmail, email)
}

func (cc *certsClient) ByFingerprint(ctx context.Context, fp string) ([]harvest.Entry, error) {
	return cc.entries(ctx, opCertsFingerprint, fp)
}

func (cc *certsClient) Certificate(ctx context.Context, fp string) (*x509.Certificate, error) {
	var cert *x509.Certificate
	_, err := cc.c.call(ctx, &controlRequest{Op: opCertsCertificate, Match: fp}, func(f *controlFrame) error {
		if f.Certificate == nil || cert != nil {
			return unexpected(opCertsCertificate)
		}
		var err error
		cert, err = parseDER(f.Certificate)
		return err
	})
	if err != nil {
		return nil, err
	}
	return cert, nil
}

func (cc *certsClient) Intermediates(ctx context.Context) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	_, err := cc.c.call(ctx, &controlRequest{Op: opCertsIMs}, func(f *controlFrame) error {
		if f.Certificate == nil {
			return unexpected(opCertsIMs)
		}
		c, err := parseDER(f.Certificate)
		if err == nil {
			out = append(out, c)
		}
		return err
	})
	return out, err
}

// Snapshot reads the daemon's store into a CertSnapshot for an engine of
// this process (inspect and decrypt while the daemon holds the store).
func Snapshot(ctx context.Context, api CertsAPI) (*harvest.CertSnapshot, error) {
	es, err := api.List(ctx)
	if err != nil {
		return nil, err
	}
	ims, err := api.Intermediates(ctx)
	if err != nil {
		return nil, err
	}
	return harvest.NewCertSnapshot(es, ims), nil
}

func (cc *certsClient) Trust(ctx context.Context, fp string, all bool) (*harvest.Entry, error) {
	es, err := cc.entriesOf(ctx, &controlRequest{Op: opCertsTrust, Match: fp, All: all})
	if err != nil {
		return nil, err
	}
	if len(es) != 1 {
		return nil, unexpected(opCertsTrust)
	}
	return &es[0], nil
}

func (cc *certsClient) CRLs(ctx context.Context) ([]revocation.Info, error) {
	var out []revocation.Info
	_, err := cc.c.call(ctx, &controlRequest{Op: opCRLs}, func(f *controlFrame) error {
		if f.CRL == nil {
			return unexpected(opCRLs)
		}
		out = append(out, *f.CRL)
		return nil
	})
	return out, err
}

func (cc *certsClient) ImportCRL(ctx context.Context, data []byte) (*revocation.Info, error) {
	if len(data) > MaxCRLImport {
		return nil, fmt.Errorf("a CRL of %d bytes is more than the %d the control socket takes: stop the service and import it again", len(data), MaxCRLImport)
	}
	return callOne(ctx, cc.c, &controlRequest{Op: opCRLImport, Data: data}, func(f *controlFrame) *revocation.Info { return f.CRL })
}

func (cc *certsClient) Import(ctx context.Context, data []byte, emails []string, trust bool) ([]harvest.Entry, error) {
	if len(data) > MaxCRLImport {
		return nil, fmt.Errorf("%d bytes of certificates is more than the %d the control socket takes", len(data), MaxCRLImport)
	}
	es, err := cc.entriesOf(ctx, &controlRequest{Op: opCertsImport, Data: data, Emails: emails, Trust: trust})
	if err == nil && len(es) == 0 {
		err = unexpected(opCertsImport)
	}
	return es, err
}

func (cc *certsClient) Untrust(ctx context.Context, fp string) (*harvest.Entry, error) {
	return cc.one(ctx, opCertsUntrust, fp)
}

// one runs an op that answers with exactly one entry.
func (cc *certsClient) one(ctx context.Context, op, fp string) (*harvest.Entry, error) {
	es, err := cc.entries(ctx, op, fp)
	if err != nil {
		return nil, err
	}
	if len(es) != 1 {
		return nil, unexpected(op)
	}
	return &es[0], nil
}

// Close does nothing: every call has its own connection.
func (cc *certsClient) Close() error { return nil }
