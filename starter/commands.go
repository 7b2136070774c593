package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
)

func runConnect(ctx context.Context, inv *invocation, args []string) error {
	fs := inv.flags("connect", "--home H --companion C", "Connect the companion org to the home org. Waits for the handshake and its eligibility check,\nthen prints the status; a refused pair exits 1 naming the rule.")
	home := fs.String("home", "", "the home org (required)")
	companion := fs.String("companion", "", "the companion org (required)")
	fs.require("home", "companion")
	c, err := fs.parseAndDial(ctx, args)
	if err != nil {
		return err
	}
	ref := control.Ref{Home: *home, Companion: *companion}
	v, err := c.Connect(ctx, ref, contract.Settings{})
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.stdout, "connected %s\n\n", ref)
	printStatus(inv.stdout, v)
	return nil
}

func runShare(ctx context.Context, inv *invocation, args []string) error {
	return dataSpaceOp(ctx, inv, args, "share", "Share a data space of the home org with the companion. The initial sync runs in the background:\nfollow it with 'starter watch'.",
		(*control.Client).Share, "sharing %s with %s")
}

func runUnshare(ctx context.Context, inv *invocation, args []string) error {
	return dataSpaceOp(ctx, inv, args, "unshare", "Remove a shared data space, and its data, from the companion (from any initialization status).",
		(*control.Client).Unshare, "removing %s from %s")
}

func runRetry(ctx context.Context, inv *invocation, args []string) error {
	return dataSpaceOp(ctx, inv, args, "retry", "Retry a share in Error; the initial sync resumes from its last checkpoint.",
		(*control.Client).Retry, "retrying %s on %s")
}

// dataSpaceOp runs share, unshare or retry: one validated operation on a
// data space of a connection, then the status after it.
func dataSpaceOp(ctx context.Context, inv *invocation, args []string, name, summary string,
	op func(*control.Client, context.Context, control.Ref, string) (contract.StatusView, error), done string) error {
	fs := inv.flags(name, "--connection H/C --data-space NAME", summary)
	ref := fs.connection()
	ds := fs.String("data-space", "", "the data space (required)")
	fs.require("data-space")
	c, err := fs.parseAndDial(ctx, args)
	if err != nil {
		return err
	}
	v, err := op(c, ctx, *ref, *ds)
	if err != nil {
		return err
	}
	fmt.Fprintf(inv.stdout, done+"\n\n", *ds, ref)
	printStatus(inv.stdout, v)
	return nil
}

func runResume(ctx context.Context, inv *invocation, args []string) error {
	return connectionOp(ctx, inv, args, "resume", "Resume a metadata sync paused by a failed round (resolve the cause first); the next round starts at once.",
		(*control.Client).Resume, "resumed the metadata sync of %[1]s: the next round starts now; follow it with 'starter watch --connection %[1]s'")
}

func runRecheck(ctx context.Context, inv *invocation, args []string) error {
	return connectionOp(ctx, inv, args, "recheck", "Check the home licence and the companion now, instead of at the next health check.",
		(*control.Client).Recheck, "health check of %[1]s started; 'starter status --connection %[1]s' shows its outcome")
}

// connectionOp runs resume or recheck on a connection and says so. It
// prints no status: what they start has not happened yet when they return.
func connectionOp(ctx context.Context, inv *invocation, args []string, name, summary string,
	op func(*control.Client, context.Context, control.Ref) (contract.StatusView, error), done string) error {
	fs := inv.flags(name, "--connection H/C", summary)
	ref := fs.connection()
	c, err := fs.parseAndDial(ctx, args)
	if err != nil {
		return err
	}
	if _, err := op(c, ctx, *ref); err != nil {
		return err
	}
	fmt.Fprintf(inv.stdout, done+"\n", ref)
	return nil
}

func runDisconnect(ctx context.Context, inv *invocation, args []string) error {
	fs := inv.flags("disconnect", "--connection H/C [--wait]", "Remove every share from the companion and end the connection (from any status, Inactive included).")
	ref := fs.connection()
	wait := fs.Bool("wait", false, "wait until every share is removed and the connection reads Disconnected")
	c, err := fs.parseAndDial(ctx, args)
	if err != nil {
		return err
	}
	v, err := c.Disconnect(ctx, *ref, *wait)
	if err != nil {
		return err
	}
	if *wait {
		fmt.Fprintf(inv.stdout, "disconnected %s\n\n", ref)
	} else {
		fmt.Fprintf(inv.stdout, "disconnecting %s; follow it with 'starter watch --connection %s'\n\n", ref, ref)
	}
	printStatus(inv.stdout, v)
	return nil
}

