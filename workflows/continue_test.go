package workflows

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
)

// continuedInput extracts the input of the next run from a continue-as-new.
func continuedInput[T any](t *testing.T, env *testsuite.TestWorkflowEnvironment) T {
	t.Helper()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "want continue-as-new, got %v", env.GetWorkflowError())
	var next T
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	return next
}

func TestContinueAsNewKeepsStateAndSignals(t *testing.T) {
	// First run: share default, then continue as new right when an unshare
	// of default and a share of marketing arrive.
	h := newHarness(t)
	h.orgs.addChanges("default", 1)
	h.at(time.Second, func() { h.share(MessageShare, "default") })
	h.at(time.Minute, func() {
		h.env.SetContinueAsNewSuggested(true)
		h.share(MessageShare, "marketing")
		h.share(MessageUnshare, "default")
		h.share(MessageShare, "no-such-space")
	})
	h.env.SetDetachedChildWait(false) // the children outlive this run
	h.env.ExecuteWorkflow(ConnectionWorkflow, ConnectionInput{Home: home, Companion: companion, Settings: testSettings()})
	in := continuedInput[ConnectionInput](t, h.env)

	require.NotNil(t, in.State)
	st := in.State
	assert.Equal(t, Active, st.Status)
	assert.True(t, st.Handshaken)
	assert.Equal(t, []string{"default", "marketing", "sales"}, st.DataSpaces)
	require.Contains(t, st.Shares, "default")
	require.Contains(t, st.Shares, "marketing")
	def, mkt := st.Shares["default"], st.Shares["marketing"]
	assert.Equal(t, IntentRemoved, def.Desired.Intent, "the unshare is in the desired state")
	assert.True(t, mkt.Running, "the share requested before continue-as-new was started")
	assert.Equal(t, mkt.Desired.Generation, mkt.Sent)
	assert.True(t, st.Metadata.Running)
	assert.Equal(t, SyncPending, st.Metadata.Observed.View.Status)
	assert.Equal(t, 1, st.Metadata.Observed.View.PendingChanges)
	assert.Contains(t, st.LastRejected, "no-such-space")
	assert.NotEmpty(t, st.Transitions)

	// Second run: the children of the first run live on and report to the
	// connection's workflow ID; the new run takes their reports.
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(testLogger())
	env := suite.NewTestWorkflowEnvironment()
	register(env)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: ConnectionWorkflowID(home, companion), TaskQueue: TaskQueue})
	// The test environment sends the signals of one pass from goroutines
	// of their own.
	var sentMu sync.Mutex
	var sentToChildren []string
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", mock.Anything, mock.Anything).Return(
		func(_ string, workflowID, _ string, signal string, _ any) error {
			sentMu.Lock()
			defer sentMu.Unlock()
			sentToChildren = append(sentToChildren, workflowID+" "+signal)
			return nil
		})
	f := newFakeOrgs()
	env.OnActivity(acts.CheckHealth, mock.Anything, mock.Anything).Return(f.CheckHealth)
	env.OnActivity(acts.Disconnect, mock.Anything, mock.Anything).Return(f.Disconnect)
	checks := 0
	env.RegisterDelayedCallback(func() {
		checks++
		env.SignalWorkflow(SignalShareReport, ShareReport{Generation: mkt.Desired.Generation,
			View: ShareView{DataSpace: "marketing", InitializationStatus: ShareActive, RecordsCopied: 10, RecordsTotal: 10}})
		env.SignalWorkflow(SignalShareReport, ShareReport{Generation: def.Desired.Generation,
			View: ShareView{DataSpace: "default", InitializationStatus: RemovingSharing, Removed: true}})
	}, time.Second)
	env.RegisterDelayedCallback(func() {
		checks++
		v, err := env.QueryWorkflow(QueryStatus)
		require.NoError(t, err)
		var sv StatusView
		require.NoError(t, v.Get(&sv))
		assert.Equal(t, Active, sv.Status)
		require.Len(t, sv.DataSpaces, 1)
		assert.Equal(t, ShareActive, sv.DataSpaces[0].InitializationStatus)
		env.SignalWorkflow(MessageDisconnect, nil)
	}, 2*time.Second)
	env.RegisterDelayedCallback(func() {
		checks++
		env.SignalWorkflow(SignalShareReport, ShareReport{Generation: 100, View: ShareView{DataSpace: "marketing", Removed: true}})
		env.SignalWorkflow(SignalMetadataReport, MetadataReport{Generation: 100, View: MetadataSyncView{Status: SyncSucceeded, Stopped: true}})
	}, 3*time.Second)
	env.ExecuteWorkflow(ConnectionWorkflow, in)

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	assert.Equal(t, 3, checks)
	var final StatusView
	require.NoError(t, env.GetWorkflowResult(&final))
	assert.Equal(t, Disconnected, final.Status)
	assert.Contains(t, sentToChildren, MetadataSyncWorkflowID(home, companion)+" "+SignalMetadataDesired,
		"the new run tells the metadata sync its new desired state")
	assert.Contains(t, sentToChildren, ShareWorkflowID(home, companion, "marketing")+" "+SignalShareDesired)
	if def.Sent < def.Desired.Generation {
		assert.Contains(t, sentToChildren, ShareWorkflowID(home, companion, "default")+" "+SignalShareDesired,
			"an unshare drained into the state at continue-as-new is sent by the next run")
	}
}

