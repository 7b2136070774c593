package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
)

// The connection's lifecycle: the workflow function, its running state,
// the handshake, the main loop and the disconnect. The main loop's other
// concerns live beside it: messages (connection_messages.go), the
// reconcile pass (connection_reconcile.go), children's bookkeeping
// (connection_children.go), health checks (connection_health.go),
// publishing the status (connection_publish.go), continue-as-new
// (connection_continue.go) and adoption (adopt.go).

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
	// checkFailedAt is when the last health check failed, zero after one
	// passed: a settled connection tries again an interval later.
	checkFailedAt time.Time
	// quiet is set after a pass that found the connection settled: work
	// arriving then starts the health-check interval afresh.
	quiet bool
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
	// senders are the actors of operator signals not taken yet (audit.go);
	// startActor is who started the connection.
	senders    *senders
	startActor string
	// notifying is the delivery of Notices[0] in flight (notify.go).
	notifying workflow.Future
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
	v := workflow.GetVersion(ctx, versionProtocolChosenByWorkflow, workflow.DefaultVersion, chosenProtocolVersion)
	if v == workflow.DefaultVersion {
		return in.Protocol
	}
	return chosenProtocols[v]
}

// chosenProtocols is the protocol a new connection took under each version
// of versionProtocolChosenByWorkflow: its marker records the choice, so a
// history replays with the protocol it was recorded under however many
// releases later. A release with a new CurrentProtocol adds a version.
var chosenProtocols = map[workflow.Version]Protocol{
	1: ProtocolPublished,
	2: ProtocolAccountable,
	3: ProtocolWatched,
}

// chosenProtocolVersion is the version that chooses CurrentProtocol.
const chosenProtocolVersion workflow.Version = 3

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
		senders:   sendersOf(ctx),
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
		c.startActor = startActorOf(ctx)
		c.transition(ctx, subjectConnection, string(Connecting), "handshake and eligibility check")
	}
	if c.Shares == nil {
		c.Shares = map[string]*ShareRecord{}
	}
	c.runID = workflow.GetInfo(ctx).WorkflowExecution.RunID
	c.handOver()
	return c
}

func (c *connection) run(ctx workflow.Context) (StatusView, error) {
	c.publish(ctx)
	if breakUpgrade {
		_ = workflow.Sleep(ctx, time.Millisecond)
	}
	if !c.Handshaken {
		err := c.handshake(ctx)
		c.auditConnect(ctx, err)
		if err != nil {
			c.flushAudit(ctx)
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
		c.flushAudit(ctx)
		if c.Disconnecting && c.drained() {
			return c.finishDisconnect(ctx)
		}
		// Published here rather than by reconcile: a finishing
		// disconnect publishes once, its final status.
		c.publish(ctx)
		c.watchIncidents(ctx)
		c.notify(ctx)
		if c.budget.count(ctx) {
			return StatusView{}, c.continueAsNew(ctx)
		}
		c.holdChecks(ctx)
		if c.healthCheckDue(ctx) {
			c.checkHealth(ctx)
			continue
		}
		c.waitForChange(ctx)
	}
}

// handshake runs the eligibility check and registration. An ineligible pair
// ends the workflow with the activity's non-retryable error. An org store
// that cannot be reached is waited for, Connecting, with the reason shown,
// for up to handshakeOutageLimit.
func (c *connection) handshake(ctx workflow.Context) error {
	var res activities.HandshakeResult
	info := workflow.GetInfo(ctx)
	var since time.Time
	var err error
	for {
		err = c.shortStep(ctx, "handshake and eligibility check", 0, acts.Handshake,
			activities.HandshakeInput{Home: c.home, Companion: c.companion, Token: info.WorkflowExecution.ID + "/" + info.OriginalRunID,
				Watch: rules(c.protocol).watched},
		).Get(ctx, &res)
		var app *temporal.ApplicationError
		if !errors.As(err, &app) || app.Type() != activities.ErrStoreUnavailable {
			break
		}
		now := workflow.Now(ctx)
		if since.IsZero() {
			since = now
		}
		if now.Sub(since) >= handshakeOutageLimit {
			break
		}
		c.Reason = fmt.Sprintf("waiting for the org store since %s: %s; the handshake is tried again every %s",
			since.UTC().Format(time.RFC3339), rootMessage(err), handshakeRetry)
		c.publish(ctx)
		_ = workflow.NewTimerWithOptions(ctx, handshakeRetry, workflow.TimerOptions{Summary: "handshake: waiting for the org store"}).Get(ctx, nil)
	}
	if err != nil {
		c.refused = err
		c.Reason = "refused: " + rootMessage(err)
		c.transition(ctx, subjectConnection, Refused, c.Reason)
		c.publish(ctx)
		return err
	}
	c.Handshaken = true
	c.DataSpaces = res.DataSpaces
	c.readLicence(ctx, res.Licence)
	c.Reason = ""
	c.Watched = rules(c.protocol).watched
	c.LastCheck = workflow.Now(ctx)
	c.NextHealthCheck = workflow.Now(ctx).Add(c.settings.HealthCheckInterval)
	c.setStatus(ctx, Incomplete, "handshake passed; share a data space to activate")
	return nil
}

// handshakeRetry is how often a handshake that found the org store
// unreachable is tried again, and handshakeOutageLimit how long it is tried:
// past it the connection fails as refused, with the store's error.
const (
	handshakeRetry       = 10 * time.Second
	handshakeOutageLimit = 10 * time.Minute
)

// nextGeneration hands out a new generation.
func (c *connection) nextGeneration() int64 {
	c.Generation++
	return c.Generation
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
	c.watchIncidents(ctx)
	c.flushAudit(ctx)
	c.flushNotices(ctx)
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
	if c.notifying != nil {
		sel.AddFuture(c.notifying, func(f workflow.Future) { c.notified(ctx, f) })
	}
	c.signals.wait(c.senders.arrivals())
	sel.Select(ctx)
	c.signals.done()
	for sel.HasPending() {
		sel.Select(ctx)
	}
}

// signalsBefore carries out, at the start of an update's handler, the
// signals that came before the update. A signal the main loop's selector
// has taken but not handled yet (inbox.claimed) is handled first, by the
// main loop: update handlers run before the main loop in a workflow task,
// and draining past it would take the later signals first and record them
// out of order in the audit trail.
func (c *connection) signalsBefore(ctx workflow.Context) {
	if rules(c.protocol).accountable {
		arrived := c.senders.arrivals()
		// An error means the run is being cancelled: drain anyway.
		_ = workflow.Await(ctx, func() bool { return !c.signals.claimed(arrived) })
	}
	c.signals.drain(ctx)
}

// shortStep runs one short store transaction of the connection
// (handshake, health check, deregistration); see runShortStep.
func (c *connection) shortStep(ctx workflow.Context, summary string, scheduleToClose time.Duration, activity, in any) workflow.Future {
	return runShortStep(ctx, shortStepOptions{summary, scheduleToClose, c.settings.ActivityRetry}, activity, in)
}

// acts is the nil receiver through which workflows name activities.
var acts *activities.Activities
