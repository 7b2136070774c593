package workflows

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/contract"
)

// ReconcilerWorkflow compares the registry with the workflows, page by page,
// and returns its findings. With in.Repair it carries out, up to
// in.BatchSize per run, the repairs that are safe: a registered connection
// whose workflow is gone is started again under its own ID (the server
// refuses a second running workflow of an ID, so two runs at once never
// start two), adopting its running children; a connection whose share or
// metadata sync is gone is asked to start it again. It never deletes data,
// never stops a workflow, and logs each repair with its reason. Its current
// details in the Web UI list the findings; its status query returns the
// report so far.
func ReconcilerWorkflow(ctx workflow.Context, in ReconcilerInput) (ReconcileReport, error) {
	r := &reconciler{
		in:     in.WithDefaults(),
		logger: workflow.GetLogger(ctx),
		now:    workflow.Now(ctx),
	}
	r.plan = planner{in: r.in, now: r.now}
	r.report = ReconcileReport{StartedAt: r.now, Repair: r.in.Repair, Findings: []Finding{}}
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryStatus, func() (ReconcileReport, error) { return r.report, nil },
		queryOptions(describeReconcilerReport)); err != nil {
		return ReconcileReport{}, fmt.Errorf("register status query: %w", err)
	}
	workflow.SetCurrentDetails(ctx, "surveying the registry")
	r.report.History = r.pastFindings(ctx)
	r.filtered = workflow.GetVersion(ctx, versionFilteredScans, workflow.DefaultVersion, 1) != workflow.DefaultVersion
	if err := r.surveyRegistry(ctx); err != nil {
		return ReconcileReport{}, err
	}
	if err := r.scanOrphans(ctx); err != nil {
		return ReconcileReport{}, err
	}
	if err := r.checkProtocols(ctx); err != nil {
		return ReconcileReport{}, err
	}
	r.report.Done = true
	r.record(ctx)
	r.publish(ctx)
	if workflow.GetVersion(ctx, versionFindingsReported, workflow.DefaultVersion, 1) != workflow.DefaultVersion {
		r.reportFindings(ctx)
	}
	return r.report, nil
}

// versionFilteredScans guards the filtered scans: each scan of the run
// (registry, running workflows, protocols) reads its source page by page in
// one activity that returns only what the run must look at, so a quiet
// fleet costs a run the same few activities whatever its size.
const versionFilteredScans = "filtered-scans"

// versionFindingsReported guards the report of a run's repairs to the
// audit trail and of its incidents to the notifier, at the end of the run.
const versionFindingsReported = "findings-reported"

// fleetAlertKinds are the findings the reconciler notifies, by alert kind:
// the connection notifies the others itself.
var fleetAlertKinds = map[FindingKind]string{
	FindingConnectionWorkflowMissing: contract.AlertWorkflowVanished,
	FindingShareWorkflowMissing:      contract.AlertWorkflowVanished,
	FindingMetadataSyncMissing:       contract.AlertWorkflowVanished,
	FindingRemovalPastDeadline:       contract.AlertWorkflowStuck,
}