func TestMetadataSyncContinueAsNewCarriesState(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(testLogger())
	env := suite.NewTestWorkflowEnvironment()
	register(env)
	f := newFakeOrgs()
	f.addChanges("default", 4)
	f.conflicts[2] = true
	env.OnActivity(acts.CountPendingMetadata, mock.Anything, mock.Anything).Return(f.CountPendingMetadata)
	env.OnActivity(acts.ApplyMetadata, mock.Anything, mock.Anything).Return(f.ApplyMetadata)
	env.OnActivity(acts.ReportToConnection, mock.Anything, mock.Anything).Return(nil)
	desired := MetadataDesired{Generation: 1, DataSpaces: []string{"default"}}
	ran := false
	env.RegisterDelayedCallback(func() {
		ran = true
		env.SetContinueAsNewSuggested(true)
		resume := desired
		resume.Generation, resume.Resume = 2, 2
		env.SignalWorkflow(SignalMetadataDesired, resume)
	}, 20*time.Minute)
	env.ExecuteWorkflow(MetadataSyncWorkflow, MetadataSyncInput{
		Home: home, Companion: companion, Settings: testSettings(), Desired: desired, Protocol: CurrentProtocol,
	})
	require.True(t, ran)
	next := continuedInput[MetadataSyncInput](t, env)
	assert.Equal(t, SyncError, next.State.View.Status, "the round at 15m stopped at the conflict")
	assert.True(t, next.State.View.Paused)
	assert.True(t, next.State.ResumePending, "a resume acknowledged just before continue-as-new is carried")
	assert.Equal(t, int64(2), next.State.Acked)
	require.Len(t, next.State.ErrorLog, 1)
	assert.Equal(t, int64(2), next.State.ErrorLog[0].Sequence)
	assert.Equal(t, []string{"default"}, next.Desired.DataSpaces)
	assert.Equal(t, map[int64]int{1: 1}, f.applied)
}

// A year of a metadata sync, run by continue-as-new in bounded runs: each
// run stays within its round budget, every change is applied exactly once,
// and, with nothing pending, the sync runs only its daily resync (the fleet
// watcher wakes it when changes arrive, as the callback does here).
func TestMetadataSyncYearOfRoundsInBoundedRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates a year of rounds")
	}
	const year = 365 * 24 * time.Hour
	f := newFakeOrgs()
	const roundsPerRun = 60 // two passes of the main loop per round: wait, then round
	settings := DefaultSettings()
	settings.TestPassesPerRun = 2 * roundsPerRun
	in := MetadataSyncInput{Home: home, Companion: companion, Settings: settings,
		Desired: MetadataDesired{Generation: 1, DataSpaces: []string{"default"}}, Protocol: CurrentProtocol}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	runs, rounds, changes := 0, 0, 0
	for elapsed := time.Duration(0); elapsed < year; runs++ {
		var suite testsuite.WorkflowTestSuite
		suite.SetLogger(testLogger())
		env := suite.NewTestWorkflowEnvironment()
		register(env)
		env.SetStartTime(base.Add(elapsed))
		env.OnActivity(acts.CountPendingMetadata, mock.Anything, mock.Anything).Return(f.CountPendingMetadata)
		env.OnActivity(acts.ApplyMetadata, mock.Anything, mock.Anything).Return(f.ApplyMetadata)
		env.OnActivity(acts.ReportToConnection, mock.Anything, mock.Anything).Return(nil)
		// A change lands in every run, and the watcher wakes the sync.
		env.RegisterDelayedCallback(func() {
			f.addChanges("default", 1)
			changes++
			env.SignalWorkflow(SignalMetadataWake, MetadataWake{Pending: 1})
		}, 3*time.Hour)
		before := in.State.View.Rounds
		env.ExecuteWorkflow(MetadataSyncWorkflow, in)
		in = continuedInput[MetadataSyncInput](t, env)
		thisRun := in.State.View.Rounds - before
		require.LessOrEqual(t, thisRun, roundsPerRun, "run %d had %d rounds", runs, thisRun)
		rounds += thisRun
		elapsed = env.Now().Sub(base)
	}
	assert.Len(t, f.applied, changes, "every change applied")
	for seq, n := range f.applied {
		require.Equal(t, 1, n, "change %d applied %d times", seq, n)
	}
	assert.Less(t, rounds, 2*365, "about a daily resync and a round per change, not a round every 15 minutes (35,040)")
	t.Logf("a year: %d rounds in %d runs", rounds, runs)
}

