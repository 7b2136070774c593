package workflows

import (
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

// startRetryDelay is how long the connection waits before it starts a
// share again whose previous run with the same ID is still closing.
const startRetryDelay = time.Second

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
	signals         *inbox
	budget          *runBudget

	// wake is signalled by update handlers to wake the main loop.
	wake workflow.Channel
	// refused is the handshake's refusal, for await-connected callers.
	refused error
	// published are the search-attribute values last written.
	published map[string]string
	// healthTimer fires at healthTimerAt; it lives across passes of the
	// main loop and is replaced only when the next check moves.
	healthTimer   workflow.Future
	healthTimerAt time.Time
	cancelHealth  workflow.CancelFunc
	// startAgainAt is when shares whose start found a closing run are tried
	// again; zero when none waits.
	startAgainAt time.Time
	startTimer   workflow.Future
	// protocol is the protocol the run executes (see Protocol).
	protocol Protocol
	// releases counts the moments (health checks) at which updates waiting
	// for an acknowledgement answer with their request shown as requested;
	// draining releases every one before continue-as-new.
	releases int
	draining bool
	// inflight are the signals of this pass still to be confirmed (they
	// are all sent, then waited for).
	inflight []inflightSignal
	// runID is this run's ID: children it starts report their end to it by
	// completing.
	runID string
	// ends are the results of children this run started, not applied yet.
	// Those ready are applied before a message is taken and at the top of
	// the main loop, as reports are taken before messages: the server may
	// record a signal before the end of a child that closed first, and a
	// request sent after a child ended must not meet the state from before
	// the end.
	ends []*childEnd
}

// childEnd is the result of a child workflow this run started: apply takes
// it once the child has ended and reports whether it changed anything.
type childEnd struct {
	child   workflow.Future
	apply   func(ctx workflow.Context) bool
	applied bool
}

// inflightSignal is a signal sent to a child and what to do once the server
// confirmed or refused it.
type inflightSignal struct {
	sent workflow.Future
	done func(err error)
}

// versionProtocolChosenByWorkflow guards the choice of a new connection's
// protocol by the workflow code (CurrentProtocol) instead of its starter:
// runs recorded before it took the starter's.
const versionProtocolChosenByWorkflow = "protocol-chosen-by-workflow"

// startProtocol is the protocol the run executes: a continued run's input
// carries it (and a protocol newer than this code fails the task, see
// checkProtocol); a new or adopted connection takes CurrentProtocol,
// whatever its starter sent.
func startProtocol(ctx workflow.Context, in ConnectionInput) Protocol {
	if in.State != nil {
		checkProtocol(ConnectionWorkflowName, in.Protocol)
		return in.Protocol
	}
	if workflow.GetVersion(ctx, versionProtocolChosenByWorkflow, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return in.Protocol
	}
	return CurrentProtocol
}

func newConnection(ctx workflow.Context, in ConnectionInput) *connection {
	in.Protocol = startProtocol(ctx, in)
	checkProtocol(ConnectionWorkflowName, in.Protocol)
	c := &connection{
		home:      in.Home,
		companion: in.Companion,
		settings:  in.Settings.WithDefaults(),
		logger:    workflow.GetLogger(ctx),
		published: map[string]string{},
		signals:   newInbox(),
		protocol:  in.Protocol,
	}
	// What the run started with (the starter's or the previous run's
	// search attributes) need not be written again.
	sas := workflow.GetTypedSearchAttributes(ctx)
	for _, key := range append(publishedAttrs, AttrProtocol) {
		if v, ok := sas.GetKeyword(key); ok {
			c.published[key.GetName()] = v
		}
	}
	c.budget = &runBudget{events: c.settings.EventBudget}
	c.budget.listenUpgrade(ctx, c.signals, c.protocol)
	switch {
	case in.State != nil:
		c.ConnectionState = *in.State
	case in.Adopt != nil:
		c.adopt(ctx, in.Adopt)
	default:
		c.Status = Connecting
		c.transition(ctx, subjectConnection, string(Connecting), "handshake and eligibility check")
	}
	if c.Shares == nil {
		c.Shares = map[string]*ShareRecord{}
	}
	c.runID = workflow.GetInfo(ctx).WorkflowExecution.RunID
	c.handOver()
	return c
}

