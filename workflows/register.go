package workflows

import (
	"fmt"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
)

// Register registers the workflows under their contract names and the
// activities of a. defaults fill the settings a starter leaves zero in a new
// connection; the choice is recorded in the workflow's history, so workers
// with other defaults replay it unchanged.
func Register(r worker.Registry, a *activities.Activities, defaults Settings) {
	RegisterWorkflows(r, defaults)
	r.RegisterActivityWithOptions(a, activity.RegisterOptions{})
}

// RegisterWorkflows registers only the workflows, as a replayer needs.
func RegisterWorkflows(r worker.WorkflowRegistry, defaults Settings) {
	r.RegisterWorkflowWithOptions(ConnectionWorkflowWith(defaults), workflow.RegisterOptions{Name: ConnectionWorkflowName})
	r.RegisterWorkflowWithOptions(DataSpaceShareWorkflow, workflow.RegisterOptions{Name: ShareWorkflowName})
	r.RegisterWorkflowWithOptions(MetadataSyncWorkflow, workflow.RegisterOptions{Name: MetadataSyncWorkflowName})
	r.RegisterWorkflowWithOptions(ReconcilerWorkflow, workflow.RegisterOptions{Name: ReconcilerWorkflowName})
	r.RegisterWorkflowWithOptions(WatcherWorkflow, workflow.RegisterOptions{Name: WatcherWorkflowName})
}

// RegisterFleet registers the reconciler's activities. Without them the
// reconciler's runs wait for a worker that has them.
func RegisterFleet(r worker.ActivityRegistry, f *activities.Fleet) {
	r.RegisterActivityWithOptions(f, activity.RegisterOptions{})
}

// ConnectionWorkflowWith is ConnectionWorkflow with worker-side defaults for
// the settings left zero by the starter of a new connection.
func ConnectionWorkflowWith(defaults Settings) func(workflow.Context, ConnectionInput) (StatusView, error) {
	return func(ctx workflow.Context, in ConnectionInput) (StatusView, error) {
		if in.State == nil {
			var s Settings
			merged := in.Settings.FillFrom(defaults.WithDefaults())
			if err := workflow.SideEffect(ctx, func(workflow.Context) any { return merged }).Get(&s); err != nil {
				return StatusView{}, fmt.Errorf("record settings: %w", err)
			}
			in.Settings = s
		}
		return ConnectionWorkflow(ctx, in)
	}
}
