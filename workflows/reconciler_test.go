package workflows

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/activities"
)

// fakeFleet serves the reconciler's activities from fixed surveys and
// counts what the reconciler asks, so each test can assert that its checks
// ran (and that no repair ran where none may).
type fakeFleet struct {
	t        *testing.T
	surveys  []activities.ConnectionSurvey
	running  []activities.Execution // running connection workflows in visibility
	rows     map[string]companionsync.Connection
	closed   map[string]bool // workflow IDs that describe as closed
	pages    []activities.RegistryPageInput
	restarts []activities.RestartInput
	orphans  int
	probes   []ProbeRequest
	last     json.RawMessage // the latest completed run's result
	// protocols are the running workflows and their protocols; pollers the
	// workers polling; moved the workflow IDs asked to move.
	protocols []activities.RunProtocol
	pollers   []activities.Poller
	moved     []string
	// surveyed and lastRead count the callbacks that hold assertions, so
	// a check that never runs fails the test.
	surveyed, lastRead int
	// legacy runs the reconciler as a run started before the filtered
	// scans (versionFilteredScans); scans are the filtered scans' calls,
	// and calls every activity the run made, by type.
	legacy bool
	scans  []activities.RegistryScanInput
	calls  map[string]int
}

var reconcileStart = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func runReconciler(t *testing.T, f *fakeFleet, in ReconcilerInput) ReconcileReport {
	t.Helper()
	f.t, f.surveyed, f.lastRead, f.calls = t, 0, 0, map[string]int{}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(testLogger())
	env := suite.NewTestWorkflowEnvironment()
	env.SetStartTime(reconcileStart)
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		f.calls[info.ActivityType.Name]++
	})
	env.RegisterWorkflowWithOptions(ReconcilerWorkflow, workflow.RegisterOptions{Name: ReconcilerWorkflowName})
	RegisterFleet(env, &activities.Fleet{})
	if f.legacy {
		env.OnGetVersion(versionFilteredScans, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	}
	env.OnActivity(fleet.RegisteredConnections, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RegistryPageInput) (activities.RegistryPage, error) {
			f.pages = append(f.pages, in)
			var page []companionsync.Connection
			for _, s := range f.surveys {
				if s.Connection.Companion > in.After && len(page) < in.Limit {
					page = append(page, s.Connection)
				}
			}
			return activities.RegistryPage{Connections: page}, nil
		})
	env.OnActivity(fleet.SurveyConnections, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.SurveyInput) ([]activities.ConnectionSurvey, error) {
			f.surveyed++
			var out []activities.ConnectionSurvey
			for _, target := range in.Targets {
				for _, s := range f.surveys {
					if s.Connection == target.Connection {
						assert.Equal(t, ConnectionWorkflowID(s.Connection.Home, s.Connection.Companion), target.ConnectionID)
						out = append(out, s)
					}
				}
			}
			return out, nil
		})
	env.OnActivity(fleet.ScanRegistry, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RegistryScanInput) (activities.RegistryScan, error) {
			f.surveyed++
			f.scans = append(f.scans, in)
			assert.Equal(t, surveyTemplate, in.Template)
			sorted := slices.Clone(f.surveys)
			slices.SortFunc(sorted, func(a, b activities.ConnectionSurvey) int {
				return strings.Compare(a.Connection.Companion, b.Connection.Companion)
			})
			out := activities.RegistryScan{Surveys: []activities.ConnectionSurvey{}}
			for _, s := range sorted {
				if s.Connection.Companion <= in.After {
					continue
				}
				if len(out.Surveys) == in.PageSize {
					out.Next = out.Surveys[len(out.Surveys)-1].Connection.Companion
					break
				}
				out.Surveyed++
				if !s.Settled {
					out.Surveys = append(out.Surveys, s)
				}
			}
			return out, nil
		})
	env.OnActivity(fleet.UnregisteredExecutions, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.UnregisteredInput) (activities.ListPage, error) {
			out := activities.ListPage{Executions: []activities.Execution{}}
			for _, e := range f.running {
				if home := e.Attrs[in.HomeAttr]; home != "" && f.rows[e.Attrs[in.CompanionAttr]].Home != home {
					out.Executions = append(out.Executions, e)
				}
			}
			return out, nil
		})
	env.OnActivity(fleet.RestartConnection, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RestartInput) (activities.RestartResult, error) {
			f.restarts = append(f.restarts, in)
			return activities.RestartResult{Started: true, RunID: "new-run"}, nil
		})
	env.OnActivity(fleet.ListExecutions, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ListInput) (activities.ListPage, error) {
			return activities.ListPage{Executions: f.running}, nil
		})
	env.OnActivity(fleet.RunProtocols, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RunProtocolsInput) (activities.RunProtocolsPage, error) {
			assert.Equal(t, UpgradeQuery, in.Query)
			if f.legacy {
				assert.Zero(t, in.Skip)
			} else {
				assert.Equal(t, int(CurrentProtocol), in.Skip)
			}
			return activities.RunProtocolsPage{Runs: f.protocols}, nil
		})
	env.OnActivity(fleet.Pollers, mock.Anything, mock.Anything).Return(
		func(_ context.Context, _ activities.PollersInput) ([]activities.Poller, error) {
			return f.pollers, nil
		})
	env.OnActivity(fleet.SignalRuns, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.SignalRunsInput) (activities.SignalRunsResult, error) {
			assert.Equal(t, SignalUpgrade, in.Signal)
			f.moved = append(f.moved, in.WorkflowIDs...)
			return activities.SignalRunsResult{Sent: len(in.WorkflowIDs)}, nil
		})
	env.OnActivity(fleet.RegistryRows, mock.Anything, mock.Anything).Return(
		func(_ context.Context, companions []string) ([]companionsync.Connection, error) {
			out := make([]companionsync.Connection, len(companions))
			for i, c := range companions {
				out[i] = f.rows[c]
			}
			return out, nil
		})
	env.OnActivity(fleet.DescribeExecutions, mock.Anything, mock.Anything).Return(
		func(_ context.Context, ids []string) ([]activities.Execution, error) {
			f.orphans += len(ids)
			var out []activities.Execution
			for _, id := range ids {
				e := activities.Execution{WorkflowID: id, RunID: "run-1", Status: "Running"}
				if f.closed[id] {
					e.Status = "Completed"
				}
				out = append(out, e)
			}
			return out, nil
		})
	env.OnActivity(fleet.LastResult, mock.Anything, mock.Anything).Return(
		func(_ context.Context, query string) (json.RawMessage, error) {
			f.lastRead++
			assert.Contains(t, query, ReconcilerWorkflowName)
			return f.last, nil
		})
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", SignalProbe, mock.Anything).Return(
		func(_, workflowID, _, _ string, arg any) error {
			assert.Equal(t, ConnectionWorkflowID("acme", "acme-emea"), workflowID)
			req, ok := arg.(ProbeRequest)
			require.True(t, ok, "probe payload %T", arg)
			f.probes = append(f.probes, req)
			return nil
		})
	env.ExecuteWorkflow(ReconcilerWorkflowName, in)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var report ReconcileReport
	require.NoError(t, env.GetWorkflowResult(&report))
	assert.True(t, report.Done)
	assert.Equal(t, 1, f.lastRead, "the history is read once per run")
	size := in.WithDefaults().PageSize
	if f.legacy {
		assert.Equal(t, (len(f.surveys)+size-1)/size, f.surveyed, "one survey per registry page")
		assert.Zero(t, f.calls["ScanRegistry"]+f.calls["UnregisteredExecutions"], "a run before the filtered scans calls none")
	} else {
		assert.Positive(t, f.surveyed, "the registry is surveyed")
		assert.Zero(t, f.calls["RegisteredConnections"]+f.calls["SurveyConnections"]+f.calls["ListExecutions"]+f.calls["RegistryRows"],
			"a run with the filtered scans calls only those")
	}
	return report
}

