package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/smimed/smimed/daemon"
	"github.com/smimed/smimed/daemon/config"
)

const runUsage = `Usage: smimed run [--config FILE]

Watches every configured account's folders (read-only) and hands each new
message to the engine: certificates of valid signatures are harvested,
untrusted ones quarantined, and one log line per message records the
decryption outcome and the verdicts. Runs until SIGTERM or SIGINT; a
second signal exits at once. SIGHUP re-reads the configuration (an
invalid one is logged and the running one kept). Speaks systemd's notify
protocol when NOTIFY_SOCKET is set.

  --config FILE   configuration file (default /etc/smimed/smimed.toml)
`

// shutdownGrace is how long the messages in hand may take after a stop
// signal.
const shutdownGrace = 10 * time.Second

func runMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run")
	configPath := fs.String("config", config.DefaultPath, "")
	rest, code, done := parseFlags(fs, args, stdout, stderr, runUsage)
	if done {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "smimed run: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	// SIGHUP's default action ends the process: catch it before anything
	// can take long.
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "smimed: %v\n", err)
		return exitUsage
	}
	var handler slog.Handler = slog.NewTextHandler(stderr, nil)
	if cfg.Daemon.LogFormat == "json" {
		handler = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(handler)
	notify := daemon.NewNotifier()
	svc, err := daemon.NewService(cfg, log, notify)
	if err != nil {
		fmt.Fprintf(stderr, "smimed: %v\n", err)
		// Exit 2 tells systemd not to restart: only for what a restart
		// cannot mend (RestartPreventExitStatus=2); a locked store or a
		// full disk is worth another try.
		var ce *config.Error
		if errors.As(err, &ce) {
			return exitUsage
		}
		return exitFailed
	}
	defer svc.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-sigs
		log.Info("stopping: finishing the messages in hand", "signal", sig.String())
		notify.Stopping()
		cancel()
		select {
		case sig = <-sigs:
			log.Warn("second signal: exiting at once", "signal", sig.String())
		case <-time.After(shutdownGrace):
			log.Warn("messages in hand not finished in time: exiting", "grace", shutdownGrace)
		}
		os.Exit(exitFailed)
	}()
	if d, ok := daemon.WatchdogInterval(); ok {
		go func() {
			t := time.NewTicker(d / 2)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					notify.Watchdog()
				}
			}
		}()
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hups:
				log.Info("SIGHUP: reloading the configuration", "config", cfg.Path)
				if err := svc.Reload(); errors.Is(err, daemon.ErrNotRunning) {
					log.Warn("SIGHUP ignored: the service is starting or stopping")
				} // other outcomes are logged by Reload
			}
		}
	}()
	log.Info("smimed running", "accounts", len(cfg.Accounts), "state_dir", cfg.StateDir, "metrics", cfg.Daemon.MetricsListen)
	if err := svc.Run(ctx); err != nil {
		log.Error("stopped with errors", "err", err)
		return exitFailed
	}
	log.Info("stopped")
	return exitOK
}