// handOver makes a continued run ask the children an earlier run started,
// and that may end on their own (a removal, a stop), to report their end by
// signal: their completion would reach the run that started them, which is
// closed. The probe tells them; one that ended meanwhile is found gone and
// started again, and ends at once, under this run.
func (c *connection) handOver() {
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		sh := c.Shares[ds]
		if sh.Running && sh.StartedBy != "" && sh.StartedBy != c.runID && sh.Desired.Intent == IntentRemoved {
			sh.Probe = true
		}
	}
	if m := &c.Metadata; m.Running && m.StartedBy != "" && m.StartedBy != c.runID && m.Desired.Stop {
		m.Probe = true
	}
}

func (c *connection) run(ctx workflow.Context) (StatusView, error) {
	c.publish(ctx)
	if breakUpgrade {
		_ = workflow.Sleep(ctx, time.Millisecond)
	}
	if !c.Handshaken {
		if err := c.handshake(ctx); err != nil {
			// Let await-connected callers learn the refusal before the run ends.
			_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
			return StatusView{}, err
		}
	}
	for {
		// Every pass takes what arrived meanwhile, so reports are applied
		// even when the loop has work on every pass (health checks due
		// under a stream of rechecks) and never waits; children's ends
		// first (endsFirst), as reports come before messages.
		c.applyEnds(ctx)
		c.signals.drain(ctx)
		c.reconcile(ctx)
		if c.Disconnecting && c.drained() {
			return c.finishDisconnect(ctx)
		}
		// Published here rather than by reconcile: a finishing
		// disconnect publishes once, its final status.
		c.publish(ctx)
		if c.budget.count(ctx) {
			// Updates still waiting answer now with their requests
			// shown as requested; the next run carries them out.
			c.draining = true
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return StatusView{}, err
			}
			c.applyEnds(ctx)
			return StatusView{}, continueAsNew(ctx, ConnectionWorkflowName, c.signals, func() any {
				state := c.ConnectionState
				return ConnectionInput{Home: c.home, Companion: c.companion, Settings: c.settings, State: &state, Protocol: c.budget.protocolAfter(ctx, c.protocol)}
			})
		}
		if c.healthCheckDue(ctx) {
			c.checkHealth(ctx)
			continue
		}
		c.waitForChange(ctx)
	}
}

