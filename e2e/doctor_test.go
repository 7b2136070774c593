package e2e

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// startFleet starts a test system whose registry holds only what the test
// registers: the demo seed's globex/globex-emea row, registered without a
// workflow, is removed (TestReconcilerAdoptsTheSeededRow covers it).
func startFleet(t *testing.T) (*testenv.Env, *control.Client) {
	t.Helper()
	env := testenv.Start(t, testenv.Options{})
	require.NoError(t, env.Store.Deregister(context.Background(), "globex", "globex-emea"))
	return env, control.New(env.Client)
}

// findings returns the report's findings of kind on connection.
func findings(r contract.ReconcileReport, kind contract.FindingKind, connection string) []contract.Finding {
	var out []contract.Finding
	for _, f := range r.Findings {
		if f.Kind == kind && f.Connection == connection {
			out = append(out, f)
		}
	}
	return out
}

// running reports whether the latest run of workflowID is running.
func running(t *testing.T, env *testenv.Env, workflowID string) bool {
	t.Helper()
	d, err := env.Client.DescribeWorkflowExecution(context.Background(), workflowID, "")
	require.NoError(t, err)
	return d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
}

// TestDoctorRestartsATerminatedConnection: the connection workflow of a
// pair with an Active share is terminated by hand. The doctor reports it;
// with repair it restarts the workflow under its own ID, which adopts the
// running share (same data, no copy again), starts the stopped metadata sync
// again (a later change is applied), and can then be disconnected and
// connected again.
func TestDoctorRestartsATerminatedConnection(t *testing.T) {
	env, c := startFleet(t)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	id := contract.ConnectionWorkflowID(ref.Home, ref.Companion)
	connectAndShare(t, c, ref)
	// Requests raise the generations the share of default acknowledges
	// above what a run that started counting again would hand out.
	for range 3 {
		_, err := c.Share(ctx, ref, "marketing")
		require.NoError(t, err)
		_, err = c.Unshare(ctx, ref, "marketing")
		require.NoError(t, err)
		testenv.WaitStatus(t, c, ref, "marketing gone", testenv.ShareGone("marketing"))
	}
	_, err := c.Share(ctx, ref, "default")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "default Active, metadata synced", func(v contract.StatusView) bool {
		return testenv.ShareIs("default", contract.ShareActive)(v) && v.MetadataSync.Status == contract.SyncSucceeded
	})
	requireCopied(t, env, ref.Home, ref.Companion, "default")
	shareID := contract.ShareWorkflowID(ref.Home, ref.Companion, "default")
	shareRun := describeRun(t, env, shareID)

	require.NoError(t, env.Client.TerminateWorkflow(ctx, id, "", "test: lost connection workflow"))
	report, err := c.Doctor(ctx, contract.ReconcilerInput{})
	require.NoError(t, err)
	missing := findings(report, contract.FindingConnectionWorkflowMissing, ref.String())
	require.Len(t, missing, 1, "report %+v", report)
	assert.True(t, missing[0].Remains(), "without repair the finding remains")
	assert.Contains(t, missing[0].Detail, "Terminated")
	assert.NotEmpty(t, missing[0].Age)
	assert.False(t, running(t, env, id), "a report-only run repairs nothing")

	report, err = c.Doctor(ctx, contract.ReconcilerInput{Repair: true})
	require.NoError(t, err)
	missing = findings(report, contract.FindingConnectionWorkflowMissing, ref.String())
	require.Len(t, missing, 1, "report %+v", report)
	assert.Equal(t, contract.OutcomeRepaired, missing[0].Outcome, "repair: %s", missing[0].Repair)
	assert.Contains(t, missing[0].Repair, "adopting 1 running share(s)")
	assert.Equal(t, 0, report.Remaining(), "report %+v", report)

	testenv.WaitStatus(t, c, ref, "adopted: default Active, metadata sync running", func(v contract.StatusView) bool {
		return v.Workflow == contract.RunRunning && v.Status == contract.Active &&
			testenv.ShareIs("default", contract.ShareActive)(v) && running(t, env, contract.MetadataSyncWorkflowID(ref.Home, ref.Companion))
	})
	total, err := env.Store.Demo().CountRecords(ctx, ref.Home, "default")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "the adopted share reported its own view", func(v contract.StatusView) bool {
		sh, _ := testenv.Share(v, "default")
		return sh.RecordsTotal == total && sh.RecordsCopied == total
	})
	assert.Equal(t, shareRun, describeRun(t, env, shareID), "the running share was adopted, not started again")
	requireCopied(t, env, ref.Home, ref.Companion, "default")

	_, err = env.Store.Demo().ChangeMetadata(ctx, ref.Home, "default", 2)
	require.NoError(t, err)
	testenv.Eventually(t, time.Minute, "the restarted metadata sync applies the changes", func() bool {
		n, _, err := env.Store.PendingChanges(ctx, connectionOf(ref), []string{"default"})
		require.NoError(t, err)
		return n == 0
	})

	report, err = c.Doctor(ctx, contract.ReconcilerInput{})
	require.NoError(t, err)
	assert.Empty(t, report.Findings, "nothing left to find")
	var past []string
	for _, p := range report.History {
		past = append(past, string(p.Kind)+" "+p.Connection+" "+p.Outcome)
	}
	assert.Contains(t, past, "connection-workflow-missing acme/acme-emea repaired", "the history carries earlier runs' findings")

	// The adopted share takes a new request: its data is removed.
	_, err = c.Unshare(ctx, ref, "default")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "default removed", testenv.ShareGone("default"))
	assert.Zero(t, companionCount(t, env, ref.Home, ref.Companion, "default"))
	_, err = c.Share(ctx, ref, "marketing")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "marketing Active", testenv.ShareIs("marketing", contract.ShareActive))

	final, err := c.Disconnect(ctx, ref, true)
	require.NoError(t, err)
	assert.Equal(t, contract.Disconnected, final.Status)
	assert.Zero(t, companionCount(t, env, ref.Home, ref.Companion, "marketing"))
	_, err = c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err, "the pair connects again")
}

