package workflows

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/activities"
)

// The reconciler's decisions, as pure functions: from what a run observed
// (a survey of a registered connection, running workflows and registry
// rows, the protocols of running workflows) to findings and the repairs
// that would fix them. ReconcilerWorkflow gathers the observations with
// activities and carries the plans out; nothing here touches Temporal, so
// reconciler_plan_test.go tests every decision as a table.

// planner decides with a run's input and start time.
type planner struct {
	in  ReconcilerInput
	now time.Time
}

// connectionPlan is what the reconciler decides about one registered
// connection. At most one of restart and probe is set.
type connectionPlan struct {
	// findings are reported as they are: no repair is theirs.
	findings []Finding
	// restart starts the gone connection workflow again, adopting its
	// children.
	restart *restartPlan
	// probe asks the running connection to start its gone children again.
	probe *probePlan
	// unexamined says why the connection was not examined this run (it gave
	// no status: busy or still connecting); the next run looks again.
	unexamined string
}

// restartPlan starts a gone connection workflow with input; finding is
// reported with the outcome.
type restartPlan struct {
	finding Finding
	// registered is the registry row the restart is for: the restart is
	// skipped when the row changed meanwhile.
	registered companionsync.Connection
	input      ConnectionInput
}

// adopted counts the shares the restarted run adopts running and those it
// starts again.
func (p *restartPlan) adopted() (running, again int) {
	for _, sh := range p.input.Adopt.Shares {
		if sh.Running {
			running++
		}
	}
	return running, len(p.input.Adopt.Shares) - running
}

// probePlan sends request to a running connection; findings are reported
// with the outcome.
type probePlan struct {
	findings []Finding
	request  ProbeRequest
}

// connection plans one registered connection from its survey.
func (p planner) connection(s activities.ConnectionSurvey) connectionPlan {
	ref := Reference(s.Connection.Home, s.Connection.Companion)
	if !s.HomeKnown || !s.CompanionKnown {
		missing := s.Connection.Home
		if s.HomeKnown {
			missing = s.Connection.Companion
		}
		return connectionPlan{findings: []Finding{{Kind: FindingUnknownOrg, Connection: ref,
			Detail: fmt.Sprintf("the registry row of %s names org %q, which does not exist", ref, missing),
			Action: "restore the org in the org store, or remove the registry row by hand; the reconciler does not guess"}}}
	}
	if !s.Workflow.Running() {
		f := Finding{Kind: FindingConnectionWorkflowMissing, Connection: ref,
			Detail: "no connection workflow ever ran for the registered pair",
			Action: "'starter doctor --repair' restarts it from the registry, adopting its running shares"}
		if s.Workflow.Status != "" {
			f.Detail = fmt.Sprintf("the connection workflow %s is %s", s.Workflow.WorkflowID, s.Workflow.Status)
			if !s.Workflow.CloseTime.IsZero() {
				p.since(&f, s.Workflow.CloseTime)
			}
		}
		return connectionPlan{restart: &restartPlan{finding: f, registered: s.Connection, input: adoptInput(s, f.Detail)}}
	}
	if s.Settled {
		return connectionPlan{} // nothing to find: see ConnectionSurvey.Settled
	}
	var view StatusView
	if len(s.Status) == 0 || json.Unmarshal(s.Status, &view) != nil || view.Status == Connecting {
		why := "no status yet"
		if view.Status == Connecting {
			why = "still connecting"
		} else if s.StatusError != "" {
			why = "no status: " + s.StatusError
		}
		return connectionPlan{unexamined: why}
	}
	return p.running(s, ref, view)
}

// running plans a running connection: its gone children (repaired by one
// probe) and its stuck work (reported).
func (p planner) running(s activities.ConnectionSurvey, ref string, view StatusView) connectionPlan {
	var plan connectionPlan
	missing := p.goneShares(s, ref, view)
	plan.findings = append(plan.findings, p.stuckShares(ref, view)...)
	plan.findings = append(plan.findings, orphanData(s, ref, view)...)
	m := view.MetadataSync
	if m.Status != "" && !m.Stopped && !s.Metadata.Running() && !view.Disconnecting {
		f := Finding{Kind: FindingMetadataSyncMissing, Connection: ref,
			Detail: fmt.Sprintf("the metadata sync is %s but its workflow %s", m.Status, notRunning(s.Metadata)),
			Action: "'starter doctor --repair' asks the connection to start it again"}
		if !s.Metadata.CloseTime.IsZero() {
			p.since(&f, s.Metadata.CloseTime)
		}
		missing = append(missing, f)
	}
	plan.findings = append(plan.findings, p.stuckConnection(ref, view)...)
	if len(missing) > 0 {
		plan.probe = &probePlan{findings: missing, request: probeRequest(s.Shares)}
	}
	return plan
}

