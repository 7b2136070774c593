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
	r.report = ReconcileReport{StartedAt: r.now, Repair: r.in.Repair, Findings: []Finding{}}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (ReconcileReport, error) { return r.report, nil }); err != nil {
		return ReconcileReport{}, fmt.Errorf("register status query: %w", err)
	}
	workflow.SetCurrentDetails(ctx, "surveying the registry")
	r.report.History = r.pastFindings(ctx)
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
	return r.report, nil
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
	logger log.Logger
	now    time.Time
	report ReconcileReport
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
			r.examine(ctx, s)
		}
		r.publish(ctx)
		if len(page.Connections) < r.in.PageSize {
			return nil
		}
		after = page.Connections[len(page.Connections)-1].Companion
	}
}

func surveyTarget(c companionsync.Connection) activities.SurveyTarget {
	return activities.SurveyTarget{
		Connection:               c,
		ConnectionID:             ConnectionWorkflowID(c.Home, c.Companion),
		MetadataID:               MetadataSyncWorkflowID(c.Home, c.Companion),
		ShareIDPrefix:            ShareWorkflowID(c.Home, c.Companion, ""),
		StatusQuery:              QueryStatus,
		InitializationStatusAttr: AttrInitializationStatus.GetName(),
	}
}

// examine turns the survey of one registered connection into findings and
// repairs.
func (r *reconciler) examine(ctx workflow.Context, s activities.ConnectionSurvey) {
	ref := Reference(s.Connection.Home, s.Connection.Companion)
	if !s.HomeKnown || !s.CompanionKnown {
		missing := s.Connection.Home
		if s.HomeKnown {
			missing = s.Connection.Companion
		}
		r.add(Finding{Kind: FindingUnknownOrg, Connection: ref,
			Detail: fmt.Sprintf("the registry row of %s names org %q, which does not exist", ref, missing),
			Action: "restore the org in the org store, or remove the registry row by hand; the reconciler does not guess"})
		return
	}
	if !s.Workflow.Running() {
		f := Finding{Kind: FindingConnectionWorkflowMissing, Connection: ref,
			Detail: "no connection workflow ever ran for the registered pair",
			Action: "'starter doctor --repair' restarts it from the registry, adopting its running shares"}
		if s.Workflow.Status != "" {
			f.Detail = fmt.Sprintf("the connection workflow %s is %s", s.Workflow.WorkflowID, s.Workflow.Status)
			if !s.Workflow.CloseTime.IsZero() {
				r.since(&f, s.Workflow.CloseTime)
			}
		}
		r.restart(ctx, s, &f)
		r.add(f)
		return
	}
	var view StatusView
	if len(s.Status) == 0 || json.Unmarshal(s.Status, &view) != nil || view.Status == Connecting {
		// No answer (a busy or a connecting workflow): the next run looks again.
		r.logger.Info("connection not examined: no status yet", "connection", ref, "status", view.Status, "error", s.StatusError)
		return
	}
	r.examineRunning(ctx, s, ref, view)
}

