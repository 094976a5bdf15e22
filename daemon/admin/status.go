package admin

// What `smimed status` answers: the running daemon's view of every
// folder, or, without a daemon, the checkpoints of the state file.

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/smimed/smimed/archive/worm"
	"github.com/smimed/smimed/daemon/config"
)

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
	// Gateway is the SMTP gateway's state; nil when it does not run.
	Gateway *GatewayStatus `json:"gateway,omitempty"`
	// Seals is the sealer's state ([archive.seal]); nil when sealing is
	// off or no daemon answered.
	Seals *SealStatus `json:"seals,omitempty"`
	// Worm is the WORM copy ([archive.worm]), nil without one.
	Worm *WormStatus `json:"worm,omitempty"`
}

// GatewayStatus is the SMTP gateway's part of the status.
type GatewayStatus struct {
	Mode     string `json:"mode"`
	Listen   string `json:"listen"`
	Relay    string `json:"relay"`
	Sessions int64  `json:"sessions"`
	// Messages counts the messages since start by outcome: signed,
	// encrypted, signed_encrypted, passed, refused, failed.
	Messages    map[string]uint64 `json:"messages"`
	RelayErrors uint64            `json:"relay_errors"`
}

// SealStatus is the sealer's state: the last seal, the records after
// it, the seals that still lack Require timestamps, and each TSA's
// answers and failures since the daemon started.
type SealStatus struct {
	EveryRecords int         `json:"every_records"`
	Interval     string      `json:"interval"`
	Require      int         `json:"require"`
	LastSeal     uint64      `json:"last_seal,omitempty"`
	LastSealAt   time.Time   `json:"last_seal_at,omitzero"`
	Unsealed     uint64      `json:"unsealed"` // records after the last seal
	Pending      int         `json:"pending"`  // seals with fewer than Require timestamps
	TSAs         []TSAStatus `json:"tsas"`
}

// TSAStatus is one TSA as the sealer saw it.
type TSAStatus struct {
	URL         string    `json:"url"`
	Answered    uint64    `json:"answered"`
	Failed      uint64    `json:"failed"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	RetryAt     time.Time `json:"retry_at,omitzero"`
}

// WormStatus is the WORM copy's state: what waits for the bucket, and
// the uploader's counters since the daemon started.
type WormStatus struct {
	Bucket  string       `json:"bucket"`
	Backlog worm.Backlog `json:"backlog"`
	Stats   worm.Stats   `json:"stats"`
	// Offline: read from the state file without the service (no
	// counters, nothing uploading).
	Offline bool `json:"offline,omitempty"`
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
	// While Backlog > 0: BacklogStarted is when the backlog was first
	// listed, BacklogTotal the messages it has held since (done plus
	// left: done/total is how far it got), ETASeconds the estimated
	// seconds to the end at RatePerSecond, 0 while nothing was done in
	// the last minute (unknown). RatePerSecond is the messages done a
	// second over the last minute (or since the backlog began, if later),
	// with or without a backlog.
	BacklogStarted time.Time `json:"backlog_started,omitzero"`
	BacklogTotal   int       `json:"backlog_total,omitempty"`
	RatePerSecond  float64   `json:"rate_per_second,omitempty"`
	ETASeconds     int64     `json:"eta_seconds,omitempty"`
	// Processed counts the messages done since the daemon started;
	// Outcomes splits them (OutcomeDecrypted, …).
	Processed uint64            `json:"processed"`
	Outcomes  map[string]uint64 `json:"outcomes,omitempty"`
	// LastCheck is when the folder was last confirmed in sync.
	LastCheck time.Time `json:"last_check,omitzero"`
}

// Folder states as DaemonStatus names them.
const (
	FolderConnected = "connected"
	// FolderPolled is a folder checked every poll_interval on a
	// connection of its own that is given back at once
	// (daemon.max_connections leaves it no IDLE).
	FolderPolled       = "polled"
	FolderConnecting   = "connecting"
	FolderReconnecting = "reconnecting"
	FolderLoginRefused = "login_refused"
	FolderStopped      = "stopped"
	FolderNotWatched   = "not_watched"
	// FolderCopiesRefused is an account's archive folder while the server
	// refuses the copies (LastError says why).
	FolderCopiesRefused = "copies_refused"
)

// Describe says in a few words how the folder is at time now:
// "connected", "reconnecting in 8s", "login refused, retry in 15m",
// "stopped: ERROR".
func (f *FolderStatus) Describe(now time.Time) string {
	switch f.State {
	case "":
		return "-"
	case FolderNotWatched:
		return "not watched"
	case FolderCopiesRefused:
		return "copies refused"
	case FolderReconnecting:
		return waiting("reconnecting", "reconnecting in ", f.RetryAt, now)
	case FolderPolled:
		return waiting("polled", "polled, next in ", f.RetryAt, now)
	case FolderLoginRefused:
		return waiting("login refused", "login refused, retry in ", f.RetryAt, now)
	case FolderStopped:
		if f.LastError != "" {
			return "stopped: " + f.LastError
		}
		return "stopped (see the log)"
	}
	return f.State
}

// waiting is what, or soon and how long until retryAt when that is after now.
func waiting(what, soon string, retryAt, now time.Time) string {
	if retryAt.After(now) {
		return soon + ShortDuration(retryAt.Sub(now))
	}
	return what
}

// ShortDuration rounds d up to whole seconds, minutes or hours: 8s, 15m, 2h.
func ShortDuration(d time.Duration) string {
	switch {
	case d <= time.Minute:
		return fmt.Sprintf("%ds", (d+time.Second-1)/time.Second)
	case d <= time.Hour:
		return fmt.Sprintf("%dm", (d+time.Minute-1)/time.Minute)
	}
	return fmt.Sprintf("%dh", (d+time.Hour-1)/time.Hour)
}

// QueryStatus asks the daemon of cfg (found as DialConfig finds it) for
// its status. ErrNoDaemon when none answers.
func QueryStatus(ctx context.Context, cfg *config.Config) (*DaemonStatus, error) {
	path, err := findDaemon(cfg)
	if err != nil {
		return nil, err
	}
	c := &controlClient{path: path}
	st, err := callOne(ctx, c, &controlRequest{Op: opStatus}, func(f *controlFrame) *DaemonStatus { return f.Status })
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