// goneShares are the shares the connection lists, acknowledged, whose
// workflow does not run.
func (p planner) goneShares(s activities.ConnectionSurvey, ref string, view StatusView) []Finding {
	execs := map[string]activities.Execution{}
	for _, sh := range s.Shares {
		execs[sh.DataSpace] = sh.Execution
	}
	var missing []Finding
	for _, v := range view.DataSpaces {
		exec := execs[v.DataSpace]
		if v.InitializationStatus == "" || v.Requested != "" || exec.Running() {
			continue
		}
		f := Finding{Kind: FindingShareWorkflowMissing, Connection: ref, DataSpace: v.DataSpace,
			Detail: fmt.Sprintf("share %s is %s but its workflow %s", v.DataSpace, v.InitializationStatus, notRunning(exec)),
			Action: "'starter doctor --repair' asks the connection to start it again; the copy or removal goes on from the companion's data"}
		if !exec.CloseTime.IsZero() {
			p.since(&f, exec.CloseTime)
		}
		missing = append(missing, f)
	}
	return missing
}

// stuckShares are the shares in Error, or removing, for longer than their
// thresholds.
func (p planner) stuckShares(ref string, view StatusView) []Finding {
	var findings []Finding
	for _, v := range view.DataSpaces {
		subject := subjectShare(v.DataSpace)
		switch v.InitializationStatus {
		case ShareError:
			if at, ok := since(view, subject, string(ShareError)); p.older(at, ok, p.in.ErrorAfter) {
				f := Finding{Kind: FindingShareInError, Connection: ref, DataSpace: v.DataSpace, Detail: v.Error,
					Action: fmt.Sprintf("fix the cause, then 'starter retry --connection %s --data-space %s', or unshare it", ref, v.DataSpace)}
				p.since(&f, at)
				findings = append(findings, f)
			}
		case RemovingSharing:
			at, ok := since(view, subject, string(RemovingSharing))
			if !ok {
				at, ok = since(view, subject, RequestUnshare+" requested")
			}
			if p.older(at, ok, p.in.RemovalAfter) {
				f := Finding{Kind: FindingRemovalPastDeadline, Connection: ref, DataSpace: v.DataSpace,
					Detail: fmt.Sprintf("removal of %s: %d of %d records removed, past the %s deadline", v.DataSpace, v.RecordsRemoved, v.RecordsToRemove, p.in.RemovalAfter),
					Action: "check that workers run and reach the org store; the removal goes on when its workflow runs (doctor --repair starts a gone one again)"}
				p.since(&f, at)
				findings = append(findings, f)
			}
		}
	}
	return findings
}

// orphanData are the data spaces whose records the companion holds though
// the connection has no share of them (and is not disconnecting).
func orphanData(s activities.ConnectionSurvey, ref string, view StatusView) []Finding {
	listed := map[string]bool{}
	for _, v := range view.DataSpaces {
		listed[v.DataSpace] = true
	}
	var findings []Finding
	for _, sh := range s.Shares {
		if !listed[sh.DataSpace] && sh.Copied > 0 && !sh.Execution.Running() && !view.Disconnecting {
			findings = append(findings, Finding{Kind: FindingOrphanShareData, Connection: ref, DataSpace: sh.DataSpace,
				Detail: fmt.Sprintf("the companion holds %d records of %s but the connection has no share of it", sh.Copied, sh.DataSpace),
				Action: fmt.Sprintf("share it again ('starter share --connection %s --data-space %s') to own the data, then unshare it to remove it", ref, sh.DataSpace)})
		}
	}
	return findings
}

