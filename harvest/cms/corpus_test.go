package cms

import (
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// TestMain says on the normal output when corpus tests skipped
// (testenv.CorpusMain).
func TestMain(m *testing.M) { testenv.CorpusMain(m, "harvest/cms") }