// handshake runs the eligibility check and registration. An ineligible pair
// ends the workflow with the activity's non-retryable error.
func (c *connection) handshake(ctx workflow.Context) error {
	var res activities.HandshakeResult
	info := workflow.GetInfo(ctx)
	err := c.shortStep(ctx, "handshake and eligibility check", 0, acts.Handshake,
		activities.HandshakeInput{Home: c.home, Companion: c.companion, Token: info.WorkflowExecution.ID + "/" + info.OriginalRunID},
	).Get(ctx, &res)
	if err != nil {
		c.refused = err
		c.Reason = "refused: " + rootMessage(err)
		c.transition(ctx, subjectConnection, Refused, c.Reason)
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

// nextGeneration hands out a new generation.
func (c *connection) nextGeneration() int64 {
	c.Generation++
	return c.Generation
}

// reconcile gives every child the desired state it has not been given and
// starts the children that should run but do not.
func (c *connection) reconcile(ctx workflow.Context) {
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		// A share can end while this pass waits on another's start (a
		// report drained by an update handler, or a share's result).
		if sh := c.Shares[ds]; sh != nil {
			c.reconcileShare(ctx, ds, sh)
		}
	}
	c.reconcileMetadata(ctx)
	c.confirmSignals(ctx)
}

// signalChild signals a child's current run and calls done with the
// outcome: every signal of the pass is sent first, and confirmSignals waits
// for them together.
func (c *connection) signalChild(ctx workflow.Context, workflowID, name string, arg any, done func(err error)) {
	c.inflight = append(c.inflight, inflightSignal{
		sent: workflow.SignalExternalWorkflow(ctx, workflowID, "", name, arg),
		done: func(err error) {
			if err != nil {
				c.logger.Warn("signal failed", "workflowID", workflowID, "signal", name, "error", err)
			}
			done(err)
		},
	})
}

// confirmSignals waits for the signals sent in this pass, in order.
func (c *connection) confirmSignals(ctx workflow.Context) {
	for len(c.inflight) > 0 {
		s := c.inflight[0]
		c.inflight = c.inflight[1:]
		s.done(s.sent.Get(ctx, nil))
	}
}

func (c *connection) reconcileShare(ctx workflow.Context, ds string, sh *ShareRecord) {
	if sh.Probe && c.probeShare(ctx, ds, sh) {
		return
	}
	if sh.Sent >= sh.Desired.Generation || sh.Problem != "" {
		return
	}
	if sh.Running {
		desired := sh.Desired
		desired.Complete = sh.StartedBy == c.runID
		c.signalChild(ctx, ShareWorkflowID(c.home, c.companion, ds), SignalShareDesired, desired, func(err error) {
			if c.Shares[ds] != sh {
				return // removed, or shared anew, meanwhile
			}
			switch {
			case err == nil:
				sh.Sent = max(sh.Sent, desired.Generation)
				c.shareAcknowledged(ctx, ds, sh, sh.Observed.View, desired)
				return
			case err == nil:
				sh.Sent = sh.Desired.Generation
				return
			case !childGone(err):
				return // sent again at the next health check
			}
			// The share's workflow is gone: start it again to carry out the request.
			sh.Running = false
			if !workflow.Now(ctx).Before(c.startAgainAt) {
				c.startShare(ctx, ds, sh)
			}
		})
		return
	}
	if workflow.Now(ctx).Before(c.startAgainAt) {
		return
	}
	c.startShare(ctx, ds, sh)
}

// awaitShareEnd reads the result of a share's workflow this run started: the
// end of its removal (ProtocolDeliveryAck). Any other end is found by the
// next signal to it.
func (c *connection) awaitShareEnd(ctx workflow.Context, ds string, sh *ShareRecord, child workflow.ChildWorkflowFuture) {
	c.awaitEnd(ctx, child, func(ctx workflow.Context) bool {
		var v ShareView
		if err := child.Get(ctx, &v); err != nil || !v.Removed || c.Shares[ds] != sh {
			return false
		}
		v.DataSpace = ds
		c.applyShareReport(ctx, ShareReport{Generation: max(sh.Observed.Generation, sh.Since), View: v})
		return true
	})
}

// awaitEnd applies a child's result when the child ends: from a goroutine
// of its own, which wakes the main loop, or, under endsFirst, before a
// message or a pass of the main loop that comes first.
func (c *connection) awaitEnd(ctx workflow.Context, child workflow.Future, apply func(ctx workflow.Context) bool) {
	end := &childEnd{child: child, apply: apply}
	c.ends = append(c.ends, end)
	workflow.Go(ctx, func(ctx workflow.Context) {
		_ = child.Get(ctx, nil)
		if c.applyEnd(ctx, end) {
			c.wake.SendAsync(nil)
		}
	})
}

// applyEnd applies a ready child's result once; it reports whether that
// changed anything.
func (c *connection) applyEnd(ctx workflow.Context, end *childEnd) bool {
	if end.applied || !end.child.IsReady() {
		return false
	}
	end.applied = true
	return end.apply(ctx)
}

// applyEnds applies the results of the children that have ended
// (endsFirst) and forgets them.
func (c *connection) applyEnds(ctx workflow.Context) {
	c.ends = slices.DeleteFunc(c.ends, func(end *childEnd) bool {
		c.applyEnd(ctx, end)
		return end.applied
	})
}

// shareAcknowledged takes the acknowledgement of a desired state by a share's
// workflow, from its start or from the delivery of a signal
// (ProtocolDeliveryAck): the workflow applies ackShare to its view, so the
// connection does the same to the view it knows, unless a report of that
// generation came first.
func (c *connection) shareAcknowledged(ctx workflow.Context, ds string, sh *ShareRecord, from ShareView, d ShareDesired) {
	if sh.Observed.Generation >= d.Generation {
		return
	}
	v := ackShare(from, d)
	v.DataSpace = ds
	c.applyShareReport(ctx, ShareReport{Generation: d.Generation, View: v})
}

// startShare starts the share's workflow with the desired state. A previous
// run of the same share that is still closing is tried again a moment later,
// without blocking the main loop; requests accepted meanwhile only raise the
// desired generation, which the next pass sends.
func (c *connection) startShare(ctx workflow.Context, ds string, sh *ShareRecord) {
	desired, initial := sh.Desired, Activating
	if desired.Intent == IntentRemoved {
		initial = RemovingSharing
	}
	// from is the view the new run starts with, before its input's desired
	// state; a restart continues from the last report.
	restart := sh.Observed.Generation > 0 || sh.Checkpoint != ""
	from := ShareView{DataSpace: ds}
	if restart {
		from = sh.Observed.View
	}
	// The search attribute starts as the status the new run will have.
	initial = from.InitializationStatus
	if desired.Generation > sh.Observed.Generation {
		initial = ackShare(from, desired).InitializationStatus
	}
	opts := workflow.ChildWorkflowOptions{
		WorkflowID:        ShareWorkflowID(c.home, c.companion, ds),
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
		StaticSummary:     fmt.Sprintf("%s → %s · %s", c.home, c.companion, ds),
		TypedSearchAttributes: c.childAttrs(
			AttrHomeOrg.ValueSet(c.home), AttrCompanionOrg.ValueSet(c.companion),
			AttrDataSpace.ValueSet(ds), AttrInitializationStatus.ValueSet(string(initial)),
		),
	}
	in := ShareInput{Home: c.home, Companion: c.companion, DataSpace: ds, Settings: c.settings, Desired: desired, Protocol: c.protocol}
	in.Desired.Complete = true
	if restart {
		// A restart: the new run continues from what the last one reported
		// (and where its copy stopped, when the reconciler found it).
		in.State = &ShareState{Acked: sh.Observed.Generation, View: sh.Observed.View}
		if v := sh.Observed.View.InitializationStatus; v == Activating || v == "" {
			in.State.Checkpoint = sh.Checkpoint
		}
	}
	child := workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, opts), ShareWorkflowName, in)
	err := child.GetChildWorkflowExecution().Get(ctx, nil)
	switch {
	case err == nil:
		sh.Running, sh.Sent, sh.Checkpoint = true, desired.Generation, ""
		if c.Shares[ds] == sh {
			sh.StartedBy = c.runID
			c.shareAcknowledged(ctx, ds, sh, from, desired)
			c.awaitShareEnd(ctx, ds, sh, child)
		}
	case temporal.IsWorkflowExecutionAlreadyStartedError(err) && sh.Observed.Generation >= sh.Since:
		// The share's workflow runs after all (a signal raced its continue-
		// as-new): signal it again.
		sh.Running = true
	case temporal.IsWorkflowExecutionAlreadyStartedError(err):
		// An earlier share of the data space is still closing.
		c.startAgainAt = workflow.Now(ctx).Add(startRetryDelay)
	default:
		c.logger.Error("could not start share workflow", "dataSpace", ds, "error", err)
		sh.Problem = "could not start the share workflow: " + err.Error() + "; unshare it"
	}
}

