// Command starter is the operator CLI of companionsync: it connects orgs,
// shares and unshares data spaces, resumes metadata sync, shows and watches
// connections, downloads error logs, and runs the demo operations on the org
// store. It is a thin shell over the typed client in package control.
//
//	starter connect --home acme --companion acme-emea
//	starter share   --connection acme/acme-emea --data-space default
//	starter watch   --connection acme/acme-emea
//
// Exit codes: 0 done, 1 refused or failed (one line on stderr saying what
// and what to do), 2 usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// command is one subcommand of starter.
type command struct {
	name    string
	usage   string // the flags, as shown in the overview
	summary string
	run     func(ctx context.Context, inv *invocation, args []string) error
}

// commands are the top-level subcommands, in the order of the overview.
var commands = []command{
	{"connect", "--home H --companion C", "connect two orgs; waits for the handshake and prints the status", runConnect},
	{"share", "--connection H/C --data-space NAME", "share a data space with the companion", runShare},
	{"unshare", "--connection H/C --data-space NAME", "remove a shared data space from the companion", runUnshare},
	{"retry", "--connection H/C --data-space NAME", "retry a share in Error from its last checkpoint", runRetry},
	{"resume", "--connection H/C", "resume a metadata sync paused by a failed round", runResume},
	{"recheck", "--connection H/C", "run the licence and companion health check now", runRecheck},
	{"disconnect", "--connection H/C [--wait]", "remove every share and end the connection", runDisconnect},
	{"status", "--connection H/C [--json]", "show a connection", runStatus},
	{"list", "[--status S] [--home H] [--json]", "list connections", runList},
	{"watch", "--connection H/C", "live view with progress bars; Ctrl-C ends it", runWatch},
	{"error-log", "--connection H/C [--format csv|json] [-o FILE]", "the failed changes of the last metadata round", runErrorLog},
	{"doctor", "[--repair] [--json] [--error-after D] ...", "find what went wrong across connections, and repair what is safe", runDoctor},
	{"audit", "--connection H/C [--since D|TIME] [--json]", "who asked for what on a connection, when, and the outcome", runAudit},
	{"support-bundle", "--connection H/C [--output F]", "write one file for a support ticket: status, error log, failures", runSupportBundle},
	{"demo", "SUBCOMMAND ...", "change the demo org store (run 'starter demo' for the list)", runDemo},
}

// run is the whole CLI: it runs one command and returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	inv := &invocation{getenv: getenv, stdout: stdout, stderr: stderr}
	defer inv.close()
	return inv.exit(inv.dispatch(ctx, "starter", commands, args))
}

// dispatch runs the command of args[0] among cmds.
func (inv *invocation) dispatch(ctx context.Context, prog string, cmds []command, args []string) error {
	if len(args) == 0 {
		printOverview(inv.stderr, prog, cmds)
		return usageError{err: fmt.Errorf("%s: missing command", prog), printed: true}
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		printOverview(inv.stdout, prog, cmds)
		return nil
	}
	for _, c := range cmds {
		if c.name == name {
			return c.run(ctx, inv, args[1:])
		}
	}
	return usageError{err: fmt.Errorf("%s: unknown command %q; run '%s help' for the list", prog, name, prog)}
}

func printOverview(w io.Writer, prog string, cmds []command) {
	fmt.Fprintf(w, "usage: %s COMMAND [flags]   ('%s COMMAND -h' for its flags)\n\n", prog, prog)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range cmds {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.name, c.usage, c.summary)
	}
	tw.Flush()
	if prog == "starter" {
		fmt.Fprint(w, "\nTemporal: --address/TEMPORAL_ADDRESS (default 127.0.0.1:7233), --namespace/TEMPORAL_NAMESPACE,\n"+
			"--api-key/TEMPORAL_API_KEY, --tls-cert, --tls-key, --tls-ca/TEMPORAL_TLS_CERT, _KEY, _CA.\n")
	}
}

// usageError is a command line starter cannot run: exit code 2.
type usageError struct {
	err error
	// printed is set when the flag package already told the user.
	printed bool
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exit reports err on stderr, on one line, and returns the exit code.
func (inv *invocation) exit(err error) int {
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &usage):
		if !usage.printed {
			fmt.Fprintln(inv.stderr, oneLine(usage.Error()))
		}
		return exitUsage
	}
	fmt.Fprintln(inv.stderr, "starter:", oneLine(err.Error()))
	return exitFailed
}

// oneLine folds a multi-line message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
