package cms

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// Seeds come from testdata/env-seed-*.der (made by testdata/gen-seeds.sh)
// and, when present, the interop corpus. Run for longer with e.g.
//
//	go test -run x -fuzz FuzzDecrypt -fuzztime 2m ./harvest/cms

func envSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "env-seed-*.der"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no testdata/env-seed-*.der (run testdata/gen-seeds.sh): %v", err)
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	// The OpenSSL-made interop files of the corpus, if it is there.
	interop, _ := filepath.Glob(filepath.Join(testenv.CorpusPath(), "thunderbird-nss", "smime-interop", "*.env"))
	for _, f := range interop {
		if raw, err := os.ReadFile(f); err == nil {
			out = append(out, envSMIMEBody(tb, raw))
		}
	}
	return out
}

func envSeedKeys(tb testing.TB) []*Key {
	tb.Helper()
	var keys []*Key
	for _, n := range []string{"rsa", "ec"} {
		keys = append(keys, envLoadPEMKey(tb, filepath.Join("testdata", "env-seed-"+n+".pem"), filepath.Join("testdata", "env-seed-"+n+".key")))
	}
	return keys
}

func envIsSentinel(err error) bool {
	for _, s := range []error{ErrMalformed, ErrUnsupported, ErrDecrypt, ErrNoRecipient} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// TestEnvelopeSeeds checks that the committed seeds still decrypt, so the
// fuzzer starts from messages that reach the cipher code.
func TestEnvelopeSeeds(t *testing.T) {
	keys := envSeedKeys(t)
	files, _ := filepath.Glob(filepath.Join("testdata", "env-seed-*.der"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ci, err := ParseContentInfo(b)
		if err != nil {
			t.Fatalf("%s: ParseContentInfo() = %v", f, err)
		}
		d, err := Decrypt(ci, keys)
		if err != nil {
			t.Fatalf("%s: Decrypt() = %v", f, err)
		}
		if want := "Content-Type: text/plain\r\n\r\nfuzz seed\r\n"; string(d.Content) != want {
			t.Fatalf("%s: Decrypt() = %q, want %q (the input of gen-seeds.sh)", f, d.Content, want)
		}
	}
}

func FuzzDecrypt(f *testing.F) {
	for _, s := range envSeeds(f) {
		f.Add(s)
	}
	keys := envSeedKeys(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		ci, err := ParseContentInfo(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseContentInfo() = %v, want ErrMalformed", err)
			}
			return
		}
		rs, rerr := Recipients(ci)
		if rerr != nil && !envIsSentinel(rerr) {
			t.Fatalf("Recipients() = %v, not a package sentinel", rerr)
		}
		// In place, on a copy: the same kind of answer. (With a corrupt
		// RSA key the content key is random, so the two may differ.)
		if own, err := ParseContentInfo(bytes.Clone(data)); err != nil {
			t.Fatalf("ParseContentInfo(copy) = %v", err)
		} else if d, err := DecryptInPlace(own, keys); err != nil && !envIsSentinel(err) {
			t.Fatalf("DecryptInPlace() = %v, not a package sentinel", err)
		} else if err == nil && len(d.Content) > len(data) {
			t.Fatalf("DecryptInPlace() = %d bytes from %d", len(d.Content), len(data))
		}
		d, err := Decrypt(ci, keys)
		if err != nil {
			if !envIsSentinel(err) {
				t.Fatalf("Decrypt() = %v, not a package sentinel", err)
			}
			return
		}
		if rerr != nil {
			t.Fatalf("Decrypt() succeeded, Recipients() = %v", rerr)
		}
		if len(d.Content) > len(data) || len(d.Recipients) != len(rs) || (d.Key != keys[0] && d.Key != keys[1]) {
			t.Fatalf("Decrypt() = %d bytes from %d, %d recipients (Recipients: %d)", len(d.Content), len(data), len(d.Recipients), len(rs))
		}
	})
}

func FuzzToDER(f *testing.F) {
	for _, s := range envSeeds(f) {
		f.Add(s)
	}
	for _, s := range [][]byte{
		{0x30, 0x80, 0x04, 0x01, 0x00, 0x04, 0x80, 0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00}, // indefinite, nested chunked OCTET STRING
		{0x24, 0x80, 0x04, 0x01, 0x41, 0x04, 0x01, 0x42, 0x00, 0x00},                         // chunked OCTET STRING
		{0x23, 0x80, 0x03, 0x03, 0x00, 0x01, 0x02, 0x03, 0x02, 0x00, 0xff, 0x00, 0x00},       // chunked BIT STRING
		{0xa0, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00},                   // context-specific, indefinite
		{0x30, 0x84, 0x00, 0x00, 0x00, 0x03, 0x02, 0x01, 0x05},                               // non-minimal length
		{0x30, 0x05, 0x04, 0x03, 0x01},                                                       // truncated
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := ToDER(data)
		// normalize, which skips the copy for DER input, agrees with ToDER.
		if n, nerr := normalize(data); (nerr == nil) != (err == nil) || !bytes.Equal(n, out) {
			t.Fatalf("normalize() = % x, %v; ToDER() = % x, %v", n, nerr, out, err)
		}
		if _, ok := isNormal(data, 0); ok && err == nil && !bytes.Equal(out, data) {
			t.Fatalf("isNormal(% x) but ToDER changes it to % x", data, out)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ToDER() = %v, want ErrMalformed", err)
			}
			return
		}
		// The output is already normalised: a second pass changes nothing.
		again, err := ToDER(out)
		if err != nil {
			t.Fatalf("ToDER(ToDER(x)) = %v", err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("ToDER is not idempotent:\n  once % x\n twice % x", out, again)
		}
		JoinImplicitOctets(out)
	})
}

// TestToDERTruncatedShortLength is the regression case for a panic on a
// short-form length that runs past the end of the input.
func TestToDERTruncatedShortLength(t *testing.T) {
	for _, in := range [][]byte{
		{0x04, 0x05, 0x01},
		{0x30, 0x03, 0x04, 0x05, 0x01},
		{0x30, 0x80, 0x04, 0x7f, 0x00, 0x00},
	} {
		if _, err := ToDER(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("ToDER(% x) = %v, want ErrMalformed", in, err)
		}
	}
}
