package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// ErrTypeWorkflowGone is the failure type of a report whose connection
// workflow no longer runs (closed, and not continued as new).
const ErrTypeWorkflowGone = "WorkflowGone"

// ReportInput is a child workflow's report to its connection workflow.
type ReportInput struct {
	// WorkflowID is the connection workflow's ID; the report goes to its
	// current run.
	WorkflowID string `json:"workflowId"`
	// Signal is the signal that carries the report.
	Signal string `json:"signal"`
	// Report is the report, as the signal's argument.
	Report json.RawMessage `json:"report"`
}

// ReportToConnection signals a report to the current run of a connection
// workflow with the worker's own client, from a local activity: one marker
// event in the child's history where a signal sent by the workflow costs
// two events and a workflow task. A connection workflow that no longer runs
// fails it with ErrTypeWorkflowGone, not retried.
func (a *Activities) ReportToConnection(ctx context.Context, in ReportInput) error {
	err := activity.GetClient(ctx).SignalWorkflow(ctx, in.WorkflowID, "", in.Signal, in.Report)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("connection workflow %s is gone", in.WorkflowID), ErrTypeWorkflowGone, err)
	}
	if err != nil {
		return fmt.Errorf("signal %s to %s: %w", in.Signal, in.WorkflowID, err)
	}
	return nil
}