// gone is the survey of a registered connection whose workflow was
// terminated an hour before the run, with one running share.
func gone(companion string) activities.ConnectionSurvey {
	c := companionsync.Connection{Home: "acme", Companion: companion, Token: "t"}
	return activities.ConnectionSurvey{
		Connection: c, HomeKnown: true, CompanionKnown: true,
		Workflow: activities.Execution{WorkflowID: ConnectionWorkflowID("acme", companion), Status: "Terminated",
			CloseTime: reconcileStart.Add(-time.Hour)},
		DataSpaces: []string{"default", "marketing"},
		Shares: []activities.ShareSurvey{{DataSpace: "default", Copied: 10,
			Execution: activities.Execution{Status: "Running", Attrs: map[string]string{AttrInitializationStatus.GetName(): "Active"}}}},
	}
}

func TestReconcilerRestartsAGoneConnectionWithItsShares(t *testing.T) {
	s := gone("acme-emea")
	s.Settings = json.RawMessage(`{"removalDeadline":420000000000}`)
	f := &fakeFleet{surveys: []activities.ConnectionSurvey{s}}
	report := runReconciler(t, f, ReconcilerInput{Repair: true})
	require.Len(t, report.Findings, 1)
	got := report.Findings[0]
	assert.Equal(t, FindingConnectionWorkflowMissing, got.Kind)
	assert.Equal(t, "acme/acme-emea", got.Connection)
	assert.Equal(t, "1h0m0s", got.Age)
	assert.Equal(t, OutcomeRepaired, got.Outcome)
	require.Len(t, f.restarts, 1)
	r := f.restarts[0]
	assert.Equal(t, ConnectionWorkflowID("acme", "acme-emea"), r.WorkflowID)
	assert.Equal(t, TaskQueue, r.TaskQueue)
	assert.Equal(t, companionsync.Connection{Home: "acme", Companion: "acme-emea", Token: "t"}, r.Registered,
		"the restart is conditional on the same registry row")
	var in ConnectionInput
	require.NoError(t, json.Unmarshal(r.Input, &in))
	require.NotNil(t, in.Adopt)
	assert.Nil(t, in.State)
	assert.Equal(t, []AdoptedShare{{DataSpace: "default", Running: true, Status: ShareActive}}, in.Adopt.Shares)
	assert.Equal(t, []string{"default", "marketing"}, in.Adopt.DataSpaces)
	assert.Equal(t, Settings{RemovalDeadline: 7 * time.Minute}, in.Settings, "the gone run's settings are kept")
}

