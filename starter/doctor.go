package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"go.temporal.io/sdk/converter"

	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
)

// runDoctor runs the reconciler once and prints its findings. It starts the
// reconciler workflow and waits for it rather than checking from here: one
// implementation for the schedule and the CLI, repairs made by the workers
// (which hold the org store and log each one), and the run left in the Web
// UI. Exit codes: 0 when nothing is found or everything found was
// repaired, 1 when findings remain, 2 on usage errors.
func runDoctor(ctx context.Context, inv *invocation, args []string) error {
	fs := inv.flags("doctor", "[--repair] [--json] [--error-after D] [--paused-after D] [--inactive-after D] [--removal-after D]",
		"Compare the registry with the workflows and report what is wrong: kind, connection, age and what to do.\n"+
			"--repair carries out the safe repairs now (a gone connection workflow is restarted, adopting its\n"+
			"running shares; gone shares and metadata syncs are started again) and prints what it did; nothing\n"+
			"is ever deleted. Exits 0 when nothing remains, 1 when findings remain.")
	d := contract.DefaultReconcilerInput()
	in := contract.ReconcilerInput{}
	fs.BoolVar(&in.Repair, "repair", false, "carry out the safe repairs")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.DurationVar(&in.ErrorAfter, "error-after", d.ErrorAfter, "report a share in Error for longer than this")
	fs.DurationVar(&in.PausedAfter, "paused-after", d.PausedAfter, "report a metadata sync paused for longer than this")
	fs.DurationVar(&in.InactiveAfter, "inactive-after", d.InactiveAfter, "report a connection Inactive for longer than this")
	fs.DurationVar(&in.RemovalAfter, "removal-after", d.RemovalAfter, "report a removal running for longer than this")
	fs.IntVar(&in.BatchSize, "batch-size", d.BatchSize, "at most this many repairs")
	dial := fs.dialer()
	if err := parse(fs, dial, args); err != nil {
		return err
	}
	for name, v := range map[string]time.Duration{
		"error-after": in.ErrorAfter, "paused-after": in.PausedAfter, "inactive-after": in.InactiveAfter, "removal-after": in.RemovalAfter,
	} {
		if v <= 0 {
			return usageError{err: fmt.Errorf("starter doctor: --%s %s: want a positive duration such as 30m; run 'starter doctor -h' for usage", name, v)}
		}
	}
	if in.BatchSize <= 0 {
		return usageError{err: fmt.Errorf("starter doctor: --batch-size %d: want 1 or more; run 'starter doctor -h' for usage", in.BatchSize)}
	}
	in.Actor = dial.opts.Actor
	c, err := dial.client(ctx)
	if err != nil {
		return err
	}
	// Workers of this release run no workflows while a run is on a protocol
	// they cannot run, so no reconciler would answer: say so from here.
	var conv converter.DataConverter
	if dial.opts.Keys != nil {
		conv = codec.NewDataConverter(dial.opts.Keys)
	}
	if res, err := c.Upgrade(ctx, control.UpgradeOptions{Converter: conv}); err != nil {
		return err
	} else if len(res.Unsupported) > 0 {
		fmt.Fprintf(inv.stdout, "%s\n", &control.UnsupportedError{Runs: res.Unsupported})
		return fmt.Errorf("doctor: %d running workflow(s) on a protocol this release does not run; its workers run no workflows until they are gone", len(res.Unsupported))
	}
	report, err := c.Doctor(ctx, in)
	if err != nil {
		return err
	}
	if *asJSON {
		if err := printJSON(inv.stdout, report); err != nil {
			return err
		}
	} else {
		printReport(inv.stdout, report)
	}
	if n := report.Remaining(); n > 0 {
		hint := "run 'starter doctor --repair' for the ones it can repair"
		if in.Repair {
			hint = "each says what to do"
		}
		return fmt.Errorf("doctor: %s; %s", plural(n, "1 finding remains", fmt.Sprintf("%d findings remain", n)), hint)
	}
	return nil
}

// printReport prints a reconciler report for people.
func printReport(w io.Writer, r contract.ReconcileReport) {
	fmt.Fprintf(w, "%s surveyed, %s, %d repaired, %d remaining\n",
		plural(r.Connections, "1 registered connection", fmt.Sprintf("%d registered connections", r.Connections)),
		plural(len(r.Findings), "1 finding", fmt.Sprintf("%d findings", len(r.Findings))), r.Repaired, r.Remaining())
	for _, f := range r.Findings {
		fmt.Fprintf(w, "\n%s  %s", f.Kind, f.Connection)
		if f.DataSpace != "" {
			fmt.Fprintf(w, "  data space %s", f.DataSpace)
		}
		if f.Age != "" {
			fmt.Fprintf(w, "  age %s", f.Age)
		}
		fmt.Fprintf(w, "\n  %s\n", f.Detail)
		switch {
		case f.Outcome != "":
			fmt.Fprintf(w, "  %s: %s\n", f.Outcome, f.Repair)
		case f.Repair != "":
			fmt.Fprintf(w, "  not repaired: %s\n  what to do: %s\n", f.Repair, f.Action)
		default:
			fmt.Fprintf(w, "  what to do: %s\n", f.Action)
		}
	}
}
