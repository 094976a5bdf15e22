// Package compose builds outgoing S/MIME messages (RFC 8551) out of
// RFC 5322 messages: clear-signed multipart/signed (section 3.5),
// application/pkcs7-mime enveloped-data and authEnveloped-data (sections
// 3.3 and 3.4, RFC 5083), and both, signed first. The CMS itself is
// harvest/cms's (SignDetached, Seal); this package does the MIME: it
// keeps the transport header fields outside, prepares the signed entity
// (8bit and binary parts to 7bit transfer encodings, canonical CRLF,
// RFC 8551 section 3.1) and can protect the header fields as RFC 9788
// describes.
//
// Everything streams from an io.Reader to an io.Writer. What must be read
// twice (the signed entity, the content to encrypt) is kept in memory up to
// a MiB and beyond that in a temporary file in Options.TempDir; AES-GCM
// content is held in memory once, as crypto/cipher seals it in one call.
package compose

import (
	"crypto"
	"crypto/x509"
	"errors"
	"time"
)

// Errors.
var (
	// ErrMalformed is returned for input that cannot be read as a message.
	ErrMalformed = errors.New("compose: malformed message")
	// ErrNoRecipients is returned by Encrypt without recipients.
	ErrNoRecipients = errors.New("compose: no recipients")
)

// Signer is the organisation's signing identity.
type Signer struct {
	Cert  *x509.Certificate
	Chain []*x509.Certificate // intermediates sent along (not the root)
	Key   crypto.Signer
	// PSS signs RSA with RSASSA-PSS instead of PKCS #1 v1.5.
	PSS bool
	// EncryptionCert is announced as the certificate to encrypt replies
	// to (SMIMEEncryptionKeyPreference); nil announces Cert when it can
	// encrypt.
	EncryptionCert *x509.Certificate
}

// Recipient is one certificate to encrypt to.
type Recipient struct {
	Cert *x509.Certificate
	// Capabilities are the names harvest/cms gives the recipient's
	// SMIMECapabilities ("aes-256-gcm", "rsaes-oaep", …; harvest's
	// Entry.Capabilities). Choose picks the algorithms from them.
	Capabilities []string
}

// Options tune Sign, Encrypt and SignEncrypt.
type Options struct {
	// ProtectHeaders applies RFC 9788 header protection: the signed or
	// encrypted entity carries the message's header fields (its
	// Content-Type marked hp="clear" or hp="cipher"), and an encrypted
	// message's outer Subject becomes "[...]".
	ProtectHeaders bool
	// Now is the signing time; zero means time.Now().
	Now time.Time
	// TempDir is where data over a MiB is kept while a message is built;
	// "" means os.TempDir().
	TempDir string
}

func (o Options) now() time.Time {
	if o.Now.IsZero() {
		return time.Now()
	}
	return o.Now
}
