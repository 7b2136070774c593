package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
)

// What the three workflows share: one signal inbox read only by the main
// loop, one rule for when a long-lived run continues as new, and typed
// refusals.

// inbox holds a workflow's signal channels and their handlers. Only the main
// loop receives from it, so a signal that arrives while a run decides to
// continue as new is still buffered for drain.
type inbox struct {
	names    []string
	channels map[string]workflow.ReceiveChannel
	handlers map[string]func(workflow.Context, json.RawMessage)
	// waiting is set while the main loop is blocked in a selector on the
	// inbox, which by then had been delivered arrivedAtWait signals.
	waiting       bool
	arrivedAtWait int
}

func newInbox() *inbox {
	return &inbox{
		channels: map[string]workflow.ReceiveChannel{},
		handlers: map[string]func(workflow.Context, json.RawMessage){},
	}
}

// listen routes the signal name to handle. Payloads are received raw, so a
// malformed one reaches handle instead of being dropped by the SDK.
func (in *inbox) listen(ctx workflow.Context, name string, handle func(workflow.Context, json.RawMessage)) {
	// The first registration of a signal name sets its description for
	// the Web UI: this is the only place that opens signal channels.
	in.channels[name] = workflow.GetSignalChannelWithOptions(ctx, name, workflow.SignalChannelOptions{Description: describeSignal(name)})
	in.handlers[name] = handle
	in.names = append(in.names, name)
}

// addTo lets sel wake on any signal of the inbox and handle it.
func (in *inbox) addTo(ctx workflow.Context, sel workflow.Selector) {
	for _, name := range in.names {
		sel.AddReceive(in.channels[name], func(ch workflow.ReceiveChannel, _ bool) {
			var raw json.RawMessage
			in.waiting = false
			ch.Receive(ctx, &raw)
			in.handlers[name](ctx, raw)
		})
	}
}

// drain handles every signal buffered but not yet received.
func (in *inbox) drain(ctx workflow.Context) {
	for _, name := range in.names {
		for {
			var raw json.RawMessage
			if !in.channels[name].ReceiveAsync(&raw) {
				break
			}
			in.handlers[name](ctx, raw)
		}
	}
}

// count is how many of the signals delivered (arrived, per name) the inbox
// listens to.
func (in *inbox) count(arrived map[string]int) int {
	n := 0
	for _, name := range in.names {
		n += arrived[name]
	}
	return n
}

// wait marks the main loop blocked in a selector on the inbox; done, or
// any signal case of the selector, clears the mark.
func (in *inbox) wait(arrived map[string]int) {
	in.waiting, in.arrivedAtWait = true, in.count(arrived)
}

func (in *inbox) done() { in.waiting = false }

// claimed reports whether a selector blocked on the inbox has taken a
// signal it has not handled yet. A blocked selector takes the first event
// of a workflow task that is one of its cases as the task is applied, and
// runs that case only when the main loop runs next, after any update
// handler of the same task: drain cannot see that signal, and an update
// that drained before it ran would take later signals first.
func (in *inbox) claimed(arrived map[string]int) bool {
	return in.waiting && arrived != nil && in.count(arrived) > in.arrivedAtWait
}

// decodeSignal decodes an internal signal's payload into v.
func decodeSignal(raw json.RawMessage, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("malformed payload: %w", err)
	}
	return nil
}

// runBudget decides when a long-lived run continues as new: when the server
// suggests it or the history reaches the event budget. testPasses is the
// bound only the SDK's test environment needs, where history length reads 0.
type runBudget struct {
	events     int
	testPasses int
	passes     int
	// upgrade is set by SignalUpgrade on a run of an older protocol: the
	// run continues as new, onto CurrentProtocol, at its next safe point.
	upgrade bool
}

func newRunBudget(s Settings) *runBudget {
	return &runBudget{events: s.EventBudget, testPasses: s.TestPassesPerRun}
}

// count counts one pass of a main loop (or one step of a long piece of
// work) and reports whether the run is due to continue as new.
func (b *runBudget) count(ctx workflow.Context) bool {
	b.passes++
	return b.due(ctx)
}

// due reports whether the run should continue as new at its next safe point.
func (b *runBudget) due(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return b.upgrade || info.GetContinueAsNewSuggested() ||
		(b.events > 0 && info.GetCurrentHistoryLength() >= b.events) ||
		(b.testPasses > 0 && b.passes >= b.testPasses)
}

// listenUpgrade routes SignalUpgrade: a run on a protocol older than
// CurrentProtocol is due to continue as new (onto CurrentProtocol, which
// every continued run takes) at its next safe point; a current run ignores
// it. The signal also wakes a run that waits, as any signal of the inbox.
func (b *runBudget) listenUpgrade(ctx workflow.Context, signals *inbox, p Protocol) {
	signals.listen(ctx, SignalUpgrade, func(ctx workflow.Context, raw json.RawMessage) {
		var req UpgradeRequest
		if len(raw) > 0 && string(raw) != "null" {
			// The payload only names the sender: a malformed one still asks
			// for the move, which is always safe.
			_ = json.Unmarshal(raw, &req)
		}
		if !rules(p).moves {
			return
		}
		if !b.upgrade {
			workflow.GetLogger(ctx).Info("moving to the current protocol at the next safe point",
				"protocol", int(p), "current", int(CurrentProtocol), "by", req.By)
		}
		b.upgrade = true
	})
}

