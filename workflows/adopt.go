package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"
)

// Adoption and probes: how a connection takes over the children of a gone
// run, and how it finds children that are gone. Both are repairs the
// reconciler asks for; neither deletes data.

// adopt makes the state of a connection taken over by the reconciler: the
// handshake counts as done, running shares are probed, the others are
// requested again with their intent. Generations start a new epoch, the
// run's start time in microseconds: far above any generation the gone run
// handed out (those count requests from 1) and above the epoch of an earlier
// adoption, so every running child takes the next request as new.
func (c *connection) adopt(ctx workflow.Context, a *AdoptState) {
	now := workflow.Now(ctx)
	c.Handshaken = true
	c.DataSpaces = a.DataSpaces
	c.Generation = now.UnixMicro()
	c.Shares = map[string]*ShareRecord{}
	for _, s := range a.Shares {
		intent, request := IntentShared, RequestShare
		if s.Status == RemovingSharing {
			intent, request = IntentRemoved, RequestUnshare
		}
		if s.Running {
			// Generation 0 is a re-send to the share, which answers with a
			// report of its own generation and view; Since 0 accepts it.
			c.Shares[s.DataSpace] = &ShareRecord{
				Desired:  ShareDesired{Intent: intent},
				Observed: ShareReport{View: ShareView{DataSpace: s.DataSpace, InitializationStatus: s.Status}},
				Running:  true,
				Probe:    true,
			}
			continue
		}
		g := c.nextGeneration()
		rec := &ShareRecord{Since: g, Desired: ShareDesired{Generation: g, Intent: intent}, Request: request}
		if s.Status == Activating {
			rec.Checkpoint = s.Checkpoint
		}
		c.Shares[s.DataSpace] = rec
	}
	c.Status = c.functioningStatus()
	c.NextHealthCheck = now
	c.transition(ctx, subjectConnection, string(c.Status), fmt.Sprintf("adopted by the reconciler (%s): %d share(s)", a.Reason, len(a.Shares)))
	if a.Disconnecting {
		// The gone run had accepted a disconnect: it goes on.
		c.applyDisconnect(ctx)
	}
	c.logger.Info("connection adopted", "reason", a.Reason, "shares", len(a.Shares))
}

// probeShare sends a share's workflow its desired state again, so that it
// reports. It returns true when the share's workflow got it (or may have: a
// failure other than "gone" is left to the next probe), and false when the
// workflow is gone and has been started again by the caller's normal path
// or here.
func (c *connection) probeShare(ctx workflow.Context, ds string, sh *ShareRecord) bool {
	sh.Probe = false
	if !sh.Running {
		return false
	}
	desired := sh.Desired
	desired.Answer = true // its state is unknown: it must report
	desired.Complete = sh.StartedBy == c.runID
	err := signalWorkflow(ctx, ShareWorkflowID(c.home, c.companion, ds), SignalShareDesired, desired)
	if !childGone(err) {
		return true
	}
	sh.Running = false
	if sh.Observed.Generation == 0 {
		// Adopted and gone before it reported: a new share of the same intent.
		g := c.nextGeneration()
		sh.Since, sh.Desired.Generation = g, g
	}
	c.logger.Warn("share workflow gone; starting it again", "dataSpace", ds)
	c.startShare(ctx, ds, sh)
	return true
}

// probe marks every child to be sent its desired state again, and keeps
// the checkpoints of gone shares for their restart.
func (c *connection) probe(req ProbeRequest) {
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		sh := c.Shares[ds]
		sh.Probe = true
		if cp, ok := req.Checkpoints[ds]; ok && sh.Observed.View.InitializationStatus == Activating {
			sh.Checkpoint = cp
		}
	}
	c.Metadata.Probe = true
}
