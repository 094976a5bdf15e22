package compose

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/smimed/smimed/harvest/cms"
)

// Sign reads an RFC 5322 message from src and writes it clear-signed
// (multipart/signed; protocol="application/pkcs7-signature";
// micalg=sha-256, RFC 8551 section 3.5) to dst. The transport header
// fields stay outside; MIME-Version and Content-* go into the signed
// entity, which is prepared for transport first (7bit transfer encodings,
// CRLF). With o.ProtectHeaders the signed entity also carries the header
// fields, marked hp="clear" (RFC 9788).
func Sign(dst io.Writer, src io.Reader, s *Signer, o Options) error {
	hp := ""
	if o.ProtectHeaders {
		hp = "clear"
	}
	return sign(dst, src, s, o, hp)
}

func sign(dst io.Writer, src io.Reader, s *Signer, o Options, hp string) error {
	if s == nil {
		return fmt.Errorf("compose: sign: no signer")
	}
	if err := cms.CanSign(s.Cert, s.Key); err != nil {
		return fmt.Errorf("compose: sign: %w", err)
	}
	h, br, err := readMessageHeader(src)
	if err != nil {
		return err
	}
	outer, inner := h.split()
	inner = inner.del("MIME-Version")
	if !inner.has("Content-Type") {
		inner = append(header{newField("Content-Type", "text/plain; charset=us-ascii")}, inner...)
	}
	if hp != "" {
		inner = protectedInner(outer, inner, hp)
	}

	ent := newSpool(o.TempDir)
	defer ent.Close()
	sum := sha256.New()
	p := &preparer{tempDir: o.TempDir}
	if err := p.entity(io.MultiWriter(ent, sum), inner, br, 0); err != nil {
		return fmt.Errorf("compose: sign: %w", err)
	}
	sig, err := cms.SignDetached(sum.Sum(nil), cms.SignParams{
		Cert: s.Cert, Chain: s.Chain, Key: s.Key, PSS: s.PSS,
		SigningTime: o.now(), EncryptionCert: s.EncryptionCert,
	})
	if err != nil {
		return fmt.Errorf("compose: sign: %w", err)
	}

	boundary, err := newBoundary()
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(dst)
	outer = append(outer, newField("MIME-Version", "1.0"),
		newField("Content-Type", `multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;`+"\r\n\t"+`boundary="`+boundary+`"`))
	if err := outer.write(bw); err != nil {
		return err
	}
	io.WriteString(bw, "This is a cryptographically signed message in MIME format.\r\n\r\n--"+boundary+"\r\n")
	r, err := ent.Reader()
	if err != nil {
		return err
	}
	if _, err := io.Copy(bw, r); err != nil {
		return fmt.Errorf("compose: sign: %w", err)
	}
	io.WriteString(bw, "\r\n--"+boundary+"\r\n"+
		"Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"+
		"Content-Transfer-Encoding: base64\r\n"+
		"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n")
	b64 := newBase64Writer(bw)
	b64.Write(sig)
	if err := b64.Close(); err != nil {
		return err
	}
	io.WriteString(bw, "\r\n--"+boundary+"--\r\n")
	return bw.Flush()
}

// newBoundary is a multipart boundary no content contains by chance.
func newBoundary() (string, error) {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("compose: %w", err)
	}
	return "smimed-" + hex.EncodeToString(b[:]), nil
}
