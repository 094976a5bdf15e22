package daemon

// This file renders the one-line STATUS= that systemctl status shows
// (sd_notify(3)): per account how many folders are up, how many messages
// were processed and failed, or why it is not up, for example
//
//	ceo: 2/2 folders up, 1234 processed, 0 failed; sales: reconnecting in 8s
//
// With many accounts the line is summarised to stay under statusMax bytes.

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// statusMax bounds the STATUS= line.
const statusMax = 200

// Folder states, in the order of how much they need attention.
const (
	stateUp           = "up"
	stateConnecting   = "connecting"
	stateReconnecting = "reconnecting"
	stateLoginRefused = "login refused"
	stateStopped      = "stopped"
)

var stateRank = map[string]int{stateUp: 0, stateConnecting: 1, stateReconnecting: 2, stateLoginRefused: 3, stateStopped: 4}

type folderState struct {
	state   string
	retryAt time.Time // zero: no retry planned
}

type accountStatus struct {
	folders           map[string]folderState
	processed, failed uint64
}

// statusBoard holds the folder states and counts per account.
type statusBoard struct {
	mu       sync.Mutex
	accounts map[string]*accountStatus
	changed  chan struct{} // 1 slot
}

func (b *statusBoard) account(name string) *accountStatus {
	if b.accounts == nil {
		b.accounts = map[string]*accountStatus{}
	}
	a := b.accounts[name]
	if a == nil {
		a = &accountStatus{folders: map[string]folderState{}}
		b.accounts[name] = a
	}
	return a
}

func (b *statusBoard) signal() {
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

func (b *statusBoard) set(account, folder string, fs folderState) {
	b.mu.Lock()
	b.account(account).folders[folder] = fs
	b.mu.Unlock()
	b.signal()
}

func (b *statusBoard) count(account string, failed bool) {
	b.mu.Lock()
	a := b.account(account)
	if failed {
		a.failed++
	} else {
		a.processed++
	}
	b.mu.Unlock()
	b.signal()
}

func (b *statusBoard) forget(account, folder string) {
	b.mu.Lock()
	if a := b.accounts[account]; a != nil {
		delete(a.folders, folder)
		if len(a.folders) == 0 {
			delete(b.accounts, account)
		}
	}
	b.mu.Unlock()
	b.signal()
}

// line renders the status at time now.
func (b *statusBoard) line(now time.Time) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	names := slices.Sorted(maps.Keys(b.accounts))
	var parts, notUp []string
	var processed, failed uint64
	for _, name := range names {
		a := b.accounts[name]
		up, worst := 0, folderState{state: stateUp}
		for _, fs := range a.folders {
			if fs.state == stateUp {
				up++
			}
			if r, w := stateRank[fs.state], stateRank[worst.state]; r > w || (r == w && fs.retryAt.Before(worst.retryAt)) {
				worst = fs
			}
		}
		processed += a.processed
		failed += a.failed
		var p string
		switch {
		case up == len(a.folders):
			p = fmt.Sprintf("%s: %d/%d folders up, %d processed, %d failed", name, up, len(a.folders), a.processed, a.failed)
		case up == 0:
			p = fmt.Sprintf("%s: %s", name, worst.describe(now))
		default:
			p = fmt.Sprintf("%s: %d/%d folders up (%s), %d processed, %d failed", name, up, len(a.folders), worst.describe(now), a.processed, a.failed)
		}
		if up < len(a.folders) {
			notUp = append(notUp, name)
		}
		parts = append(parts, p)
	}
	if s := strings.Join(parts, "; "); len(s) <= statusMax {
		return s
	}
	s := fmt.Sprintf("%d accounts, %d fully up; %d processed, %d failed", len(names), len(names)-len(notUp), processed, failed)
	if len(notUp) == 0 {
		return s
	}
	s += "; not up: "
	for i, name := range notUp {
		more := ""
		if i < len(notUp)-1 {
			more = fmt.Sprintf(" and %d more", len(notUp)-i-1)
		}
		if len(s)+len(name)+len(", ")+len(" and 9999 more") > statusMax {
			return strings.TrimSuffix(s, ", ") + fmt.Sprintf(" and %d more", len(notUp)-i)
		}
		s += name
		if more != "" {
			s += ", "
		}
	}
	return s
}

// describe says why a folder is not up.
func (fs folderState) describe(now time.Time) string {
	switch fs.state {
	case stateReconnecting:
		if fs.retryAt.After(now) {
			return "reconnecting in " + shortDuration(fs.retryAt.Sub(now))
		}
		return "reconnecting"
	case stateLoginRefused:
		if fs.retryAt.After(now) {
			return "login refused, retry in " + shortDuration(fs.retryAt.Sub(now))
		}
		return "login refused"
	case stateStopped:
		return "stopped (see the log)"
	}
	return fs.state
}

// shortDuration rounds d up to whole seconds, minutes or hours: 8s, 15m, 2h.
func shortDuration(d time.Duration) string {
	switch {
	case d <= time.Minute:
		return fmt.Sprintf("%ds", (d+time.Second-1)/time.Second)
	case d <= time.Hour:
		return fmt.Sprintf("%dm", (d+time.Minute-1)/time.Minute)
	}
	return fmt.Sprintf("%dh", (d+time.Hour-1)/time.Hour)
}
