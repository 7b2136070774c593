package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
)

// maxTransitions bounds the transition history kept in the state.
const maxTransitions = 20

// ConnectionState is the whole state of a connection. It is carried across
// continue-as-new, so it holds everything a new run needs.
type ConnectionState struct {
	Status     ConnectionStatus `json:"status"`
	Reason     string           `json:"reason"`
	Handshaken bool             `json:"handshaken"`
	// DataSpaces are the home org's data spaces, from the handshake and
	// refreshed by each health check; share requests are checked against them.
	DataSpaces []string                `json:"dataSpaces"`
	Shares     map[string]*ShareRecord `json:"shares"`

	Metadata        MetadataSyncView `json:"metadata"`
	MetadataStarted bool             `json:"metadataStarted"`
	ScopeSent       *SyncScope       `json:"scopeSent,omitempty"`
	ResumePending   bool             `json:"resumePending"`
	StopSent        bool             `json:"stopSent"`

	RecheckPending  bool      `json:"recheckPending"`
	NextHealthCheck time.Time `json:"nextHealthCheck"`

	Disconnecting bool         `json:"disconnecting"`
	LastRejected  string       `json:"lastRejected"`
	Transitions   []Transition `json:"transitions"`
}

// ShareRecord is the connection's record of one share: the last view its
// workflow reported, and the requests still to be sent to it.
type ShareRecord struct {
	View           ShareView `json:"view"`
	Started        bool      `json:"started"`
	Unshared       bool      `json:"unshared"`
	UnsharePending bool      `json:"unsharePending"`
	RetryPending   bool      `json:"retryPending"`
}

// ConnectionWorkflow owns one companion connection: the handshake, the
// Connection Status, periodic health checks, one child per shared data space,
// the metadata-sync child and the disconnect. It returns the final status
// view once a disconnect has removed every share, and fails with an
// Ineligible application error when the handshake refuses the pair.
func ConnectionWorkflow(ctx workflow.Context, in ConnectionInput) (StatusView, error) {
	c := newConnection(ctx, in)
	if err := c.registerHandlers(ctx); err != nil {
		return StatusView{}, err
	}
	return c.run(ctx)
}

// connection is the running state of a ConnectionWorkflow.
type connection struct {
	ConnectionState
	home, companion string
	settings        Settings
	logger          log.Logger

	// wake is signalled by update handlers to wake the main loop.
	wake workflow.Channel
	// refused is the handshake's refusal, for await-connected callers.
	refused error
	// signals are the operator signal channels, drained before continue-as-new.
	signals     map[string]workflow.ReceiveChannel
	handlers    map[string]func(workflow.Context, json.RawMessage)
	signalOrder []string
	// published are the search-attribute values last written.
	published map[string]string
	// loopsThisRun bounds a run deterministically, even where the history
	// length is not known (the SDK's test environment).
	loopsThisRun int
}

// eventsPerLoop is an upper bound of the history events one pass of the main
// loop adds when it handles one message or one health check.
const eventsPerLoop = 30

func newConnection(ctx workflow.Context, in ConnectionInput) *connection {
	c := &connection{
		home:      in.Home,
		companion: in.Companion,
		settings:  in.Settings.withDefaults(),
		logger:    workflow.GetLogger(ctx),
		published: map[string]string{},
	}
	if in.State != nil {
		c.ConnectionState = *in.State
	} else {
		c.Status = Connecting
		c.transition(ctx, subjectConnection, string(Connecting), "handshake and eligibility check")
	}
	if c.Shares == nil {
		c.Shares = map[string]*ShareRecord{}
	}
	return c
}

func (c *connection) run(ctx workflow.Context) (StatusView, error) {
	c.publish(ctx)
	if !c.Handshaken {
		if err := c.handshake(ctx); err != nil {
			// Let await-connected callers learn the refusal before the run ends.
			_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
			return StatusView{}, err
		}
	}
	for {
		c.loopsThisRun++
		c.reconcile(ctx)
		if c.Disconnecting && c.drained() {
			return c.finishDisconnect(ctx)
		}
		if c.healthCheckDue(ctx) {
			c.checkHealth(ctx)
			continue
		}
		if c.shouldContinueAsNew(ctx) {
			return StatusView{}, c.continueAsNew(ctx)
		}
		c.waitForChange(ctx)
	}
}

