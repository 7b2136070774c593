package control

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/companionsync/companionsync/contract"
)

// Doctor runs the reconciler once, now, and waits for its report: the same
// workflow the worker's schedule starts, with in's thresholds and repair
// switch. Running the workflow rather than the same checks in the client
// keeps one implementation, makes the repairs the workers' (they hold the
// org store and log each repair) and leaves the run in the Web UI.
func (c *Client) Doctor(ctx context.Context, in contract.ReconcilerInput) (contract.ReconcileReport, error) {
	id := fmt.Sprintf("%s%s", contract.ReconcilerDoctorIDPrefix, time.Now().UTC().Format("20060102T150405.000000000Z"))
	run, err := c.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:            id,
		TaskQueue:     contract.TaskQueue,
		StaticSummary: "starter doctor",
	}, contract.ReconcilerWorkflowName, in)
	if err != nil {
		return contract.ReconcileReport{}, fmt.Errorf("start the reconciler: %w", err)
	}
	var report contract.ReconcileReport
	if err := run.Get(ctx, &report); err != nil {
		return contract.ReconcileReport{}, fmt.Errorf("reconciler run %s: %w", id, err)
	}
	return report, nil
}