// stuckConnection reports a metadata sync paused, or a connection
// Inactive, for longer than its threshold.
func (p planner) stuckConnection(ref string, view StatusView) []Finding {
	var findings []Finding
	if m := view.MetadataSync; m.Paused {
		if at, ok := since(view, subjectMetadataSync, string(SyncError)); p.older(at, ok, p.in.PausedAfter) {
			f := Finding{Kind: FindingMetadataSyncPaused, Connection: ref, Detail: m.Error,
				Action: fmt.Sprintf("'starter error-log --connection %s', fix the cause, then 'starter resume --connection %s'", ref, ref)}
			p.since(&f, at)
			findings = append(findings, f)
		}
	}
	if view.Status == Inactive {
		if at, ok := since(view, subjectConnection, string(Inactive)); p.older(at, ok, p.in.InactiveAfter) {
			f := Finding{Kind: FindingConnectionInactive, Connection: ref, Detail: view.Reason,
				Action: fmt.Sprintf("fix the reason, then 'starter recheck --connection %s'", ref)}
			p.since(&f, at)
			findings = append(findings, f)
		}
	}
	return findings
}

// probeRequest carries the checkpoints of the gone shares, which their
// restarted copies go on from.
func probeRequest(shares []activities.ShareSurvey) ProbeRequest {
	req := ProbeRequest{Checkpoints: map[string]string{}}
	for _, sh := range shares {
		if sh.Checkpoint != "" && !sh.Execution.Running() {
			req.Checkpoints[sh.DataSpace] = sh.Checkpoint
		}
	}
	return req
}

