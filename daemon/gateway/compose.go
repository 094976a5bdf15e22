package gateway

import (
	"crypto/x509"
	"io"

	"github.com/smimed/smimed/harvest/compose"
)

// Escrow is an escrow recipient: smimed itself, announcing what it
// decrypts, so that it never holds the algorithms back.
func Escrow(cert *x509.Certificate) Recipient {
	return Recipient{Cert: cert, Capabilities: compose.Own(cert).Capabilities, Escrow: true}
}

// Compose is the Composer of harvest/compose: what the running gateway
// uses.
type Compose struct{}

func (s *Signer) compose() *compose.Signer {
	if s == nil {
		return nil
	}
	return &compose.Signer{Cert: s.Cert, Chain: s.Chain, Key: s.Key, PSS: s.PSS, EncryptionCert: s.EncryptionCert}
}

func composeRecipients(rs []Recipient) []compose.Recipient {
	out := make([]compose.Recipient, 0, len(rs))
	for _, r := range rs {
		out = append(out, compose.Recipient{Cert: r.Cert, Capabilities: r.Capabilities})
	}
	return out
}

func (o ComposeOptions) compose() compose.Options {
	return compose.Options{ProtectHeaders: o.ProtectHeaders, Now: o.Now, TempDir: o.TempDir}
}

func algorithms(a compose.Algorithms) Algorithms {
	return Algorithms{Cipher: a.Cipher, KeyManagement: a.KeyManagement}
}

func (Compose) Sign(dst io.Writer, src io.Reader, s *Signer, o ComposeOptions) error {
	return compose.Sign(dst, src, s.compose(), o.compose())
}

func (Compose) Encrypt(dst io.Writer, src io.Reader, recips []Recipient, o ComposeOptions) (Algorithms, error) {
	a, err := compose.Encrypt(dst, src, composeRecipients(recips), o.compose())
	return algorithms(a), err
}

func (Compose) SignEncrypt(dst io.Writer, src io.Reader, s *Signer, recips []Recipient, o ComposeOptions) (Algorithms, error) {
	a, err := compose.SignEncrypt(dst, src, s.compose(), composeRecipients(recips), o.compose())
	return algorithms(a), err
}