func TestReconcilerNeverRepairsAnUnknownOrg(t *testing.T) {
	s := gone("acme-emea")
	s.CompanionKnown = false
	f := &fakeFleet{surveys: []activities.ConnectionSurvey{s}}
	report := runReconciler(t, f, ReconcilerInput{Repair: true})
	require.Len(t, report.Findings, 1)
	assert.Equal(t, FindingUnknownOrg, report.Findings[0].Kind)
	assert.Contains(t, report.Findings[0].Detail, `org "acme-emea"`)
	assert.True(t, report.Findings[0].Remains())
	assert.Empty(t, f.restarts, "no repair by guessing")
}

func TestReconcilerOnlyReportsWithoutRepair(t *testing.T) {
	f := &fakeFleet{surveys: []activities.ConnectionSurvey{gone("acme-emea")}}
	report := runReconciler(t, f, ReconcilerInput{})
	require.Len(t, report.Findings, 1)
	assert.True(t, report.Findings[0].Remains())
	assert.Empty(t, f.restarts)
	assert.Equal(t, 1, report.Remaining())
}

// TestReconcilerRepairsAtMostABatch: five gone connections over three
// registry pages of two, a batch of two repairs: two are repaired, three
// deferred to the next run.
func TestReconcilerRepairsAtMostABatch(t *testing.T) {
	f := &fakeFleet{}
	for _, c := range []string{"c1", "c2", "c3", "c4", "c5"} {
		f.surveys = append(f.surveys, gone(c))
	}
	for _, legacy := range []bool{true, false} {
		t.Run(fmt.Sprintf("legacy=%t", legacy), func(t *testing.T) {
			f := &fakeFleet{surveys: f.surveys, legacy: legacy}
			report := runReconciler(t, f, ReconcilerInput{Repair: true, BatchSize: 2, PageSize: 2})
			assert.Equal(t, 5, report.Connections)
			if legacy {
				assert.Equal(t, []activities.RegistryPageInput{{After: "", Limit: 2}, {After: "c2", Limit: 2}, {After: "c4", Limit: 2}}, f.pages)
			} else {
				assert.Equal(t, []string{"", "c2", "c4"}, afters(f.scans))
			}
			assert.Len(t, f.restarts, 2)
			assert.Equal(t, 2, report.Repaired)
			assert.Equal(t, 3, report.Deferred)
			assert.Equal(t, 3, report.Remaining())
			assert.Contains(t, report.Findings[4].Repair, "deferred to the next run")
		})
	}
}

func afters(scans []activities.RegistryScanInput) []string {
	var out []string
	for _, s := range scans {
		out = append(out, s.After)
	}
	return out
}

