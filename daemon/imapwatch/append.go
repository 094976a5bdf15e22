package imapwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Append stores the message in the file at path into folder with no flags
// (so it is unread) and INTERNALDATE date, creating the folder when missing.
// It returns the new UID when the server has UIDPLUS (RFC 4315), else 0.
//
// The folder is created first (ALREADYEXISTS is fine) rather than on
// NO [TRYCREATE], because a refusal of APPEND can desynchronise go-imap's
// literal. Use a Conn of its own for appends, not the watcher's, and drop it
// on any error.
func (c *Conn) Append(ctx context.Context, folder, path string, date time.Time) (uint32, error) {
	file, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("imapwatch: %w", err)
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return 0, fmt.Errorf("imapwatch: %w", err)
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("imapwatch: append %s: not a regular file", path)
	}
	size := st.Size()

	err = c.run(ctx, 0, "CREATE "+folder, func() error {
		err := c.client.Create(folder, nil).Wait()
		var ie *imap.Error
		if errors.As(err, &ie) && ie.Code == imap.ResponseCodeAlreadyExists {
			return nil
		}
		return err
	})
	if err != nil {
		return 0, err
	}

	var data *imap.AppendData
	err = c.run(ctx, 0, "APPEND "+folder, func() error {
		cmd := c.client.Append(folder, size, &imap.AppendOptions{Time: date})
		n, werr := io.Copy(cmd, io.LimitReader(file, size))
		if werr == nil && n != size {
			werr = fmt.Errorf("%s changed size while appending (%d of %d bytes)", path, n, size)
		}
		if werr != nil {
			// A short literal would desynchronise the stream: give up
			// on the connection.
			c.client.Close()
			cmd.Close()
			return werr
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		var err error
		data, err = cmd.Wait()
		return err
	})
	if err != nil {
		return 0, err
	}
	return uint32(data.UID), nil
}