// describeRun returns the run ID of the latest run of workflowID.
func describeRun(t *testing.T, env *testenv.Env, workflowID string) string {
	t.Helper()
	d, err := env.Client.DescribeWorkflowExecution(context.Background(), workflowID, "")
	require.NoError(t, err)
	return d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
}

// TestTwoReconcilersRepairOnce: two reconciler runs started at once over
// the same terminated connection start one connection workflow between
// them; the other finds it running.
func TestTwoReconcilersRepairOnce(t *testing.T) {
	env, c := startFleet(t)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	id := contract.ConnectionWorkflowID(ref.Home, ref.Companion)
	_, err := c.Connect(ctx, ref, contract.Settings{RemovalDeadline: 7 * time.Minute})
	require.NoError(t, err)
	_, err = c.Share(ctx, ref, "marketing")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "marketing Active", testenv.ShareIs("marketing", contract.ShareActive))
	require.NoError(t, env.Client.TerminateWorkflow(ctx, id, "", "test: lost connection workflow"))

	var wg sync.WaitGroup
	reports := make([]contract.ReconcileReport, 2)
	errs := make([]error, 2)
	for i := range reports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i], errs[i] = c.Doctor(ctx, contract.ReconcilerInput{Repair: true})
		}()
	}
	wg.Wait()
	repaired, resolved := 0, 0
	for i, r := range reports {
		require.NoError(t, errs[i])
		for _, f := range findings(r, contract.FindingConnectionWorkflowMissing, ref.String()) {
			switch f.Outcome {
			case contract.OutcomeRepaired:
				repaired++
			case contract.OutcomeResolved:
				resolved++
			}
		}
	}
	// The second run may also have surveyed after the restart and found
	// nothing to repair at all.
	assert.Equal(t, 1, repaired, "exactly one run restarts the connection: %+v", reports)
	assert.LessOrEqual(t, resolved, 1)
	runs := 0
	testenv.Eventually(t, 30*time.Second, "visibility lists the runs", func() bool {
		total, _ := runsOf(t, env.Client, id)
		runs = total
		return total >= 2
	})
	assert.Equal(t, 2, runs, "the terminated run and one restarted run")
	testenv.WaitStatus(t, c, ref, "marketing Active again", func(v contract.StatusView) bool {
		return v.Workflow == contract.RunRunning && testenv.ShareIs("marketing", contract.ShareActive)(v)
	})
	requireCopied(t, env, ref.Home, ref.Companion, "marketing")
	assert.Equal(t, 7*time.Minute, startInput(t, env, id).Settings.RemovalDeadline, "the restart keeps the connection's settings")
}