// adoptInput is the input that restarts a gone connection workflow: its
// registered pair, the gone run's settings, and the children to adopt.
// The gone run's last state, when it still answers, names its shares (even
// one whose workflow never started) and a disconnect it had accepted. A
// share adopts its running workflow, whatever protocol that runs: the
// adopting connection asks it to report, and it moves onto the current
// protocol when asked, like any run.
func adoptInput(s activities.ConnectionSurvey, reason string) ConnectionInput {
	var last StatusView
	if len(s.Status) > 0 {
		_ = json.Unmarshal(s.Status, &last)
	}
	wanted := map[string]ShareView{}
	for _, v := range last.DataSpaces {
		wanted[v.DataSpace] = v
	}
	adopt := &AdoptState{Reason: reason, DataSpaces: s.DataSpaces, Shares: []AdoptedShare{}, Disconnecting: last.Disconnecting}
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
	for _, ds := range slices.Sorted(maps.Keys(wanted)) {
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
	c := s.Connection
	return ConnectionInput{Home: c.Home, Companion: c.Companion, Settings: settings, Adopt: adopt, Protocol: StarterProtocol}
}

// orphanCandidates are the running connection workflows past their
// handshake (a connecting one is not registered yet), with the companions
// whose registry rows decide whether they are orphans.
func orphanCandidates(execs []activities.Execution) (candidates []activities.Execution, companions []string) {
	for _, e := range execs {
		home, companion := e.Attrs[AttrHomeOrg.GetName()], e.Attrs[AttrCompanionOrg.GetName()]
		if home == "" || companion == "" || e.Attrs[AttrConnectionStatus.GetName()] == string(Connecting) {
			continue
		}
		candidates = append(candidates, e)
		companions = append(companions, companion)
	}
	return candidates, companions
}

// unregistered are the candidates whose companion's registry row (rows[i]
// for candidates[i]) does not name their home.
func unregistered(candidates []activities.Execution, rows []companionsync.Connection) []activities.Execution {
	var orphans []activities.Execution
	for i, e := range candidates {
		if rows[i].Home != e.Attrs[AttrHomeOrg.GetName()] {
			orphans = append(orphans, e)
		}
	}
	return orphans
}

// orphanFindings reports the orphans that a strongly consistent read
// (described[i] for orphans[i]) confirms: visibility lags, and one that
// closed meanwhile (a disconnect finishing) is none.
func (p planner) orphanFindings(orphans, described []activities.Execution) []Finding {
	var findings []Finding
	for i, e := range orphans {
		if !described[i].Running() || described[i].RunID != e.RunID {
			continue
		}
		ref := Reference(e.Attrs[AttrHomeOrg.GetName()], e.Attrs[AttrCompanionOrg.GetName()])
		f := Finding{Kind: FindingOrphanConnectionWorkflow, Connection: ref,
			Detail: fmt.Sprintf("the connection workflow %s runs (status %s) but the registry holds no row for %s",
				e.WorkflowID, e.Attrs[AttrConnectionStatus.GetName()], ref),
			Action: fmt.Sprintf("if the pair should be connected, restore its registry row; otherwise 'starter disconnect --connection %s' (the reconciler never stops it)", ref)}
		p.since(&f, e.StartTime)
		findings = append(findings, f)
	}
	return findings
}

// protocolPlan is what the reconciler decides about one page of running
// workflows' protocols.
type protocolPlan struct {
	// findings are reported in order; the ones repaired are counted.
	findings []Finding
	// signal are the workflows to ask to move.
	signal []string
}

// protocolPager lists the old-protocol findings of a run one by one up to
// maxProtocolFindings and counts the rest.
type protocolPager struct {
	listed, unlisted int
}

// protocols plans one page of running workflows: the ones on a protocol
// this release cannot run are reported; the ones behind are reported and,
// when repairing and no worker of an earlier release polls (older), asked
// to move.
func (p planner) protocols(runs []activities.RunProtocol, older []string, pager *protocolPager) protocolPlan {
	var plan protocolPlan
	up := PlanUpgrade(runs)
	for _, run := range up.Unsupported {
		plan.findings = append(plan.findings, Finding{Kind: FindingUnsupportedProtocol, Connection: runConnection(run.WorkflowID),
			Detail: fmt.Sprintf("%s runs protocol %d; this release runs protocols %d to %d", run.WorkflowID, run.Protocol, OldestProtocol, CurrentProtocol),
			Action: "run a release that supports it until starter doctor reports none (docs/operations.md, Upgrades)"})
	}
	for _, run := range append(up.Move, up.Unknown...) {
		if p.in.Repair && len(older) == 0 {
			plan.signal = append(plan.signal, run.WorkflowID)
		}
		if pager.listed == maxProtocolFindings {
			pager.unlisted++
			continue
		}
		pager.listed++
		f := Finding{Kind: FindingOldProtocol, Connection: runConnection(run.WorkflowID),
			Detail: fmt.Sprintf("%s runs protocol %d, not the current %d", run.WorkflowID, run.Protocol, CurrentProtocol),
			Action: "starter doctor --repair asks it to move"}
		if run.Unknown {
			f.Detail = fmt.Sprintf("%s: its protocol could not be read (no search attribute, and its input does not decode)", run.WorkflowID)
		}
		p.protocolRepair(&f, older)
		plan.findings = append(plan.findings, f)
	}
	return plan
}

// unlistedProtocols is the one finding that counts the old-protocol runs
// not listed one by one, if any.
func (p planner) unlistedProtocols(pager protocolPager, older []string) []Finding {
	if pager.unlisted == 0 {
		return nil
	}
	f := Finding{Kind: FindingOldProtocol, Connection: "*",
		Detail: fmt.Sprintf("%d more running workflows on an earlier protocol", pager.unlisted),
		Action: "starter doctor --repair asks them to move"}
	p.protocolRepair(&f, older)
	return []Finding{f}
}

// protocolRepair says what the run does about an old-protocol finding.
func (p planner) protocolRepair(f *Finding, older []string) {
	switch {
	case !p.in.Repair:
	case len(older) > 0:
		f.Repair = fmt.Sprintf("not asked to move: %d worker(s) of an earlier release still poll (%s)", len(older), strings.Join(older, ", "))
	default:
		f.Outcome, f.Repair = OutcomeRepaired, "asked to move to the current protocol at its next safe point"
	}
}

// since sets the finding's start and age.
func (p planner) since(f *Finding, at time.Time) {
	if at.IsZero() {
		return
	}
	t := at.UTC()
	f.Since = &t
	f.Age = max(p.now.Sub(at), 0).Round(time.Second).String()
}

// older reports whether a condition that started at (known when ok) has
// lasted at least threshold. One whose start is unknown counts.
func (p planner) older(at time.Time, ok bool, threshold time.Duration) bool {
	return !ok || p.now.Sub(at) >= threshold
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

// runConnection is the connection reference ("HOME/COMPANION") of one of the
// three workflows' IDs, or the ID itself.
func runConnection(workflowID string) string {
	parts := strings.Split(workflowID, ":")
	if len(parts) >= 3 {
		return Reference(parts[1], parts[2])
	}
	return workflowID
}