// reportFindings records the run's repairs in each connection's audit
// trail and hands its vanished and stuck findings to the notifier, which
// fires those not open yet and resolves those no longer found. A failure is
// logged: the next run reports again.
func (r *reconciler) reportFindings(ctx workflow.Context) {
	actor := r.in.Actor
	if actor == "" {
		actor = contract.ActorReconciler
	}
	runID := workflow.GetInfo(ctx).WorkflowExecution.RunID
	in := activities.ReportFindingsInput{Alerts: activities.FleetAlertsInput{
		Kinds: []string{contract.AlertWorkflowVanished, contract.AlertWorkflowStuck}, At: r.now, Alerts: []contract.Alert{}}}
	for i, f := range r.report.Findings {
		if f.Outcome == OutcomeRepaired {
			in.Audit = append(in.Audit, contract.AuditEntry{
				Connection: f.Connection, ID: fmt.Sprintf("repair/%s/%d", runID, i), At: workflow.Now(ctx),
				Actor: actor, Request: contract.AuditRepairPrefix + string(f.Kind), Subject: f.DataSpace,
				Via: contract.ViaReconciler, Outcome: contract.AuditAccepted, Reason: f.Repair,
			})
		}
		if kind, ok := fleetAlertKinds[f.Kind]; ok {
			subject := f.DataSpace
			if f.Kind == FindingMetadataSyncMissing {
				subject = "metadata-sync"
			}
			in.Alerts.Alerts = append(in.Alerts.Alerts, contract.Alert{
				Kind: kind, Connection: f.Connection, Subject: subject,
				Summary: fmt.Sprintf("%s: %s", f.Kind, f.Detail), Advice: f.Action,
			})
		}
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
		Summary:             fmt.Sprintf("report %d repair(s) and %d incident(s)", len(in.Audit), len(in.Alerts.Alerts)),
	})
	var res activities.FleetAlertsResult
	if err := workflow.ExecuteActivity(actx, fleet.ReportFindings, in).Get(ctx, &res); err != nil {
		r.logger.Error("repairs or incidents not reported; the next run reports again", "error", err)
		return
	}
	if res.Fired+res.Resolved > 0 {
		r.logger.Info("incidents notified", "fired", res.Fired, "resolved", res.Resolved)
	}
}

// pastFindings returns the finding history of the latest completed run.
// Without one (or when it cannot be read) the history starts empty.
func (r *reconciler) pastFindings(ctx workflow.Context) []PastFinding {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
		Summary:             "read the findings of the last run",
	})
	var raw json.RawMessage
	query := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Completed'", ReconcilerWorkflowName)
	if err := workflow.ExecuteActivity(actx, fleet.LastResult, query).Get(ctx, &raw); err != nil {
		r.logger.Warn("the findings of the last run are not available; the history starts again", "error", err)
		return []PastFinding{}
	}
	var last ReconcileReport
	if len(raw) == 0 || json.Unmarshal(raw, &last) != nil || last.History == nil {
		return []PastFinding{}
	}
	return last.History
}

// record appends this run's findings to the history, keeping the newest
// MaxFindingHistory.
func (r *reconciler) record(ctx workflow.Context) {
	id := workflow.GetInfo(ctx).WorkflowExecution.ID
	for _, f := range r.report.Findings {
		r.report.History = append(r.report.History, PastFinding{Run: id, At: r.now, Kind: f.Kind,
			Connection: f.Connection, DataSpace: f.DataSpace, Outcome: f.Outcome})
	}
	if n := len(r.report.History); n > MaxFindingHistory {
		r.report.History = slices.Clone(r.report.History[n-MaxFindingHistory:])
	}
}

// reconciler is the running state of a ReconcilerWorkflow.
type reconciler struct {
	in     ReconcilerInput
	plan   planner
	logger log.Logger
	now    time.Time
	report ReconcileReport
	// filtered is set on runs that scan with the filtered scans
	// (versionFilteredScans).
	filtered bool
}

// fleet is the nil receiver through which the reconciler names activities.
var fleet *activities.Fleet

func (r *reconciler) activityCtx(ctx workflow.Context, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		Summary:             summary,
	})
}

// surveyRegistry surveys the registry page by page.
func (r *reconciler) surveyRegistry(ctx workflow.Context) error {
	if r.filtered {
		return r.scanRegistry(ctx)
	}
	after := ""
	for {
		var page activities.RegistryPage
		if err := workflow.ExecuteActivity(r.activityCtx(ctx, "read a page of the registry"), fleet.RegisteredConnections,
			activities.RegistryPageInput{After: after, Limit: r.in.PageSize}).Get(ctx, &page); err != nil {
			return fmt.Errorf("read the registry after %q: %w", after, err)
		}
		if len(page.Connections) == 0 {
			return nil
		}
		targets := make([]activities.SurveyTarget, 0, len(page.Connections))
		for _, c := range page.Connections {
			targets = append(targets, surveyTarget(c))
		}
		var surveys []activities.ConnectionSurvey
		if err := workflow.ExecuteActivity(r.activityCtx(ctx, fmt.Sprintf("survey %d connection(s)", len(targets))),
			fleet.SurveyConnections, activities.SurveyInput{Targets: targets}).Get(ctx, &surveys); err != nil {
			return fmt.Errorf("survey connections after %q: %w", after, err)
		}
		for _, s := range surveys {
			r.report.Connections++
			if !s.Settled && s.Workflow.Status != "" {
				r.report.Queried++
			}
			r.examine(ctx, s)
		}
		r.publish(ctx)
		if len(page.Connections) < r.in.PageSize {
			return nil
		}
		after = page.Connections[len(page.Connections)-1].Companion
	}
}

