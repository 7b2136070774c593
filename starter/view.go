package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
)

// printStatus prints a connection as a small table.
func printStatus(w io.Writer, v contract.StatusView) {
	fmt.Fprint(w, statusText(v, false))
}

// statusText renders a connection; bars adds progress bars (watch).
func statusText(v contract.StatusView, bars bool) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	status := string(v.Status)
	if v.Disconnecting && v.Status != contract.Disconnected {
		status += ", disconnecting"
	}
	if v.LastStatus != "" {
		status += fmt.Sprintf(" (workflow closed; it last reported %s: nothing runs for this connection)", v.LastStatus)
	}
	fmt.Fprintf(tw, "Connection\t%s\n", v.Connection)
	if v.Stale {
		fmt.Fprintf(tw, "Note\tno worker answered: this is the last published state, possibly stale (statuses only)\n")
	}
	fmt.Fprintf(tw, "Status\t%s\n", status)
	if v.Reason != "" {
		fmt.Fprintf(tw, "Reason\t%s\n", v.Reason)
	}
	fmt.Fprintf(tw, "Metadata sync\t%s\n", metadataText(v.MetadataSync))
	if l := v.Licence; l != nil {
		fmt.Fprintf(tw, "Home licence\texpires %s (%s); companions %d of %d used, %d free\n",
			l.ExpiresAt.UTC().Format(time.RFC3339), relative(l.ExpiresAt), l.CompanionsUsed, l.CompanionsMax,
			max(l.CompanionsMax-l.CompanionsUsed, 0))
		how := "by the connection"
		if v.Watched {
			how = "quiet: the fleet watcher reads it every sweep and wakes the connection on a change"
		}
		if !l.CheckedAt.IsZero() {
			fmt.Fprintf(tw, "Checked\t%s (%s)\n", l.CheckedAt.UTC().Format(time.RFC3339), how)
		}
	}
	if v.LastRejected != "" {
		fmt.Fprintf(tw, "Last rejected\t%s\n", v.LastRejected)
	}
	if next := nextStep(v); next != "" {
		fmt.Fprintf(tw, "Next\t%s\n", next)
	}
	tw.Flush()

	if len(v.DataSpaces) == 0 {
		if v.Status != contract.Disconnected {
			b.WriteString("\nNo data space shared.\n")
		}
		return b.String()
	}
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	if bars {
		fmt.Fprintln(tw, "Data space\tInitialization\t\tProgress")
	} else {
		fmt.Fprintln(tw, "Data space\tInitialization\tProgress")
	}
	for _, s := range v.DataSpaces {
		done, total := s.RecordsCopied, s.RecordsTotal
		what := ""
		if s.InitializationStatus == contract.RemovingSharing {
			done, total, what = s.RecordsRemoved, s.RecordsToRemove, "removed "
		}
		cells := []string{s.DataSpace, initializationText(s)}
		if bars {
			cells = append(cells, bar(done, total, 24))
		}
		if total == 0 && s.InitializationStatus != contract.ShareActive {
			// Nothing counted yet: the first step has not reported.
			cells = append(cells, "starting")
		} else {
			cells = append(cells, what+progress(done, total))
		}
		if s.Error != "" {
			cells = append(cells, s.Error)
		}
		if s.Waiting != "" {
			cells = append(cells, "waiting: "+s.Waiting)
		}
		if s.EstimatedCompletion != nil && s.InitializationStatus == contract.Activating {
			cells = append(cells, fmt.Sprintf("%.0f records/s, done about %s (%s)", s.CopyRate,
				s.EstimatedCompletion.Local().Format("15:04:05"), relative(*s.EstimatedCompletion)))
		}
		if s.RemovalDeadline != nil && s.InitializationStatus == contract.RemovingSharing {
			cells = append(cells, fmt.Sprintf("deadline %s (%s)", s.RemovalDeadline.Local().Format("15:04:05"), relative(*s.RemovalDeadline)))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	return b.String()
}

// initializationText is the status a share's workflow last reported, with
// a request it has not acknowledged yet: "Active → Removing Sharing (requested)".
func initializationText(s contract.ShareView) string {
	status := string(s.InitializationStatus)
	if status == "" {
		status = "not started"
	}
	if next := requestedStatus(s.Requested); next != "" {
		status += " → " + next + " (requested)"
	}
	if s.Orphaned != "" {
		status += " (stopped)"
	}
	return status
}

// requestedStatus is the status a request leads to.
func requestedStatus(request string) string {
	switch request {
	case contract.RequestShare:
		return string(contract.Activating)
	case contract.RequestUnshare:
		return string(contract.RemovingSharing)
	}
	return request
}

// relative reads a time as "in 4m", "2h ago" or "now", for a reader: the
// absolute time beside it is what scripts use.
func relative(at time.Time) string {
	d := time.Until(at).Round(time.Second)
	switch {
	case d > 48*time.Hour:
		return fmt.Sprintf("in %dd", int(d.Hours()/24))
	case d > 0:
		return "in " + d.String()
	case d < -48*time.Hour:
		return fmt.Sprintf("%dd ago", int(-d.Hours()/24))
	case d < 0:
		return (-d).String() + " ago"
	}
	return "now"
}

// progress reads "1200/50000 (2%)".
func progress(done, total int) string {
	pct := 100
	if total > 0 {
		pct = done * 100 / total
	}
	return fmt.Sprintf("%d/%d (%d%%)", done, total, pct)
}

// bar draws done of total as a bar of width cells.
func bar(done, total, width int) string {
	filled := 0
	if total > 0 {
		filled = min(max(done*width/total, 0), width)
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
}

func metadataText(m contract.MetadataSyncView) string {
	var s string
	switch m.Status {
	case "":
		return "not started (it starts when a shared data space is Active)"
	case contract.SyncPending:
		s = fmt.Sprintf("Pending (%d %s)", m.PendingChanges, plural(m.PendingChanges, "change", "changes"))
	case contract.SyncError:
		s = fmt.Sprintf("Error (%d failed %s)", m.ErrorCount, plural(m.ErrorCount, "change", "changes"))
		if m.Paused {
			s += ", paused"
		}
	default:
		s = string(m.Status)
	}
	if m.LastSucceededAt != nil {
		s += ", last succeeded " + m.LastSucceededAt.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	if m.Status == contract.SyncError && m.Error != "" {
		s += ": " + m.Error
	}
	if m.Requested != "" {
		s += " → " + m.Requested + " (requested)"
	}
	return s
}

// nextStep suggests what the operator can do about the connection's
// current state, or nothing when it needs nothing.
func nextStep(v contract.StatusView) string {
	ref := v.Connection
	switch {
	case v.Stale:
		return "start a worker (go run ./worker), or check that one polls the companionsync task queue"
	case v.Status == contract.Disconnected || v.Disconnecting:
		return ""
	case v.Status == contract.Inactive:
		return fmt.Sprintf("renew the licence or reactivate the companion, then 'starter recheck --connection %s'", ref)
	case v.MetadataSync.Status == contract.SyncError && v.MetadataSync.Paused:
		return fmt.Sprintf("'starter error-log --connection %s', fix the cause, then 'starter resume --connection %s'", ref, ref)
	}
	for _, s := range v.DataSpaces {
		if s.InitializationStatus == contract.ShareError {
			return fmt.Sprintf("'starter retry --connection %s --data-space %s' (or unshare it); if it fails again, create a support ticket and attach 'starter support-bundle --connection %s'",
				ref, s.DataSpace, ref)
		}
	}
	if v.Status == contract.Incomplete {
		return fmt.Sprintf("'starter share --connection %s --data-space NAME'", ref)
	}
	return ""
}

func printList(w io.Writer, list []control.Summary) {
	if len(list) == 0 {
		fmt.Fprintln(w, "No connections.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Connection\tStatus\tMetadata sync")
	for _, s := range list {
		ms := s.MetadataSyncStatus
		if ms == "" {
			ms = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Connection, s.Status, ms)
	}
	tw.Flush()
}

// watchInterval is how often watch polls the status.
const watchInterval = 500 * time.Millisecond

// watch shows the connection until ctx is done or the connection reads
// Disconnected. On a terminal it redraws in place; elsewhere it prints a
// frame each time the view changes.
func watch(ctx context.Context, c *control.Client, ref control.Ref, w io.Writer, every time.Duration, terminal bool) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last string
	shown := false
	for {
		v, err := c.Status(ctx, ref)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !shown:
			return err
		}
		var frame string
		if err != nil {
			// Keep watching through a restart of the worker or the server.
			frame = fmt.Sprintf("status of %s unavailable, retrying: %s\n", ref, oneLine(err.Error()))
		} else {
			frame = watchFrame(v)
		}
		if terminal {
			fmt.Fprintf(w, "\x1b[H\x1b[2J%s  ·  %s  ·  Ctrl-C to stop\n\n%s", ref, time.Now().UTC().Format("15:04:05 UTC"), frame)
		} else if frame != last {
			if shown {
				fmt.Fprintln(w, "---")
			}
			fmt.Fprint(w, frame)
		}
		last, shown = frame, true
		if err == nil && v.Status == contract.Disconnected {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// watchFrame is the status with progress bars and the latest transitions.
func watchFrame(v contract.StatusView) string {
	var b strings.Builder
	b.WriteString(statusText(v, true))
	if n := len(v.Transitions); n > 0 {
		b.WriteString("\nRecent changes\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, t := range v.Transitions[max(n-5, 0):] {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", t.At.UTC().Format("15:04:05"), t.Subject, t.Status, t.Detail)
		}
		tw.Flush()
	}
	return trimLines(b.String())
}

// trimLines drops the padding tabwriter leaves after empty last cells.
func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}