// startInput returns the input of the latest run of a connection workflow.
func startInput(t *testing.T, env *testenv.Env, workflowID string) contract.ConnectionInput {
	t.Helper()
	iter := env.Client.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	require.True(t, iter.HasNext())
	ev, err := iter.Next()
	require.NoError(t, err)
	var in contract.ConnectionInput
	require.NoError(t, codec.NewDataConverter(env.Keys).FromPayload(ev.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()[0], &in))
	require.NotNil(t, in.Adopt, "the latest run was started by the reconciler")
	return in
}

// slowCopies are settings whose copies and removals take many small steps,
// so a test can stop a share in the middle of one.
func slowCopies() contract.Settings {
	s := testenv.FastSettings()
	s.BatchSize = 2
	// Many short steps: a test that stops a copy after its first step has
	// many steps' margin before the copy ends.
	s.StepBudget = 20 * time.Millisecond
	return s
}

// TestDoctorRestartsAShareTerminatedMidCopy: a share workflow terminated in
// the middle of its initial sync is reported; the repair asks the
// connection, which starts it again; the copy goes on and counts and
// checksums are exact.
func TestDoctorRestartsAShareTerminatedMidCopy(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Settings: slowCopies()})
	require.NoError(t, env.Store.Deregister(context.Background(), "globex", "globex-emea"))
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	shareID := contract.ShareWorkflowID(ref.Home, ref.Companion, "default")
	connectAndShare(t, c, ref, "default")
	total, err := env.Store.Demo().CountRecords(ctx, ref.Home, "default")
	require.NoError(t, err)
	testenv.Eventually(t, time.Minute, "a copy step has finished", func() bool {
		v, err := env.Client.QueryWorkflow(ctx, shareID, "", contract.QueryStatus)
		if err != nil {
			return false
		}
		var view contract.ShareView
		require.NoError(t, v.Get(&view))
		return view.RecordsCopied > 0
	})
	require.NoError(t, env.Client.TerminateWorkflow(ctx, shareID, "", "test: share lost mid-copy"))
	atStop := companionCount(t, env, ref.Home, ref.Companion, "default")
	require.Less(t, atStop, total, "terminated before the copy finished")

	report, err := c.Doctor(ctx, contract.ReconcilerInput{})
	require.NoError(t, err)
	missing := findings(report, contract.FindingShareWorkflowMissing, ref.String())
	require.Len(t, missing, 1, "report %+v", report)
	assert.Equal(t, "default", missing[0].DataSpace)
	assert.Contains(t, missing[0].Detail, "Activating")
	assert.Contains(t, missing[0].Detail, "Terminated")
	assert.True(t, missing[0].Remains())

	report, err = c.Doctor(ctx, contract.ReconcilerInput{Repair: true})
	require.NoError(t, err)
	missing = findings(report, contract.FindingShareWorkflowMissing, ref.String())
	require.Len(t, missing, 1, "report %+v", report)
	assert.Equal(t, contract.OutcomeRepaired, missing[0].Outcome)
	testenv.WaitStatus(t, c, ref, "default Active", testenv.ShareIs("default", contract.ShareActive))
	requireCopied(t, env, ref.Home, ref.Companion, "default")
	assert.NotEmpty(t, firstCopyAfter(t, env, shareID), "the restarted copy goes on from the stopped run's checkpoint")
	report, err = c.Doctor(ctx, contract.ReconcilerInput{})
	require.NoError(t, err)
	assert.Empty(t, report.Findings)
}

