package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/archive/worm"
	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/testenv"
)

// wormSetup starts an S3 server with the buckets "locked" (Object Lock)
// and "plain" (none), and returns it with a client of "locked".
func wormSetup(t *testing.T) (*testenv.S3, *worm.Client) {
	t.Helper()
	s3 := testenv.StartS3(t)
	var locked *worm.Client
	for _, b := range []string{"locked", "plain"} {
		c, err := worm.NewClient(worm.ClientConfig{Endpoint: s3.Endpoint, Bucket: b, PathStyle: true,
			Credentials: worm.Credentials{AccessKeyID: s3.AccessKey, SecretAccessKey: s3.SecretKey}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.CreateBucket(context.Background(), b == "locked"); err != nil {
			t.Fatal(err)
		}
		if b == "locked" {
			locked = c
		}
	}
	return s3, locked
}

func TestWormRefusesBucketWithoutLock(t *testing.T) {
	e := newSvcEnv(t, "ceo")
	s3, _ := wormSetup(t)
	e.writeConfig(t, s3.WormTable(t, e.dir, "plain"), []string{"org-new"}, e.account("ceo"))
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewService(cfg, slog.New(slog.DiscardHandler), nil)
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || !strings.Contains(ce.Problems[0], "bucket plain") || !strings.Contains(ce.Problems[0], "no Object Lock") {
		t.Fatalf("NewService with a bucket without Object Lock = %v, want one configuration problem naming it", err)
	}
}

func TestWormCopy(t *testing.T) {
	e := newSvcEnv(t, "ceo")
	s3, locked := wormSetup(t)
	msg := testenv.Testdata(t, "msg", "plain.eml")
	e.d.Deliver(t, "ceo", "INBOX", msg)
	e.writeConfig(t, s3.WormTable(t, e.dir, "locked"), []string{"org-new"}, e.account("ceo"))
	logs := &testenv.LockedBuffer{}
	svc, stop := runService(t, e.cfgPath, logs)
	defer stop()
	waitFor(t, logs, "message processed", 1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		bl, err := svc.Worm().Backlog()
		if err == nil && bl.Objects == 0 && bl.Unqueued == 0 && svc.Worm().Stats().Uploaded > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("WORM backlog after 30 s: %+v, %v; stats %+v\n%s", bl, err, svc.Worm().Stats(), logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	sum := sha256.Sum256(msg)
	o, err := locked.HeadObject(context.Background(), "originals/"+hex.EncodeToString(sum[:]), "")
	if err != nil {
		t.Fatal(err)
	}
	// Delivered now, retention class letters (6 years, the default
	// without [archive.retention]): locked until the end of this year
	// plus 6, not default_years (10), which is only for records without
	// a class.
	until := time.Date(time.Now().UTC().Year()+7, 1, 1, 0, 0, 0, 0, time.UTC)
	if !bytes.Equal(o.SHA256, sum[:]) || o.Mode != "GOVERNANCE" || !o.RetainUntil.Equal(until) {
		t.Fatalf("object = %+v, want SHA-256 %x, GOVERNANCE until %v", o, sum, until)
	}
	st, err := svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Worm == nil || st.Worm.Bucket != "locked" || st.Worm.Stats.Uploaded != 2 || st.Worm.Backlog.Objects != 0 {
		t.Fatalf("Status().Worm = %+v, want bucket locked, 2 uploaded, none waiting", st.Worm)
	}
	// archive verify --evidence's WORM part, over the control socket.
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	api, err := admin.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	vr, err := api.VerifyWorm(context.Background())
	if err != nil || vr.Objects != 2 || vr.Pending != 0 || len(vr.Problems) != 0 {
		t.Fatalf("VerifyWorm over the control socket = %+v, %v; want 2 objects, no problem", vr, err)
	}
	mfs, err := svc.Metrics().reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "smimed_worm_") {
			m := mf.GetMetric()[0]
			got[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{"smimed_worm_queued_total": 2, "smimed_worm_uploaded_total": 2, "smimed_worm_failures_total": 0,
		"smimed_worm_outbox_objects": 0, "smimed_worm_unqueued_records": 0}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("metric %s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

// TestWormSealsAndHolds: with sealing and a WORM copy, the timestamp the
// sealer keeps reaches the bucket byte for byte, locked as long as the
// longest class (books, 10 years), and a hold added while the service
// runs sets the legal hold on the held message's original there (read
// back from the S3 server, not from smimed's outbox).
func TestWormSealsAndHolds(t *testing.T) {
	old := sealPoll.Swap(int64(100 * time.Millisecond))
	t.Cleanup(func() { sealPoll.Store(old) })
	tsa := testenv.NewTSA(t, nil, "WORM TSA", time.Time{}, time.Time{})
	e := newSvcEnv(t, "ceo")
	s3, locked := wormSetup(t)
	msg := testenv.Testdata(t, "msg", "plain.eml")
	e.d.Deliver(t, "ceo", "INBOX", msg)
	e.writeConfig(t, s3.WormTable(t, e.dir, "locked")+sealConfig(1, 1, tsa), []string{"org-new"}, e.account("ceo"))
	logs := &testenv.LockedBuffer{}
	svc, stop := runService(t, e.cfgPath, logs)
	defer stop()
	waitFor(t, logs, "message processed", 1)
	var seal uint64
	waitUntil(t, "a seal timestamped", func() bool {
		ids, _ := svc.arch.SealIDs()
		if len(ids) == 0 || !svc.arch.HasToken(ids[0], tsa.URL) {
			return false
		}
		seal = ids[0]
		return true
	}, logs.String)
	if _, err := svc.arch.AddHold(archive.Hold{Case: "case-1", Query: archive.Query{From: "alice@partner.example"}, By: "test", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	svc.Worm().Notify()
	ctx := context.Background()
	key := fmt.Sprintf("files/seals/%d/%s.tsr", seal, archive.TSAName(tsa.URL))
	sum := sha256.Sum256(msg)
	orig := "originals/" + hex.EncodeToString(sum[:])
	var tsr, o worm.Object
	waitUntil(t, "the token and the legal hold in the bucket", func() bool {
		var err1, err2 error
		tsr, err1 = locked.HeadObject(ctx, key, "")
		o, err2 = locked.HeadObject(ctx, orig, "")
		return err1 == nil && err2 == nil && o.LegalHold
	}, logs.String)
	local, err := os.ReadFile(filepath.Join(svc.arch.EvidenceDir(), strconv.FormatUint(seal, 10), archive.TSAName(tsa.URL)+".tsr"))
	if err != nil {
		t.Fatal(err)
	}
	lsum := sha256.Sum256(local)
	until := time.Date(time.Now().UTC().Year()+11, 1, 1, 0, 0, 0, 0, time.UTC)
	if !bytes.Equal(tsr.SHA256, lsum[:]) || !tsr.RetainUntil.Equal(until) {
		t.Errorf("token object = %+v, want SHA-256 %x, locked until %v", tsr, lsum, until)
	}
}
