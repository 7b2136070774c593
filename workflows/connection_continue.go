package workflows

import "go.temporal.io/sdk/workflow"

// Continue-as-new: the whole state goes to the next run, and children an
// earlier run started report their end to the new one.

// continueAsNew hands the whole state to the next run. Updates still
// waiting answer first, with their requests shown as requested; the next
// run carries them out.
func (c *connection) continueAsNew(ctx workflow.Context) error {
	c.draining = true
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	c.applyEnds(ctx)
	return continueAsNew(ctx, ConnectionWorkflowName, c.signals, func() any {
		state := c.ConnectionState
		return ConnectionInput{Home: c.home, Companion: c.companion, Settings: c.settings, State: &state, Protocol: c.budget.protocolAfter(ctx, c.protocol)}
	})
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