// scanRegistry surveys the registry with ScanRegistry, which returns only
// the connections that are not settled: a settled connection has nothing
// to find (its plan is empty), so it is only counted.
func (r *reconciler) scanRegistry(ctx workflow.Context) error {
	after := ""
	for {
		var scan activities.RegistryScan
		if err := workflow.ExecuteActivity(r.activityCtx(ctx, "survey the registry"), fleet.ScanRegistry,
			activities.RegistryScanInput{After: after, PageSize: r.in.PageSize, Template: surveyTemplate}).Get(ctx, &scan); err != nil {
			return fmt.Errorf("survey the registry after %q: %w", after, err)
		}
		r.report.Connections += scan.Surveyed
		for _, s := range scan.Surveys {
			if s.Workflow.Status != "" {
				r.report.Queried++
			}
			r.examine(ctx, s)
		}
		r.publish(ctx)
		if scan.Next == "" {
			return nil
		}
		after = scan.Next
	}
}

// surveyTemplate is what every survey target shares.
var surveyTemplate = activities.SurveyTarget{
	StatusQuery:              QueryStatus,
	InitializationStatusAttr: AttrInitializationStatus.GetName(),
	QueryUnsettledOnly:       true,
}

func surveyTarget(c companionsync.Connection) activities.SurveyTarget {
	return activities.TargetOf(c, surveyTemplate)
}

// examine plans one registered connection from its survey and carries the
// plan out.
func (r *reconciler) examine(ctx workflow.Context, s activities.ConnectionSurvey) {
	plan := r.plan.connection(s)
	if plan.unexamined != "" {
		r.logger.Info("connection not examined; the next run looks again", "connection",
			Reference(s.Connection.Home, s.Connection.Companion), "why", plan.unexamined)
		return
	}
	for _, f := range plan.findings {
		r.add(f)
	}
	if p := plan.restart; p != nil {
		r.restart(ctx, p)
		r.add(p.finding)
	}
	if p := plan.probe; p != nil {
		r.probe(ctx, s.Connection, p)
		for _, f := range p.findings {
			r.add(f)
		}
	}
}

// restart starts a gone connection workflow again, adopting its children,
// when repairs are on and the batch allows.
func (r *reconciler) restart(ctx workflow.Context, p *restartPlan) {
	f := &p.finding
	if !r.mayRepair(f) {
		return
	}
	input, err := json.Marshal(p.input)
	if err != nil {
		f.Repair = "not restarted: " + err.Error()
		return
	}
	c := p.input
	var res activities.RestartResult
	err = workflow.ExecuteActivity(r.activityCtx(ctx, "restart the connection workflow of "+f.Connection), fleet.RestartConnection,
		activities.RestartInput{
			Registered:   p.registered,
			WorkflowID:   ConnectionWorkflowID(c.Home, c.Companion),
			WorkflowType: ConnectionWorkflowName,
			TaskQueue:    TaskQueue,
			Summary:      fmt.Sprintf("%s → %s", c.Home, c.Companion),
			SearchAttributes: map[string]string{
				AttrHomeOrg.GetName(): c.Home, AttrCompanionOrg.GetName(): c.Companion,
			},
			Input: input,
		}).Get(ctx, &res)
	switch {
	case err != nil:
		f.Repair = "restart failed: " + rootMessage(err)
		r.logger.Error("repair failed", "kind", f.Kind, "connection", f.Connection, "error", err)
	case res.Started:
		running, again := p.adopted()
		f.Outcome = OutcomeRepaired
		f.Repair = fmt.Sprintf("restarted the connection workflow (run %s), adopting %d running share(s) and starting %d again",
			res.RunID, running, again)
		if c.Adopt.Disconnecting {
			f.Repair += "; its disconnect goes on"
		}
		r.repaired(ctx, f)
	default:
		f.Outcome = OutcomeResolved
		f.Repair = "not restarted: " + res.Skipped
		r.logger.Info("repair not needed", "kind", f.Kind, "connection", f.Connection, "reason", res.Skipped)
	}
}