// TestReconcilerCostDoesNotGrowWithAQuietFleet: a run over 10,000 settled
// connections and their running workflows, with pages of 1,000, makes the
// same few activities as over one: each scan pages inside its activity and
// returns only what the run must look at. A run before the filtered scans
// made five per page.
func TestReconcilerCostDoesNotGrowWithAQuietFleet(t *testing.T) {
	const n = 10_000
	f := &fakeFleet{rows: map[string]companionsync.Connection{}}
	for i := range n {
		c := companionsync.Connection{Home: "acme", Companion: fmt.Sprintf("c%05d", i)}
		f.surveys = append(f.surveys, activities.ConnectionSurvey{Connection: c, HomeKnown: true, CompanionKnown: true,
			Workflow: activities.Execution{Status: string(RunRunning)}, Settled: true})
		f.rows[c.Companion] = c
		f.running = append(f.running, activities.Execution{WorkflowID: ConnectionWorkflowID(c.Home, c.Companion), Status: "Running",
			Attrs: map[string]string{AttrHomeOrg.GetName(): c.Home, AttrCompanionOrg.GetName(): c.Companion}})
	}
	report := runReconciler(t, f, ReconcilerInput{Repair: true})
	assert.Equal(t, n, report.Connections)
	assert.Empty(t, report.Findings)
	assert.Zero(t, report.Queried, "no settled connection is queried")
	total := 0
	for _, c := range f.calls {
		total += c
	}
	t.Logf("activities of a run over %d quiet connections: %d %v", n, total, f.calls)
	assert.Equal(t, map[string]int{"LastResult": 1, "ScanRegistry": 1, "UnregisteredExecutions": 1, "Pollers": 1,
		"RunProtocols": 1, "ReportFindings": 1}, f.calls)
}

// running is the survey of a running connection answering with view.
func running(t *testing.T, view StatusView, shares ...activities.ShareSurvey) activities.ConnectionSurvey {
	raw, err := json.Marshal(view)
	require.NoError(t, err)
	return activities.ConnectionSurvey{
		Connection: companionsync.Connection{Home: "acme", Companion: "acme-emea", Token: "t"},
		HomeKnown:  true, CompanionKnown: true,
		Workflow: activities.Execution{Status: "Running"},
		Metadata: activities.Execution{Status: "Running"},
		Status:   raw,
		Shares:   shares,
	}
}

func TestReconcilerThresholds(t *testing.T) {
	twoHoursAgo := reconcileStart.Add(-2 * time.Hour)
	view := StatusView{
		Status: Inactive, Reason: "licence expired",
		DataSpaces: []ShareView{
			{DataSpace: "default", InitializationStatus: ShareError, Error: "copy failed"},
			{DataSpace: "marketing", InitializationStatus: RemovingSharing},
		},
		MetadataSync: MetadataSyncView{Status: SyncError, Paused: true, Error: "conflict"},
		Transitions: []Transition{
			{At: twoHoursAgo, Subject: subjectShare("default"), Status: string(ShareError)},
			{At: twoHoursAgo, Subject: subjectShare("marketing"), Status: string(RemovingSharing)},
			{At: twoHoursAgo, Subject: subjectMetadataSync, Status: string(SyncError)},
			{At: twoHoursAgo, Subject: subjectConnection, Status: string(Inactive)},
		},
	}
	shares := []activities.ShareSurvey{
		{DataSpace: "default", Execution: activities.Execution{Status: "Running"}},
		{DataSpace: "marketing", Execution: activities.Execution{Status: "Running"}},
	}
	kinds := []FindingKind{FindingShareInError, FindingRemovalPastDeadline, FindingMetadataSyncPaused, FindingConnectionInactive}
	for _, tc := range []struct {
		name      string
		threshold time.Duration
		want      []FindingKind
	}{
		{"past every threshold", time.Hour, kinds},
		{"within every threshold", 3 * time.Hour, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeFleet{surveys: []activities.ConnectionSurvey{running(t, view, shares...)}}
			report := runReconciler(t, f, ReconcilerInput{Repair: true, ErrorAfter: tc.threshold, PausedAfter: tc.threshold,
				InactiveAfter: tc.threshold, RemovalAfter: tc.threshold})
			var got []FindingKind
			for _, f := range report.Findings {
				got = append(got, f.Kind)
				assert.Equal(t, "2h0m0s", f.Age, "%s", f.Kind)
				assert.True(t, f.Remains(), "stuck work is reported, not repaired")
			}
			assert.Equal(t, tc.want, got)
			assert.Empty(t, f.restarts)
		})
	}
}

