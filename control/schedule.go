package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/companionsync/companionsync/contract"
)

// reconcilerRunTimeout bounds one reconciler run, so that a run stuck on a
// lost worker cannot hold every later run off (the schedule skips a run
// while the previous one is running).
const reconcilerRunTimeout = 30 * time.Minute

// ScheduleReconciler creates the schedule that starts the reconciler every
// interval with input in, or brings an existing one up to date: every
// worker replica calls it at start, and the last one's configuration wins.
// The overlap policy skips a run while the previous one is still running
// (the reconciler is safe to run twice at once all the same), and a short
// catch-up window takes one run, not a backlog, after an outage.
func (c *Client) ScheduleReconciler(ctx context.Context, interval time.Duration, in contract.ReconcilerInput) error {
	spec := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: interval}}}
	action := &client.ScheduleWorkflowAction{
		ID:                 contract.ReconcilerScheduleID,
		Workflow:           contract.ReconcilerWorkflowName,
		Args:               []any{in},
		TaskQueue:          contract.TaskQueue,
		WorkflowRunTimeout: reconcilerRunTimeout,
		StaticSummary:      "scheduled reconciler run",
	}
	policies := client.SchedulePolicies{Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, CatchupWindow: time.Minute}
	schedules := c.temporal.ScheduleClient()
	_, err := schedules.Create(ctx, client.ScheduleOptions{
		ID:            contract.ReconcilerScheduleID,
		Spec:          spec,
		Action:        action,
		Overlap:       policies.Overlap,
		CatchupWindow: policies.CatchupWindow,
		Note:          "starts the companionsync reconciler; created by the worker",
	})
	if err == nil {
		return nil
	}
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return fmt.Errorf("create schedule %s: %w", contract.ReconcilerScheduleID, err)
	}
	err = schedules.GetHandle(ctx, contract.ReconcilerScheduleID).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(u client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := u.Description.Schedule
			s.Spec, s.Action, s.Policy = &spec, action, &policies
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	})
	if err != nil {
		return fmt.Errorf("update schedule %s: %w", contract.ReconcilerScheduleID, err)
	}
	return nil
}
