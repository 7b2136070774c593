package control

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/companionsync/companionsync/contract"
)

// StartWatcher starts the fleet watcher with the periods of in, or sends a
// running one its periods (taken from its next sweep on): every worker
// replica calls it at start, and the last one's periods win. One call,
// idempotent.
func (c *Client) StartWatcher(ctx context.Context, in contract.WatcherInput) error {
	in = in.WithDefaults()
	in.State = nil
	_, err := c.temporal.SignalWithStartWorkflow(ctx, contract.WatcherWorkflowID, contract.SignalWatcherSettings, in,
		client.StartWorkflowOptions{
			ID:                       contract.WatcherWorkflowID,
			TaskQueue:                contract.TaskQueue,
			WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
			StaticSummary:            "fleet watcher: wakes the connections whose health or metadata changed",
		}, contract.WatcherWorkflowName, in)
	if err != nil {
		return fmt.Errorf("start the fleet watcher: %w", err)
	}
	return nil
}

// Watcher returns the fleet watcher's view: its last sweeps.
func (c *Client) Watcher(ctx context.Context) (contract.WatcherView, error) {
	var v contract.WatcherView
	res, err := c.temporal.QueryWorkflow(ctx, contract.WatcherWorkflowID, "", contract.QueryStatus)
	if err != nil {
		return v, fmt.Errorf("query the fleet watcher: %w", err)
	}
	if err := res.Get(&v); err != nil {
		return v, fmt.Errorf("decode the fleet watcher's view: %w", err)
	}
	return v, nil
}

// LastSwept shows, on a connection that waits for the fleet watcher, the
// watcher's last successful sweep as the time its licence was last checked:
// the sweep read it, found nothing changed, and so did not wake it. A
// watcher that does not answer leaves the connection's own time. It costs
// one more query than Status, so Status leaves it to callers that show the
// time (starter status).
func (c *Client) LastSwept(ctx context.Context, view *contract.StatusView) {
	if !view.Watched || view.Licence == nil {
		return
	}
	w, err := c.Watcher(ctx)
	if err != nil || w.LastError != "" || !w.LastSweepAt.After(view.Licence.CheckedAt) {
		return
	}
	l := *view.Licence
	l.CheckedAt = w.LastSweepAt
	view.Licence = &l
}