// protocolAfter is the protocol a run of protocol p continues as new with:
// CurrentProtocol once SignalUpgrade asked for it, p otherwise. Moves wait
// for the signal because its sender knows what the workflow cannot: that no
// worker of an earlier release still polls, which could take a task of the
// moved run (docs/design.md, "Upgrades"). A connection and its children
// move one at a time, in any order: a connection of any protocol works with
// children of any other (e2e.TestEveryProtocolMovesInEitherOrder).
//
// A run that moves writes the new protocol to its search attribute before
// it continues as new, so that the next run starts with it: the write is
// made by code that runs only after the signal, never by a run's own start,
// which a worker of an earlier release may have executed without it.
func (b *runBudget) protocolAfter(ctx workflow.Context, p Protocol) Protocol {
	if !b.upgrade || !rules(p).moves {
		return p
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, AttrProtocol.ValueSet(CurrentProtocol.String())); err != nil {
		workflow.GetLogger(ctx).Warn("could not update search attributes", "error", err)
	}
	return CurrentProtocol
}

// continueAsNew ends the run so that the next one starts with the input
// built by next: it waits for running update handlers, drains buffered
// signals into the state, and only then builds the input, so no accepted
// message is lost.
func continueAsNew(ctx workflow.Context, name string, signals *inbox, next func() any) error {
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	signals.drain(ctx)
	workflow.GetLogger(ctx).Info("continuing as new", "workflow", name,
		"historyLength", workflow.GetInfo(ctx).GetCurrentHistoryLength())
	return workflow.NewContinueAsNewError(ctx, name, next())
}

// refuse is a request refused by a validator: an application error of a
// stable type (one of the Refusal* constants) that clients match on.
func refuse(kind, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), kind, nil)
}

// refusalKind is the Refusal* type of err, or "" when err is no refusal.
func refusalKind(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Type()
	}
	return ""
}

// childGone reports whether a signal failed because its target no longer
// runs (terminated, or closed); continuing as new does not count.
func childGone(err error) bool {
	var gone *temporal.UnknownExternalWorkflowExecutionError
	return errors.As(err, &gone)
}

// reportToConnection sends a child's report to its connection workflow.
// delivered says whether the connection has it. The error is errOrphaned
// when the connection workflow is gone; any other failure returns nil, as
// the next report, or the answer to the connection's re-send, carries the
// same state.
//
// A local activity signals the report with the worker's client, retried
// for up to a minute: one marker event, where a signal sent by the
// workflow costs two and a workflow task of the child's own. A progress
// report (progressOnly:
// only counts changed, and the next report carries newer ones) is tried
// once, so a server that does not take signals for a while holds up no
// copy or removal step; it counts as not delivered.
func reportToConnection(ctx workflow.Context, home, companion, signal string, report any, progressOnly bool) (delivered bool, err error) {
	raw, err := json.Marshal(report)
	if err != nil {
		// A report type that cannot be encoded is a bug: fail the
		// workflow task, visibly, rather than stop the child as orphaned.
		panic(fmt.Sprintf("encode %s: %v", signal, err))
	}
	opts := workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second, ScheduleToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second},
		Summary:     signal,
	}
	if progressOnly {
		opts.ScheduleToCloseTimeout = opts.StartToCloseTimeout
		opts.RetryPolicy = &temporal.RetryPolicy{MaximumAttempts: 1}
	}
	ctx = workflow.WithLocalActivityOptions(ctx, opts)
	err = workflow.ExecuteLocalActivity(ctx, acts.ReportToConnection, activities.ReportInput{
		WorkflowID: ConnectionWorkflowID(home, companion), Signal: signal, Report: raw,
	}).Get(ctx, nil)
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.Type() == activities.ErrTypeWorkflowGone {
		return false, errOrphaned
	}
	if err != nil {
		workflow.GetLogger(ctx).Warn("report failed", "signal", signal, "error", err)
		return false, nil
	}
	return true, nil
}

// orphanReason says why a child stopped without being asked to.
func orphanReason(ctx workflow.Context, home, companion string) string {
	return fmt.Sprintf("stopped at %s: the connection workflow %s is gone",
		workflow.Now(ctx).UTC().Format(time.RFC3339), ConnectionWorkflowID(home, companion))
}

// errOrphaned stops a child whose connection workflow is gone.
var errOrphaned = errors.New("the connection workflow is gone")

// signalWorkflow signals the current run of workflowID and waits until the
// server accepted it. Failures are logged and returned.
func signalWorkflow(ctx workflow.Context, workflowID, name string, arg any) error {
	err := workflow.SignalExternalWorkflow(ctx, workflowID, "", name, arg).Get(ctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Warn("signal failed", "workflowID", workflowID, "signal", name, "error", err)
	}
	return err
}

// shortStepOptions are the options of a short store transaction.
type shortStepOptions struct {
	summary string
	// scheduleToClose bounds its retries; zero retries for as long as the
	// retry policy allows.
	scheduleToClose time.Duration
	retry           RetrySettings
}

// runShortStep runs one short store transaction (handshake, health check,
// deregistration, metadata count): an activity attempt is bounded to 30
// seconds. It is a local activity: one marker event, where an activity
// task costs three and a workflow task of its own.
func runShortStep(ctx workflow.Context, o shortStepOptions, activity, in any) workflow.Future {
	return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second, ScheduleToCloseTimeout: o.scheduleToClose,
		RetryPolicy: o.retry.Policy(), Summary: o.summary,
	}), activity, in)
}