// probe asks a running connection to start its gone children again.
func (r *reconciler) probe(ctx workflow.Context, c companionsync.Connection, p *probePlan) {
	findings := p.findings
	if !r.mayRepair(&findings[0]) {
		for i := range findings[1:] {
			findings[i+1].Repair = findings[0].Repair
		}
		return
	}
	err := workflow.SignalExternalWorkflow(ctx, ConnectionWorkflowID(c.Home, c.Companion), "", SignalProbe, p.request).Get(ctx, nil)
	for i := range findings {
		f := &findings[i]
		if err != nil {
			f.Repair = "probe failed: " + rootMessage(err)
			continue
		}
		f.Outcome = OutcomeRepaired
		f.Repair = "asked the connection workflow to start its gone children again"
		r.repaired(ctx, f)
	}
}

// mayRepair reports whether a repair may run now, and notes on f why not.
func (r *reconciler) mayRepair(f *Finding) bool {
	switch {
	case !r.in.Repair:
		return false
	case r.report.Repaired >= r.in.BatchSize:
		r.report.Deferred++
		f.Repair = fmt.Sprintf("deferred to the next run: this run reached its batch of %d repairs", r.in.BatchSize)
		return false
	}
	return true
}

// repaired counts and logs a repair with its reason.
func (r *reconciler) repaired(ctx workflow.Context, f *Finding) {
	r.report.Repaired++
	r.logger.Info("repaired", "kind", f.Kind, "connection", f.Connection, "dataSpace", f.DataSpace,
		"reason", f.Detail, "repair", f.Repair)
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"kind": string(f.Kind)}).Counter(MetricRepairs).Inc(1)
}

// scanOrphans pages through the running connection workflows in visibility
// and reports those whose registry row is gone. Candidates are confirmed by
// describing them, as visibility lags.
func (r *reconciler) scanOrphans(ctx workflow.Context) error {
	query := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", ConnectionWorkflowName)
	if r.filtered {
		return r.scanUnregistered(ctx, query)
	}
	var token []byte
	for {
		var page activities.ListPage
		if err := workflow.ExecuteActivity(r.activityCtx(ctx, "list running connection workflows"), fleet.ListExecutions,
			activities.ListInput{Query: query, PageSize: r.in.PageSize, PageToken: token}).Get(ctx, &page); err != nil {
			return fmt.Errorf("list running connection workflows: %w", err)
		}
		if err := r.checkRegistered(ctx, page.Executions); err != nil {
			return err
		}
		if len(page.NextPageToken) == 0 {
			return nil
		}
		token = page.NextPageToken
	}
}

// scanUnregistered pages through the running connection workflows with
// UnregisteredExecutions, which returns only those whose registry row does
// not name their home, and confirms them.
func (r *reconciler) scanUnregistered(ctx workflow.Context, query string) error {
	var token []byte
	for {
		var page activities.ListPage
		if err := workflow.ExecuteActivity(r.activityCtx(ctx, "find running connection workflows the registry does not know"),
			fleet.UnregisteredExecutions, activities.UnregisteredInput{
				ListInput: activities.ListInput{Query: query, PageSize: r.in.PageSize, PageToken: token},
				HomeAttr:  AttrHomeOrg.GetName(), CompanionAttr: AttrCompanionOrg.GetName(),
			}).Get(ctx, &page); err != nil {
			return fmt.Errorf("find unregistered connection workflows: %w", err)
		}
		if candidates, _ := orphanCandidates(page.Executions); len(candidates) > 0 {
			if err := r.confirmOrphans(ctx, candidates); err != nil {
				return err
			}
		}
		if len(page.NextPageToken) == 0 {
			return nil
		}
		token = page.NextPageToken
	}
}

