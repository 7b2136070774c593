package workflows

import (
	"slices"

	"go.temporal.io/sdk/workflow"
)

// The reconcile pass: each pass of the main loop gives every child the
// desired state it has not been given yet and starts the ones that should
// run but do not.

// reconcile gives every child the desired state it has not been given and
// starts the children that should run but do not.
func (c *connection) reconcile(ctx workflow.Context) {
	c.suspendFirstSyncs(ctx)
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

// suspendFirstSyncs holds the first syncs of an Inactive connection after
// their current step, and lets them go on once it is back
// (ProtocolAccountable): a new generation with Suspended set, or cleared.
// Removals go on; a share requested again (a retry) is held again at the
// next pass if the connection is still Inactive.
func (c *connection) suspendFirstSyncs(ctx workflow.Context) {
	if !rules(c.protocol).accountable {
		return
	}
	hold := c.Status == Inactive && !c.Disconnecting
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		sh := c.Shares[ds]
		if sh.Desired.Intent != IntentShared || sh.Desired.Suspended == hold || sh.Problem != "" {
			continue
		}
		if hold && (sh.Pending() || sh.Observed.View.InitializationStatus != Activating) {
			continue
		}
		sh.Desired.Generation, sh.Desired.Suspended = c.nextGeneration(), hold
		// What the suspension does depends on where the copy is, which a
		// report in flight (the copy just finished) may change: the share
		// answers with its own view, which replaces the one derived from
		// the delivery.
		sh.Desired.Answer = true
		what := "first sync resumed"
		if hold {
			what = "first sync suspended"
		}
		c.transition(ctx, subjectShare(ds), what, "connection "+string(c.Status))
	}
}
