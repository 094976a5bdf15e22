// Package gateway is smimed's SMTP side: it takes the organisation's
// outgoing mail (as a Postfix after-queue content filter, or from mail
// clients on the submission port with their own credentials passed on to
// the real submission server), signs and encrypts it by policy with the
// certificates smimed harvested, archives what it changed, and hands it
// on to the next hop.
//
// It is a proxy, not a queue (RFC 5321 section 3.7's relay without the
// queue): MAIL and RCPT go to the next hop as they come, so its refusals
// reach the client per recipient; DATA is spooled to a file, processed,
// handed on, and the client gets the next hop's answer. When the next hop
// cannot be reached or answers 4xx the client gets a 4xx and keeps the
// mail; a refusal by policy is a 5xx with an RFC 3463 enhanced status
// code naming the recipients without certificates.
//
// The cryptography (harvest/compose), the certificate store and the
// archive are reached through the small interfaces of this package
// (Composer, Lookup, Archiver), which package daemon fills in.
package gateway

import (
	"crypto"
	"crypto/x509"
	"io"
	"time"

	"github.com/smimed/smimed/archive"
)

// Signer is a signing identity ([[signing]]).
type Signer struct {
	Cert           *x509.Certificate
	Chain          []*x509.Certificate
	Key            crypto.Signer
	PSS            bool
	EncryptionCert *x509.Certificate // named in SMIMEEncryptionKeyPreference; nil: Cert
}

// Recipient is a certificate to encrypt to.
type Recipient struct {
	Address      string // "" for escrow
	Cert         *x509.Certificate
	Capabilities []string // SMIMECapabilities the holder announced
	Escrow       bool
}

// Composer builds the signed and encrypted message (harvest/compose).
// Each reads the whole message from src and writes the message to send
// to dst; Encrypt and SignEncrypt return the algorithms used, for the
// archive.
type Composer interface {
	Sign(dst io.Writer, src io.Reader, s *Signer, o ComposeOptions) error
	Encrypt(dst io.Writer, src io.Reader, recips []Recipient, o ComposeOptions) (Algorithms, error)
	SignEncrypt(dst io.Writer, src io.Reader, s *Signer, recips []Recipient, o ComposeOptions) (Algorithms, error)
}

// ComposeOptions are the per-message options of a Composer.
type ComposeOptions struct {
	ProtectHeaders bool
	Now            time.Time
	TempDir        string
}

// Algorithms are what a Composer encrypted with: the content cipher
// ("aes-256-gcm", "aes-256-cbc") and the key management of each
// recipient in the order given.
type Algorithms struct {
	Cipher        string
	KeyManagement []string
}

// Archiver keeps what was sent: *archive.Archive.
type Archiver interface {
	PutOutgoing(o archive.Outgoing, plaintextPath, sentPath string) (*archive.Record, error)
}

// Monitor counts what the gateway does (package daemon's metrics). Every
// method must be safe for concurrent use and return at once.
type Monitor interface {
	SessionStarted()
	SessionEnded()
	Message(outcome string) // signed, encrypted, signed_encrypted, passed, refused, failed
	RelayError()
}

// Outcomes reported to Monitor.Message.
const (
	OutcomeSigned          = "signed"
	OutcomeEncrypted       = "encrypted"
	OutcomeSignedEncrypted = "signed_encrypted"
	OutcomePassed          = "passed"
	OutcomeRefused         = "refused"
	OutcomeFailed          = "failed" // a local error or the next hop refused: not sent
)

type nopMonitor struct{}

func (nopMonitor) SessionStarted() {}
func (nopMonitor) SessionEnded()   {}
func (nopMonitor) Message(string)  {}
func (nopMonitor) RelayError()     {}