func TestReconcilerReportsOrphanConnectionWorkflows(t *testing.T) {
	attrs := func(companion, status string) map[string]string {
		return map[string]string{AttrHomeOrg.GetName(): "acme", AttrCompanionOrg.GetName(): companion, AttrConnectionStatus.GetName(): status}
	}
	f := &fakeFleet{
		running: []activities.Execution{
			{WorkflowID: ConnectionWorkflowID("acme", "orphan"), RunID: "run-1", Status: "Running", Attrs: attrs("orphan", "Active")},
			{WorkflowID: ConnectionWorkflowID("acme", "closing"), RunID: "run-1", Status: "Running", Attrs: attrs("closing", "Incomplete")},
			{WorkflowID: ConnectionWorkflowID("acme", "new"), RunID: "run-1", Status: "Running", Attrs: attrs("new", string(Connecting))},
			{WorkflowID: ConnectionWorkflowID("acme", "fine"), RunID: "run-1", Status: "Running", Attrs: attrs("fine", "Active")},
		},
		rows:   map[string]companionsync.Connection{"fine": {Home: "acme", Companion: "fine"}},
		closed: map[string]bool{ConnectionWorkflowID("acme", "closing"): true},
	}
	for _, legacy := range []bool{true, false} {
		t.Run(fmt.Sprintf("legacy=%t", legacy), func(t *testing.T) {
			f := &fakeFleet{running: f.running, rows: f.rows, closed: f.closed, legacy: legacy}
			report := runReconciler(t, f, ReconcilerInput{Repair: true})
			require.Len(t, report.Findings, 1, "findings %+v", report.Findings)
			got := report.Findings[0]
			assert.Equal(t, FindingOrphanConnectionWorkflow, got.Kind)
			assert.Equal(t, "acme/orphan", got.Connection)
			assert.True(t, got.Remains(), "never stopped by the reconciler")
			assert.Equal(t, 2, f.orphans, "candidates confirmed by describing them; a connecting one is no candidate")
		})
	}
}

// TestReconcilerProbesForGoneChildren: a running connection lists a share
// whose workflow was terminated mid-copy and a metadata sync that is gone:
// one probe repairs both, carrying the share's checkpoint.
func TestReconcilerProbesForGoneChildren(t *testing.T) {
	view := StatusView{Status: Active,
		DataSpaces:   []ShareView{{DataSpace: "default", InitializationStatus: Activating}},
		MetadataSync: MetadataSyncView{Status: SyncSucceeded},
	}
	s := running(t, view, activities.ShareSurvey{DataSpace: "default", Copied: 40, Checkpoint: "rec-040",
		Execution: activities.Execution{Status: "Terminated", CloseTime: reconcileStart.Add(-time.Minute)}})
	s.Metadata = activities.Execution{Status: "Completed"}
	f := &fakeFleet{surveys: []activities.ConnectionSurvey{s}}

	report := runReconciler(t, f, ReconcilerInput{Repair: true})
	require.Len(t, report.Findings, 2)
	assert.Equal(t, FindingShareWorkflowMissing, report.Findings[0].Kind)
	assert.Equal(t, "1m0s", report.Findings[0].Age)
	assert.Equal(t, FindingMetadataSyncMissing, report.Findings[1].Kind)
	for _, f := range report.Findings {
		assert.Equal(t, OutcomeRepaired, f.Outcome)
	}
	assert.Equal(t, 0, report.Remaining())
	assert.Equal(t, []ProbeRequest{{Checkpoints: map[string]string{"default": "rec-040"}}}, f.probes, "one probe, with the checkpoint")

	f.probes = nil
	report = runReconciler(t, f, ReconcilerInput{})
	assert.Equal(t, 2, report.Remaining())
	assert.Empty(t, f.probes, "no probe without repair")
}

// TestReconcilerKeepsABoundedHistory: each run starts from the history of
// the last completed run, adds its own findings and keeps the newest
// MaxFindingHistory.
func TestReconcilerKeepsABoundedHistory(t *testing.T) {
	f := &fakeFleet{surveys: []activities.ConnectionSurvey{gone("acme-emea")}}
	first := runReconciler(t, f, ReconcilerInput{})
	require.Len(t, first.History, 1)
	assert.Equal(t, PastFinding{Run: first.History[0].Run, At: reconcileStart, Kind: FindingConnectionWorkflowMissing,
		Connection: "acme/acme-emea"}, first.History[0])

	var err error
	f.last, err = json.Marshal(first)
	require.NoError(t, err)
	second := runReconciler(t, f, ReconcilerInput{Repair: true})
	require.Len(t, second.History, 2)
	assert.Equal(t, "", second.History[0].Outcome)
	assert.Equal(t, OutcomeRepaired, second.History[1].Outcome)

	full := first
	full.History = nil
	for i := range MaxFindingHistory {
		full.History = append(full.History, PastFinding{Run: fmt.Sprint(i), Kind: FindingShareInError})
	}
	f.last, err = json.Marshal(full)
	require.NoError(t, err)
	third := runReconciler(t, f, ReconcilerInput{})
	require.Len(t, third.History, MaxFindingHistory)
	assert.Equal(t, "1", third.History[0].Run, "the oldest entry dropped")
	assert.Equal(t, FindingConnectionWorkflowMissing, third.History[MaxFindingHistory-1].Kind)
}

