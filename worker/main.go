// Command worker runs the companionsync worker. With no Temporal address it
// first starts an in-process Temporal server with the Web UI and a seeded
// demo org store, so `go run ./worker` is the whole system on one machine.
// With TEMPORAL_ADDRESS it is a plain worker of an existing cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

// usageError is a configuration the worker refuses to start with.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// run parses the configuration, starts everything, serves until ctx is done
// and shuts down in order.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	level, _ := parseLevel(cfg.LogLevel)
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	m, err := Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	m.PrintReady(stdout)
	<-ctx.Done()
	logger.Info("shutting down: stopping the worker, then the store and the server")
	return m.Close()
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