// desiredMetadata is what the metadata sync should do now: sync the data
// spaces whose share is Active and not being removed, hold off while the
// connection is Inactive, and stop once disconnecting.
func (c *connection) desiredMetadata() MetadataDesired {
	d := c.Metadata.Desired
	d.DataSpaces = []string{}
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		sh := c.Shares[ds]
		if sh.Observed.View.InitializationStatus == ShareActive && sh.Desired.Intent == IntentShared {
			d.DataSpaces = append(d.DataSpaces, ds)
		}
	}
	d.Suspended = c.Status == Inactive
	d.Stop = c.Disconnecting
	return d
}

func (c *connection) reconcileMetadata(ctx workflow.Context) {
	want, rec := c.desiredMetadata(), &c.Metadata
	if !sameMetadata(want, rec.Desired) {
		want.Generation = c.nextGeneration()
		rec.Desired = want
	}
	probe := rec.Probe
	if rec.Probe {
		rec.Probe = false
		if rec.Running && rec.Desired.Generation > 0 {
			rec.Sent = min(rec.Sent, rec.Desired.Generation-1)
		}
	}
	if rec.Sent >= rec.Desired.Generation {
		return
	}
	id := MetadataSyncWorkflowID(c.home, c.companion)
	if rec.Running {
		desired := rec.Desired
		desired.Answer = probe
		desired.Complete = rec.StartedBy == c.runID
		c.signalChild(ctx, id, SignalMetadataDesired, desired, func(err error) {
			switch {
			case err == nil:
				rec.Sent = max(rec.Sent, desired.Generation)
				if !probe {
					c.metadataAcknowledged(desired.Generation)
				}
			case err == nil:
				rec.Sent = rec.Desired.Generation
			case !childGone(err):
			default:
				rec.Running = false
				c.startMetadata(ctx)
			}
		})
		return
	}
	c.startMetadata(ctx)
}