// firstCopyAfter returns the checkpoint the first copy step of the latest
// run of a share workflow started from.
func firstCopyAfter(t *testing.T, env *testenv.Env, shareID string) string {
	t.Helper()
	dc := codec.NewDataConverter(env.Keys)
	iter := env.Client.GetWorkflowHistory(context.Background(), shareID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		a := ev.GetActivityTaskScheduledEventAttributes()
		if a == nil || a.GetActivityType().GetName() != "CopyRecords" {
			continue
		}
		var in activities.CopyInput
		require.NoError(t, dc.FromPayload(a.GetInput().GetPayloads()[0], &in))
		return in.After
	}
	t.Fatalf("no copy step in the latest run of %s", shareID)
	return ""
}

// TestDoctorReportsARemovalPastItsDeadline: a share whose workflow is gone
// in the middle of a removal stays in Removing Sharing; the doctor reports
// it with its age past the removal threshold (and the gone workflow), the
// webhook hears of it once as workflow-stuck and once more when a run no
// longer finds it, and the repair lets the removal finish.
func TestDoctorReportsARemovalPastItsDeadline(t *testing.T) {
	settings := slowCopies()
	// No health check: its re-send would find the share gone and start the
	// removal again before the doctor looks (under load it did, and the
	// removal finished unreported); here only the doctor's repair does.
	settings.HealthCheckInterval = time.Hour
	rcv := &receiver{seen: map[string]int{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	env := testenv.Start(t, testenv.Options{Settings: settings, NoWorker: true})
	env.NotifyURL = srv.URL
	env.Worker = env.NewWorker(t)
	require.NoError(t, env.Store.Deregister(context.Background(), "globex", "globex-emea"))
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	shareID := contract.ShareWorkflowID(ref.Home, ref.Companion, "default")
	connectAndShare(t, c, ref, "default")
	testenv.WaitStatus(t, c, ref, "default Active", testenv.ShareIs("default", contract.ShareActive))
	_, err := c.Unshare(ctx, ref, "default")
	require.NoError(t, err)
	require.NoError(t, env.Client.TerminateWorkflow(ctx, shareID, "", "test: share lost mid-removal"))
	left := companionCount(t, env, ref.Home, ref.Companion, "default")
	require.Positive(t, left, "terminated before the removal finished")

	// The removal passes the threshold a second after it began; a run that
	// finds the connection busy (no status in time) looks again next time.
	var report contract.ReconcileReport
	var late []contract.Finding
	runs := 0
	testenv.Eventually(t, 30*time.Second, "the doctor reports the removal past its deadline", func() bool {
		runs++
		report, err = c.Doctor(ctx, contract.ReconcilerInput{RemovalAfter: time.Second})
		require.NoError(t, err)
		late = findings(report, contract.FindingRemovalPastDeadline, ref.String())
		return len(late) > 0
	})
	t.Logf("doctor runs until the removal was past its deadline: %d", runs)
	require.Len(t, late, 1, "report %+v", report)
	assert.Equal(t, "default", late[0].DataSpace)
	require.NotNil(t, late[0].Since)
	age, err := time.ParseDuration(late[0].Age)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, age, time.Second, "the age of the removal")
	assert.Contains(t, late[0].Detail, "past the 1s deadline")
	require.Len(t, findings(report, contract.FindingShareWorkflowMissing, ref.String()), 1)
	stuck := func(state string) []contract.Notice {
		var out []contract.Notice
		for _, n := range rcv.find(ref.String(), contract.AlertWorkflowStuck, state) {
			if n.Data.Subject == "default" {
				out = append(out, n)
			}
		}
		return out
	}
	var firing []contract.Notice
	testenv.Eventually(t, 30*time.Second, "workflow-stuck firing notified", func() bool {
		firing = stuck(contract.AlertStateFiring)
		return len(firing) > 0
	})
	require.Len(t, firing, 1, "the run that found the removal past its deadline notified it once")
	assert.Contains(t, firing[0].Data.Summary, string(contract.FindingRemovalPastDeadline))

	report, err = c.Doctor(ctx, contract.ReconcilerInput{RemovalAfter: time.Hour})
	require.NoError(t, err)
	assert.Empty(t, findings(report, contract.FindingRemovalPastDeadline, ref.String()), "not past a threshold of an hour")
	testenv.Eventually(t, 30*time.Second, "workflow-stuck resolved notified", func() bool {
		return len(stuck(contract.AlertStateResolved)) > 0
	})
	assert.Len(t, stuck(contract.AlertStateResolved), 1, "a run that no longer finds it resolves the notice once")
	assert.Len(t, stuck(contract.AlertStateFiring), 1, "notified once")

	report, err = c.Doctor(ctx, contract.ReconcilerInput{Repair: true, RemovalAfter: time.Hour})
	require.NoError(t, err)
	assert.Equal(t, 0, report.Remaining(), "report %+v", report)
	testenv.WaitStatus(t, c, ref, "default removed", testenv.ShareGone("default"))
	assert.Zero(t, companionCount(t, env, ref.Home, ref.Companion, "default"), "the restarted removal finished")
}

// TestScheduledReconcilerRestartsATerminatedConnection: with the schedule
// in place nobody runs the doctor: the next scheduled run restarts the
// terminated connection workflow, which adopts its share.
func TestScheduledReconcilerRestartsATerminatedConnection(t *testing.T) {
	env, c := startFleet(t)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	id := contract.ConnectionWorkflowID(ref.Home, ref.Companion)
	connectAndShare(t, c, ref, "marketing")
	testenv.WaitStatus(t, c, ref, "marketing Active", testenv.ShareIs("marketing", contract.ShareActive))
	first := describeRun(t, env, id)
	require.NoError(t, env.Client.TerminateWorkflow(ctx, id, "", "test: lost connection workflow"))

	require.NoError(t, c.ScheduleReconciler(ctx, time.Second, contract.DefaultReconcilerInput()))
	testenv.WaitStatus(t, c, ref, "a scheduled run restarted the connection", func(v contract.StatusView) bool {
		return v.Workflow == contract.RunRunning && testenv.ShareIs("marketing", contract.ShareActive)(v)
	})
	assert.NotEqual(t, first, describeRun(t, env, id))
	requireCopied(t, env, ref.Home, ref.Companion, "marketing")
	require.NoError(t, env.Client.ScheduleClient().GetHandle(ctx, contract.ReconcilerScheduleID).Delete(ctx))
}

// TestDoctorRestartsAFailedConnection: a connection workflow whose latest
// run failed (forced here by a run of the same ID that fails at once, as a
// run failed by a bug would) is restarted like a terminated one.
func TestDoctorRestartsAFailedConnection(t *testing.T) {
	env, c := startFleet(t)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	id := contract.ConnectionWorkflowID(ref.Home, ref.Companion)
	connectAndShare(t, c, ref, "marketing")
	testenv.WaitStatus(t, c, ref, "marketing Active", testenv.ShareIs("marketing", contract.ShareActive))
	require.NoError(t, env.Client.TerminateWorkflow(ctx, id, "", "test: replaced by a failing run"))

	const failing = "forced-failure"
	w := worker.New(env.Client, failing, worker.Options{})
	w.RegisterWorkflowWithOptions(func(workflow.Context, contract.ConnectionInput) error {
		return temporal.NewNonRetryableApplicationError("forced failure", "Forced", nil)
	}, workflow.RegisterOptions{Name: contract.ConnectionWorkflowName})
	require.NoError(t, w.Start())
	defer w.Stop()
	run, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: failing},
		contract.ConnectionWorkflowName, contract.ConnectionInput{Home: ref.Home, Companion: ref.Companion})
	require.NoError(t, err)
	require.Error(t, run.Get(ctx, nil))

	report, err := c.Doctor(ctx, contract.ReconcilerInput{Repair: true})
	require.NoError(t, err)
	missing := findings(report, contract.FindingConnectionWorkflowMissing, ref.String())
	require.Len(t, missing, 1, "report %+v", report)
	assert.Contains(t, missing[0].Detail, "is Failed")
	assert.Equal(t, contract.OutcomeRepaired, missing[0].Outcome)
	assert.Contains(t, reconcilerDetails(t, env), "| connection-workflow-missing | acme/acme-emea |", "the findings in the Web UI's current details")
	testenv.WaitStatus(t, c, ref, "restarted with marketing Active", func(v contract.StatusView) bool {
		return v.Workflow == contract.RunRunning && testenv.ShareIs("marketing", contract.ShareActive)(v)
	})
	requireCopied(t, env, ref.Home, ref.Companion, "marketing")
}

