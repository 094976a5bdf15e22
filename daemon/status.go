package daemon

// This file renders the one-line STATUS= that systemctl status shows
// (sd_notify(3)): per account how many folders are up, how many messages
// were processed and failed, or why it is not up, for example
//
//	ceo: 2/2 folders up, 1234 processed, 0 failed; sales: reconnecting in 8s
//
// With many accounts the line is summarised to stay under statusMax bytes.
//
// It also answers `smimed status` (the control socket's status op): per
// account and folder the state, the last error, the checkpoint, the
// backlog and what was processed since start (DaemonStatus); without a
// daemon the command shows the checkpoints of the store (StoreCheckpoints).

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/harvest/state"
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
	// The last error of the folder's connection (FolderError), kept
	// across state changes.
	err   string
	errAt time.Time
}

type accountStatus struct {
	folders           map[string]folderState
	processed, failed uint64
	copies            *copyProblem // nil: the users' copies go through
}

// copyProblem is the one reason the server keeps refusing the account's
// copies into its archive folder.
type copyProblem struct {
	folder, reason string
	since          time.Time
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
	folders := b.account(account).folders
	if old, ok := folders[folder]; ok && fs.err == "" {
		fs.err, fs.errAt = old.err, old.errAt
	}
	folders[folder] = fs
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
		if a.copies != nil {
			p += ", copies refused"
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

// DaemonStatus is the answer of `smimed status`.
type DaemonStatus struct {
	// Running is true in a running daemon's answer.
	Running  bool   `json:"running"`
	Version  string `json:"version,omitempty"`
	StateDir string `json:"state_dir"`
	// Started is when the daemon's process started.
	Started       time.Time `json:"started,omitzero"`
	UptimeSeconds int64     `json:"uptime_seconds,omitempty"`
	// Socket is the control socket that answered (set by the client).
	Socket string `json:"socket,omitempty"`
	// Error says why there is no daemon's answer (set by the command).
	Error   string         `json:"error,omitempty"`
	Folders []FolderStatus `json:"folders"`
}

// FolderStatus is one account's folder. Without a daemon only Account,
// Folder, UIDValidity and CheckpointUID are known.
type FolderStatus struct {
	Account string `json:"account"`
	Folder  string `json:"folder"`
	// State is connected, connecting, reconnecting, login_refused,
	// stopped, or not_watched (a checkpoint of a folder no longer in the
	// configuration); "" without a daemon.
	State       string    `json:"state,omitempty"`
	Connected   bool      `json:"connected"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	RetryAt     time.Time `json:"retry_at,omitzero"`
	// UIDValidity and CheckpointUID are the checkpoint: every message up
	// to CheckpointUID under UIDValidity is done. 0: none yet.
	UIDValidity   uint32 `json:"uidvalidity"`
	CheckpointUID uint32 `json:"checkpoint_uid"`
	Backlog       int    `json:"backlog"`
	// Processed counts the messages done since the daemon started;
	// Outcomes splits them (OutcomeDecrypted, …).
	Processed uint64            `json:"processed"`
	Outcomes  map[string]uint64 `json:"outcomes,omitempty"`
	// LastCheck is when the folder was last confirmed in sync.
	LastCheck time.Time `json:"last_check,omitzero"`
}

// Folder states as DaemonStatus names them.
const (
	FolderConnected    = "connected"
	FolderConnecting   = "connecting"
	FolderReconnecting = "reconnecting"
	FolderLoginRefused = "login_refused"
	FolderStopped      = "stopped"
	FolderNotWatched   = "not_watched"
	// FolderCopiesRefused is an account's archive folder while the server
	// refuses the copies (LastError says why).
	FolderCopiesRefused = "copies_refused"
)

var folderStateNames = map[string]string{
	stateUp: FolderConnected, stateConnecting: FolderConnecting, stateReconnecting: FolderReconnecting,
	stateLoginRefused: FolderLoginRefused, stateStopped: FolderStopped,
}

// Describe says in a few words how the folder is at time now:
// "connected", "reconnecting in 8s", "login refused, retry in 15m",
// "stopped: ERROR".
func (f *FolderStatus) Describe(now time.Time) string {
	switch f.State {
	case "":
		return "-"
	case FolderConnected, FolderConnecting:
		return f.State
	case FolderNotWatched:
		return "not watched"
	case FolderCopiesRefused:
		return "copies refused"
	case FolderStopped:
		if f.LastError != "" {
			return "stopped: " + f.LastError
		}
	}
	for internal, name := range folderStateNames {
		if name == f.State {
			return folderState{state: internal, retryAt: f.RetryAt}.describe(now)
		}
	}
	return f.State
}

// processStart is when this process started, for the daemon's uptime.
var processStart = time.Now()

// FolderError records the error that ended (or keeps ending) a folder's
// connection; `smimed status` shows it as the folder's last error.
func (m *Metrics) FolderError(account, folder string, err error) {
	if m == nil || err == nil {
		return
	}
	b := &m.status
	b.mu.Lock()
	defer b.mu.Unlock()
	folders := b.account(account).folders
	fs := folders[folder]
	fs.err, fs.errAt = err.Error(), m.now()
	folders[folder] = fs
}

// CopyRefused records that the server refuses account's copies into
// folder for reason. It reports whether that is news: no refusal before,
// or another reason.
func (m *Metrics) CopyRefused(account, folder, reason string) bool {
	if m == nil {
		return true
	}
	b := &m.status
	b.mu.Lock()
	a := b.account(account)
	news := a.copies == nil || a.copies.folder != folder || a.copies.reason != reason
	if news {
		a.copies = &copyProblem{folder: folder, reason: reason, since: m.now()}
	}
	b.mu.Unlock()
	b.signal()
	return news
}

// CopyStored records that a copy of account's went through; it reports
// whether copies were refused until then.
func (m *Metrics) CopyStored(account string) bool {
	if m == nil {
		return false
	}
	b := &m.status
	b.mu.Lock()
	a := b.accounts[account]
	was := a != nil && a.copies != nil
	if was {
		a.copies = nil
	}
	b.mu.Unlock()
	if was {
		b.signal()
	}
	return was
}

// folders returns the state of every watched folder, with what the
// collectors counted; the checkpoints are left to the caller.
func (m *Metrics) folders() []FolderStatus {
	type key struct{ account, folder string }
	byKey := map[key]*FolderStatus{}
	m.status.mu.Lock()
	for name, a := range m.status.accounts {
		if p := a.copies; p != nil {
			byKey[key{name, p.folder}] = &FolderStatus{
				Account: name, Folder: p.folder, State: FolderCopiesRefused,
				LastError: p.reason, LastErrorAt: p.since,
			}
		}
		for folder, fs := range a.folders {
			byKey[key{name, folder}] = &FolderStatus{
				Account: name, Folder: folder,
				State: folderStateNames[fs.state], Connected: fs.state == stateUp,
				LastError: fs.err, LastErrorAt: fs.errAt, RetryAt: fs.retryAt,
			}
		}
	}
	m.status.mu.Unlock()

	// The collectors hold the counts, the backlog and the last check.
	families, _ := m.reg.Gather() // errors only for inconsistent collectors
	for _, mf := range families {
		for _, s := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			f := byKey[key{labels["account"], labels["folder"]}]
			if f == nil {
				continue
			}
			switch mf.GetName() {
			case "smimed_messages_processed_total":
				n := uint64(s.GetCounter().GetValue())
				if n == 0 {
					continue
				}
				if f.Outcomes == nil {
					f.Outcomes = map[string]uint64{}
				}
				f.Outcomes[labels["outcome"]] += n
				f.Processed += n
			case "smimed_folder_backlog_messages":
				f.Backlog = int(s.GetGauge().GetValue())
			case "smimed_folder_last_check_timestamp_seconds":
				if v := s.GetGauge().GetValue(); v > 0 {
					f.LastCheck = time.Unix(0, int64(v*1e9))
				}
			}
		}
	}
	out := make([]FolderStatus, 0, len(byKey))
	for _, f := range byKey {
		out = append(out, *f)
	}
	sortFolders(out)
	return out
}

func sortFolders(fs []FolderStatus) {
	slices.SortFunc(fs, func(a, b FolderStatus) int {
		return cmp.Or(cmp.Compare(a.Account, b.Account), cmp.Compare(a.Folder, b.Folder))
	})
}

// Status is the service's answer to `smimed status`: every watched
// folder with its checkpoint, then the checkpoints of folders no longer
// watched.
func (s *Service) Status() (*DaemonStatus, error) {
	// Not under s.mu: a reload holds it while stopped accounts finish
	// their messages, and status must answer meanwhile. state_dir never
	// changes while the service runs.
	st := &DaemonStatus{
		Version: BuildVersion(), StateDir: s.stateDir,
		Started: processStart, UptimeSeconds: int64(time.Since(processStart).Seconds()),
		Folders: s.metrics.folders(),
	}
	cps, err := StoreCheckpoints(s.state)
	if err != nil {
		return nil, err
	}
	watched := map[[2]string]int{}
	for i, f := range st.Folders {
		watched[[2]string{f.Account, f.Folder}] = i
	}
	var gone []FolderStatus
	for _, cp := range cps {
		if i, ok := watched[[2]string{cp.Account, cp.Folder}]; ok {
			st.Folders[i].UIDValidity, st.Folders[i].CheckpointUID = cp.UIDValidity, cp.CheckpointUID
			continue
		}
		cp.State = FolderNotWatched
		gone = append(gone, cp)
	}
	st.Folders = append(st.Folders, gone...)
	return st, nil
}

// StoreCheckpoints reads every checkpoint of the state file's
// "checkpoints" bucket (checkpoint.go), sorted by account and folder; db
// may be open read-only. A file without the bucket has none.
func StoreCheckpoints(db *state.DB) ([]FolderStatus, error) {
	var keys [][2]string
	err := db.Bolt().View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketCheckpoints)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			account, folder, ok := strings.Cut(string(k), "\x00")
			if !ok {
				return fmt.Errorf("%w: key %q", ErrCheckpointCorrupt, k)
			}
			keys = append(keys, [2]string{account, folder})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("daemon: checkpoints: %w", err)
	}
	cps := &Checkpoints{db: db.Bolt()}
	var out []FolderStatus
	for _, k := range keys {
		cp, ok, err := cps.Get(k[0], k[1])
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, FolderStatus{Account: k[0], Folder: k[1], UIDValidity: cp.UIDValidity, CheckpointUID: cp.UID})
		}
	}
	sortFolders(out)
	return out, nil
}

// QueryStatus asks the daemon of cfg (found as DialConfig finds it) for
// its status. ErrNoDaemon when none answers.
func QueryStatus(ctx context.Context, cfg *Config) (*DaemonStatus, error) {
	path, err := findDaemon(cfg)
	if err != nil {
		return nil, err
	}
	c := &controlClient{path: path}
	var st *DaemonStatus
	_, err = c.call(ctx, &controlRequest{Op: opStatus}, func(f *controlFrame) error {
		if f.Status == nil || st != nil {
			return unexpected(opStatus)
		}
		st = f.Status
		return nil
	})
	if err == nil && st == nil {
		err = unexpected(opStatus)
	}
	if err != nil {
		return nil, err
	}
	st.Socket = path
	return st, nil
}

// BuildVersion is the module version the binary was built from, else its
// VCS revision ("+dirty" when modified), else "".
func BuildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value[:min(12, len(s.Value))]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "+dirty"
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}