// examineRunning checks a running connection's children and stuck work.
func (r *reconciler) examineRunning(ctx workflow.Context, s activities.ConnectionSurvey, ref string, view StatusView) {
	shares := map[string]activities.ShareSurvey{}
	for _, sh := range s.Shares {
		shares[sh.DataSpace] = sh
	}
	var missing []*Finding
	listed := map[string]bool{}
	for _, v := range view.DataSpaces {
		listed[v.DataSpace] = true
		exec := shares[v.DataSpace].Execution
		if v.InitializationStatus != "" && v.Requested == "" && !exec.Running() {
			f := &Finding{Kind: FindingShareWorkflowMissing, Connection: ref, DataSpace: v.DataSpace,
				Detail: fmt.Sprintf("share %s is %s but its workflow %s", v.DataSpace, v.InitializationStatus, notRunning(exec)),
				Action: "'starter doctor --repair' asks the connection to start it again; the copy or removal goes on from the companion's data"}
			if !exec.CloseTime.IsZero() {
				r.since(f, exec.CloseTime)
			}
			missing = append(missing, f)
		}
		subject := subjectShare(v.DataSpace)
		switch v.InitializationStatus {
		case ShareError:
			if at, ok := since(view, subject, string(ShareError)); r.older(at, ok, r.in.ErrorAfter) {
				f := Finding{Kind: FindingShareInError, Connection: ref, DataSpace: v.DataSpace, Detail: v.Error,
					Action: fmt.Sprintf("fix the cause, then 'starter retry --connection %s --data-space %s', or unshare it", ref, v.DataSpace)}
				r.since(&f, at)
				r.add(f)
			}
		case RemovingSharing:
			at, ok := since(view, subject, string(RemovingSharing))
			if !ok {
				at, ok = since(view, subject, RequestUnshare+" requested")
			}
			if r.older(at, ok, r.in.RemovalAfter) {
				f := Finding{Kind: FindingRemovalPastDeadline, Connection: ref, DataSpace: v.DataSpace,
					Detail: fmt.Sprintf("removal of %s: %d of %d records removed, past the %s deadline", v.DataSpace, v.RecordsRemoved, v.RecordsToRemove, r.in.RemovalAfter),
					Action: "check that workers run and reach the org store; the removal goes on when its workflow runs (doctor --repair starts a gone one again)"}
				r.since(&f, at)
				r.add(f)
			}
		}
	}
	for _, sh := range s.Shares {
		if !listed[sh.DataSpace] && sh.Copied > 0 && !sh.Execution.Running() && !view.Disconnecting {
			r.add(Finding{Kind: FindingOrphanShareData, Connection: ref, DataSpace: sh.DataSpace,
				Detail: fmt.Sprintf("the companion holds %d records of %s but the connection has no share of it", sh.Copied, sh.DataSpace),
				Action: fmt.Sprintf("share it again ('starter share --connection %s --data-space %s') to own the data, then unshare it to remove it", ref, sh.DataSpace)})
		}
	}
	m := view.MetadataSync
	if m.Status != "" && !m.Stopped && !s.Metadata.Running() && !view.Disconnecting {
		f := &Finding{Kind: FindingMetadataSyncMissing, Connection: ref,
			Detail: fmt.Sprintf("the metadata sync is %s but its workflow %s", m.Status, notRunning(s.Metadata)),
			Action: "'starter doctor --repair' asks the connection to start it again"}
		if !s.Metadata.CloseTime.IsZero() {
			r.since(f, s.Metadata.CloseTime)
		}
		missing = append(missing, f)
	}
	if m.Paused {
		if at, ok := since(view, subjectMetadataSync, string(SyncError)); r.older(at, ok, r.in.PausedAfter) {
			f := Finding{Kind: FindingMetadataSyncPaused, Connection: ref, Detail: m.Error,
				Action: fmt.Sprintf("'starter error-log --connection %s', fix the cause, then 'starter resume --connection %s'", ref, ref)}
			r.since(&f, at)
			r.add(f)
		}
	}
	if view.Status == Inactive {
		if at, ok := since(view, subjectConnection, string(Inactive)); r.older(at, ok, r.in.InactiveAfter) {
			f := Finding{Kind: FindingConnectionInactive, Connection: ref, Detail: view.Reason,
				Action: fmt.Sprintf("fix the reason, then 'starter recheck --connection %s'", ref)}
			r.since(&f, at)
			r.add(f)
		}
	}
	if len(missing) > 0 {
		r.probe(ctx, s.Connection, s.Shares, missing)
	}
	for _, f := range missing {
		r.add(*f)
	}
}