// TestDoctorCarriesOnAnInterruptedDisconnect: a connection workflow
// terminated in the middle of its disconnect is restarted by the repair,
// which carries the disconnect on: the data is removed, the registry row
// goes, and the pair can connect again.
func TestDoctorCarriesOnAnInterruptedDisconnect(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Settings: slowCopies()})
	require.NoError(t, env.Store.Deregister(context.Background(), "globex", "globex-emea"))
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	id := contract.ConnectionWorkflowID(ref.Home, ref.Companion)
	connectAndShare(t, c, ref, "default")
	testenv.WaitStatus(t, c, ref, "default Active", testenv.ShareIs("default", contract.ShareActive))
	_, err := c.Disconnect(ctx, ref, false)
	require.NoError(t, err)
	require.NoError(t, env.Client.TerminateWorkflow(ctx, id, "", "test: lost while disconnecting"))
	require.Positive(t, companionCount(t, env, ref.Home, ref.Companion, "default"), "terminated before the removal finished")

	report, err := c.Doctor(ctx, contract.ReconcilerInput{Repair: true})
	require.NoError(t, err)
	missing := findings(report, contract.FindingConnectionWorkflowMissing, ref.String())
	require.Len(t, missing, 1, "report %+v", report)
	assert.Contains(t, missing[0].Repair, "its disconnect goes on")
	var final contract.StatusView
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	require.NoError(t, env.Client.GetWorkflow(wctx, id, "").Get(wctx, &final), "the restarted connection finishes the disconnect")
	assert.Equal(t, contract.Disconnected, final.Status)
	assert.Zero(t, companionCount(t, env, ref.Home, ref.Companion, "default"))
	_, err = env.Store.ConnectionOf(ctx, ref.Companion)
	assert.ErrorIs(t, err, companionsync.ErrNotFound, "deregistered")
	_, err = c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err, "the pair connects again")
}

