package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// runsOf counts the runs of a workflow ID, the current one included.
func runsOf(t *testing.T, c client.Client, workflowID string) (total, continued int) {
	t.Helper()
	resp, err := c.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowId = '%s'", workflowID),
	})
	require.NoError(t, err)
	for _, e := range resp.GetExecutions() {
		total++
		if e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
			continued++
		}
	}
	return total, continued
}

// TestContinueAsNewUnderTraffic: with a tiny event budget, signals arrive
// without pause across many continue-as-new boundaries of the connection and
// of its metadata sync; each takes effect exactly once (a duplicate share or
// unshare would be rejected and show as the last rejected message, a lost one
// would leave a share behind), and the children keep reporting.
func TestContinueAsNewUnderTraffic(t *testing.T) {
	settings := testenv.FastSettings()
	settings.EventBudget = 120
	settings.HealthCheckInterval = 500 * time.Millisecond
	settings.MetadataSyncInterval = 300 * time.Millisecond
	env := testenv.Start(t, testenv.Options{Settings: settings})
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	id := contract.ConnectionWorkflowID(ref.Home, ref.Companion)

	connectAndShare(t, c, ref, "default")
	testenv.WaitStatus(t, c, ref, "default Active", testenv.ShareIs("default", contract.ShareActive))

	// Background traffic: rechecks as plain signals, as fast as they go.
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var sent int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for trafficCtx.Err() == nil && sent < 2000 {
			if err := env.Client.SignalWorkflow(trafficCtx, id, "", contract.MessageRecheck, nil); err == nil {
				sent++
			}
		}
	}()

	// Metadata changes as they come, each waking the quiet sync: its
	// rounds carry it across its own continue-as-new boundaries.
	wg.Go(func() {
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for trafficCtx.Err() == nil {
			_, _ = env.Store.Demo().ChangeMetadata(trafficCtx, "acme", "default", 1)
			select {
			case <-trafficCtx.Done():
			case <-tick.C:
			}
		}
	})

	const rounds = 4
	for r := range rounds {
		for _, ds := range []string{"marketing", "sales"} {
			require.NoError(t, env.Client.SignalWorkflow(ctx, id, "", contract.MessageShare, contract.DataSpaceRequest{DataSpace: ds}))
		}
		_, err := env.Store.Demo().ChangeMetadata(ctx, "acme", "default", 1)
		require.NoError(t, err)
		testenv.WaitStatus(t, c, ref, fmt.Sprintf("round %d: both shares Active", r), func(v contract.StatusView) bool {
			return testenv.ShareIs("marketing", contract.ShareActive)(v) && testenv.ShareIs("sales", contract.ShareActive)(v)
		})
		for _, ds := range []string{"marketing", "sales"} {
			require.NoError(t, env.Client.SignalWorkflow(ctx, id, "", contract.MessageUnshare, contract.DataSpaceRequest{DataSpace: ds}))
		}
		testenv.WaitStatus(t, c, ref, fmt.Sprintf("round %d: both removed", r), func(v contract.StatusView) bool {
			return testenv.ShareGone("marketing")(v) && testenv.ShareGone("sales")(v)
		})
	}
	// The runs are counted while the traffic still flows: a quiet sync
	// waits for its resync and would not continue as new again once the
	// metadata stops changing.
	var runs, continued, syncContinued int
	testenv.Eventually(t, 2*time.Minute, "the connection continued as new 3 times and its sync twice", func() bool {
		runs, continued = runsOf(t, env.Client, id)
		_, syncContinued = runsOf(t, env.Client, contract.MetadataSyncWorkflowID(ref.Home, ref.Companion))
		return continued >= 3 && syncContinued >= 2
	})
	stopTraffic()
	wg.Wait()
	t.Logf("%d recheck signals; connection ran %d runs (%d continued as new); metadata sync continued %d times",
		sent, runs, continued, syncContinued)

	v := testenv.WaitStatus(t, c, ref, "metadata caught up", func(v contract.StatusView) bool {
		return v.MetadataSync.Status == contract.SyncSucceeded
	})
	assert.Empty(t, v.LastRejected, "no signal was applied twice")
	assert.Len(t, v.DataSpaces, 1)
	assert.Equal(t, contract.Active, v.Status)
	requireCopied(t, env, "acme", "acme-emea", "default")
	assert.Zero(t, companionCount(t, env, "acme", "acme-emea", "marketing"))
	assert.Zero(t, companionCount(t, env, "acme", "acme-emea", "sales"))

	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	v, err := c.Disconnect(waitCtx, ref, true)
	if err != nil {
		last, _ := c.Status(ctx, ref)
		t.Fatalf("disconnect: %v; status %+v", err, last)
	}
	assert.Equal(t, contract.Disconnected, v.Status)
}

