package main

import (
	"fmt"
	"io"

	"github.com/smimed/smimed/harvest"
)

const decryptUsage = `Usage: smimed decrypt [--config FILE] [--at TIME] FILE

Writes the readable plaintext of one message to stdout: the innermost
content under the outer message's headers (From, To, Date, Subject,
Message-ID, ...). A message without S/MIME comes out unchanged. When the
message cannot be decrypted or read to its innermost content, nothing is
written and the reason goes to stderr (exit 1).

  --config FILE   configuration file (default /etc/smimed/smimed.toml)
  --at TIME       judge as if the message arrived at TIME (RFC 3339, or a
                  date YYYY-MM-DD meaning its midnight UTC; default now)
`

func decryptMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("decrypt")
	configPath := fs.String("config", "", "")
	atFlag := fs.String("at", "", "")
	files, code, done := parseFlags(fs, args, stdout, stderr, decryptUsage)
	if done {
		return code
	}
	at, err := parseAt(*atFlag)
	if err != nil {
		fmt.Fprintf(stderr, "smimed decrypt: %v\n", err)
		return exitUsage
	}
	if len(files) != 1 {
		fmt.Fprintln(stderr, "smimed decrypt: give exactly one message file (or - for stdin)")
		return exitUsage
	}
	s, code := newSetup(*configPath, false, stderr)
	if s == nil {
		return code
	}
	defer s.close()
	raw, err := readMessage(files[0], stdin, s.cfg.MaxMessageSize)
	if err != nil {
		fmt.Fprintf(stderr, "smimed decrypt: %v\n", err)
		return exitFailed
	}
	res, err := s.eng.Process(raw, at())
	if err != nil {
		fmt.Fprintf(stderr, "smimed decrypt: %v\n", err)
		return exitFailed
	}
	if res.Report.Decryption.Status == harvest.DecryptFailed {
		fmt.Fprintf(stderr, "smimed decrypt: %s: %s\n", files[0], clean(res.Report.Decryption.Error))
		return exitFailed
	}
	if res.Report.Error != "" {
		// Processing stopped before the innermost content: what we have
		// may still be ciphertext.
		fmt.Fprintf(stderr, "smimed decrypt: %s: %s\n", files[0], clean(res.Report.Error))
		return exitFailed
	}
	if _, err := stdout.Write(res.Plaintext); err != nil {
		fmt.Fprintf(stderr, "smimed decrypt: %v\n", err)
		return exitFailed
	}
	return exitOK
}
