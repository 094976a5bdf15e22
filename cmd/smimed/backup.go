package main

// This file is `smimed backup`: a consistent copy of the store's bbolt
// file (certificates, checkpoints, the archive index and its hash chain).

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
)

const backupUsage = `Usage: smimed backup --out FILE [--force] [--config FILE]

Writes a consistent copy of the store (state_dir/smimed.db: certificates,
quarantine, checkpoints and the archive's index with its hash chain),
taken in one read transaction, to FILE.tmp, syncs it to disk and renames it
to FILE (mode 0600). The copy is an ordinary bbolt file: put it back as
state_dir/smimed.db to restore.

The archived messages themselves (state_dir/archive: originals and the
Maildir of plaintexts) are not in it: copy that directory with your usual
file backup, after this command, so that every file the index names is in
the backup ("smimed archive verify" on a restored copy checks it).

  --out FILE      where to write (required)
  --force         replace an existing FILE
  --config FILE   configuration file (default /etc/smimed/smimed.toml)
`

func backupMain(args []string, stdout, stderr io.Writer) int {
	s := newArchiveSession("backup", stdout, stderr)
	out := s.fs.String("out", "", "")
	force := s.fs.Bool("force", false, "")
	if _, code, done := s.parse(args, backupUsage, 0); done {
		return code
	}
	if *out == "" {
		return s.usagef("missing --out FILE")
	}
	if err := checkNewFile(*out, *force, false); err != nil {
		return s.failf("%v", err)
	}
	return s.with(false, func(ctx context.Context, api admin.ArchiveAPI, cfg *config.Config) int {
		f, err := createAtomic(*out)
		if err != nil {
			return s.failf("%v", err)
		}
		n, err := api.Backup(ctx, f)
		if err == nil {
			err = f.commit()
		} else {
			f.abort()
		}
		if err != nil {
			return s.failf("%v", err)
		}
		fmt.Fprintf(stdout, "backed up the store to %s (%d bytes); copy %s with your file backup\n", *out, n, filepath.Join(cfg.StateDir, "archive"))
		return exitOK
	})
}
