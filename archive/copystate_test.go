package archive

import (
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// TestCopyStateOnDisk: the copy states in archive_copies are the JSON
// smimed wrote before CopyState had a kind (a copy with an error is
// pending); such values read as the right state, and writing a state gives
// back those very bytes, so an older smimed reads what a newer one wrote.
func TestCopyStateOnDisk(t *testing.T) {
	a, db := openTest(t)
	at := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		disk string // as written before CopyState
		want CopyState
	}{
		{"stored", `{"folder":"Decrypted","uid":17,"appended_at":"2026-05-01T08:00:00Z"}`,
			CopyState{Kind: CopyStored, Folder: "Decrypted", UID: 17, At: at}},
		{"stored without UIDPLUS", `{"folder":"INBOX.Decrypted","appended_at":"2026-05-01T08:00:00Z"}`,
			CopyState{Kind: CopyStored, Folder: "INBOX.Decrypted", At: at}},
		{"pending", `{"folder":"Sent","error":"imapconn: INBOX.Sent is a \\Sent folder","failed_at":"2026-05-01T08:00:00Z"}`,
			CopyState{Kind: CopyPending, Folder: "Sent", Reason: `imapconn: INBOX.Sent is a \Sent folder`, At: at}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const id = 41
			if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketCopies).Put(u64(id), []byte(tt.disk)) }); err != nil {
				t.Fatal(err)
			}
			got, err := a.GetCopy(id)
			if err != nil || got == nil || *got != tt.want {
				t.Fatalf("GetCopy() = %+v, %v; want %+v", got, err, tt.want)
			}
			if err := a.SetCopy(id+1, tt.want); err != nil {
				t.Fatal(err)
			}
			var written string
			db.View(func(tx *bbolt.Tx) error { written = string(tx.Bucket(bucketCopies).Get(u64(id + 1))); return nil })
			if written != tt.disk {
				t.Errorf("SetCopy(%+v) wrote %s, want %s", tt.want, written, tt.disk)
			}
		})
	}
	if got, err := a.GetCopy(99); got != nil || err != nil {
		t.Errorf("GetCopy() of a record without a copy = %+v, %v; want nil, nil", got, err)
	}
	if err := a.SetCopy(43, CopyState{Kind: CopyNotWanted}); err == nil {
		t.Error("SetCopy(not wanted) = nil, want an error: only stored and pending copies are recorded")
	}
}

// TestCopyStateString: the copy as the "message processed" line logs it.
func TestCopyStateString(t *testing.T) {
	for _, tt := range []struct {
		s    CopyState
		want string
	}{
		{CopyState{}, ""},
		{CopyState{Kind: CopyStored, Folder: "Decrypted", UID: 17}, "Decrypted/17"},
		{CopyState{Kind: CopyStored, Folder: "Decrypted"}, "Decrypted/0"},
		{CopyState{Kind: CopyPending, Folder: "Sent", Reason: "NO over quota"}, "pending: NO over quota"},
	} {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.s, got, tt.want)
		}
	}
}
