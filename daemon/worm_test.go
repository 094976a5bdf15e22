package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

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