func runStatus(ctx context.Context, inv *invocation, args []string) error {
	fs := inv.flags("status", "--connection H/C [--json]", "Show a connection: its status, each shared data space with its progress, and its metadata sync.")
	ref := fs.connection()
	asJSON := fs.Bool("json", false, "print the status as JSON")
	c, err := fs.parseAndDial(ctx, args)
	if err != nil {
		return err
	}
	v, err := c.Status(ctx, *ref)
	if err != nil {
		return err
	}
	c.LastSwept(ctx, &v)
	if *asJSON {
		return printJSON(inv.stdout, v)
	}
	printStatus(inv.stdout, v)
	return nil
}

// listable are the statuses list --status accepts.
var listable = []contract.ConnectionStatus{contract.Connecting, contract.Incomplete, contract.Active, contract.Inactive, contract.Disconnected}

func runList(ctx context.Context, inv *invocation, args []string) error {
	fs := inv.flags("list", "[--status S] [--home H] [--json]", "List connections, newest first, from visibility (search attributes).")
	status := fs.String("status", "", "only connections with this status: Connecting, Incomplete, Active, Inactive, Disconnected, or Refused (the handshake refused the pair)")
	home := fs.String("home", "", "only connections of this home org")
	protocol := fs.Int("protocol", -1, "only connections whose latest run executes this protocol (runs started before protocol 4 carry none)")
	asJSON := fs.Bool("json", false, "print the list as JSON")
	d := fs.dialer()
	if err := parse(fs, d, args); err != nil {
		return err
	}
	if *status != "" && *status != control.StatusRefused && !slices.Contains(listable, contract.ConnectionStatus(*status)) {
		return usageError{err: fmt.Errorf("starter list: --status %q: want one of Connecting, Incomplete, Active, Inactive, Disconnected or Refused (exactly as written)", *status)}
	}
	c, err := d.client(ctx)
	if err != nil {
		return err
	}
	filter := control.Filter{Status: *status, Home: *home}
	if *protocol >= 0 {
		filter.Protocol = contract.Protocol(*protocol).String()
	}
	list, err := c.List(ctx, filter)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(inv.stdout, list)
	}
	printList(inv.stdout, list)
	return nil
}

func runWatch(ctx context.Context, inv *invocation, args []string) error {
	fs := inv.flags("watch", "--connection H/C", "Show a connection live, with progress bars, redrawn twice a second until Ctrl-C\n(or until the connection reads Disconnected).")
	ref := fs.connection()
	c, err := fs.parseAndDial(ctx, args)
	if err != nil {
		return err
	}
	return watch(ctx, c, *ref, inv.stdout, watchInterval, isTerminal(inv.stdout, inv.getenv))
}

func runErrorLog(ctx context.Context, inv *invocation, args []string) error {
	fs := inv.flags("error-log", "--connection H/C [--format csv|json] [-o FILE]",
		"Print the error log of the last failed metadata round: one entry per failed change\n(sequence, data space, object, kind, message, time). Empty after a round succeeded.")
	ref := fs.connection()
	format := fs.String("format", "csv", "csv or json")
	out := fs.String("o", "", "write to this file instead of standard output")
	d := fs.dialer()
	if err := parse(fs, d, args); err != nil {
		return err
	}
	if *format != "csv" && *format != "json" {
		return usageError{err: fmt.Errorf("starter error-log: --format %q: want csv or json", *format)}
	}
	c, err := d.client(ctx)
	if err != nil {
		return err
	}
	entries, err := c.ErrorLog(ctx, *ref)
	if err != nil {
		return err
	}
	write := func(w io.Writer) error {
		if *format == "json" {
			return printJSON(w, entries)
		}
		return writeCSV(w, entries)
	}
	if *out == "" {
		return write(inv.stdout)
	}
	f, err := os.Create(*out)
	if err != nil {
		return fmt.Errorf("error log: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("error log: write %s: %w", *out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("error log: write %s: %w", *out, err)
	}
	fmt.Fprintf(inv.stdout, "wrote %d error-log %s of %s to %s\n", len(entries), plural(len(entries), "entry", "entries"), ref, *out)
	return nil
}

// parse parses the flags, then checks the connection settings.
// parseAndDial adds the Temporal connection flags, parses args, and dials
// Temporal with them; bad flags are usage errors, found before any dialling.
func (fs *flagSet) parseAndDial(ctx context.Context, args []string) (*control.Client, error) {
	d := fs.dialer()
	if err := parse(fs, d, args); err != nil {
		return nil, err
	}
	return d.client(ctx)
}

// errorLogHeader is the header row of the CSV error log.
var errorLogHeader = []string{"sequence", "dataSpace", "object", "kind", "message", "at"}

func writeCSV(w io.Writer, entries []contract.ErrorLogEntry) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(errorLogHeader)
	for _, e := range entries {
		_ = cw.Write([]string{strconv.FormatInt(e.Sequence, 10), e.DataSpace, e.Object, e.Kind, e.Message, e.At.UTC().Format(time.RFC3339)})
	}
	cw.Flush()
	return cw.Error()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// isTerminal reports whether w is a terminal, where watch redraws in place.
func isTerminal(w io.Writer, getenv func(string) string) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && !strings.EqualFold(getenv("TERM"), "dumb")
}

