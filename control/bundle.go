package control

import (
	"context"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
)

// bundleRuns bounds the runs a support bundle reads, newest first.
const bundleRuns = 50

// bundleOmitted is the SupportBundle's statement of what it leaves out.
const bundleOmitted = "No record contents (the bundle reads no record, only counts), no workflow inputs or results, " +
	"no payload keys, codec tokens, API keys or database passwords. Failure messages are the workflows' own, " +
	"as the Web UI shows them; they name orgs, data spaces and metadata objects."

// WithKeys returns a copy of the client that reads the failure messages of
// histories encrypted under ring (the workers' key ring), for
// SupportBundle.
func (c *Client) WithKeys(ring *codec.KeyRing) *Client {
	cp := *c
	if ring != nil {
		_, cp.failures = codec.NewConverters(ring)
	}
	return &cp
}

// SupportBundle gathers what a support engineer needs about the connection
// (see contract.SupportBundle). A connection that does not exist is an
// error; a part that cannot be read is listed in Unread and the rest is
// returned.
func (c *Client) SupportBundle(ctx context.Context, ref Ref) (contract.SupportBundle, error) {
	b := contract.SupportBundle{
		Version:     contract.SupportBundleVersion,
		GeneratedAt: time.Now().UTC().Truncate(time.Second),
		Connection:  contract.Reference(ref.Home, ref.Companion),
		ErrorLog:    []contract.ErrorLogEntry{},
		Runs:        []contract.BundleRun{},
		Omitted:     bundleOmitted,
	}
	v, err := c.Status(ctx, ref)
	if err != nil {
		return b, err
	}
	b.Status, b.Advice = v, Advice(v)
	if entries, err := c.ErrorLog(ctx, ref); err != nil {
		b.Unread = append(b.Unread, fmt.Sprintf("error log: %v", err))
	} else {
		b.ErrorLog = entries
	}
	if audit, err := c.Audit(ctx, ref, time.Time{}); err != nil {
		b.Unread = append(b.Unread, fmt.Sprintf("audit trail: %v", err))
	} else {
		if n := len(audit); n > contract.BundleAuditEntries {
			audit = audit[n-contract.BundleAuditEntries:]
		}
		b.Audit = audit
	}
	runs, err := c.bundleRuns(ctx, ref)
	if err != nil {
		b.Unread = append(b.Unread, fmt.Sprintf("runs: %v", err))
	}
	b.Runs = runs
	return b, nil
}

// bundleRuns lists the newest runs of the connection's workflows with their
// failures.
func (c *Client) bundleRuns(ctx context.Context, ref Ref) ([]contract.BundleRun, error) {
	query := fmt.Sprintf(`%s = %q AND %s = %q`, contract.AttrHomeOrg.GetName(), ref.Home,
		contract.AttrCompanionOrg.GetName(), ref.Companion)
	resp, err := c.temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: bundleRuns})
	if err != nil {
		return []contract.BundleRun{}, fmt.Errorf("list runs of %s: %w", ref, err)
	}
	runs := []contract.BundleRun{}
	var errs []error
	for _, e := range resp.GetExecutions() {
		r := contract.BundleRun{
			WorkflowID:    e.GetExecution().GetWorkflowId(),
			RunID:         e.GetExecution().GetRunId(),
			Type:          e.GetType().GetName(),
			Status:        contract.RunStateOf(e.GetStatus()),
			Started:       e.GetStartTime().AsTime().UTC(),
			HistoryLength: int(e.GetHistoryLength()),
			Failures:      []contract.BundleFailure{},
		}
		if e.GetCloseTime() != nil {
			closed := e.GetCloseTime().AsTime().UTC()
			r.Closed = &closed
		}
		if p, ok := e.GetSearchAttributes().GetIndexedFields()[contract.AttrProtocol.GetName()]; ok {
			_ = converter.GetDefaultDataConverter().FromPayload(p, &r.Protocol)
		}
		if err := c.runFailures(ctx, &r); err != nil {
			errs = append(errs, err)
		}
		runs = append(runs, r)
	}
	slices.SortStableFunc(runs, func(a, b contract.BundleRun) int { return b.Started.Compare(a.Started) })
	if len(errs) > 0 {
		return runs, fmt.Errorf("%d run(s) unread, the first: %w", len(errs), errs[0])
	}
	return runs, nil
}