func (r *reconciler) checkRegistered(ctx workflow.Context, execs []activities.Execution) error {
	candidates, companions := orphanCandidates(execs)
	if len(candidates) == 0 {
		return nil
	}
	var rows []companionsync.Connection
	if err := workflow.ExecuteActivity(r.activityCtx(ctx, "read registry rows"), fleet.RegistryRows, companions).Get(ctx, &rows); err != nil {
		return fmt.Errorf("read registry rows: %w", err)
	}
	orphans := unregistered(candidates, rows)
	if len(orphans) == 0 {
		return nil
	}
	return r.confirmOrphans(ctx, orphans)
}

// confirmOrphans describes the unregistered executions visibility listed
// and reports those still running.
func (r *reconciler) confirmOrphans(ctx workflow.Context, orphans []activities.Execution) error {
	ids := make([]string, 0, len(orphans))
	for _, e := range orphans {
		ids = append(ids, e.WorkflowID)
	}
	var now []activities.Execution
	if err := workflow.ExecuteActivity(r.activityCtx(ctx, "confirm unregistered connection workflows"), fleet.DescribeExecutions, ids).
		Get(ctx, &now); err != nil {
		return fmt.Errorf("describe unregistered connection workflows: %w", err)
	}
	for _, f := range r.plan.orphanFindings(orphans, now) {
		r.add(f)
	}
	return nil
}

// add records a finding.
func (r *reconciler) add(f Finding) {
	r.report.Findings = append(r.report.Findings, f)
	if f.Remains() {
		r.logger.Warn("finding", "kind", f.Kind, "connection", f.Connection, "dataSpace", f.DataSpace,
			"age", f.Age, "detail", f.Detail, "repair", f.Repair)
	}
}

// publish sets the current details (the findings as a table) and the
// findings gauge of each kind.
func (r *reconciler) publish(ctx workflow.Context) {
	var b strings.Builder
	state := "running"
	if r.report.Done {
		state = "done"
	}
	fmt.Fprintf(&b, "**Reconciler** (%s, repair %t): %d connection(s) surveyed, %d finding(s), %d remaining, %d repaired, %d deferred\n\n",
		state, r.in.Repair, r.report.Connections, len(r.report.Findings), r.report.Remaining(), r.report.Repaired, r.report.Deferred)
	if len(r.report.Findings) > 0 {
		b.WriteString("| kind | connection | data space | age | detail | outcome |\n|---|---|---|---|---|---|\n")
		for _, f := range r.report.Findings {
			outcome := f.Outcome
			if outcome == "" {
				outcome = "remains: " + f.Action
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", f.Kind, f.Connection, f.DataSpace, f.Age, mdCell(f.Detail), mdCell(outcome))
		}
	}
	if h := r.report.History; len(h) > 0 {
		fmt.Fprintf(&b, "\nHistory: %d finding(s) of recent runs; the latest: ", len(h))
		for i := max(len(h)-5, 0); i < len(h); i++ {
			outcome := h[i].Outcome
			if outcome == "" {
				outcome = "remained"
			}
			fmt.Fprintf(&b, "%s %s %s (%s); ", h[i].At.UTC().Format(time.RFC3339), h[i].Kind, h[i].Connection, outcome)
		}
		b.WriteString("\n")
	}
	workflow.SetCurrentDetails(ctx, b.String())
	if !r.report.Done {
		return
	}
	counts := map[FindingKind]int{}
	for _, f := range r.report.Findings {
		if f.Remains() {
			counts[f.Kind]++
		}
	}
	metrics := workflow.GetMetricsHandler(ctx)
	for _, k := range FindingKinds() {
		metrics.WithTags(map[string]string{"kind": string(k)}).Gauge(MetricFindings).Update(float64(counts[k]))
	}
}
