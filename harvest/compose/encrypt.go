package compose

import (
	"bufio"
	"crypto/x509"
	"fmt"
	"io"
	"slices"

	"github.com/smimed/smimed/harvest/cms"
)

// Algorithms is what Encrypt used, for the archive record.
type Algorithms struct {
	// Cipher is cms.CipherAES256GCM (AuthEnvelopedData) or
	// cms.CipherAES256CBC (EnvelopedData).
	Cipher string
	// KeyManagement is, per recipient in the order given, cms.KeyRSAOAEP,
	// cms.KeyRSAPKCS1v15 or cms.KeyECDH.
	KeyManagement []string
}

// SMIMEType is the smime-type parameter for the cipher (RFC 8551 section
// 3.2.2): "authEnveloped-data" for AES-GCM, else "enveloped-data".
func (a Algorithms) SMIMEType() string {
	if a.Cipher == cms.CipherAES256GCM {
		return "authEnveloped-data"
	}
	return "enveloped-data"
}

// Choose picks the algorithms for recips from what they announced:
// AES-256-GCM in AuthEnvelopedData only when every recipient announced
// "aes-256-gcm" (a client that does not know AuthEnvelopedData cannot read
// the message at all), else AES-256-CBC, which every S/MIME 3.2 client
// reads; RSAES-OAEP for an RSA recipient that announced "rsaes-oaep", else
// PKCS #1 v1.5; ECDH for EC keys.
func Choose(recips []Recipient) Algorithms {
	a := Algorithms{Cipher: cms.CipherAES256GCM}
	if len(recips) == 0 {
		a.Cipher = cms.CipherAES256CBC
	}
	for _, r := range recips {
		if !slices.Contains(r.Capabilities, "aes-256-gcm") {
			a.Cipher = cms.CipherAES256CBC
		}
		a.KeyManagement = append(a.KeyManagement, sealRecipient(r).KeyManagement())
	}
	return a
}

func sealRecipient(r Recipient) cms.SealRecipient {
	return cms.SealRecipient{Cert: r.Cert, OAEP: slices.Contains(r.Capabilities, "rsaes-oaep")}
}

// Encrypt reads an RFC 5322 message from src and writes it encrypted to
// recips (application/pkcs7-mime; name=smime.p7m, RFC 8551 section 3.3)
// to dst, with the algorithms Choose picks. The transport header fields
// stay outside; MIME-Version and Content-* go into the encrypted entity
// with the body. With o.ProtectHeaders the encrypted entity carries the
// header fields too (hp="cipher", RFC 9788) and the outer Subject is
// "[...]". An escrow certificate is one more recipient.
func Encrypt(dst io.Writer, src io.Reader, recips []Recipient, o Options) (Algorithms, error) {
	return encrypt(dst, src, recips, o, o.ProtectHeaders)
}

// SignEncrypt signs (Sign) and then encrypts (Encrypt) the message. With
// o.ProtectHeaders the signed entity carries the header fields marked
// hp="cipher" and the outer Subject is "[...]".
func SignEncrypt(dst io.Writer, src io.Reader, s *Signer, recips []Recipient, o Options) (Algorithms, error) {
	if len(recips) == 0 {
		return Algorithms{}, ErrNoRecipients
	}
	signed := newSpool(o.TempDir)
	defer signed.Close()
	hp := ""
	if o.ProtectHeaders {
		hp = "cipher"
	}
	if err := sign(signed, src, s, o, hp); err != nil {
		return Algorithms{}, err
	}
	r, err := signed.Reader()
	if err != nil {
		return Algorithms{}, err
	}
	return encrypt(dst, r, recips, o, false)
}

func encrypt(dst io.Writer, src io.Reader, recips []Recipient, o Options, addHP bool) (Algorithms, error) {
	if len(recips) == 0 {
		return Algorithms{}, ErrNoRecipients
	}
	for i, r := range recips {
		if err := cms.CanEncryptTo(r.Cert); err != nil {
			name := "?"
			if r.Cert != nil {
				name = r.Cert.Subject.String()
			}
			return Algorithms{}, fmt.Errorf("compose: encrypt: recipient %d (%s): %w", i+1, name, err)
		}
	}
	h, br, err := readMessageHeader(src)
	if err != nil {
		return Algorithms{}, err
	}
	outer, inner := h.split()
	inner = inner.del("MIME-Version")
	if !inner.has("Content-Type") {
		inner = append(header{newField("Content-Type", "text/plain; charset=us-ascii")}, inner...)
	}
	if addHP {
		inner = protectedInner(outer, inner, "cipher")
	}
	if o.ProtectHeaders {
		outer = obscure(outer)
	}

	ent := newSpool(o.TempDir)
	defer ent.Close()
	if err := inner.write(ent); err != nil {
		return Algorithms{}, err
	}
	if _, err := io.Copy(&crlfWriter{w: ent}, br); err != nil {
		return Algorithms{}, fmt.Errorf("compose: encrypt: reading the message: %w", err)
	}

	alg := Choose(recips)
	srs := make([]cms.SealRecipient, len(recips))
	for i, r := range recips {
		srs[i] = sealRecipient(r)
	}
	bw := bufio.NewWriter(dst)
	outer = append(outer, newField("MIME-Version", "1.0"),
		newField("Content-Type", "application/pkcs7-mime; smime-type="+alg.SMIMEType()+"; name=\"smime.p7m\""),
		newField("Content-Transfer-Encoding", "base64"),
		newField("Content-Disposition", "attachment; filename=\"smime.p7m\""))
	if err := outer.write(bw); err != nil {
		return Algorithms{}, err
	}
	r, err := ent.Reader()
	if err != nil {
		return Algorithms{}, err
	}
	b64 := newBase64Writer(bw)
	kms, err := cms.Seal(b64, r, ent.Size(), alg.Cipher, srs)
	if err != nil {
		return Algorithms{}, fmt.Errorf("compose: encrypt: %w", err)
	}
	alg.KeyManagement = kms
	if err := b64.Close(); err != nil {
		return Algorithms{}, err
	}
	return alg, bw.Flush()
}

// Own is a recipient that is smimed itself, such as the escrow
// certificate: it announces what smimed decrypts (cms.DefaultCapabilities,
// the SMIMECapabilities Sign sends), so that it never holds Choose back.
func Own(cert *x509.Certificate) Recipient {
	return Recipient{Cert: cert, Capabilities: cms.CapabilityNames(cms.DefaultCapabilities())}
}