// awaitMetadataEnd reads the result of the metadata sync this run started:
// its stop (ProtocolDeliveryAck).
func (c *connection) awaitMetadataEnd(ctx workflow.Context, child workflow.ChildWorkflowFuture) {
	c.awaitEnd(ctx, child, func(ctx workflow.Context) bool {
		var v MetadataSyncView
		if err := child.Get(ctx, &v); err != nil || !v.Stopped {
			return false
		}
		m := &c.Metadata
		c.applyMetadataReport(ctx, MetadataReport{Generation: max(m.Observed.Generation, m.Reported), View: v})
		return true
	})
}

// metadataAcknowledged takes the acknowledgement of a generation by the
// metadata sync, from its start or a delivered signal
// (ProtocolDeliveryAck): receiving it changes no settled status.
func (c *connection) metadataAcknowledged(gen int64) {
	if m := &c.Metadata; m.Observed.Generation < gen {
		m.Observed.Generation = gen
	}
}

// startMetadata starts the metadata sync with the desired state, unless
// there is nothing to sync yet or it should stop.
func (c *connection) startMetadata(ctx workflow.Context) {
	rec, id := &c.Metadata, MetadataSyncWorkflowID(c.home, c.companion)
	if rec.Desired.Stop || (rec.Observed.Generation == 0 && len(rec.Desired.DataSpaces) == 0) {
		return // nothing to stop, or nothing to sync yet
	}
	opts := workflow.ChildWorkflowOptions{
		WorkflowID:        id,
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
		StaticSummary:     fmt.Sprintf("%s → %s · metadata sync", c.home, c.companion),
		TypedSearchAttributes: c.childAttrs(
			AttrHomeOrg.ValueSet(c.home), AttrCompanionOrg.ValueSet(c.companion),
		),
	}
	in := MetadataSyncInput{Home: c.home, Companion: c.companion, Settings: c.settings, Desired: rec.Desired,
		State: MetadataSyncState{Acked: rec.Observed.Generation, View: rec.Observed.View}, Protocol: c.protocol}
	in.Desired.Complete = true
	child := workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, opts), MetadataSyncWorkflowName, in)
	err := child.GetChildWorkflowExecution().Get(ctx, nil)
	switch {
	case err == nil:
		rec.Running, rec.Sent = true, rec.Desired.Generation
		rec.StartedBy = c.runID
		c.metadataAcknowledged(in.Desired.Generation)
		c.awaitMetadataEnd(ctx, child)
	case temporal.IsWorkflowExecutionAlreadyStartedError(err):
		rec.Running = true // it runs after all: signal it again
		// Its state is unknown here: the signal asks it to report.
		rec.Probe = true

	default:
		c.logger.Error("could not start the metadata sync", "error", err)
	}
}

func sameMetadata(a, b MetadataDesired) bool {
	return a.Suspended == b.Suspended && a.Stop == b.Stop && a.Resume == b.Resume && slices.Equal(a.DataSpaces, b.DataSpaces)
}

// resend makes the next pass send every unacknowledged request again, to
// the same run or to a new one if the child is gone: the periodic level
// check that repairs a lost signal or a lost report.
func (c *connection) resend() {
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		if sh := c.Shares[ds]; sh.Pending() {
			sh.Sent = sh.Observed.Generation
		}
	}
	if m := &c.Metadata; m.Observed.Generation < m.Desired.Generation {
		m.Sent = m.Observed.Generation
	}
}