// TestDoctorRestartsAGoneMetadataSync: the metadata sync of a running
// connection is terminated; the doctor reports it and the repair's probe
// makes the connection start it again, which applies later changes.
func TestDoctorRestartsAGoneMetadataSync(t *testing.T) {
	env, c := startFleet(t)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	syncID := contract.MetadataSyncWorkflowID(ref.Home, ref.Companion)
	connectAndShare(t, c, ref, "marketing")
	testenv.WaitStatus(t, c, ref, "metadata synced", func(v contract.StatusView) bool {
		return v.MetadataSync.Status == contract.SyncSucceeded
	})
	require.NoError(t, env.Client.TerminateWorkflow(ctx, syncID, "", "test: lost metadata sync"))

	report, err := c.Doctor(ctx, contract.ReconcilerInput{})
	require.NoError(t, err)
	missing := findings(report, contract.FindingMetadataSyncMissing, ref.String())
	require.Len(t, missing, 1, "report %+v", report)
	assert.Contains(t, missing[0].Detail, "Terminated")

	report, err = c.Doctor(ctx, contract.ReconcilerInput{Repair: true})
	require.NoError(t, err)
	assert.Equal(t, 0, report.Remaining(), "report %+v", report)
	testenv.Eventually(t, time.Minute, "the metadata sync runs again", func() bool { return running(t, env, syncID) })
	_, err = env.Store.Demo().ChangeMetadata(ctx, ref.Home, "marketing", 2)
	require.NoError(t, err)
	testenv.Eventually(t, time.Minute, "the restarted metadata sync applies the changes", func() bool {
		n, _, err := env.Store.PendingChanges(ctx, connectionOf(ref), []string{"marketing"})
		require.NoError(t, err)
		return n == 0
	})
}