func TestShareContinuesAsNewBetweenStepsAndKeepsAnUnshare(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(testLogger())
	env := suite.NewTestWorkflowEnvironment()
	register(env)
	f := newFakeOrgs() // copies 10 records per step; default has 25
	env.OnActivity(acts.CopyRecords, mock.Anything, mock.Anything).Return(f.CopyRecords)
	env.OnActivity(acts.ReportToConnection, mock.Anything, mock.Anything).Return(nil)
	s := testSettings()
	s.TestPassesPerRun = 2 // two steps per run
	env.ExecuteWorkflow(DataSpaceShareWorkflow, ShareInput{Home: home, Companion: companion, DataSpace: "default", Settings: s,
		Desired: ShareDesired{Generation: 1, Intent: IntentShared}, Protocol: CurrentProtocol})
	next := continuedInput[ShareInput](t, env)
	require.NotNil(t, next.State)
	assert.Equal(t, "20", next.State.Checkpoint, "the next run resumes after the copied records")
	assert.Equal(t, 20, next.State.View.RecordsCopied)
	assert.Equal(t, Activating, next.State.View.InitializationStatus)
	assert.Equal(t, int64(1), next.State.Acked)

	// The next run finishes the copy; an unshare arriving then is kept.
	env = suite.NewTestWorkflowEnvironment()
	register(env)
	env.OnActivity(acts.RemoveRecords, mock.Anything, mock.Anything).Return(f.RemoveRecords)
	env.OnActivity(acts.ReportToConnection, mock.Anything, mock.Anything).Return(nil)
	var copySteps []string
	env.OnActivity(acts.CopyRecords, mock.Anything, mock.Anything).Return(f.CopyRecords).Run(func(args mock.Arguments) {
		copySteps = append(copySteps, args.Get(1).(activities.CopyInput).After)
	})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalShareDesired, ShareDesired{Generation: 2, Intent: IntentRemoved})
	}, time.Minute)
	next.Settings = testSettings() // no more continue-as-new in this run
	env.ExecuteWorkflow(DataSpaceShareWorkflow, next)
	require.NoError(t, env.GetWorkflowError())
	var final ShareView
	require.NoError(t, env.GetWorkflowResult(&final))
	assert.True(t, final.Removed)
	assert.Equal(t, 25, final.RecordsTotal)
	assert.Equal(t, []string{"20"}, copySteps, "the copy went on from the checkpoint, not from the start")
	assert.Equal(t, 25, final.RecordsCopied)
	assert.Empty(t, f.copied, "the unshare removed everything")
}

// goneShareEnv runs a connection's later run whose share of "default" was
// started by an earlier run and whose workflow is gone: signals to it fail as
// they do for a terminated workflow.
func goneShareEnv(t *testing.T, f *fakeOrgs) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(testLogger())
	env := suite.NewTestWorkflowEnvironment()
	register(env)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: ConnectionWorkflowID(home, companion), TaskQueue: TaskQueue})
	env.OnActivity(acts.CheckHealth, mock.Anything, mock.Anything).Return(f.CheckHealth)
	env.OnActivity(acts.RemoveRecords, mock.Anything, mock.Anything).Return(f.RemoveRecords)
	env.OnActivity(acts.Disconnect, mock.Anything, mock.Anything).Return(f.Disconnect)
	env.OnSignalExternalWorkflow(mock.Anything, ShareWorkflowID(home, companion, "default"), "", SignalShareDesired, mock.Anything).
		Return(&temporal.UnknownExternalWorkflowExecutionError{})
	return env
}