// runFailures reads r's history for its failures, keeping the newest
// contract.BundleFailures.
func (c *Client) runFailures(ctx context.Context, r *contract.BundleRun) error {
	fc := c.failures
	if fc == nil {
		fc = temporal.GetDefaultFailureConverter()
	}
	activities := map[int64]string{} // scheduled event ID -> activity type
	it := c.temporal.GetWorkflowHistory(ctx, r.WorkflowID, r.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return fmt.Errorf("history of %s/%s: %w", r.WorkflowID, r.RunID, err)
		}
		f, activity := failureOf(ev, activities)
		if f == nil {
			continue
		}
		r.Failures = append(r.Failures, contract.BundleFailure{
			At: ev.GetEventTime().AsTime().UTC(), Event: ev.GetEventType().String(), Activity: activity,
			Message: fc.FailureToError(f).Error(),
		})
	}
	if n := len(r.Failures) - contract.BundleFailures; n > 0 {
		r.FailuresLeftOut, r.Failures = n, r.Failures[n:]
	}
	return nil
}

// failureOf is the failure an event records, with the activity type for an
// activity's; activities collects the types of scheduled activities.
func failureOf(ev *historypb.HistoryEvent, activities map[int64]string) (*failurepb.Failure, string) {
	switch ev.GetEventType() {
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
		activities[ev.GetEventId()] = ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED:
		a := ev.GetActivityTaskFailedEventAttributes()
		return a.GetFailure(), activities[a.GetScheduledEventId()]
	case enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
		a := ev.GetActivityTaskTimedOutEventAttributes()
		return a.GetFailure(), activities[a.GetScheduledEventId()]
	case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED:
		return ev.GetWorkflowTaskFailedEventAttributes().GetFailure(), ""
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
		return ev.GetWorkflowExecutionFailedEventAttributes().GetFailure(), ""
	}
	return nil, ""
}

// Advice is what to do about each problem the status v shows, as the
// status and runbook put it.
func Advice(v contract.StatusView) []string {
	ref := v.Connection
	advice := []string{}
	if v.Status == contract.Inactive {
		advice = append(advice, fmt.Sprintf("The connection is Inactive: %s. Renew the home org's licence or reactivate the companion, then run `starter recheck --connection %s`.", v.Reason, ref))
	}
	for _, s := range v.DataSpaces {
		if s.InitializationStatus == contract.ShareError {
			advice = append(advice, fmt.Sprintf("Data space %s is in Error: %s. %s", s.DataSpace, s.Error, ShareErrorAdvice(ref, s.DataSpace)))
		}
		if s.Waiting != "" {
			advice = append(advice, fmt.Sprintf("Data space %s is waiting: %s. Bring the org store back; nothing else is needed.", s.DataSpace, s.Waiting))
		}
	}
	if v.MetadataSync.Paused {
		advice = append(advice, fmt.Sprintf("The metadata sync is paused: %s. Resolve the conflict in the companion, then run `starter resume --connection %s`; `starter error-log --connection %s` lists the failed changes.", v.MetadataSync.Error, ref, ref))
	}
	return advice
}

// ShareErrorAdvice is what the published rules say of a share in Error,
// made concrete.
func ShareErrorAdvice(ref, dataSpace string) string {
	return fmt.Sprintf("An error occurred during the initial sync, so the sync isn't completed. Fix the cause the error names and run `starter retry --connection %s --data-space %s` (the copy goes on from its checkpoint); if it fails again, create a support ticket and attach `starter support-bundle --connection %s`.", ref, dataSpace, ref)
}
