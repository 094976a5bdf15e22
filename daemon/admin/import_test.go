package admin

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
)

// importPKI is a partner's PKI made by `openssl ca`: a root the
// configuration trusts, an intermediate, bob's certificate under it, and
// carol's under a root nobody trusts.
type importPKI struct {
	root                 *testenv.CA
	bob, bobChain, carol []byte // PEM
	bobFP, carolFP       string // as openssl computes them
}

func newImportPKI(t *testing.T) *importPKI {
	testenv.NeedOpenSSL(t)
	root := testenv.NewCA(t, "Partner Root", "")
	sub := testenv.NewSubCA(t, root, "Partner Issuing", "", "")
	stranger := testenv.NewCA(t, "Stranger Root", "")
	nb := time.Now().Add(-time.Hour)
	bob, _ := sub.Issue(t, "bob", "bob@partner.example", nb)
	carol, _ := stranger.Issue(t, "carol", "carol@partner.example", nb)
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return &importPKI{
		root: root, bob: read(bob), bobChain: append(read(bob), read(sub.Cert)...), carol: read(carol),
		bobFP: testenv.OpenSSLFingerprint(t, bob), carolFP: testenv.OpenSSLFingerprint(t, carol),
	}
}

func (p *importPKI) config(stateDir string) *config.Config {
	cfg := config.Defaults()
	cfg.StateDir = stateDir
	cfg.Trust.SystemRoots = false
	cfg.Trust.CAFiles = []string{p.root.Cert}
	return cfg
}

// importCases runs the rules of certs import against api: a chain that
// leads to the trusted root (with its intermediate), one that does not
// (refused, then imported with trust), an address the certificate does
// not name, a stranger's import.
func importCases(t *testing.T, api CertsAPI, p *importPKI) {
	ctx := context.Background()
	if _, err := api.Import(ctx, p.bob, nil, false); !errors.Is(err, ErrUntrustedChain) {
		t.Errorf("Import of bob without his intermediate = %v, want ErrUntrustedChain", err)
	}
	if _, err := api.Import(ctx, p.bobChain, []string{"alice@partner.example"}, false); !errors.Is(err, harvest.ErrNotForAddress) {
		t.Errorf("Import of bob for alice = %v, want ErrNotForAddress", err)
	}
	es, err := api.Import(ctx, p.bobChain, nil, false)
	if err != nil || len(es) != 1 {
		t.Fatalf("Import of bob with his chain = %+v, %v", es, err)
	}
	if e := es[0]; e.Fingerprint != p.bobFP || e.Email != "bob@partner.example" || e.ImportedAt.IsZero() || !e.TrustedAt.IsZero() || !e.EncryptionPreferred {
		t.Errorf("bob's entry = %+v, want %s imported for bob@partner.example, not pinned, preferred", e, p.bobFP)
	}
	if !strings.Contains(es[0].ImportedBy, fmt.Sprintf("uid %d", os.Getuid())) {
		t.Errorf("imported by %q, want uid %d", es[0].ImportedBy, os.Getuid())
	}
	_, err = api.Import(ctx, p.carol, nil, false)
	if !errors.Is(err, ErrUntrustedChain) || !strings.Contains(err.Error(), p.carolFP) || !strings.Contains(err.Error(), "--trust") {
		t.Errorf("Import of carol (an untrusted root) = %v, want ErrUntrustedChain naming %s and --trust", err, p.carolFP)
	}
	es, err = api.Import(ctx, p.carol, []string{"CAROL@partner.example"}, true)
	if err != nil || len(es) != 1 || es[0].Fingerprint != p.carolFP || es[0].TrustedAt.IsZero() {
		t.Fatalf("Import of carol with trust = %+v, %v; want %s pinned", es, err, p.carolFP)
	}
	list, err := api.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("List after the imports = %d entries, %v; want bob and carol", len(list), err)
	}
}

// importAudit checks the audit log has the imports, with fingerprints,
// and nothing for the refused ones.
func importAudit(t *testing.T, arc *archive.Archive, p *importPKI) {
	var details []string
	err := arc.AuditLog(time.Time{}, func(a archive.AuditEntry) error {
		if a.Action == archive.AuditImport {
			details = append(details, a.Detail)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(details) != 2 || !strings.Contains(details[0], "certificate="+p.bobFP) || !strings.Contains(details[0], "chain=valid") ||
		!strings.Contains(details[1], "certificate="+p.carolFP) || !strings.Contains(details[1], "trusted") {
		t.Errorf("audit entries of the imports = %q, want bob's (chain valid) then carol's (trusted)", details)
	}
}

// certs import on the state file itself, with the configuration's trust
// anchors, as a command does when no service runs.
func TestImportDirect(t *testing.T) {
	p := newImportPKI(t)
	cfg := p.config(t.TempDir())
	env, err := Open(cfg, Harvest)
	if err != nil {
		t.Fatal(err)
	}
	env.Close()
	certs, err := OpenCerts(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	defer certs.Close()
	stranger := *certs
	stranger.Caller.UID, stranger.ServiceUID = 4242, 4343
	if _, err := stranger.Import(context.Background(), p.bobChain, nil, false); !errors.Is(err, ErrPeerRefused) {
		t.Errorf("Import by uid 4242 = %v, want ErrPeerRefused", err)
	}
	importCases(t, certs, p)
	importAudit(t, certs.Archive, p)
	if e, err := certs.Store.RecipientCert("bob@partner.example", time.Now()); err != nil || e == nil || e.Fingerprint != p.bobFP {
		t.Errorf("RecipientCert(bob) after the import = %+v, %v; want %s", e, err, p.bobFP)
	}
}

// certs import through a running service's control socket: its engine
// judges the chain, the import is audited and logged with the peer's uid.
func TestImportThroughSocket(t *testing.T) {
	p := newImportPKI(t)
	var eng *harvest.Engine
	f := newControlFixture(t, func(f *controlFixture, c Caller) ArchiveAPI {
		if eng == nil {
			roots := x509.NewCertPool()
			roots.AddCert(testenv.ReadCert(t, p.root.Cert))
			eng = harvest.New(harvest.Options{Roots: roots, Store: f.store})
		}
		return &Local{Archive: f.arc, Store: f.store, State: f.state, Engine: eng, Caller: c}
	})
	cfg := p.config(f.dir)
	cfg.Daemon.ControlSocket = f.path
	remote, err := DialConfigCerts(cfg)
	if err != nil {
		t.Fatalf("DialConfigCerts = %v", err)
	}
	importCases(t, remote, p)
	importAudit(t, f.arc, p)
	f.waitIdle(t)
	logged := false
	for _, l := range strings.Split(f.logBuf.String(), "\n") {
		logged = logged || strings.Contains(l, `msg="certificate imported"`) && strings.Contains(l, "fingerprint="+p.bobFP) && strings.Contains(l, fmt.Sprintf(" uid=%d", os.Getuid()))
	}
	if !logged {
		t.Errorf("no log line for bob's import:\n%s", f.logBuf.String())
	}
}
