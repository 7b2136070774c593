package workflows

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
)

// idleConnection is the carried state of a handshaken connection with no
// shares, as a run of any protocol hands it on.
func idleConnection(start time.Time) *ConnectionState {
	return &ConnectionState{
		Status: Incomplete, Handshaken: true, DataSpaces: []string{"default", "marketing", "sales"},
		Shares: map[string]*ShareRecord{}, NextHealthCheck: start.Add(time.Hour),
	}
}

// TestConnectionMovesWhenAsked: SignalUpgrade makes a connection on an
// earlier protocol continue as new onto CurrentProtocol with its whole
// state; a connection already current ignores it and goes on.
func TestConnectionMovesWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		from  Protocol
		moves bool
	}{
		{ProtocolPublished, true},
		{ProtocolAccountable, true},
		{CurrentProtocol, false},
	} {
		t.Run(fmt.Sprintf("protocol %d", tc.from), func(t *testing.T) {
			h := newHarness(t)
			h.env.SetDetachedChildWait(false)
			st := idleConnection(h.env.Now())
			h.at(time.Minute, func() { h.env.SignalWorkflow(SignalUpgrade, UpgradeRequest{By: "test"}) })
			if !tc.moves {
				h.at(2*time.Minute, func() { h.share(MessageDisconnect, "") })
			}
			h.runInput(ConnectionInput{Home: home, Companion: companion, Settings: testSettings(), State: st, Protocol: tc.from})
			require.Equal(t, map[bool]int{true: 1, false: 2}[tc.moves], h.ran, "every callback ran")
			if !tc.moves {
				require.NoError(t, h.env.GetWorkflowError())
				return
			}
			next := continuedInput[ConnectionInput](t, h.env)
			assert.Equal(t, CurrentProtocol, next.Protocol)
			require.NotNil(t, next.State)
			assert.Equal(t, st.DataSpaces, next.State.DataSpaces)
			assert.Equal(t, Incomplete, next.State.Status)
			assert.True(t, next.State.Handshaken)
		})
	}
}

// TestNewConnectionRunsTheCurrentProtocol: the workflow chooses a new
// connection's protocol; what the starter sent does not count.
func TestNewConnectionRunsTheCurrentProtocol(t *testing.T) {
	h := newHarness(t)
	h.protocol = CurrentProtocol
	h.at(time.Second, func() { h.share(MessageDisconnect, "") })
	h.runInput(ConnectionInput{Home: home, Companion: companion, Settings: testSettings(), Protocol: StarterProtocol})
	assert.Equal(t, CurrentProtocol, h.final().Protocol)
}

// TestAFutureProtocolFailsTheTask: a worker given a run of a protocol newer
// than its code fails the task rather than run it and drop what it does not
// know.
func TestAFutureProtocolFailsTheTask(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(testLogger())
	env := suite.NewTestWorkflowEnvironment()
	register(env)
	env.ExecuteWorkflow(DataSpaceShareWorkflow, ShareInput{Home: home, Companion: companion, DataSpace: "default",
		Settings: testSettings(), Desired: ShareDesired{Generation: 1, Intent: IntentShared}, Protocol: CurrentProtocol + 1})
	require.Error(t, env.GetWorkflowError())
	assert.Contains(t, env.GetWorkflowError().Error(), "newer than this worker's")
}

// TestShareMovesBetweenCopySteps: a share asked to move while a copy step
// runs lets the step finish, then continues as new onto CurrentProtocol
// from its checkpoint.
func TestShareMovesBetweenCopySteps(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(testLogger())
	env := suite.NewTestWorkflowEnvironment()
	register(env)
	f := newFakeOrgs() // copies 10 records per step; default has 25
	steps := 0
	env.OnActivity(acts.CopyRecords, mock.Anything, mock.Anything).Return(f.CopyRecords).Run(func(mock.Arguments) {
		if steps++; steps == 1 {
			env.SignalWorkflow(SignalUpgrade, nil)
		}
	})
	env.OnActivity(acts.ReportToConnection, mock.Anything, mock.Anything).Return(nil)
	env.ExecuteWorkflow(DataSpaceShareWorkflow, ShareInput{Home: home, Companion: companion, DataSpace: "default",
		Settings: testSettings(), Desired: ShareDesired{Generation: 1, Intent: IntentShared}, Protocol: ProtocolPublished})
	next := continuedInput[ShareInput](t, env)
	assert.Equal(t, 1, steps, "the run moved after the step that was running")
	assert.Equal(t, CurrentProtocol, next.Protocol)
	require.NotNil(t, next.State)
	assert.Equal(t, "10", next.State.Checkpoint)
	assert.Equal(t, 10, next.State.View.RecordsCopied)
	assert.Equal(t, Activating, next.State.View.InitializationStatus)
}

// TestMetadataSyncMovesWhileItWaits: an idle metadata sync, waiting for its
// next round, moves at once when asked, keeping its rounds and schedule.
func TestMetadataSyncMovesWhileItWaits(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(testLogger())
	env := suite.NewTestWorkflowEnvironment()
	register(env)
	f := newFakeOrgs()
	env.OnActivity(acts.CountPendingMetadata, mock.Anything, mock.Anything).Return(f.CountPendingMetadata)
	env.OnActivity(acts.ApplyMetadata, mock.Anything, mock.Anything).Return(f.ApplyMetadata)
	env.OnActivity(acts.ReportToConnection, mock.Anything, mock.Anything).Return(nil)
	ran := 0
	env.RegisterDelayedCallback(func() { ran++; env.SignalWorkflow(SignalUpgrade, UpgradeRequest{By: "test"}) }, 20*time.Minute)
	env.ExecuteWorkflow(MetadataSyncWorkflow, MetadataSyncInput{Home: home, Companion: companion, Settings: testSettings(),
		Desired: MetadataDesired{Generation: 1, DataSpaces: []string{"default"}}, Protocol: ProtocolPublished})
	require.Equal(t, 1, ran)
	next := continuedInput[MetadataSyncInput](t, env)
	assert.Equal(t, CurrentProtocol, next.Protocol)
	assert.Equal(t, 1, next.State.View.Rounds, "the round at 15 minutes ran, and is carried")
	assert.Equal(t, int64(1), next.State.Acked)
	assert.False(t, next.State.NextRoundAt.IsZero())
}
