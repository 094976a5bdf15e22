package harvest

import "time"

// Verdict statuses, one per signer (see docs/verdicts.md, "How verdicts are decided").
const (
	StatusValid     = "valid"     // signature, chain, validity, usage and From binding all hold
	StatusInvalid   = "invalid"   // digest or signature mismatch (or a rejected weak digest)
	StatusUntrusted = "untrusted" // no chain to a trust anchor, or the certificate may not sign mail
	StatusExpired   = "expired"   // certificate not valid at the signing time
	StatusRevoked   = "revoked"   // reserved for revocation checks
	StatusMismatch  = "mismatch"  // everything holds but From is not in the certificate
	// StatusPartial: the signature itself holds (chain, validity, From
	// binding) but it covers only part of what a mail client shows (a
	// signed part beside unsigned parts); the reason names what is not
	// signed. Never counted as valid, and harvests nothing.
	StatusPartial = "partial"
	StatusError   = "error" // the structure cannot be judged
)

// Decryption outcomes.
const (
	DecryptOK     = "ok"
	DecryptFailed = "failed"
	DecryptNone   = "none"
)

// Report is everything read out of one message. Its JSON form is the
// output of `smimed inspect --json` and is stored by the archive.
type Report struct {
	File       string      `json:"file,omitempty"`
	MessageID  string      `json:"message_id"`
	From       string      `json:"from"`
	Subject    string      `json:"subject"`
	Layers     []string    `json:"layers"`
	Decryption Decryption  `json:"decryption"`
	Signatures []Signature `json:"signatures"`
	Harvested  []Harvested `json:"harvested"`
	// Recipients lists who an undecryptable message was encrypted to, so an
	// admin knows which key is missing.
	Recipients []string `json:"recipients,omitempty"`
	// Unprotected lists the outer header fields that differ from the
	// protected header section the reader is shown (RFC 9788); the
	// plaintext and the user's copy keep them as X-Smimed-Unprotected-*.
	Unprotected []HeaderField `json:"unprotected,omitempty"`
	// Notes say what was seen but not acted on.
	Notes []string `json:"notes,omitempty"`
	Error string   `json:"error"`
}

// Why a decryption failed (Decryption.Reason).
const (
	DecryptNoKey       = "no-key"      // encrypted to none of the organisation's keys
	DecryptCorrupt     = "corrupt"     // a key matched, but the ciphertext or its key does not decrypt
	DecryptUnparsable  = "unparsable"  // the body is not a readable CMS structure (truncated, garbage)
	DecryptUnsupported = "unsupported" // an algorithm or structure smimed does not implement
)

// Decryption describes the (outermost) encryption layer.
type Decryption struct {
	Status string `json:"status"`
	// Reason says why a failed decryption failed (DecryptNoKey, …).
	Reason       string `json:"reason,omitempty"`
	Key          string `json:"key"` // SHA-256 fingerprint of the key's certificate
	Cipher       string `json:"cipher"`
	KeyTransport string `json:"key_transport"`
	Error        string `json:"error"`
}

// Signature is the verdict on one signer.
type Signature struct {
	Status      string `json:"status"`
	Signer      string `json:"signer"`
	Fingerprint string `json:"fingerprint"`
	// Serial (hex, as OpenSSL prints it) and Issuer (RFC 4514) name the
	// signer's certificate, for RFC 7281's body.smime-serial and
	// body.smime-issuer; empty when no certificate was found.
	Serial      string    `json:"serial,omitempty"`
	Issuer      string    `json:"issuer,omitempty"`
	Digest      string    `json:"digest"`
	Algorithm   string    `json:"algorithm"`
	SigningTime time.Time `json:"signing_time,omitzero"`
	WeakDigest  bool      `json:"weak_digest"`
	Reason      string    `json:"reason"`
	// Validation is what the CA asserts it validated before issuing the
	// signer's certificate, when its chain holds: a validation type of
	// the S/MIME Baseline Requirements with its generation
	// ("organization-validated (strict)"), or "unspecified" (the address
	// alone). ValidatedName is the name and organization the CA
	// validated under that type, ValidatedBy the issuing CA.
	Validation    string `json:"validation,omitempty"`
	ValidatedName string `json:"validated_name,omitempty"`
	ValidatedBy   string `json:"validated_by,omitempty"`
	Layer         int    `json:"layer"` // index into Report.Layers
}

// Harvested names a certificate stored (or quarantined) for an address.
type Harvested struct {
	Email       string `json:"email"`
	Fingerprint string `json:"fingerprint"`
	Quarantined bool   `json:"quarantined,omitempty"`
}
