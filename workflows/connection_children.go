package workflows

import (
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Children's bookkeeping: starting a share or the metadata sync, the
// signals that carry their desired state, their reports, and the ends of
// the children this run started.

// startRetryDelay is how long the connection waits before it starts a
// share again whose previous run with the same ID is still closing.
const startRetryDelay = time.Second

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

// applyShareReport takes a share workflow's report of its own state. A
// report of an older generation, or of an earlier share of the same data
// space, is ignored.
func (c *connection) applyShareReport(ctx workflow.Context, r ShareReport) {
	ds := r.View.DataSpace
	sh, ok := c.Shares[ds]
	// Under ProtocolDeliveryAck a delivery can acknowledge a newer
	// generation while the share's report of the end of its removal is on
	// its way: the end is final, whatever generation it carries.
	removed := ok && r.View.Removed && r.Generation >= sh.Since
	if !ok || r.Generation < sh.Since || (r.Generation < sh.Observed.Generation && !removed) {
		c.logger.Info("stale share report ignored", "dataSpace", ds, "generation", r.Generation)
		return
	}
	if r.View.Removed {
		if sh.Desired.Generation > r.Generation {
			// A share request (re-share) cannot follow an unshare in the same
			// record, so a newer generation is a retry or disconnect of the
			// removal that just finished: it is done.
			c.logger.Info("removal finished before a newer request was acknowledged", "dataSpace", ds)
		}
		delete(c.Shares, ds)
		c.transition(ctx, subjectShare(ds), Removed, "data removed from the companion")
		if len(c.Shares) == 0 && c.Status == Active {
			c.setStatus(ctx, Incomplete, "no data space is shared")
		}
		return
	}
	if sh.Observed.View.InitializationStatus != r.View.InitializationStatus {
		c.transition(ctx, subjectShare(ds), string(r.View.InitializationStatus), r.View.Error)
	}
	sh.Observed = r
	if c.Disconnecting && r.View.InitializationStatus == ShareError && !sh.Pending() {
		// A disconnect keeps removing until every share is gone.
		c.request(ctx, ds, IntentRemoved, RequestUnshare)
	}
}

// applyMetadataReport takes the metadata sync's report of its state.
func (c *connection) applyMetadataReport(ctx workflow.Context, r MetadataReport) {
	m := &c.Metadata
	if m.Observed.View.Stopped {
		// The sync has ended (its result said so). A report it sent before
		// it received the stop can be taken later, from the signal buffer,
		// and must not bring it back.
		c.logger.Info("metadata sync report after its end ignored", "generation", r.Generation)
		return
	}
	// A delivery acknowledges a generation without changing the sync's
	// status, and a report sent before it still tells the sync's latest
	// status: only a report older than the last one taken is stale.
	if r.Generation < m.Reported {
		c.logger.Info("stale metadata sync report ignored", "generation", r.Generation)
		return
	}
	m.Reported = r.Generation
	r.Generation = max(r.Generation, m.Observed.Generation)
	if m.Observed.View.Status != r.View.Status {
		c.transition(ctx, subjectMetadataSync, string(r.View.Status), r.View.Error)
	}
	m.Observed = r
}
