package worm

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkArchivePut and BenchmarkUpload measure in one run archiving a
// 4 KiB plain message (the baseline) and writing its two objects
// (original and record) to the local S3 server: the ratio of their ns/op
// says how far one uploader keeps up with the archive.
func BenchmarkArchivePut(b *testing.B) { benchUpload(b, false) }

func BenchmarkUpload(b *testing.B) { benchUpload(b, true) }

func benchUpload(b *testing.B, upload bool) {
	e := newEnv(b)
	body := strings.Repeat("0123456789abcdef", 256)
	msg := func(i int) []byte {
		return []byte(fmt.Sprintf("From: a@example.org\r\nSubject: %d\r\n\r\n%s\r\n", i, body))
	}
	u := NewUploader(e.a, e.db, e.c, Options{})
	b.ResetTimer()
	if !upload {
		for i := range b.N {
			e.put(b, uint32(i+1), time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), msg(i))
		}
		return
	}
	b.StopTimer()
	for i := range b.N {
		e.put(b, uint32(i+1), time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), msg(i))
	}
	b.StartTimer()
	if next := u.Flush(context.Background()); !next.IsZero() {
		b.Fatalf("upload left work: %+v", u.Stats())
	}
	b.StopTimer()
	if st := u.Stats(); st.Uploaded != int64(2*b.N) {
		b.Fatalf("uploaded %d objects, want %d", st.Uploaded, 2*b.N)
	}
}