// handshake runs the eligibility check and registration. An ineligible pair
// ends the workflow with the activity's non-retryable error.
func (c *connection) handshake(ctx workflow.Context) error {
	var res activities.HandshakeResult
	err := workflow.ExecuteActivity(c.activityCtx(ctx, "handshake and eligibility check"), acts.Handshake,
		activities.HandshakeInput{Home: c.home, Companion: c.companion, Token: workflow.GetInfo(ctx).WorkflowExecution.ID + "/" + workflow.GetInfo(ctx).OriginalRunID},
	).Get(ctx, &res)
	if err != nil {
		c.refused = err
		c.Reason = "refused: " + rootMessage(err)
		c.transition(ctx, subjectConnection, "Refused", c.Reason)
		c.publish(ctx)
		return err
	}
	c.Handshaken = true
	c.DataSpaces = res.DataSpaces
	c.Reason = ""
	c.NextHealthCheck = workflow.Now(ctx).Add(c.settings.HealthCheckInterval)
	c.setStatus(ctx, Incomplete, "handshake passed; share a data space to activate")
	return nil
}

// reconcile sends every pending request to the children and starts the ones
// that should be running.
func (c *connection) reconcile(ctx workflow.Context) {
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		c.reconcileShare(ctx, ds, c.Shares[ds])
	}
	c.reconcileMetadata(ctx)
	c.publish(ctx)
}

func (c *connection) reconcileShare(ctx workflow.Context, ds string, sh *ShareRecord) {
	if !sh.Started {
		// A new run embodies the pending requests: it starts in removal when
		// the share was unshared, and from the beginning otherwise.
		if err := c.startShare(ctx, ds, sh); err != nil {
			c.logger.Error("could not start share workflow", "dataSpace", ds, "error", err)
			sh.View.InitializationStatus = ShareError
			sh.View.Error = "could not start the share workflow: " + err.Error() + "; retry or unshare"
			sh.UnsharePending, sh.RetryPending = false, false
			return
		}
		sh.Started = true
		sh.UnsharePending, sh.RetryPending = false, false
		return
	}
	id := ShareWorkflowID(c.home, c.companion, ds)
	for _, req := range []struct {
		pending *bool
		signal  string
	}{{&sh.UnsharePending, MessageUnshare}, {&sh.RetryPending, MessageRetry}} {
		if !*req.pending {
			continue
		}
		*req.pending = false
		if childGone(c.signalChild(ctx, id, req.signal, nil)) {
			// The share's workflow is gone (terminated, or closed early):
			// start it again to carry out the request.
			sh.Started = false
			c.reconcileShare(ctx, ds, sh)
			return
		}
	}
}

// childGone reports whether a signal failed because its target no longer runs.
func childGone(err error) bool {
	var gone *temporal.UnknownExternalWorkflowExecutionError
	return errors.As(err, &gone)
}

// startShare starts the share's child workflow and waits until it runs. A
// previous run of the same share that is still closing is waited for.
func (c *connection) startShare(ctx workflow.Context, ds string, sh *ShareRecord) error {
	opts := workflow.ChildWorkflowOptions{
		WorkflowID:        ShareWorkflowID(c.home, c.companion, ds),
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
		StaticSummary:     fmt.Sprintf("%s → %s · %s", c.home, c.companion, ds),
		TypedSearchAttributes: temporal.NewSearchAttributes(
			AttrHomeOrg.ValueSet(c.home), AttrCompanionOrg.ValueSet(c.companion),
			AttrDataSpace.ValueSet(ds), AttrInitializationStatus.ValueSet(string(Activating)),
		),
	}
	in := ShareInput{Home: c.home, Companion: c.companion, DataSpace: ds, Settings: c.settings}
	if sh.Unshared {
		in.State = &ShareState{View: sh.View, Removing: true}
	}
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		child := workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, opts), ShareWorkflowName, in)
		if err = child.GetChildWorkflowExecution().Get(ctx, nil); err == nil {
			return nil
		}
		if !temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			return err
		}
		_ = workflow.Sleep(ctx, time.Second)
	}
	return err
}

