package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// TestRapidShareUnshareCycles shares, unshares and re-shares one data space
// 50 times as fast as the connection accepts, half of the cycles by typed
// update and half by plain signals sent back to back, then disconnects. Every
// accepted request must be carried out: at the end the data space is gone
// from the status, the companion holds none of its records, and the
// connection reads Disconnected.
func TestRapidShareUnshareCycles(t *testing.T) {
	env := testenv.Start(t, testenv.Options{SeedRecords: 2000})
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	id := contract.ConnectionWorkflowID(ref.Home, ref.Companion)
	const ds = "marketing"
	_, err := c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)

	const cycles = 50
	shared, refusedWhileRemoving := 0, 0
	for i := range cycles {
		if i%2 == 1 {
			// Signals cannot be refused to the sender: both go out at once, and
			// the share is accepted only if the last removal has finished.
			require.NoError(t, env.Client.SignalWorkflow(ctx, id, "", contract.MessageShare, contract.DataSpaceRequest{DataSpace: ds}))
			require.NoError(t, env.Client.SignalWorkflow(ctx, id, "", contract.MessageUnshare, contract.DataSpaceRequest{DataSpace: ds}))
			continue
		}
		// Re-share as soon as the connection accepts it.
		testenv.Eventually(t, 30*time.Second, "share accepted", func() bool {
			_, err := c.Share(ctx, ref, ds)
			if errors.Is(err, control.ErrAlreadyShared) {
				refusedWhileRemoving++
				return false
			}
			require.NoError(t, err)
			return true
		})
		shared++
		_, err := c.Unshare(ctx, ref, ds)
		// The share may already be gone, or being removed by the signals of
		// the cycle before, applied just before this unshare.
		if !errors.Is(err, control.ErrNotShared) && !errors.Is(err, control.ErrAlreadyRemoving) {
			require.NoError(t, err)
		}
	}
	t.Logf("%d shares by update, %d refusals while the previous removal ran", shared, refusedWhileRemoving)
	require.Equal(t, cycles/2, shared)

	final, err := c.Disconnect(ctx, ref, true)
	require.NoError(t, err)
	assert.Equal(t, contract.Disconnected, final.Status)
	assert.Empty(t, final.DataSpaces)
	assert.Zero(t, companionCount(t, env, ref.Home, ref.Companion, ds), "no record of %s left in the companion", ds)
}

// TestTerminatedConnection: when the connection's workflow is terminated,
// a status read says so instead of the last live status, operations are
// refused as ended, and the metadata sync stops at its next report instead
// of applying changes on its own.
func TestTerminatedConnection(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	connectAndShare(t, c, ref, "default")
	testenv.WaitStatus(t, c, ref, "default Active, metadata synced", func(v contract.StatusView) bool {
		return testenv.ShareIs("default", contract.ShareActive)(v) && v.MetadataSync.Status == contract.SyncSucceeded
	})

	require.NoError(t, env.Client.TerminateWorkflow(ctx, contract.ConnectionWorkflowID(ref.Home, ref.Companion), "", "test: lost connection workflow"))
	v, err := c.Status(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, contract.RunTerminated, v.Workflow)
	assert.Equal(t, contract.ConnectionStatus(contract.RunTerminated), v.Status, "the status says the workflow is closed")
	assert.Equal(t, contract.Active, v.LastStatus)

	_, err = c.Unshare(ctx, ref, "default")
	assert.ErrorIs(t, err, control.ErrConnectionEnded)
	list, err := c.List(ctx, control.Filter{})
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, string(contract.RunTerminated), list[0].Status)

	// A metadata change makes the sync report Pending: its report fails, so
	// it stops and the change is never applied.
	_, err = env.Store.Demo().ChangeMetadata(ctx, ref.Home, "default", 1)
	require.NoError(t, err)
	syncID := contract.MetadataSyncWorkflowID(ref.Home, ref.Companion)
	testenv.Eventually(t, time.Minute, "the metadata sync stops", func() bool {
		d, err := env.Client.DescribeWorkflowExecution(ctx, syncID, "")
		require.NoError(t, err)
		return d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	})
	var last contract.MetadataSyncView
	require.NoError(t, env.Client.GetWorkflow(ctx, syncID, "").Get(ctx, &last))
	assert.Contains(t, last.Orphaned, "is gone")
	pending, _, err := env.Store.PendingChanges(ctx, connectionOf(ref), []string{"default"})
	require.NoError(t, err)
	assert.Equal(t, 1, pending, "the change made after the connection was lost is not applied")
}

func connectionOf(ref control.Ref) companionsync.Connection {
	return companionsync.Connection{Home: ref.Home, Companion: ref.Companion}
}

// TestUnshareRestartsAVanishedShare: a share workflow terminated by hand is
// started again by the connection to carry out the next request; the new
// run shows Removing Sharing in its search attribute, removes the data and
// the share disappears.
func TestUnshareRestartsAVanishedShare(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	connectAndShare(t, c, ref, "marketing")
	testenv.WaitStatus(t, c, ref, "marketing Active", testenv.ShareIs("marketing", contract.ShareActive))
	requireCopied(t, env, ref.Home, ref.Companion, "marketing")

	shareID := contract.ShareWorkflowID(ref.Home, ref.Companion, "marketing")
	require.NoError(t, env.Client.TerminateWorkflow(ctx, shareID, "", "test: a vanished share"))
	_, err := c.Unshare(ctx, ref, "marketing")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "marketing gone", testenv.ShareGone("marketing"))
	assert.Zero(t, companionCount(t, env, ref.Home, ref.Companion, "marketing"), "the restarted share removed the data")

	query := fmt.Sprintf("WorkflowId = '%s' AND %s = '%s' AND ExecutionStatus = 'Completed'",
		shareID, contract.AttrInitializationStatus.GetName(), contract.RemovingSharing)
	testenv.Eventually(t, 30*time.Second, "visibility lists the restarted removal", func() bool {
		resp, err := env.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		require.NoError(t, err)
		return len(resp.GetExecutions()) == 1
	})
}