// checkHealth re-sends every unacknowledged request, then runs the health
// check and moves the connection between Active or Incomplete and Inactive.
// A failing check changes nothing and is retried at the next interval. A
// disconnecting connection only re-sends: its interval keeps a lost report
// from holding the disconnect up.
func (c *connection) checkHealth(ctx workflow.Context) {
	c.NextHealthCheck = workflow.Now(ctx).Add(c.settings.HealthCheckInterval)
	c.resend()
	c.releases++
	if c.Disconnecting {
		return
	}
	step := c.shortStep(ctx, "health check: home licence and companion activity", 2*time.Minute,
		acts.CheckHealth, activities.HealthInput{Home: c.home, Companion: c.companion})
	var res activities.HealthResult
	if err := step.Get(ctx, &res); err != nil {
		c.logger.Warn("health check failed; keeping the current status", "error", err)
		return
	}
	if len(res.DataSpaces) > 0 {
		c.DataSpaces = res.DataSpaces
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
}

// functioningStatus is the status of a healthy connection: Active with at
// least one share, Incomplete without.
func (c *connection) functioningStatus() ConnectionStatus {
	if len(c.Shares) > 0 {
		return Active
	}
	return Incomplete
}

// checksHealth reports whether the health-check interval runs: not while
// connecting, and while disconnecting only to re-send.
func (c *connection) checksHealth() bool {
	return c.Status != Connecting
}

// healthCheckDue reports whether a health check should run now: at its
// interval, or at once after a recheck request.
func (c *connection) healthCheckDue(ctx workflow.Context) bool {
	if !c.checksHealth() {
		return false
	}
	return !workflow.Now(ctx).Before(c.NextHealthCheck)
}

// drained reports whether a disconnect has nothing left to wait for.
func (c *connection) drained() bool {
	m := c.Metadata
	return len(c.Shares) == 0 && (!m.Running || m.Observed.View.Stopped)
}

func (c *connection) finishDisconnect(ctx workflow.Context) (StatusView, error) {
	err := c.shortStep(ctx, "deregister the connection", 0, acts.Disconnect,
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

// waitForChange blocks until a signal or an update arrives, the next health
// check is due or a share's start can be tried again, then handles every
// signal already buffered.
func (c *connection) waitForChange(ctx workflow.Context) {
	sel := workflow.NewSelector(ctx)
	c.signals.addTo(ctx, sel)
	sel.AddReceive(c.wake, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, nil) })
	if c.checksHealth() {
		sel.AddFuture(c.healthCheckTimer(ctx), func(workflow.Future) {})
	}
	if !c.startAgainAt.IsZero() {
		if c.startTimer == nil {
			c.startTimer = workflow.NewTimerWithOptions(ctx, max(c.startAgainAt.Sub(workflow.Now(ctx)), time.Millisecond),
				workflow.TimerOptions{Summary: "start a share whose previous run is closing"})
		}
		sel.AddFuture(c.startTimer, func(workflow.Future) { c.startAgainAt, c.startTimer = time.Time{}, nil })
	}
	sel.Select(ctx)
	for sel.HasPending() {
		sel.Select(ctx)
	}
}

// healthCheckTimer returns the timer of the next health check, made once per
// due time rather than on every pass.
func (c *connection) healthCheckTimer(ctx workflow.Context) workflow.Future {
	if c.healthTimer != nil && c.healthTimerAt.Equal(c.NextHealthCheck) {
		return c.healthTimer
	}
	if c.cancelHealth != nil {
		c.cancelHealth()
	}
	timerCtx, cancel := workflow.WithCancel(ctx)
	c.cancelHealth = cancel
	c.healthTimerAt = c.NextHealthCheck
	c.healthTimer = workflow.NewTimerWithOptions(timerCtx, max(c.NextHealthCheck.Sub(workflow.Now(ctx)), time.Millisecond),
		workflow.TimerOptions{Summary: "next health check"})
	return c.healthTimer
}

// shortStep runs one short store transaction of the connection
// (handshake, health check, deregistration); see runShortStep.
func (c *connection) shortStep(ctx workflow.Context, summary string, scheduleToClose time.Duration, activity, in any) workflow.Future {
	return runShortStep(ctx, shortStepOptions{summary, scheduleToClose, c.settings.ActivityRetry}, activity, in)
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

// view is the status query's answer: what each child last reported, with
// requests it has not acknowledged yet named beside.
func (c *connection) view() StatusView {
	v := StatusView{
		Connection:    Reference(c.home, c.companion),
		Status:        c.Status,
		Reason:        c.Reason,
		Disconnecting: c.Disconnecting,
		DataSpaces:    []ShareView{},
		MetadataSync:  c.metadataView(),
		LastRejected:  c.LastRejected,
		Transitions:   slices.Clone(c.Transitions),
		Protocol:      c.protocol,
	}
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		v.DataSpaces = append(v.DataSpaces, c.shareView(ds))
	}
	return v
}

// metadataView is what the metadata sync last reported, with a resume it
// has not acknowledged yet.
func (c *connection) metadataView() MetadataSyncView {
	v := c.Metadata.Observed.View
	if c.Metadata.Desired.Resume > c.Metadata.Observed.Generation {
		v.Requested = RequestResume
	}
	return v
}

func (c *connection) shareView(ds string) ShareView {
	sh := c.Shares[ds]
	v := sh.Observed.View
	v.DataSpace = ds
	if sh.Pending() {
		v.Requested = sh.Request
	}
	if sh.Problem != "" {
		v.Error = sh.Problem
	}
	return v
}

// publish writes the search attributes that changed and the current details
// shown in the Web UI.
func (c *connection) publish(ctx workflow.Context) {
	want := map[string]string{
		AttrConnectionStatus.GetName():   string(c.Status),
		AttrMetadataSyncStatus.GetName(): string(c.Metadata.Observed.View.Status),
		AttrHomeOrg.GetName():            c.home,
		AttrCompanionOrg.GetName():       c.companion,
	}
	var updates []temporal.SearchAttributeUpdate
	for _, key := range publishedAttrs {
		name := key.GetName()
		if c.published[name] == want[name] {
			continue // unchanged, or never set and still empty
		}
		c.published[name] = want[name]
		if want[name] == "" {
			updates = append(updates, key.ValueUnset())
		} else {
			updates = append(updates, key.ValueSet(want[name]))
		}
	}
	if len(updates) > 0 {
		// The protocol rides on an update the run makes anyway: a worker
		// of the previous release, which never writes it, makes the same
		// updates at the same points, so it can replay this run's history.
		if proto := c.protocol.String(); c.protocol >= ProtocolPublished && c.published[AttrProtocol.GetName()] != proto {
			c.published[AttrProtocol.GetName()] = proto
			updates = append(updates, AttrProtocol.ValueSet(proto))
		}
		if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
			c.logger.Warn("could not update search attributes", "error", err)
		}
	}
	workflow.SetCurrentDetails(ctx, c.details())
}

