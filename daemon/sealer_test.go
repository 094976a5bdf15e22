package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/state"
)

// sealConfig is an [archive.seal] table over the TSAs.
func sealConfig(every, require int, tsas ...*testenv.TSA) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[archive.seal]\nevery_records = %d\nrequire = %d\ntimeout = \"5s\"\n", every, require)
	for _, t := range tsas {
		fmt.Fprintf(&b, "[[archive.seal.tsa]]\nurl = %q\nca_file = %q\n", t.URL, t.CAFile)
	}
	return b.String()
}

// TestSealerTwoTSAs: a service with one TSA up and one down seals once
// 10 records are unsealed, and the rest at shutdown; with require = 1
// the seals count as sealed, with require = 2 they stay pending and
// status says so, with the down TSA's error. The chain and tokens verify
// afterwards (VerifyEvidence, and openssl ts -verify on every token).
func TestSealerTwoTSAs(t *testing.T) {
	t.Parallel()
	old := sealPoll.Swap(int64(100 * time.Millisecond))
	t.Cleanup(func() { sealPoll.Store(old) })
	up := testenv.NewTSA(t, nil, "Up TSA", time.Time{}, time.Time{})
	down := testenv.NewTSA(t, nil, "Down TSA", time.Time{}, time.Time{})
	down.SetDown(true)
	for _, require := range []int{1, 2} {
		t.Run(fmt.Sprintf("require=%d", require), func(t *testing.T) {
			e := newSvcEnv(t, "ceo")
			var msgs [][]byte
			for i := range 25 {
				msgs = append(msgs, fmt.Appendf(nil, "From: a@partner.example\r\nTo: ceo@org.example\r\nSubject: s%d\r\nMessage-ID: <seal-%d@test>\r\n\r\nbody %d\r\n", i, i, i))
			}
			e.d.DeliverMaildir(t, "ceo", msgs)
			e.writeConfig(t, sealConfig(10, require, up, down), []string{"org-new"}, e.account("ceo"))
			logs := &testenv.LockedBuffer{}
			svc, stop := runService(t, e.cfgPath, logs)
			waitArchived(t, svc, logs, 25)
			waitUntil(t, "a seal timestamped", func() bool {
				ids, _ := svc.arch.SealIDs()
				return len(ids) >= 1 && svc.arch.HasToken(ids[len(ids)-1], up.URL)
			}, logs.String)
			// Five more: fewer than every_records, sealed at shutdown.
			var more [][]byte
			for i := 25; i < 30; i++ {
				more = append(more, fmt.Appendf(nil, "From: a@partner.example\r\nTo: ceo@org.example\r\nSubject: s%d\r\nMessage-ID: <seal-%d@test>\r\n\r\nbody %d\r\n", i, i, i))
			}
			for _, m := range more {
				e.d.Deliver(t, "ceo", "INBOX", m)
			}
			waitArchived(t, svc, logs, 30)
			st, err := svc.Status()
			if err != nil {
				t.Fatal(err)
			}
			if st.Seals == nil || len(st.Seals.TSAs) != 2 {
				t.Fatalf("status seals = %+v", st.Seals)
			}
			sealsNow, _ := svc.arch.SealIDs()
			wantPending := 0
			if require == 2 {
				wantPending = len(sealsNow)
			}
			if st.Seals.Pending != wantPending {
				t.Errorf("status: %d seals pending, want %d", st.Seals.Pending, wantPending)
			}
			if d := st.Seals.TSAs[1]; d.Failed == 0 || !strings.Contains(d.LastError, "503") {
				t.Errorf("status of the down TSA = %+v, want failures with HTTP 503", d)
			}
			if u := st.Seals.TSAs[0]; u.Answered < 1 || up.Answered() < 1 {
				t.Errorf("status of the TSA that is up = %+v (it issued %d)", u, up.Answered())
			}
			stop() // the last seal over the rest, at shutdown; the state file is closed
			cfg := svc.trustCfg.Load()
			st2, err := state.Open(cfg.StorePath(), true)
			if err != nil {
				t.Fatal(err)
			}
			defer st2.Close()
			arch, err := archive.Open(cfg.ArchiveDir(), st2)
			if err != nil {
				t.Fatal(err)
			}
			ids, _ := arch.SealIDs()
			if len(ids) <= len(sealsNow) {
				t.Errorf("%d seals after shutdown, %d before: want one more over the records left", len(ids), len(sealsNow))
			}
			roots, pemAll, err := cfg.Archive.Seal.Roots()
			if err != nil {
				t.Fatal(err)
			}
			res, err := arch.VerifyEvidence(archive.EvidenceOptions{Roots: roots, RootsPEM: pemAll, Require: require, OpenSSL: true}, nil)
			if err != nil || !res.OK() {
				t.Fatalf("VerifyEvidence: %v, %v", res.Problems, err)
			}
			for _, s := range res.Seals {
				if s.Sealed != (require == 1) {
					t.Errorf("seal %d: Sealed = %v with require %d", s.ID, s.Sealed, require)
				}
			}
			if res.Unsealed != nil {
				t.Errorf("unsealed after shutdown: %+v", res.Unsealed)
			}
		})
	}
}
