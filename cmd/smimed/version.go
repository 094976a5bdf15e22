package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/smimed/smimed/daemon/admin"
)

const versionUsage = `Usage: smimed version

Prints the version smimed was built from: the module version of a
release, else the VCS revision of the checkout it was built in ("+dirty"
when that had uncommitted changes), and the Go version. smimed --version
is the same.
`

func versionMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version")
	rest, code, done := parseFlags(fs, args, stdout, stderr, versionUsage)
	if done {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "smimed version: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	v := admin.BuildVersion()
	if v == "" {
		v = "(unknown: built without module or VCS information)"
	}
	fmt.Fprintf(stdout, "smimed %s %s\n", v, runtime.Version())
	return exitOK
}
