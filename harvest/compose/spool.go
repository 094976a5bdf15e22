package compose

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// spoolMemory is how much a spool keeps in memory before it moves to a
// temporary file.
const spoolMemory = 1 << 20

// spool holds bytes written once and read back once: in memory while
// small, else in a temporary file (removed by Close).
type spool struct {
	dir  string
	buf  bytes.Buffer
	f    *os.File
	size int64
}

func newSpool(dir string) *spool { return &spool{dir: dir} }

func (s *spool) Write(p []byte) (int, error) {
	s.size += int64(len(p))
	if s.f == nil && s.buf.Len()+len(p) <= spoolMemory {
		return s.buf.Write(p)
	}
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, "smimed-compose-*")
		if err != nil {
			return 0, fmt.Errorf("compose: temporary file: %w", err)
		}
		s.f = f
		if _, err := f.Write(s.buf.Bytes()); err != nil {
			return 0, fmt.Errorf("compose: temporary file: %w", err)
		}
		s.buf = bytes.Buffer{}
	}
	n, err := s.f.Write(p)
	if err != nil {
		err = fmt.Errorf("compose: temporary file: %w", err)
	}
	return n, err
}

// Size is the number of bytes written.
func (s *spool) Size() int64 { return s.size }

// Reader reads everything written, from the start.
func (s *spool) Reader() (io.Reader, error) {
	if s.f == nil {
		return bytes.NewReader(s.buf.Bytes()), nil
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("compose: temporary file: %w", err)
	}
	return s.f, nil
}

// Close drops the data.
func (s *spool) Close() {
	if s.f != nil {
		s.f.Close()
		os.Remove(s.f.Name())
		s.f = nil
	}
	s.buf = bytes.Buffer{}
}
