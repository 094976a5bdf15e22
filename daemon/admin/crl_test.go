package admin

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/revocation"
)

// TestControlCRLImport (issue 15): a CRL made by openssl ca, imported
// through the control socket, is kept by the daemon's own checker (a check
// right after sees the revocation, without a fetch), listed the same way
// through the socket and on the state file, and audited; a CRL of a CA
// that is not known is refused, and so is one over the socket's limit.
func TestControlCRLImport(t *testing.T) {
	ca := testenv.NewCA(t, "Air-gapped CA", "http://192.0.2.1/unreachable.crl")
	alice, _ := ca.Issue(t, "alice", "alice@partner.example", time.Now().Add(-time.Hour))
	ca.Revoke(t, alice, "keyCompromise", time.Time{})
	ca.CRL(t, 7)
	crlPEM, err := os.ReadFile(filepath.Join(ca.Dir, "ca.crl.pem"))
	if err != nil {
		t.Fatal(err)
	}
	other := testenv.NewCA(t, "Unknown CA", "")
	other.CRL(t, 7)
	otherPEM, err := os.ReadFile(filepath.Join(other.Dir, "ca.crl.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caCert := testenv.ReadCert(t, ca.Cert)

	var checker *revocation.Checker
	f := newControlFixture(t, func(f *controlFixture, c Caller) ArchiveAPI {
		return &Local{Archive: f.arc, Store: f.store, State: f.state, Engine: f.eng, Caller: c,
			Revocation: checker, CAs: func() ([]*x509.Certificate, error) { return []*x509.Certificate{caCert}, nil }}
	})
	checker = revocation.New(f.state, revocation.Config{})
	cfg := config.Defaults()
	cfg.StateDir, cfg.Daemon.ControlSocket = f.dir, f.path
	remote, err := DialConfigCerts(cfg)
	if err != nil {
		t.Fatalf("DialConfigCerts = %v", err)
	}
	ctx := context.Background()

	if _, err := remote.ImportCRL(ctx, otherPEM); err == nil || !strings.Contains(err.Error(), "Unknown CA") {
		t.Errorf("ImportCRL(a CRL of an unknown CA) = %v, want refused naming its issuer", err)
	}
	if _, err := remote.ImportCRL(ctx, make([]byte, MaxCRLImport+1)); err == nil {
		t.Error("ImportCRL of more than MaxCRLImport bytes went through")
	}
	in, err := remote.ImportCRL(ctx, crlPEM)
	if err != nil || in.Entries != 1 || in.Source != "import" || !strings.Contains(in.Issuer, "Air-gapped CA") {
		t.Fatalf("ImportCRL = %+v, %v", in, err)
	}
	if ans := checker.Check(ctx, testenv.ReadCert(t, alice), caCert, time.Now().Add(time.Minute)); ans.Status != revocation.Revoked {
		t.Errorf("the daemon's checker after the import: %+v, want revoked", ans)
	}
	got, err := remote.CRLs(ctx)
	want, werr := checker.List()
	if err != nil || werr != nil || len(got) != 1 || !slices.Equal(got, want) {
		t.Errorf("CRLs through the socket = %+v, %v; the state says %+v, %v", got, err, want, werr)
	}
	f.waitIdle(t)
	if !strings.Contains(f.logBuf.String(), `msg="CRL imported"`) {
		t.Errorf("the import was not logged:\n%s", f.logBuf.String())
	}
	var actions []string
	f.local.Audit(ctx, time.Time{}, func(e archive.AuditEntry) error { actions = append(actions, e.Action); return nil })
	if !slices.Contains(actions, archive.AuditCRLImport) {
		t.Errorf("audit log %v has no %s", actions, archive.AuditCRLImport)
	}
}