func (c *connection) reconcileMetadata(ctx workflow.Context) {
	scope := c.desiredScope()
	if !c.MetadataStarted {
		if len(scope.DataSpaces) == 0 || scope.Suspended || c.Disconnecting {
			return
		}
		if err := c.startMetadataSync(ctx, scope); err != nil {
			c.logger.Error("could not start metadata sync", "error", err)
			return
		}
		c.MetadataStarted = true
		c.ScopeSent = &scope
	}
	id := MetadataSyncWorkflowID(c.home, c.companion)
	if c.Disconnecting {
		if !c.StopSent && !c.Metadata.Stopped {
			c.StopSent = true
			if childGone(c.signalChild(ctx, id, SignalStop, nil)) {
				c.Metadata.Stopped = true
			}
		}
		return
	}
	gone := false
	if c.ScopeSent == nil || !sameScope(*c.ScopeSent, scope) {
		c.ScopeSent = &scope
		gone = childGone(c.signalChild(ctx, id, SignalScope, scope))
	}
	if c.ResumePending && !gone {
		c.ResumePending = false
		if gone = childGone(c.signalChild(ctx, id, MessageResume, nil)); gone {
			c.Metadata.Paused = false // the restarted sync starts with a round
		}
	}
	if gone {
		// Start the metadata sync again from the state it last reported.
		c.MetadataStarted, c.ScopeSent = false, nil
		c.reconcileMetadata(ctx)
	}
}

func (c *connection) startMetadataSync(ctx workflow.Context, scope SyncScope) error {
	opts := workflow.ChildWorkflowOptions{
		WorkflowID:        MetadataSyncWorkflowID(c.home, c.companion),
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
		StaticSummary:     fmt.Sprintf("%s → %s · metadata sync", c.home, c.companion),
		TypedSearchAttributes: temporal.NewSearchAttributes(
			AttrHomeOrg.ValueSet(c.home), AttrCompanionOrg.ValueSet(c.companion),
		),
	}
	in := MetadataSyncInput{Home: c.home, Companion: c.companion, Scope: scope, Settings: c.settings, State: c.Metadata}
	return workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, opts), MetadataSyncWorkflowName, in).
		GetChildWorkflowExecution().Get(ctx, nil)
}

// desiredScope is what the metadata sync should cover now: the data spaces
// whose share is Active and not being removed, suspended while Inactive.
func (c *connection) desiredScope() SyncScope {
	scope := SyncScope{Suspended: c.Status == Inactive, DataSpaces: []string{}}
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		sh := c.Shares[ds]
		if sh.View.InitializationStatus == ShareActive && !sh.Unshared {
			scope.DataSpaces = append(scope.DataSpaces, ds)
		}
	}
	return scope
}

func sameScope(a, b SyncScope) bool {
	return a.Suspended == b.Suspended && slices.Equal(a.DataSpaces, b.DataSpaces)
}

// signalChild sends a signal to a child by workflow ID, so it reaches the
// child's current run. Failures are logged and returned.
func (c *connection) signalChild(ctx workflow.Context, workflowID, name string, arg any) error {
	var err error
	if arg == nil {
		err = workflow.SignalExternalWorkflow(ctx, workflowID, "", name, nil).Get(ctx, nil)
	} else {
		err = workflow.SignalExternalWorkflow(ctx, workflowID, "", name, arg).Get(ctx, nil)
	}
	if err != nil {
		c.logger.Warn("signal to child failed", "workflowID", workflowID, "signal", name, "error", err)
	}
	return err
}

// checkHealth runs the health check and moves the connection between Active
// or Incomplete and Inactive. A failing check changes nothing and is retried
// at the next interval.
func (c *connection) checkHealth(ctx workflow.Context) {
	c.RecheckPending = false
	c.NextHealthCheck = workflow.Now(ctx).Add(c.settings.HealthCheckInterval)
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 2 * time.Minute,
		RetryPolicy:            c.settings.ActivityRetry.policy(),
		Summary:                "health check: home licence and companion activity",
	})
	var res activities.HealthResult
	if err := workflow.ExecuteActivity(actx, acts.CheckHealth,
		activities.HealthInput{Home: c.home, Companion: c.companion}).Get(ctx, &res); err != nil {
		c.logger.Warn("health check failed; keeping the current status", "error", err)
		return
	}
	if len(res.DataSpaces) > 0 {
		c.DataSpaces = res.DataSpaces
	}
	if c.Disconnecting {
		return
	}
	switch {
	case !res.Healthy:
		if c.Status != Inactive || c.Reason != res.Reason {
			c.Reason = res.Reason
			c.setStatus(ctx, Inactive, res.Reason)
		}
	case c.Status == Inactive:
		c.Reason = ""
		c.setStatus(ctx, c.functioningStatus(), "health check passed")
	}
	c.publish(ctx)
}

