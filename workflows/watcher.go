package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
)

// WatcherWorkflow is the fleet watcher: one run per namespace (workflow ID
// WatcherWorkflowID) that, every min(HealthInterval, MetadataInterval), runs
// one Sweep activity reading every watched connection's health from the org
// store in a few queries and signalling only the connections whose health
// changed, and,
// every MetadataInterval, the waiting metadata syncs that have changes
// pending. It keeps no per-connection state: what each connection last saw
// is in the store, recorded by the connection. A failed sweep is logged and
// the next one reads again. It continues as new every watcherSweepsPerRun
// sweeps. Its status query returns a WatcherView; its current details show
// the last sweep.
//
// Any worker runs it; workers start it at start (a running one is kept and
// sent their periods, which it takes at once with one more sweep). While it
// does not run, connections still check on their own once per
// ResyncInterval.
func WatcherWorkflow(ctx workflow.Context, in WatcherInput) error {
	w := &watcher{in: in.WithDefaults()}
	if in.State != nil {
		w.view = *in.State
	}
	w.in.State = nil
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryStatus, func() (WatcherView, error) { return w.view, nil },
		queryOptions(describeWatcherStatus)); err != nil {
		return fmt.Errorf("register status query: %w", err)
	}
	settings := workflow.GetSignalChannelWithOptions(ctx, SignalWatcherSettings,
		workflow.SignalChannelOptions{Description: describeSignal(SignalWatcherSettings)})
	for sweeps := 0; ; sweeps++ {
		for {
			var next WatcherInput
			if !settings.ReceiveAsync(&next) {
				break
			}
			w.in = next.WithDefaults()
			w.in.State = nil
		}
		if sweeps >= watcherSweepsPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			next := w.in
			next.State = &w.view
			return workflow.NewContinueAsNewError(ctx, WatcherWorkflowName, next)
		}
		started := workflow.Now(ctx)
		w.sweep(ctx, started)
		sel := workflow.NewSelector(ctx)
		timerCtx, cancel := workflow.WithCancel(ctx)
		sel.AddFuture(workflow.NewTimerWithOptions(timerCtx, max(started.Add(w.tick()).Sub(workflow.Now(ctx)), time.Millisecond),
			workflow.TimerOptions{Summary: "next sweep"}), func(workflow.Future) {})
		sel.AddReceive(settings, func(workflow.ReceiveChannel, bool) {}) // taken at the top of the loop
		sel.Select(ctx)
		cancel()
	}
}

// watcherSweepsPerRun bounds a watcher run's history (about a dozen events
// per sweep).
const watcherSweepsPerRun = 150

type watcher struct {
	in   WatcherInput
	view WatcherView
}

// tick is the time between two sweeps: the shorter of the two periods.
func (w *watcher) tick() time.Duration { return min(w.in.HealthInterval, w.in.MetadataInterval) }

// sweep runs one Sweep. Each part rides along when the next sweep would
// come after its period has passed, so that connections learn of a change
// within one period: with the defaults (5 and 15 minutes), every sweep
// reads health and every third one pending changes too.
func (w *watcher) sweep(ctx workflow.Context, now time.Time) {
	next := now.Add(w.tick())
	health := next.After(w.view.LastSweepAt.Add(w.in.HealthInterval))
	metadata := next.After(w.view.LastMetadataSweepAt.Add(w.in.MetadataInterval))
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: min(max(w.tick(), 30*time.Second), 5*time.Minute),
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 2},
		Summary:             "sweep: read every watched connection, wake those that changed",
	})
	var res activities.SweepResult
	err := workflow.ExecuteActivity(actx, acts.Sweep, activities.SweepInput{Health: health, Metadata: metadata}).Get(ctx, &res)
	w.view.Sweeps++
	if err != nil {
		w.view.LastError = rootMessage(err)
		workflow.GetLogger(ctx).Warn("sweep failed; the next one reads again", "error", err)
	} else {
		w.view.LastError = ""
		w.view.Watched = res.Watched
		if health {
			w.view.LastSweepAt = res.At
		}
		w.view.Woken += int64(res.Woken)
		w.view.Failed += int64(res.Failed)
		if metadata {
			w.view.LastMetadataSweepAt = res.At
		}
	}
	line := fmt.Sprintf("**fleet watcher**: last sweep %s · %d connection(s) watched · %d woken, %d signal(s) failed since start · every %s (metadata every %s)",
		w.view.LastSweepAt.UTC().Format(time.RFC3339), w.view.Watched, w.view.Woken, w.view.Failed, w.in.HealthInterval, w.in.MetadataInterval)
	if w.view.LastError != "" {
		line += "\n\nlast sweep failed: " + mdCell(w.view.LastError)
	}
	workflow.SetCurrentDetails(ctx, line)
}