// TestReconcilerMovesRunsOnOlderProtocols: runs on an earlier protocol are
// reported and, repairing, asked to move, unless a worker of an earlier
// release still polls; protocols this release cannot run (retired, or
// newer) are reported only.
func TestReconcilerMovesRunsOnOlderProtocols(t *testing.T) {
	runs := []activities.RunProtocol{
		{WorkflowID: ConnectionWorkflowID("acme", "a"), Type: ConnectionWorkflowName, Protocol: int(ProtocolPublished)},
		{WorkflowID: ShareWorkflowID("acme", "a", "default"), Type: ShareWorkflowName, Protocol: int(ProtocolPublished), FromInput: true},
		{WorkflowID: MetadataSyncWorkflowID("acme", "b"), Type: MetadataSyncWorkflowName, Protocol: int(CurrentProtocol)},
		{WorkflowID: ConnectionWorkflowID("acme", "c"), Type: ConnectionWorkflowName, Protocol: int(ProtocolReportEveryAck), FromInput: true},
		{WorkflowID: ConnectionWorkflowID("acme", "d"), Type: ConnectionWorkflowName, Protocol: int(CurrentProtocol) + 1},
	}
	kinds := func(r ReconcileReport) map[FindingKind]int {
		out := map[FindingKind]int{}
		for _, f := range r.Findings {
			out[f.Kind]++
		}
		return out
	}
	current := []activities.Poller{{Identity: WorkerIdentity("1@host")}}
	for _, tc := range []struct {
		name    string
		repair  bool
		pollers []activities.Poller
		moved   []string
		remain  int
	}{
		{"report only", false, current, nil, 4},
		{"repair", true, current, []string{runs[0].WorkflowID, runs[1].WorkflowID}, 2},
		{"repair held by an older worker", true, append(current, activities.Poller{Identity: "7@old-host@"}), nil, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeFleet{protocols: runs, pollers: tc.pollers}
			in := DefaultReconcilerInput()
			in.Repair = tc.repair
			report := runReconciler(t, f, in)
			assert.Equal(t, tc.moved, f.moved)
			assert.Equal(t, map[FindingKind]int{FindingOldProtocol: 2, FindingUnsupportedProtocol: 2}, kinds(report))
			assert.Equal(t, tc.remain, report.Remaining())
		})
	}
}

func TestPlanUpgrade(t *testing.T) {
	run := func(p Protocol) activities.RunProtocol {
		return activities.RunProtocol{WorkflowID: p.String(), Protocol: int(p)}
	}
	plan := PlanUpgrade([]activities.RunProtocol{
		run(ProtocolReportEveryAck), run(ProtocolDeliveryAck), run(ProtocolLocalReport),
		run(ProtocolProgressReport), run(ProtocolPublished), run(ProtocolAccountable), run(CurrentProtocol), run(CurrentProtocol + 1),
	})
	ids := func(rs []activities.RunProtocol) (out []string) {
		for _, r := range rs {
			out = append(out, r.WorkflowID)
		}
		return out
	}
	assert.Equal(t, []string{"4", "5"}, ids(plan.Move))
	assert.Equal(t, []string{"0", "1", "2", "3", (CurrentProtocol + 1).String()}, ids(plan.Unsupported))
	assert.Equal(t, 1, plan.Current)
}

func TestOlderWorkers(t *testing.T) {
	assert.Empty(t, OlderWorkers([]activities.Poller{{Identity: WorkerIdentity("1@a")}}))
	assert.Equal(t, []string{"2@b@", "3@c companionsync/protocol-3"}, OlderWorkers([]activities.Poller{
		{Identity: WorkerIdentity("1@a")}, {Identity: "2@b@"}, {Identity: "3@c companionsync/protocol-3"},
	}))
}