// runWithShare runs the connection from a state holding one share of
// "default" and returns its final view.
func runWithShare(t *testing.T, env *testsuite.TestWorkflowEnvironment, sh ShareRecord) StatusView {
	t.Helper()
	env.ExecuteWorkflow(ConnectionWorkflow, ConnectionInput{Home: home, Companion: companion, Settings: testSettings(), Protocol: CurrentProtocol,
		State: &ConnectionState{
			Status: Active, Handshaken: true, DataSpaces: []string{"default"}, Generation: sh.Desired.Generation,
			Shares: map[string]*ShareRecord{"default": &sh},
		}})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var final StatusView
	require.NoError(t, env.GetWorkflowResult(&final))
	return final
}

func TestConnectionRestartsAShareWhoseWorkflowIsGone(t *testing.T) {
	f := newFakeOrgs()
	f.copied["default"] = 25
	env := goneShareEnv(t, f)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(MessageUnshare, DataSpaceRequest{DataSpace: "default"}) }, time.Second)
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		require.NoError(t, err)
		var sv StatusView
		require.NoError(t, v.Get(&sv))
		assert.Empty(t, sv.DataSpaces, "a new share run carried out the unshare")
		assert.Equal(t, Incomplete, sv.Status)
		env.SignalWorkflow(MessageDisconnect, nil)
	}, time.Minute)
	final := runWithShare(t, env, ShareRecord{Since: 1, Desired: ShareDesired{Generation: 1, Intent: IntentShared},
		Running: true, Sent: 1, Observed: ShareReport{Generation: 1,
			View: ShareView{DataSpace: "default", InitializationStatus: ShareActive, RecordsCopied: 25, RecordsTotal: 25}}})
	assert.Equal(t, Disconnected, final.Status)
	assert.Empty(t, f.copied, "the companion's copy was removed")
}

func TestDisconnectFinishesAShareWhoseWorkflowVanishedDuringRemoval(t *testing.T) {
	f := newFakeOrgs()
	f.copied["default"] = 15
	env := goneShareEnv(t, f)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(MessageDisconnect, nil) }, time.Second)
	final := runWithShare(t, env, ShareRecord{Since: 1, Desired: ShareDesired{Generation: 2, Intent: IntentRemoved},
		Running: true, Sent: 2, Observed: ShareReport{Generation: 2,
			View: ShareView{DataSpace: "default", InitializationStatus: RemovingSharing, RecordsRemoved: 10, RecordsToRemove: 25}}})
	assert.Equal(t, Disconnected, final.Status)
	assert.Empty(t, f.copied, "the restarted share finished the removal")
}

// A disconnect whose metadata sync stopped without its last report reaching
// the connection still finishes: the periodic re-send finds the sync gone.
func TestDisconnectFinishesWhenTheLastReportIsLost(t *testing.T) {
	f := newFakeOrgs()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(testLogger())
	env := suite.NewTestWorkflowEnvironment()
	register(env)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: ConnectionWorkflowID(home, companion), TaskQueue: TaskQueue})
	env.OnActivity(acts.Disconnect, mock.Anything, mock.Anything).Return(f.Disconnect)
	env.SetTestTimeout(20 * time.Second)
	sent := 0
	env.OnSignalExternalWorkflow(mock.Anything, MetadataSyncWorkflowID(home, companion), "", SignalMetadataDesired, mock.Anything).Return(
		func(_, _, _, _ string, _ any) error { sent++; return &temporal.UnknownExternalWorkflowExecutionError{} })
	env.ExecuteWorkflow(ConnectionWorkflow, ConnectionInput{Home: home, Companion: companion, Settings: testSettings(), Protocol: CurrentProtocol,
		State: &ConnectionState{
			Status: Incomplete, Handshaken: true, DataSpaces: []string{"default"}, Generation: 3, Disconnecting: true,
			NextHealthCheck: time.Now().Add(time.Hour),
			Metadata: MetadataRecord{
				Desired:  MetadataDesired{Generation: 3, DataSpaces: []string{}, Stop: true},
				Observed: MetadataReport{Generation: 2, View: MetadataSyncView{Status: SyncSucceeded}},
				Running:  true, Sent: 3, // stop was delivered; the Stopped report was lost
			},
			Shares: map[string]*ShareRecord{},
		}})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var final StatusView
	require.NoError(t, env.GetWorkflowResult(&final))
	assert.Equal(t, Disconnected, final.Status)
	assert.Equal(t, 1, sent, "the re-send at the health interval found the sync gone")
	assert.Equal(t, 1, f.deregistrations)
}
