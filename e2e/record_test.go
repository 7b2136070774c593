package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// historiesDir is where the workflows package replays recorded histories.
var historiesDir = filepath.Join("..", "workflows", "testdata", "histories")

// TestRecordHistories runs a scenario through every status of SPEC on a real
// server and writes the histories of every run of every workflow for the
// replay test, named LABEL-ID-N.json. It runs only when
// COMPANIONSYNC_RECORD_HISTORIES=LABEL: histories recorded before a change
// are kept, so the replay test proves old runs still replay.
func TestRecordHistories(t *testing.T) {
	label := os.Getenv("COMPANIONSYNC_RECORD_HISTORIES")
	if label == "" {
		t.Skip("set COMPANIONSYNC_RECORD_HISTORIES=LABEL (e.g. v3) to record new histories")
	}
	settings := testenv.FastSettings()
	settings.EventBudget = 60 // every workflow continues as new at least once
	settings.BatchSize = 100
	settings.StepBudget = time.Millisecond // one batch per step: shares continue as new too
	env := testenv.Start(t, testenv.Options{Settings: settings})
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}

	require.NoError(t, env.Store.Demo().InjectCopyFailures(ctx, "acme", "acme-emea", "marketing", int(settings.InitialSyncRetry.MaximumAttempts)))
	connectAndShare(t, c, ref, "default", "marketing")
	testenv.WaitStatus(t, c, ref, "marketing in Error", testenv.ShareIs("marketing", contract.ShareError))
	_, err := c.Retry(ctx, ref, "marketing")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "both Active", func(v contract.StatusView) bool {
		return testenv.ShareIs("default", contract.ShareActive)(v) && testenv.ShareIs("marketing", contract.ShareActive)(v)
	})
	testenv.WaitStatus(t, c, ref, "metadata sync running", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncSucceeded })
	_, err = env.Store.Demo().MakeConflict(ctx, "acme", "acme-emea", "default")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "metadata Error", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncError })
	_, err = env.Store.Demo().ResolveConflicts(ctx, "acme", "acme-emea")
	require.NoError(t, err)
	require.NoError(t, env.Client.SignalWorkflow(ctx, contract.ConnectionWorkflowID("acme", "acme-emea"), "", contract.MessageResume, nil))
	testenv.WaitStatus(t, c, ref, "metadata Succeeded", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncSucceeded })
	require.NoError(t, env.Store.Demo().ExpireLicence(ctx, "acme"))
	testenv.WaitStatus(t, c, ref, "Inactive", func(v contract.StatusView) bool { return v.Status == contract.Inactive })
	require.NoError(t, env.Store.Demo().RenewLicence(ctx, "acme"))
	_, err = c.Recheck(ctx, ref)
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "Active again", func(v contract.StatusView) bool { return v.Status == contract.Active })
	// A first sync suspended while the connection is Inactive, then resumed.
	_, err = c.Share(ctx, ref, "sales")
	require.NoError(t, err)
	require.NoError(t, env.Store.Demo().Deactivate(ctx, "acme-emea"))
	_, err = c.Recheck(ctx, ref)
	require.NoError(t, err)
	// Its copy may end before the re-check (a race the histories need
	// not win: earlier labels hold a suspension).
	testenv.WaitStatus(t, c, ref, "sales suspended", func(v contract.StatusView) bool {
		s, ok := testenv.Share(v, "sales")
		return ok && (s.Waiting == contract.SuspendedWaiting || s.InitializationStatus == contract.ShareActive)
	})
	require.NoError(t, env.Store.Demo().Reactivate(ctx, "acme-emea"))
	_, err = c.Recheck(ctx, ref)
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "sales Active", testenv.ShareIs("sales", contract.ShareActive))
	// A change to a quiet metadata sync: the fleet watcher wakes it.
	quiet := testenv.WaitStatus(t, c, ref, "metadata caught up", func(v contract.StatusView) bool {
		return v.MetadataSync.Status == contract.SyncSucceeded && v.MetadataSync.PendingChanges == 0
	})
	_, err = env.Store.Demo().ChangeMetadata(ctx, "acme", "default", 2)
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "the changes applied", func(v contract.StatusView) bool {
		return v.MetadataSync.Rounds > quiet.MetadataSync.Rounds && v.MetadataSync.Status == contract.SyncSucceeded && v.MetadataSync.PendingChanges == 0
	})
	// A reconciler run over the connection, repairing (nothing to find:
	// the demo seed's row without a workflow is removed first).
	require.NoError(t, env.Store.Deregister(ctx, "globex", "globex-emea"))
	report, err := c.Doctor(ctx, contract.ReconcilerInput{Repair: true})
	require.NoError(t, err)
	require.Equal(t, 1, report.Connections)
	require.Empty(t, report.Findings)
	_, err = c.Unshare(ctx, ref, "marketing")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "marketing removed", testenv.ShareGone("marketing"))
	_, err = c.Disconnect(ctx, ref, true)
	require.NoError(t, err)

	require.NoError(t, os.MkdirAll(historiesDir, 0o755))
	for _, id := range []string{
		contract.ConnectionWorkflowID("acme", "acme-emea"),
		contract.ShareWorkflowID("acme", "acme-emea", "default"),
		contract.ShareWorkflowID("acme", "acme-emea", "marketing"),
		contract.ShareWorkflowID("acme", "acme-emea", "sales"),
		contract.MetadataSyncWorkflowID("acme", "acme-emea"),
		contract.WatcherWorkflowID,
	} {
		n := writeHistories(t, env.Client, label, id)
		t.Logf("%s: %d run(s) recorded", id, n)
	}
	runs, err := env.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowType = '%s'", contract.ReconcilerWorkflowName)})
	require.NoError(t, err)
	require.NotEmpty(t, runs.GetExecutions(), "the reconciler run")
	for _, e := range runs.GetExecutions() {
		writeHistories(t, env.Client, label, e.GetExecution().GetWorkflowId())
	}
}