// TestBadInputOnRealServer sends malformed payloads to every signal and
// update: each is refused with a clear error or ignored and recorded, no
// workflow fails, and no state changes.
func TestBadInputOnRealServer(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	id := contract.ConnectionWorkflowID(ref.Home, ref.Companion)
	connectAndShare(t, c, ref, "default")
	before := testenv.WaitStatus(t, c, ref, "default Active", testenv.ShareIs("default", contract.ShareActive))

	huge := strings.Repeat("x", 100_000)
	signals := []struct {
		name    string
		payload any
		want    string
	}{
		{contract.MessageShare, 42, "malformed"},
		{contract.MessageShare, "marketing", "malformed"},
		{contract.MessageShare, map[string]any{"dataSpace": 7}, "malformed"},
		{contract.MessageShare, map[string]any{"dataSpace": ""}, "empty"},
		{contract.MessageShare, map[string]any{"dataSpace": huge}, "limit"},
		{contract.MessageShare, map[string]any{"dataSpace": "nope"}, "unknown data space"},
		{contract.MessageShare, map[string]any{"dataSpace": "default"}, "already shared"},
		{contract.MessageShare, nil, "missing payload"},
		{contract.MessageUnshare, map[string]any{"name": "default"}, "unknown field"},
		{contract.MessageUnshare, map[string]any{"dataSpace": "sales"}, "not shared"},
		{contract.MessageRetry, map[string]any{"dataSpace": "default"}, "not Error"},
		{contract.MessageRetry, []int{1, 2}, "malformed"},
		{contract.MessageResume, huge, "not paused"},
	}
	for i, s := range signals {
		require.NoError(t, env.Client.SignalWorkflow(ctx, id, "", s.name, s.payload), "signal %d", i)
		v := testenv.WaitStatus(t, c, ref, fmt.Sprintf("signal %d (%s) recorded", i, s.name), func(v contract.StatusView) bool {
			return strings.Contains(v.LastRejected, s.want) && strings.HasPrefix(v.LastRejected, s.name+" ")
		})
		assert.Less(t, len(v.LastRejected), 400, "the record of a huge payload stays small")
		// Make the next rejection distinguishable from this one.
		require.NoError(t, env.Client.SignalWorkflow(ctx, id, "", contract.MessageShare, map[string]any{"dataSpace": "reset-marker"}))
		testenv.WaitStatus(t, c, ref, "marker", func(v contract.StatusView) bool { return strings.Contains(v.LastRejected, "reset-marker") })
	}

	updates := []struct {
		name string
		args []any
		want string
	}{
		{contract.MessageShare, []any{42}, ""},
		{contract.MessageShare, []any{contract.DataSpaceRequest{DataSpace: huge}}, "limit"},
		{contract.MessageShare, []any{contract.DataSpaceRequest{DataSpace: "nope"}}, "unknown data space"},
		{contract.MessageUnshare, []any{"default"}, ""},
		{contract.MessageRetry, []any{contract.DataSpaceRequest{}}, "empty"},
		{contract.MessageResume, nil, "not paused"},
		{contract.UpdateAwaitConnected, []any{"unexpected"}, ""},
	}
	for _, u := range updates {
		h, err := env.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID: id, UpdateName: u.name, Args: u.args, WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		if err == nil {
			err = h.Get(ctx, nil)
		}
		if u.name == contract.UpdateAwaitConnected {
			continue // extra arguments are ignored by a no-argument handler
		}
		require.Error(t, err, "update %s %v", u.name, u.args)
		if u.want != "" {
			assert.Contains(t, err.Error(), u.want)
		}
	}

	after, err := c.Status(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, before.Status, after.Status)
	assert.Equal(t, before.DataSpaces, after.DataSpaces)
	desc, err := env.Client.DescribeWorkflowExecution(ctx, id, "")
	require.NoError(t, err)
	assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, desc.GetWorkflowExecutionInfo().GetStatus(), "no workflow failed")
	_, err = c.Disconnect(ctx, ref, true)
	require.NoError(t, err)
}
