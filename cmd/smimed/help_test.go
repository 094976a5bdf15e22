package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// commandsDoc is the manual's command reference (README.md links to it),
// relative to this package's directory.
const commandsDoc = "../../docs/commands.md"

// TestHelpMatchesREADME: every command `smimed help` lists has its section
// in the manual's command reference (commandsDoc), every command section
// there is in the help, each command's --help exits 0 and names its flags
// as the section's heading does, and an unknown flag is one line and exit 2.
func TestHelpMatchesREADME(t *testing.T) {
	readme, err := os.ReadFile(commandsDoc)
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile(`(?m)^##+ smimed ([a-z0-9-]+)(?: ([a-z0-9-]+))?(.*)$`)
	sections := map[string]string{} // "archive list" or "run" → the rest of the heading
	for _, m := range heading.FindAllStringSubmatch(string(readme), -1) {
		name := m[1]
		if m[2] != "" && m[1] == "archive" {
			name += " " + m[2]
		}
		sections[name] = m[0]
	}
	if len(sections) < 10 {
		t.Fatalf("found %d command sections in %s, want every command", len(sections), commandsDoc)
	}
	code, help, _ := runCmd(nil, "help")
	if code != exitOK {
		t.Fatalf("smimed help: exit %d", code)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  smimed ([a-z0-9-]+)`).FindAllStringSubmatch(help, -1) {
		if m[1] != "help" {
			listed[m[1]] = true
		}
	}
	t.Logf("%d sections in %s, %d commands in the help", len(sections), commandsDoc, len(listed))
	for cmd := range listed {
		if _, ok := sections[cmd]; !ok {
			t.Errorf("smimed help lists %q, %s has no section for it", cmd, commandsDoc)
		}
	}
	for name := range sections {
		cmd, sub, _ := strings.Cut(name, " ")
		if !listed[cmd] {
			t.Errorf("%s documents %q, smimed help does not list it", commandsDoc, cmd)
		}
		args := []string{cmd, "--help"}
		if sub != "" {
			args = []string{cmd, sub, "--help"}
		}
		code, out, errOut := runCmd(nil, args...)
		if code != exitOK || out == "" {
			t.Errorf("smimed %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
			continue
		}
		// Every --flag of the section's heading is in the command's help.
		for _, f := range regexp.MustCompile(`--[a-z-]+`).FindAllString(sections[name], -1) {
			if !strings.Contains(out, f) {
				t.Errorf("the heading %q in %s names %s, smimed %s does not", sections[name], commandsDoc, f, strings.Join(args, " "))
			}
		}
		// An unknown flag: one line on stderr, exit 2.
		bad := append(args[:len(args)-1:len(args)-1], "--no-such-flag")
		if code, _, errOut := runCmd(nil, bad...); code != exitUsage || strings.Count(errOut, "\n") != 1 {
			t.Errorf("smimed %s: exit %d, stderr %q; want exit 2 and one line", strings.Join(bad, " "), code, errOut)
		}
	}
}
