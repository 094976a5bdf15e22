package cms

// The external interop corpus: mail, CMS objects and keys written by other
// programs, never copied into the repository. It is $SMIMED_CORPUS, else
// ../shared/corpus beside the checkout. The tests that need it skip when it
// is absent, and TestMain says so in one line on stdout, since go test shows
// a skip's reason only with -v. (go test ./... prints no output of a
// package that passes; make test says it there.)

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// corpusSkips counts the tests that skipped for want of the corpus.
var corpusSkips atomic.Int32

// corpusPath is where the corpus is expected.
func corpusPath() string {
	if d := os.Getenv("SMIMED_CORPUS"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "..", "shared", "corpus")
}

// skipNoCorpus skips t: the corpus is not at dir (err says what is missing).
func skipNoCorpus(t *testing.T, dir string, err error) {
	t.Helper()
	corpusSkips.Add(1)
	if err == nil {
		t.Skipf("corpus not found at %s (set SMIMED_CORPUS)", dir)
	}
	t.Skipf("corpus not found at %s (set SMIMED_CORPUS): %v", dir, err)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if n := corpusSkips.Load(); n > 0 {
		dir, err := filepath.Abs(corpusPath())
		if err != nil {
			dir = corpusPath()
		}
		fmt.Printf("harvest/cms: corpus tests skipped (%d): %s not found (set SMIMED_CORPUS to the corpus's directory)\n", n, dir)
	}
	os.Exit(code)
}
