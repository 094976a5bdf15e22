package daemon

// This file renders the one-line STATUS= that systemctl status shows
// (sd_notify(3)): per account how many folders are up, how many messages
// were processed and failed, or why it is not up, and while a backlog is
// worked off how many messages are left and about how long that takes,
// for example
//
//	ceo: 2/2 folders up, 1234 processed, 0 failed, 98766 left, ETA 4m; sales: reconnecting in 8s
//
// With many accounts the line is summarised to stay under statusMax bytes.
//
// It also answers `smimed status` (the control socket's status op): per
// account and folder the state, the last error, the checkpoint, the
// backlog and what was processed since start (DaemonStatus); without a
// daemon the command shows the checkpoints of the store (StoreCheckpoints).

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smimed/smimed/daemon/admin"
	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/harvest/state"
)

// statusMax bounds the STATUS= line.
const statusMax = 200

// Folder states, in the order of how much they need attention.
const (
	stateUp           = "up"
	statePolled       = "polled" // checked every poll_interval, no connection held (max_connections)
	stateConnecting   = "connecting"
	stateReconnecting = "reconnecting"
	stateLoginRefused = "login refused"
	stateStopped      = "stopped"
)

var stateRank = map[string]int{stateUp: 0, statePolled: 0, stateConnecting: 1, stateReconnecting: 2, stateLoginRefused: 3, stateStopped: 4}

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
	// progress adds the messages left and the time to go to an account
	// with a backlog; nil: not shown.
	progress *progressBoard
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
	var backlogs map[string]backlogProgress
	if b.progress != nil {
		backlogs = b.progress.byAccount(now)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	names := slices.Sorted(maps.Keys(b.accounts))
	var parts, notUp []string
	var processed, failed uint64
	for _, name := range names {
		a := b.accounts[name]
		up, worst := 0, folderState{state: stateUp}
		for _, fs := range a.folders {
			if fs.state == stateUp || fs.state == statePolled { // polled: healthy, no connection held
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
		if bp, ok := backlogs[name]; ok {
			p += fmt.Sprintf(", %d left", bp.Left)
			if bp.ETA > 0 {
				p += ", ETA " + admin.ShortDuration(bp.ETA)
			}
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
	if name, ok := folderStateNames[fs.state]; ok {
		return (&admin.FolderStatus{State: name, RetryAt: fs.retryAt}).Describe(now)
	}
	return fs.state
}

var folderStateNames = map[string]string{
	stateUp: admin.FolderConnected, statePolled: admin.FolderPolled, stateConnecting: admin.FolderConnecting, stateReconnecting: admin.FolderReconnecting,
	stateLoginRefused: admin.FolderLoginRefused, stateStopped: admin.FolderStopped,
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
func (m *Metrics) folders() []admin.FolderStatus {
	type key struct{ account, folder string }
	byKey := map[key]*admin.FolderStatus{}
	m.status.mu.Lock()
	for name, a := range m.status.accounts {
		if p := a.copies; p != nil {
			byKey[key{name, p.folder}] = &admin.FolderStatus{
				Account: name, Folder: p.folder, State: admin.FolderCopiesRefused,
				LastError: p.reason, LastErrorAt: p.since,
			}
		}
		for folder, fs := range a.folders {
			byKey[key{name, folder}] = &admin.FolderStatus{
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
	now := m.now()
	out := make([]admin.FolderStatus, 0, len(byKey))
	for _, f := range byKey {
		if p, ok := m.progress.get(f.Account, f.Folder, now); ok {
			f.BacklogStarted, f.BacklogTotal = p.Started, p.Total
			f.RatePerSecond = math.Round(p.Rate*100) / 100
			f.ETASeconds = int64(p.ETA / time.Second)
		}
		out = append(out, *f)
	}
	sortFolders(out)
	return out
}

func sortFolders(fs []admin.FolderStatus) {
	slices.SortFunc(fs, func(a, b admin.FolderStatus) int {
		return cmp.Or(cmp.Compare(a.Account, b.Account), cmp.Compare(a.Folder, b.Folder))
	})
}

// Status is the service's answer to `smimed status`: every watched
// folder with its checkpoint, then the checkpoints of folders no longer
// watched.
func (s *Service) Status() (*admin.DaemonStatus, error) {
	// Not under s.mu: a reload holds it while stopped accounts finish
	// their messages, and status must answer meanwhile. state_dir never
	// changes while the service runs.
	st := &admin.DaemonStatus{
		Version: admin.BuildVersion(), StateDir: s.stateDir,
		Started: processStart, UptimeSeconds: int64(time.Since(processStart).Seconds()),
		Folders: s.metrics.folders(),
		Gateway: s.gatewayStatus(),
		Worm:    s.wormStatus(),
	}
	if cfg := s.trustCfg.Load(); cfg != nil {
		st.Seals = s.sealer.status(cfg.Archive.Seal)
	}
	cps, err := StoreCheckpoints(s.state)
	if err != nil {
		return nil, err
	}
	watched := map[[2]string]int{}
	for i, f := range st.Folders {
		watched[[2]string{f.Account, f.Folder}] = i
	}
	var gone []admin.FolderStatus
	for _, cp := range cps {
		if i, ok := watched[[2]string{cp.Account, cp.Folder}]; ok {
			st.Folders[i].UIDValidity, st.Folders[i].CheckpointUID = cp.UIDValidity, cp.CheckpointUID
			continue
		}
		cp.State = admin.FolderNotWatched
		gone = append(gone, cp)
	}
	st.Folders = append(st.Folders, gone...)
	return st, nil
}

// StoreCheckpoints reads every checkpoint of the state file's
// "checkpoints" bucket (checkpoint.go), sorted by account and folder; db
// may be open read-only. A file without the bucket has none.
func StoreCheckpoints(db *state.DB) ([]admin.FolderStatus, error) {
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
	cps := &Checkpoints{db: db}
	var out []admin.FolderStatus
	for _, k := range keys {
		cp, ok, err := cps.Get(k[0], k[1])
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, admin.FolderStatus{Account: k[0], Folder: k[1], UIDValidity: cp.UIDValidity, CheckpointUID: cp.UID})
		}
	}
	sortFolders(out)
	return out, nil
}
