// Package daemon is `smimed run`, the running service: one IMAP watcher
// per folder with a shared worker pool and per-folder checkpoints, the
// sink that archives each message and makes the user's copy, reload,
// sd_notify, the metrics, and the control socket it serves (package
// admin) while it holds the state file. The configuration it runs with is
// package config's.
package daemon
