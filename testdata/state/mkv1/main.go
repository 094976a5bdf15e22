// Command mkv1 wrote v1-smimed.db and v1-expected.json with the smimed of
// the commit named in ../README.md, through that commit's public APIs
// (harvest.OpenStore, harvest.Engine, archive.Open, Archive.Audit,
// daemon.NewCheckpoints). It does not build against later code: it is
// kept to show how the fixture was made. Run it from the repository root
// of that commit:
//
//	go run ./testdata/state/mkv1 OUTDIR
package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon"
	"github.com/smimed/smimed/harvest"
)

type certEntry struct {
	Email       string    `json:"email"`
	Fingerprint string    `json:"fingerprint"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	MessageID   string    `json:"message_id"`
	Quarantined bool      `json:"quarantined"`
	Preferred   bool      `json:"preferred"`
	TrustedBy   string    `json:"trusted_by,omitempty"`
}

type checkpoint struct {
	Account     string `json:"account"`
	Folder      string `json:"folder"`
	UIDValidity uint32 `json:"uidvalidity"`
	UID         uint32 `json:"uid"`
}

type expected struct {
	Certs         []certEntry             `json:"certs"`
	Intermediates []string                `json:"intermediates"`
	Records       []*archive.Record       `json:"records"`
	HeadID        uint64                  `json:"head_id"`
	HeadHash      string                  `json:"head_hash"`
	Copies        map[uint64]archive.Copy `json:"copies"`
	Pending       []uint64                `json:"pending"`
	Audit         []archive.AuditEntry    `json:"audit"`
	Checkpoints   []checkpoint            `json:"checkpoints"`
}

func main() {
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "mkv1:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	st, err := harvest.OpenStore(filepath.Join(out, "smimed.db"), false)
	if err != nil {
		return err
	}
	defer st.Close()
	arc, err := archive.Open(filepath.Join(out, "archive"), st.DB())
	if err != nil {
		return err
	}
	pemRoot, err := os.ReadFile("testdata/pki/ca-bundle.pem")
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemRoot)
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	eng := harvest.New(harvest.Options{Roots: roots, Store: st, Harvest: true, Now: func() time.Time { return now }})

	var ids []uint64
	for i, name := range []string{"signed-rsa-sha256.eml", "plain.eml", "signed-ec256.eml", "signed-selfsigned.eml", "enc-nokey.eml"} {
		raw, err := os.ReadFile(filepath.Join("testdata/msg", name))
		if err != nil {
			return err
		}
		src := archive.Source{Account: "ceo", Folder: "INBOX", UIDValidity: 7, UID: uint32(10 + i), InternalDate: now.Add(time.Duration(i) * time.Minute)}
		res, err := eng.Process(raw, src.InternalDate)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rec, _, err := arc.Put(src, raw, res)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		ids = append(ids, rec.ID)
	}

	// An administrator trusts the self-signed (quarantined) signer.
	ss, err := readCert("testdata/pki/selfsigned.crt")
	if err != nil {
		return err
	}
	if _, err := st.Trust(harvest.Fingerprint(ss), "root"); err != nil {
		return err
	}
	// One certificate quarantined as the engine does for a correct
	// signature without a chain to a trust anchor.
	stranger, err := readCert("testdata/pki/stranger.crt")
	if err != nil {
		return err
	}
	if err := st.Quarantine("stranger@partner.example", stranger, nil, "no chain to a trust anchor", harvest.Sighting{MessageID: "<q1@partner.example>", Seen: now.Add(30 * time.Minute)}); err != nil {
		return err
	}
	if err := arc.SetCopy(ids[0], archive.Copy{Folder: "INBOX.smimed", UID: 3, AppendedAt: now.Add(time.Hour)}); err != nil {
		return err
	}
	if err := arc.CopyPending(ids[2]); err != nil {
		return err
	}
	for i, e := range []archive.AuditEntry{
		{UID: 0, GID: 0, PID: 4242, User: "root", Via: "direct", Action: archive.AuditList, Detail: "from=alice@partner.example"},
		{UID: 0, GID: 0, PID: 4243, User: "root", Via: "socket", Action: archive.AuditShow, Detail: fmt.Sprint(ids[0])},
		{UID: 0, GID: 0, PID: 4244, User: "root", Via: "direct", Action: archive.AuditTrust, Detail: "certificate=" + harvest.Fingerprint(ss)},
	} {
		e.Time = now.Add(time.Duration(2+i) * time.Hour)
		if err := arc.Audit(e); err != nil {
			return err
		}
	}
	cps, err := daemon.NewCheckpoints(st.DB())
	if err != nil {
		return err
	}
	want := []checkpoint{{"ceo", "INBOX", 7, 14}, {"ceo", "Archive/2025", 3, 120}, {"sales", "INBOX", 1, 9}}
	for _, c := range want {
		if err := cps.Set(c.Account, c.Folder, daemon.Checkpoint{UIDValidity: c.UIDValidity, UID: c.UID}); err != nil {
			return err
		}
	}

	// What today's code reads back: the fixture's expected content.
	var exp expected
	entries, err := st.List()
	if err != nil {
		return err
	}
	for _, e := range entries {
		exp.Certs = append(exp.Certs, certEntry{e.Email, e.Fingerprint, e.FirstSeen, e.LastSeen, e.MessageID, e.Quarantined, e.EncryptionPreferred, e.TrustedBy})
	}
	inter, err := st.Intermediates()
	if err != nil {
		return err
	}
	for _, c := range inter {
		exp.Intermediates = append(exp.Intermediates, harvest.Fingerprint(c))
	}
	sort.Strings(exp.Intermediates)
	exp.Copies = map[uint64]archive.Copy{}
	for _, id := range ids {
		r, err := arc.Get(id)
		if err != nil {
			return err
		}
		exp.Records = append(exp.Records, r)
		if c, err := arc.GetCopy(id); err != nil {
			return err
		} else if c != nil {
			exp.Copies[id] = *c
		}
	}
	if exp.HeadID, exp.HeadHash, err = arc.Head(); err != nil {
		return err
	}
	if exp.Pending, err = arc.PendingCopies(); err != nil {
		return err
	}
	err = arc.AuditLog(time.Time{}, func(e archive.AuditEntry) error {
		exp.Audit = append(exp.Audit, e)
		return nil
	})
	if err != nil {
		return err
	}
	list, err := daemon.StoreCheckpoints(st.DB())
	if err != nil {
		return err
	}
	for _, f := range list {
		exp.Checkpoints = append(exp.Checkpoints, checkpoint{f.Account, f.Folder, f.UIDValidity, f.CheckpointUID})
	}
	j, err := json.MarshalIndent(exp, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "expected.json"), append(j, '\n'), 0o644)
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	return x509.ParseCertificate(b.Bytes)
}
