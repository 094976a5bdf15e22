package admin

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/harvest"
)

// TestDirectTrustFollowsTheRules: `smimed certs trust` on the state file
// itself (no daemon) follows the rules of the control socket: a
// certificate bound to two addresses needs all, the trust is audited as
// the direct caller before it happens, and a caller who is neither root
// nor the service user is refused, audited.
func TestDirectTrustFollowsTheRules(t *testing.T) {
	cfg := config.Defaults()
	cfg.StateDir = t.TempDir()
	if _, err := Open(cfg, Read); !errors.Is(err, ErrNoState) {
		t.Fatalf("Open(Read) of an empty state_dir = %v, want ErrNoState", err)
	}
	env, err := Open(cfg, Harvest)
	if err != nil {
		t.Fatal(err)
	}
	bob, fp := opensslCert(t, "bob.crt")
	seen := harvest.Sighting{MessageID: "<m1@partner.example>", Seen: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	for _, addr := range []string{"bob@elsewhere.example", "bob@other.example"} {
		if err := env.Store.Quarantine(addr, bob, nil, "unknown authority", seen); err != nil {
			t.Fatal(err)
		}
	}
	env.Close()

	certs, err := OpenCerts(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	defer certs.Close()
	ctx := context.Background()
	if _, err := certs.Trust(ctx, fp, false); !errors.Is(err, ErrNeedsAll) {
		t.Errorf("Trust without all of a certificate bound to two addresses = %v, want ErrNeedsAll", err)
	}
	stranger := *certs
	stranger.Caller.UID = 4242
	stranger.ServiceUID = 4343
	if _, err := stranger.Trust(ctx, fp, true); !errors.Is(err, ErrPeerRefused) {
		t.Errorf("Trust by uid 4242 = %v, want ErrPeerRefused", err)
	}
	e, err := certs.Trust(ctx, fp, true)
	if err != nil {
		t.Fatalf("Trust with all = %v", err)
	}
	if e.TrustedAt.IsZero() {
		t.Errorf("Trust = %+v: not trusted", e)
	}
	var got []string
	if err := certs.Archive.AuditLog(time.Time{}, func(a archive.AuditEntry) error {
		if a.Via != "direct" || a.PID != os.Getpid() {
			t.Errorf("audit entry %+v: want via direct, pid %d", a, os.Getpid())
		}
		got = append(got, a.Action)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{archive.AuditRefused, archive.AuditTrust}; !slices.Equal(got, want) {
		t.Errorf("audit log = %v, want %v (the refusal and the trust; not the refused attempt without --all)", got, want)
	}
}