// publishedAttrs are the search attributes a connection keeps current. The
// protocol (from ProtocolPublished on) is written with the first of their
// updates that a run without it makes; a continued run starts with it,
// carried by continue-as-new or written by the run that moved (see
// protocolAfter).
var publishedAttrs = []temporal.SearchAttributeKeyKeyword{AttrConnectionStatus, AttrMetadataSyncStatus, AttrHomeOrg, AttrCompanionOrg}

// childAttrs are a child's search attributes at start: attrs and, from
// ProtocolPublished on, its protocol, so that the child need not write it.
func (c *connection) childAttrs(attrs ...temporal.SearchAttributeUpdate) temporal.SearchAttributes {
	if c.protocol >= ProtocolPublished {
		attrs = append(attrs, AttrProtocol.ValueSet(c.protocol.String()))
	}
	return temporal.NewSearchAttributes(attrs...)
}

// details renders the status as a small markdown table for the Web UI.
func (c *connection) details() string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s → %s**\n\n", c.home, c.companion)
	fmt.Fprintf(&b, "| | status | detail |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| Connection | %s | %s |\n", c.Status, mdCell(c.connectionDetail()))
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		v := c.shareView(ds)
		status := string(v.InitializationStatus)
		if v.Requested != "" {
			status += " (" + v.Requested + " requested)"
		}
		fmt.Fprintf(&b, "| Data space `%s` | %s | %s |\n", ds, status, mdCell(shareDetail(v)))
	}
	if m := c.metadataView(); m.Status != "" {
		status := string(m.Status)
		if m.Requested != "" {
			status += " (" + m.Requested + " requested)"
		}
		fmt.Fprintf(&b, "| Metadata sync | %s | %s |\n", status, mdCell(metadataDetail(m)))
	}
	if c.LastRejected != "" {
		fmt.Fprintf(&b, "\nLast rejected message: %s\n", mdCell(c.LastRejected))
	}
	// The input holds only the settings its starter chose; these are the
	// ones in force, with the worker's defaults filled in.
	fmt.Fprintf(&b, "\nSettings: health check every %s, metadata sync every %s, removal deadline %s, batches of %d\n",
		c.settings.HealthCheckInterval, c.settings.MetadataSyncInterval, c.settings.RemovalDeadline, c.settings.BatchSize)
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