// writeHistories writes the history of every run of a workflow ID.
func writeHistories(t *testing.T, c client.Client, label, workflowID string) int {
	t.Helper()
	ctx := context.Background()
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: fmt.Sprintf("WorkflowId = '%s'", workflowID)})
	require.NoError(t, err)
	for i, e := range resp.GetExecutions() {
		data, err := protojson.MarshalOptions{Indent: " "}.Marshal(historyOf(t, c, workflowID, e.GetExecution().GetRunId()))
		require.NoError(t, err)
		name := fmt.Sprintf("%s-%s-%d.json", label, sanitize(workflowID), i)
		require.NoError(t, os.WriteFile(filepath.Join(historiesDir, name), data, 0o644))
	}
	return len(resp.GetExecutions())
}

// historyOf reads the whole history of a run (runID "": the latest).
func historyOf(t *testing.T, c client.Client, workflowID, runID string) *historypb.History {
	t.Helper()
	hist := &historypb.History{}
	it := c.GetWorkflowHistory(context.Background(), workflowID, runID, false, 0)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		hist.Events = append(hist.Events, ev)
	}
	return hist
}

func sanitize(id string) string {
	out := []rune(id)
	for i, r := range out {
		if r == ':' || r == '/' {
			out[i] = '_'
		}
	}
	return string(out)
}

// TestMetadataRoundEventCost measures the history events a real metadata
// round adds, to the sync's history and to its connection's (which hears
// of every round). A run continues as new at the event budget, so the cost
// per round says how many rounds a run holds.
func TestMetadataRoundEventCost(t *testing.T) {
	settings := testenv.FastSettings()
	settings.MetadataSyncInterval = 200 * time.Millisecond
	settings.HealthCheckInterval = time.Hour // the connection's events are the rounds' alone
	settings.EventBudget = 100_000           // one run for the whole measurement
	env := testenv.Start(t, testenv.Options{Settings: settings})
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	connectAndShare(t, c, ref, "marketing")
	syncID := contract.MetadataSyncWorkflowID("acme", "acme-emea")
	syncView := func() contract.MetadataSyncView {
		var v contract.MetadataSyncView
		if q, err := env.Client.QueryWorkflow(ctx, syncID, "", contract.QueryStatus); err == nil {
			_ = q.Get(&v)
		}
		return v
	}
	historyLength := func(id string) int64 {
		desc, err := env.Client.DescribeWorkflowExecution(ctx, id, "")
		require.NoError(t, err)
		return desc.GetWorkflowExecutionInfo().GetHistoryLength()
	}
	// A quiet sync runs no rounds: each change wakes it (the fleet
	// watcher), it counts it, and a round applies it.
	testenv.Eventually(t, time.Minute, "metadata sync running", func() bool { return syncView().Status == contract.SyncSucceeded })
	connectionID := contract.ConnectionWorkflowID("acme", "acme-emea")
	connectionBefore, roundsBefore := historyLength(connectionID), syncView().Rounds
	var v contract.MetadataSyncView
	for i := range 10 {
		_, err := env.Store.Demo().ChangeMetadata(ctx, "acme", "marketing", 1)
		require.NoError(t, err)
		testenv.Eventually(t, time.Minute, fmt.Sprintf("change %d applied", i+1), func() bool {
			v = syncView()
			return v.Rounds > roundsBefore+i && v.Status == contract.SyncSucceeded && v.PendingChanges == 0
		})
	}
	events := historyLength(syncID)
	rounds := v.Rounds
	perRound := float64(events) / float64(rounds)
	t.Logf("metadata sync: %d events in %d rounds: %.1f events per round", events, rounds, perRound)
	assert.Less(t, perRound, 30.0, "a round costs less than the budgeted events")
	connectionEvents := historyLength(connectionID) - connectionBefore
	connectionRounds := rounds - roundsBefore
	t.Logf("connection: %d events in %d rounds (one change each): %.1f events per round",
		connectionEvents, connectionRounds, float64(connectionEvents)/float64(connectionRounds))
	_, err := c.Disconnect(ctx, ref, true)
	require.NoError(t, err)
}