// reconcilerDetails returns the current details (as the Web UI shows them)
// of the latest reconciler run.
func reconcilerDetails(t *testing.T, env *testenv.Env) string {
	t.Helper()
	ctx := context.Background()
	resp, err := env.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowType = '%s'", contract.ReconcilerWorkflowName), PageSize: 1})
	require.NoError(t, err)
	require.NotEmpty(t, resp.GetExecutions())
	e := resp.GetExecutions()[0].GetExecution()
	v, err := env.Client.QueryWorkflow(ctx, e.GetWorkflowId(), e.GetRunId(), "__temporal_workflow_metadata")
	require.NoError(t, err)
	var md sdkpb.WorkflowMetadata
	require.NoError(t, v.Get(&md))
	return md.GetCurrentDetails()
}

// TestDoctorScansAQuietFleetInOneActivityEach: three connections, two of
// them settled and one terminated by hand, surveyed with pages of one. Each
// scan of the run reads its pages inside one activity and returns only what
// the run must look at: the registry scan returns once with the terminated
// connection and once more to finish, the scans of running workflows and of
// protocols once each over several visibility pages. The run finds the
// terminated connection and counts all three.
func TestDoctorScansAQuietFleetInOneActivityEach(t *testing.T) {
	env, c := startFleet(t)
	ctx := context.Background()
	refs := []control.Ref{{Home: "acme", Companion: "acme-apac"}, {Home: "acme", Companion: "acme-emea"}, {Home: "globex", Companion: "globex-emea"}}
	for _, ref := range refs {
		connectAndShare(t, c, ref, "default")
	}
	for _, ref := range refs {
		testenv.WaitStatus(t, c, ref, "default Active, metadata synced", func(v contract.StatusView) bool {
			return testenv.ShareIs("default", contract.ShareActive)(v) && v.MetadataSync.Status == contract.SyncSucceeded
		})
	}
	gone := refs[0]
	require.NoError(t, env.Client.TerminateWorkflow(ctx, contract.ConnectionWorkflowID(gone.Home, gone.Companion), "", "test: lost connection workflow"))

	// The live ones are settled once their children's search attributes
	// show it: until then a run queries them.
	var id string
	var report contract.ReconcileReport
	runs := 0
	testenv.Eventually(t, time.Minute, "a run that queries only the terminated connection", func() bool {
		runs++
		id = fmt.Sprintf("test-reconciler-%d", runs)
		run, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: contract.TaskQueue},
			contract.ReconcilerWorkflowName, contract.ReconcilerInput{PageSize: 1})
		require.NoError(t, err)
		require.NoError(t, run.Get(ctx, &report))
		return report.Queried == 1
	})
	assert.Equal(t, 3, report.Connections)
	missing := findings(report, contract.FindingConnectionWorkflowMissing, gone.String())
	require.Len(t, missing, 1, "report %+v", report)

	calls := map[string]int{}
	iter := env.Client.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			calls[a.GetActivityType().GetName()]++
		}
	}
	t.Logf("activities of the run: %v (after %d run(s))", calls, runs)
	assert.Equal(t, 2, calls["ScanRegistry"], "one call per page of unsettled connections, and one to finish")
	assert.Equal(t, 1, calls["UnregisteredExecutions"], "two running connection workflows, pages of one, in one call")
	assert.Equal(t, 1, calls["RunProtocols"], "every run on the current protocol, in one call")
	for _, old := range []string{"RegisteredConnections", "SurveyConnections", "ListExecutions", "RegistryRows"} {
		assert.Zero(t, calls[old], old)
	}
}