// functioningStatus is the status of a healthy connection: Active with at
// least one share, Incomplete without.
func (c *connection) functioningStatus() ConnectionStatus {
	if len(c.Shares) > 0 {
		return Active
	}
	return Incomplete
}

// healthCheckDue reports whether a health check should run now: at its
// interval, or at once after a recheck request.
func (c *connection) healthCheckDue(ctx workflow.Context) bool {
	if c.Status == Connecting || c.Disconnecting {
		return false
	}
	return c.RecheckPending || !workflow.Now(ctx).Before(c.NextHealthCheck)
}

// drained reports whether a disconnect has nothing left to wait for.
func (c *connection) drained() bool {
	return len(c.Shares) == 0 && (!c.MetadataStarted || c.Metadata.Stopped)
}

func (c *connection) finishDisconnect(ctx workflow.Context) (StatusView, error) {
	err := workflow.ExecuteActivity(c.activityCtx(ctx, "deregister the connection"), acts.Disconnect,
		activities.DisconnectInput{Home: c.home, Companion: c.companion}).Get(ctx, nil)
	if err != nil {
		return StatusView{}, fmt.Errorf("deregister %s: %w", Reference(c.home, c.companion), err)
	}
	c.Reason = "disconnected by operator"
	c.setStatus(ctx, Disconnected, "every share removed")
	c.publish(ctx)
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return StatusView{}, err
	}
	return c.view(), nil
}

// waitForChange blocks until a signal or an update arrives or the next
// health check is due, then applies every signal already buffered. Signals
// are received only here, by the main loop, so one that arrives as the run
// decides to continue as new is still in its channel for drainSignals.
func (c *connection) waitForChange(ctx workflow.Context) {
	sel := workflow.NewSelector(ctx)
	for _, name := range c.signalOrder {
		sel.AddReceive(c.signals[name], func(ch workflow.ReceiveChannel, _ bool) {
			var raw json.RawMessage
			ch.Receive(ctx, &raw)
			c.handlers[name](ctx, raw)
		})
	}
	sel.AddReceive(c.wake, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, nil) })
	if c.Status != Connecting && !c.Disconnecting {
		timerCtx, cancel := workflow.WithCancel(ctx)
		defer cancel()
		timer := workflow.NewTimerWithOptions(timerCtx, c.NextHealthCheck.Sub(workflow.Now(ctx)),
			workflow.TimerOptions{Summary: "next health check"})
		sel.AddFuture(timer, func(workflow.Future) {})
	}
	sel.Select(ctx)
	for sel.HasPending() {
		sel.Select(ctx)
	}
}

func (c *connection) shouldContinueAsNew(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= c.settings.EventBudget ||
		c.loopsThisRun >= max(1, c.settings.EventBudget/eventsPerLoop)
}

// continueAsNew waits for running handlers, applies every buffered signal and
// continues as new with the whole state.
func (c *connection) continueAsNew(ctx workflow.Context) error {
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	c.drainSignals(ctx)
	state := c.ConnectionState
	c.logger.Info("continuing as new", "historyLength", workflow.GetInfo(ctx).GetCurrentHistoryLength())
	return workflow.NewContinueAsNewError(ctx, ConnectionWorkflowName, ConnectionInput{
		Home: c.home, Companion: c.companion, Settings: c.settings, State: &state,
	})
}

func (c *connection) activityCtx(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         c.settings.ActivityRetry.policy(),
		Summary:             summary,
	})
}

// setStatus changes the Connection Status and records the transition.
func (c *connection) setStatus(ctx workflow.Context, s ConnectionStatus, detail string) {
	if c.Status == s {
		return
	}
	c.Status = s
	c.transition(ctx, subjectConnection, string(s), detail)
}

