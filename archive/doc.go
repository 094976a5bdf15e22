// Package archive will hold the plaintext archive: every processed message
// kept as it came and as plaintext (a Maildir), an index in the bbolt store
// with a hash chain for tamper evidence, the admin queries, and the copy
// APPENDed to the user's IMAP folder. It is built on the harvest engine's
// Result (original bytes, Plaintext, Report); see README.md.
package archive