// restart starts a gone connection workflow again, adopting its children,
// when repairs are on and the batch allows.
func (r *reconciler) restart(ctx workflow.Context, s activities.ConnectionSurvey, f *Finding) {
	if !r.mayRepair(f) {
		return
	}
	c := s.Connection
	// The gone run's last state, when it still answers: its shares (even
	// one whose workflow never started) and a disconnect it had accepted.
	var last StatusView
	if len(s.Status) > 0 {
		_ = json.Unmarshal(s.Status, &last)
	}
	wanted := map[string]ShareView{}
	for _, v := range last.DataSpaces {
		wanted[v.DataSpace] = v
	}
	adopt := &AdoptState{Reason: f.Detail, DataSpaces: s.DataSpaces, Shares: []AdoptedShare{}, Disconnecting: last.Disconnecting}
	for _, sh := range s.Shares {
		status := InitializationStatus(sh.Execution.Attrs[AttrInitializationStatus.GetName()])
		running := sh.Execution.Running()
		v, listed := wanted[sh.DataSpace]
		delete(wanted, sh.DataSpace)
		if !running && !listed && sh.Copied == 0 && status != Activating {
			continue // removed, or never copied: nothing to carry on
		}
		if listed && v.Requested == RequestUnshare {
			status = RemovingSharing
		}
		adopt.Shares = append(adopt.Shares, AdoptedShare{DataSpace: sh.DataSpace, Running: running, Status: status, Checkpoint: sh.Checkpoint})
	}
	for _, ds := range workflow.DeterministicKeys(wanted) {
		// Requested, but its workflow never ran: requested again.
		status := Activating
		if wanted[ds].Requested == RequestUnshare || wanted[ds].InitializationStatus == RemovingSharing {
			status = RemovingSharing
		}
		adopt.Shares = append(adopt.Shares, AdoptedShare{DataSpace: ds, Status: status})
	}
	var settings Settings
	if len(s.Settings) > 0 {
		// The gone run's settings; unreadable ones leave the worker's defaults.
		_ = json.Unmarshal(s.Settings, &settings)
	}
	input, err := json.Marshal(ConnectionInput{Home: c.Home, Companion: c.Companion, Settings: settings, Adopt: adopt, Protocol: StarterProtocol})
	if err != nil {
		f.Repair = "not restarted: " + err.Error()
		return
	}
	var res activities.RestartResult
	err = workflow.ExecuteActivity(r.activityCtx(ctx, "restart the connection workflow of "+f.Connection), fleet.RestartConnection,
		activities.RestartInput{
			Registered:   c,
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
		running := 0
		for _, sh := range adopt.Shares {
			if sh.Running {
				running++
			}
		}
		f.Outcome = OutcomeRepaired
		f.Repair = fmt.Sprintf("restarted the connection workflow (run %s), adopting %d running share(s) and starting %d again",
			res.RunID, running, len(adopt.Shares)-running)
		if adopt.Disconnecting {
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
func (r *reconciler) probe(ctx workflow.Context, c companionsync.Connection, shares []activities.ShareSurvey, findings []*Finding) {
	if !r.mayRepair(findings[0]) {
		for _, f := range findings[1:] {
			f.Repair = findings[0].Repair
		}
		return
	}
	req := ProbeRequest{Checkpoints: map[string]string{}}
	for _, sh := range shares {
		if sh.Checkpoint != "" && !sh.Execution.Running() {
			req.Checkpoints[sh.DataSpace] = sh.Checkpoint
		}
	}
	err := workflow.SignalExternalWorkflow(ctx, ConnectionWorkflowID(c.Home, c.Companion), "", SignalProbe, req).Get(ctx, nil)
	for _, f := range findings {
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

func (r *reconciler) checkRegistered(ctx workflow.Context, execs []activities.Execution) error {
	var candidates []activities.Execution
	var companions []string
	for _, e := range execs {
		home, companion := e.Attrs[AttrHomeOrg.GetName()], e.Attrs[AttrCompanionOrg.GetName()]
		if home == "" || companion == "" || e.Attrs[AttrConnectionStatus.GetName()] == string(Connecting) {
			continue // still connecting: not registered yet
		}
		candidates = append(candidates, e)
		companions = append(companions, companion)
	}
	if len(candidates) == 0 {
		return nil
	}
	var rows []companionsync.Connection
	if err := workflow.ExecuteActivity(r.activityCtx(ctx, "read registry rows"), fleet.RegistryRows, companions).Get(ctx, &rows); err != nil {
		return fmt.Errorf("read registry rows: %w", err)
	}
	var orphans []activities.Execution
	var ids []string
	for i, e := range candidates {
		if rows[i].Home != e.Attrs[AttrHomeOrg.GetName()] {
			orphans = append(orphans, e)
			ids = append(ids, e.WorkflowID)
		}
	}
	if len(orphans) == 0 {
		return nil
	}
	var now []activities.Execution
	if err := workflow.ExecuteActivity(r.activityCtx(ctx, "confirm unregistered connection workflows"), fleet.DescribeExecutions, ids).
		Get(ctx, &now); err != nil {
		return fmt.Errorf("describe unregistered connection workflows: %w", err)
	}
	for i, e := range orphans {
		if !now[i].Running() || now[i].RunID != e.RunID {
			continue // closed meanwhile (a disconnect finishing)
		}
		ref := Reference(e.Attrs[AttrHomeOrg.GetName()], e.Attrs[AttrCompanionOrg.GetName()])
		f := Finding{Kind: FindingOrphanConnectionWorkflow, Connection: ref,
			Detail: fmt.Sprintf("the connection workflow %s runs (status %s) but the registry holds no row for %s",
				e.WorkflowID, e.Attrs[AttrConnectionStatus.GetName()], ref),
			Action: fmt.Sprintf("if the pair should be connected, restore its registry row; otherwise 'starter disconnect --connection %s' (the reconciler never stops it)", ref)}
		r.since(&f, e.StartTime)
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

// since sets the finding's start and age.
func (r *reconciler) since(f *Finding, at time.Time) {
	if at.IsZero() {
		return
	}
	t := at.UTC()
	f.Since = &t
	f.Age = max(r.now.Sub(at), 0).Round(time.Second).String()
}

// older reports whether a condition that started at (known when ok) has
// lasted at least threshold. One whose start is unknown counts.
func (r *reconciler) older(at time.Time, ok bool, threshold time.Duration) bool {
	return !ok || r.now.Sub(at) >= threshold
}

// since finds when subject last entered status in the connection's
// transitions. When the transitions kept no longer reach back that far, it
// returns the oldest one kept: the condition is at least that old.
func since(view StatusView, subject, status string) (time.Time, bool) {
	for i := len(view.Transitions) - 1; i >= 0; i-- {
		t := view.Transitions[i]
		if t.Subject == subject && t.Status == status {
			return t.At, true
		}
	}
	if len(view.Transitions) > 0 {
		return view.Transitions[0].At, true
	}
	return time.Time{}, false
}

func notRunning(e activities.Execution) string {
	if e.Status == "" {
		return "never ran"
	}
	return "is " + e.Status
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