// Subjects of transitions.
const (
	subjectConnection   = "connection"
	subjectMetadataSync = "metadata sync"
)

func subjectShare(ds string) string { return "data space " + ds }

func (c *connection) transition(ctx workflow.Context, subject, status, detail string) {
	c.Transitions = append(c.Transitions, Transition{At: workflow.Now(ctx), Subject: subject, Status: status, Detail: detail})
	if n := len(c.Transitions); n > maxTransitions {
		c.Transitions = slices.Clone(c.Transitions[n-maxTransitions:])
	}
}

// view is the status query's answer.
func (c *connection) view() StatusView {
	v := StatusView{
		Connection:    Reference(c.home, c.companion),
		Status:        c.Status,
		Reason:        c.Reason,
		Disconnecting: c.Disconnecting,
		DataSpaces:    []ShareView{},
		MetadataSync:  c.Metadata,
		LastRejected:  c.LastRejected,
		Transitions:   slices.Clone(c.Transitions),
	}
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		v.DataSpaces = append(v.DataSpaces, c.Shares[ds].View)
	}
	return v
}

// publish writes the search attributes that changed and the current details
// shown in the Web UI.
func (c *connection) publish(ctx workflow.Context) {
	want := map[string]string{
		AttrConnectionStatus.GetName():   string(c.Status),
		AttrMetadataSyncStatus.GetName(): string(c.Metadata.Status),
		AttrHomeOrg.GetName():            c.home,
		AttrCompanionOrg.GetName():       c.companion,
	}
	var updates []temporal.SearchAttributeUpdate
	for _, key := range []temporal.SearchAttributeKeyKeyword{AttrConnectionStatus, AttrMetadataSyncStatus, AttrHomeOrg, AttrCompanionOrg} {
		name := key.GetName()
		if v, ok := c.published[name]; ok && v == want[name] {
			continue
		}
		c.published[name] = want[name]
		if want[name] == "" {
			updates = append(updates, key.ValueUnset())
		} else {
			updates = append(updates, key.ValueSet(want[name]))
		}
	}
	if len(updates) > 0 {
		if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
			c.logger.Warn("could not update search attributes", "error", err)
		}
	}
	workflow.SetCurrentDetails(ctx, c.details())
}

// details renders the status as a small markdown table for the Web UI.
func (c *connection) details() string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s → %s**\n\n", c.home, c.companion)
	fmt.Fprintf(&b, "| | status | detail |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| Connection | %s | %s |\n", c.Status, mdCell(c.connectionDetail()))
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		v := c.Shares[ds].View
		fmt.Fprintf(&b, "| Data space `%s` | %s | %s |\n", ds, v.InitializationStatus, mdCell(shareDetail(v)))
	}
	if c.Metadata.Status != "" {
		fmt.Fprintf(&b, "| Metadata sync | %s | %s |\n", c.Metadata.Status, mdCell(metadataDetail(c.Metadata)))
	}
	if c.LastRejected != "" {
		fmt.Fprintf(&b, "\nLast rejected message: %s\n", mdCell(c.LastRejected))
	}
	return b.String()
}

func (c *connection) connectionDetail() string {
	if c.Disconnecting {
		return fmt.Sprintf("disconnecting: %d share(s) left to remove", len(c.Shares))
	}
	return c.Reason
}

func shareDetail(v ShareView) string {
	switch v.InitializationStatus {
	case Activating:
		return fmt.Sprintf("%d of %d records copied", v.RecordsCopied, v.RecordsTotal)
	case RemovingSharing:
		return fmt.Sprintf("%d of %d records removed", v.RecordsRemoved, v.RecordsToRemove)
	case ShareError:
		return v.Error
	}
	return fmt.Sprintf("%d records", v.RecordsTotal)
}

func metadataDetail(m MetadataSyncView) string {
	switch m.Status {
	case SyncPending:
		return fmt.Sprintf("%d change(s) pending", m.PendingChanges)
	case SyncError:
		return fmt.Sprintf("paused: %d error(s): %s", m.ErrorCount, m.Error)
	}
	return ""
}

func mdCell(s string) string { return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s) }

// rootMessage is the message of the innermost error: the activity's own words
// rather than the SDK's wrapping.
func rootMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// acts is the nil receiver through which workflows name activities.
var acts *activities.Activities
