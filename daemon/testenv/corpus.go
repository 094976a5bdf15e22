package testenv

// The external interop corpus: mail, CMS objects and keys written by other
// programs, never copied into the repository. It is $SMIMED_CORPUS, else
// ../shared/corpus beside the checkout. The tests that need it skip when it
// is absent, and CorpusMain says so in one line on stdout, since go test
// shows a skip's reason only with -v. (go test ./... prints no output of a
// package that passes; make test says it there.)

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// corpusSkips counts the tests of this test binary that skipped for want
// of the corpus.
var corpusSkips atomic.Int32

// CorpusPath is where the corpus is expected: $SMIMED_CORPUS, else
// shared/corpus beside the repository's directory (an absolute path when
// the repository is found).
func CorpusPath() string {
	if d := os.Getenv("SMIMED_CORPUS"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return filepath.Join("..", "shared", "corpus")
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(filepath.Dir(dir), "shared", "corpus")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return filepath.Join("..", "shared", "corpus")
		}
		dir = parent
	}
}

// SkipNoCorpus skips t because the corpus is not at dir (err, when not
// nil, says what is missing) and counts the skip for CorpusMain.
func SkipNoCorpus(t *testing.T, dir string, err error) {
	t.Helper()
	corpusSkips.Add(1)
	if err == nil {
		t.Skipf("corpus not found at %s (set SMIMED_CORPUS)", dir)
	}
	t.Skipf("corpus not found at %s (set SMIMED_CORPUS): %v", dir, err)
}

// CorpusMain is the TestMain of a package with corpus tests: it runs the
// tests, prints one line naming the package (name) when some skipped for
// want of the corpus, and exits with the tests' code.
func CorpusMain(m *testing.M, name string) {
	code := m.Run()
	if n := corpusSkips.Load(); n > 0 {
		fmt.Printf("%s: corpus tests skipped (%d): %s not found (set SMIMED_CORPUS to the corpus's directory)\n", name, n, CorpusPath())
	}
	os.Exit(code)
}
