package cms

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// TestOpenSSLNames: subjects, issuers and serials as smimed prints them
// are what `openssl x509 -noout -subject -issuer -serial` prints, for the
// test PKI and, when present, every certificate in the shared corpus's
// signed messages (non-ASCII names, many attribute types).
func TestOpenSSLNames(t *testing.T) {
	var files []string
	pki, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(t), "testdata", "pki", "*.crt"))
	files = append(files, pki...)
	dir := testenv.CorpusPath()
	if _, err := os.Stat(dir); err == nil {
		for _, pat := range []string{"*/*.eml", "*/*/*.eml", "*/*.mbox"} {
			m, _ := filepath.Glob(filepath.Join(dir, pat))
			files = append(files, m...)
		}
	} else {
		t.Logf("corpus not found at %s: the test PKI only", dir)
	}
	checked := 0
	for _, f := range files {
		var pems []byte
		if strings.HasSuffix(f, ".crt") {
			pems, _ = os.ReadFile(f)
		} else {
			p7, _, err := runOpenSSLQuiet(f)
			if err != nil {
				continue
			}
			pems = p7
		}
		for rest := pems; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				continue
			}
			want := strings.TrimSpace(string(testenv.OpenSSLInput(t, "", pem.EncodeToMemory(block), "x509", "-noout", "-subject", "-issuer", "-serial")))
			got := "subject=" + OpenSSLName(c.RawSubject) + "\nissuer=" + OpenSSLName(c.RawIssuer) + "\nserial=" + OpenSSLSerial(c.SerialNumber)
			if got != want {
				t.Errorf("%s:\n got %q\nwant %q", filepath.Base(f), got, want)
			}
			checked++
		}
	}
	t.Logf("%d certificates compared with openssl", checked)
	if checked < 5 {
		t.Fatalf("only %d certificates compared", checked)
	}
}

// runOpenSSLQuiet extracts the certificates of a signed message file as
// PEM (openssl smime -pk7out, pkcs7 -print_certs); an error for a file
// that holds none.
func runOpenSSLQuiet(file string) ([]byte, []byte, error) {
	p7, err := exec.Command("openssl", "smime", "-pk7out", "-in", file).Output()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command("openssl", "pkcs7", "-print_certs")
	cmd.Stdin = bytes.NewReader(p7)
	out, err := cmd.Output()
	return out, nil, err
}

// FuzzOpenSSLName: a stranger's issuer name (a RecipientIdentifier's, a
// certificate's) is printed without a panic, on one line, escaped.
//
//	go test -run x -fuzz FuzzOpenSSLName -fuzztime 1m ./harvest/cms
func FuzzOpenSSLName(f *testing.F) {
	pki, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "pki", "*.crt"))
	for _, p := range pki {
		data, _ := os.ReadFile(p)
		if block, _ := pem.Decode(data); block != nil {
			if c, err := x509.ParseCertificate(block.Bytes); err == nil {
				f.Add(c.RawSubject)
				f.Add(c.RawIssuer)
			}
		}
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		s := OpenSSLName(der)
		if strings.ContainsAny(s, "\r\n\x00") {
			t.Fatalf("OpenSSLName gave a line break or NUL: %q", s)
		}
	})
}
