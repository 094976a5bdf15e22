package archive

import (
	"fmt"
	"time"
)

// Source says where a message was fetched from. Together with the SHA-256
// of the fetched bytes it is the archive's idempotency key.
type Source struct {
	Account     string
	Folder      string
	UIDValidity uint32
	UID         uint32
	// InternalDate is the server's arrival time (IMAP INTERNALDATE); zero
	// when unknown.
	InternalDate time.Time
}

// Marker is the value of the X-Smimed-Source header field of the user's
// copy: "<account>/<folder>/<uidvalidity>/<uid>". Folder names may contain
// "/"; the last two fields are always the numbers.
func (s Source) Marker() string {
	return fmt.Sprintf("%s/%s/%d/%d", s.Account, s.Folder, s.UIDValidity, s.UID)
}