// parse parses args and checks the connection flags, for commands that
// check flags of their own before dialling.
func parse(fs *flagSet, d *dialer, args []string) error {
	if err := fs.parse(args); err != nil {
		return err
	}
	return d.check()
}

func runSupportBundle(ctx context.Context, inv *invocation, args []string) error {
	fs := inv.flags("support-bundle", "--connection H/C [--output F]",
		"Write one JSON file to attach to a support ticket: the connection's status and recent\n"+
			"transitions, what to do about each problem, the metadata error log, and the failure messages\n"+
			"of every run of its workflows. It holds no record contents and no secrets (keys, tokens,\n"+
			"passwords).")
	ref := fs.connection()
	out := fs.String("output", "", "the file to write (default companionsync-support-HOME-COMPANION-TIME.json; - for standard output)")
	fs.StringVar(out, "o", "", "shorthand for --output")
	storePath := fs.orgStore()
	d := fs.dialer()
	if err := parse(fs, d, args); err != nil {
		return err
	}
	c, err := d.client(ctx)
	if err != nil {
		return err
	}
	// The audit trail is in the org store; without it the bundle says so.
	if store, err := inv.openStore(ctx, *storePath); err == nil {
		c = c.WithAudit(store)
	} else {
		c = c.WithAudit(unreadableAudit{err})
	}
	b, err := c.SupportBundle(ctx, *ref)
	if err != nil {
		return err
	}
	if *out == "-" {
		return printJSON(inv.stdout, b)
	}
	path := *out
	if path == "" {
		path = fmt.Sprintf("companionsync-support-%s-%s-%s.json", ref.Home, ref.Companion, b.GeneratedAt.Format("20060102T150405Z"))
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("support bundle: %w", err)
	}
	if err := printJSON(f, b); err != nil {
		f.Close()
		return fmt.Errorf("support bundle: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("support bundle: write %s: %w", path, err)
	}
	failures := 0
	for _, r := range b.Runs {
		failures += len(r.Failures) + r.FailuresLeftOut
	}
	fmt.Fprintf(inv.stdout, "wrote %s: status %s, %d advice, %d error-log entries, %d runs, %d failures", path, b.Status.Status,
		len(b.Advice), len(b.ErrorLog), len(b.Runs), failures)
	if len(b.Unread) > 0 {
		fmt.Fprintf(inv.stdout, "; not read: %s", strings.Join(b.Unread, "; "))
	}
	fmt.Fprintln(inv.stdout)
	return nil
}

// unreadableAudit stands for an org store that could not be opened.
type unreadableAudit struct{ err error }

func (u unreadableAudit) Audit(context.Context, string, time.Time) ([]contract.AuditEntry, error) {
	return nil, u.err
}

func runAudit(ctx context.Context, inv *invocation, args []string) error {
	fs := inv.flags("audit", "--connection H/C [--since D|TIME] [--json]",
		"Print the audit trail of a connection, oldest first: every request (connect, share, unshare, retry,\n"+
			"resume, recheck, disconnect) and every repair, who asked (--as of starter, the actor a code caller\n"+
			"set, reconciler, or unattributed for the Web UI and the temporal CLI), when, and whether it was\n"+
			"accepted or refused and why. It reads the org store, and works after the connection disconnected.")
	ref := fs.connection()
	since := fs.String("since", "", "only entries from this time on: a duration back from now (24h) or an RFC 3339 time")
	asJSON := fs.Bool("json", false, "print the entries as JSON")
	storePath := fs.orgStore()
	if err := fs.parse(args); err != nil {
		return err
	}
	from, err := parseSince(*since, time.Now())
	if err != nil {
		return usageError{err: fmt.Errorf("starter audit: --since %q: %w; run 'starter audit -h' for usage", *since, err)}
	}
	store, err := inv.openStore(ctx, *storePath)
	if err != nil {
		return err
	}
	entries, err := control.New(nil).WithAudit(store).Audit(ctx, *ref, from)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(inv.stdout, entries)
	}
	if len(entries) == 0 {
		fmt.Fprintf(inv.stdout, "no requests recorded for %s%s\n", ref, sinceNote(from))
		return nil
	}
	tw := tabwriter.NewWriter(inv.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tACTOR\tREQUEST\tSUBJECT\tVIA\tOUTCOME\tREASON")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format(time.RFC3339), e.Actor, e.Request,
			or(e.Subject, "-"), e.Via, e.Outcome, e.Reason)
	}
	return tw.Flush()
}

// parseSince reads --since: empty (everything), a duration back from now,
// or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, errors.New("want a positive duration")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("want a duration such as 24h or a time such as 2026-12-01T00:00:00Z")
	}
	return t, nil
}

func sinceNote(from time.Time) string {
	if from.IsZero() {
		return ""
	}
	return " since " + from.UTC().Format(time.RFC3339)
}
