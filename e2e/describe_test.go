package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// workflowMetadataQuery is the SDK's built-in query that lists a workflow's
// handlers with their descriptions; the Web UI reads it.
const workflowMetadataQuery = "__temporal_workflow_metadata"

// TestEveryHandlerIsDescribed reads, as the Web UI does, the metadata of a
// connection, a share, a metadata sync and a reconciler run, and fails on
// any signal, update or query registered without a description, on a
// missing handler, and on an internal signal that does not say it is
// internal.
func TestEveryHandlerIsDescribed(t *testing.T) {
	env := testenv.Start(t, testenv.Options{SeedRecords: 100})
	c := control.New(env.Client).WithQueryTimeout(30 * time.Second)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	connectAndShare(t, c, ref, "default")
	testenv.WaitStatus(t, c, ref, "default Active", testenv.ShareIs("default", contract.ShareActive))
	_, err := c.Doctor(ctx, contract.DefaultReconcilerInput())
	require.NoError(t, err)
	doctor := latestRun(t, env, contract.ReconcilerDoctorIDPrefix)

	operator := []string{contract.MessageShare, contract.MessageUnshare, contract.MessageRetry,
		contract.MessageResume, contract.MessageRecheck, contract.MessageDisconnect}
	internal := map[string]bool{contract.SignalShareDesired: true, contract.SignalShareReport: true,
		contract.SignalMetadataDesired: true, contract.SignalMetadataReport: true,
		contract.SignalWatch: true, contract.SignalMetadataWake: true}
	cases := []struct {
		workflowID                string
		queries, signals, updates []string
	}{
		{contract.ConnectionWorkflowID(ref.Home, ref.Companion),
			[]string{contract.QueryStatus},
			append([]string{contract.SignalShareReport, contract.SignalMetadataReport, contract.SignalProbe, contract.SignalUpgrade,
				contract.SignalWatch}, operator...),
			append([]string{contract.UpdateAwaitConnected}, operator...)},
		{contract.ShareWorkflowID(ref.Home, ref.Companion, "default"),
			[]string{contract.QueryStatus}, []string{contract.SignalShareDesired, contract.SignalUpgrade}, nil},
		{contract.MetadataSyncWorkflowID(ref.Home, ref.Companion),
			[]string{contract.QueryStatus, contract.QueryErrorLog}, []string{contract.SignalMetadataDesired, contract.SignalUpgrade,
				contract.SignalMetadataWake}, nil},
		{doctor, []string{contract.QueryStatus}, nil, nil},
		{contract.WatcherWorkflowID, []string{contract.QueryStatus}, []string{contract.SignalWatcherSettings}, nil},
	}
	checked := 0
	for _, tc := range cases {
		val, err := env.Client.QueryWorkflow(ctx, tc.workflowID, "", workflowMetadataQuery)
		require.NoError(t, err, tc.workflowID)
		var md sdkpb.WorkflowMetadata
		require.NoError(t, val.Get(&md), tc.workflowID)
		def := md.GetDefinition()
		for kind, pair := range map[string]struct {
			want []string
			got  []*sdkpb.WorkflowInteractionDefinition
		}{
			"query":  {tc.queries, def.GetQueryDefinitions()},
			"signal": {tc.signals, def.GetSignalDefinitions()},
			"update": {tc.updates, def.GetUpdateDefinitions()},
		} {
			seen := map[string]bool{}
			for _, d := range pair.got {
				if strings.HasPrefix(d.GetName(), "__") {
					continue // the SDK's own
				}
				seen[d.GetName()] = true
				assert.NotEmpty(t, d.GetDescription(), "%s: %s %q has no description", tc.workflowID, kind, d.GetName())
				if internal[d.GetName()] {
					assert.Contains(t, d.GetDescription(), "Internal", "%s: %s %q must say it is internal", tc.workflowID, kind, d.GetName())
				}
				checked++
			}
			for _, name := range pair.want {
				assert.True(t, seen[name], "%s: %s %q not registered", tc.workflowID, kind, name)
			}
		}
	}
	assert.Equal(t, 1+11+7+1+2+2+3+1+1+1, checked, "handlers checked")
}

// latestRun is the ID of the most recent workflow whose ID starts with
// prefix.
func latestRun(t *testing.T, env *testenv.Env, prefix string) string {
	t.Helper()
	var id string
	testenv.Eventually(t, 30*time.Second, "a completed run listed", func() bool {
		resp, err := env.Client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Query: `WorkflowType = "` + contract.ReconcilerWorkflowName + `"`})
		if err != nil {
			return false
		}
		for _, e := range resp.GetExecutions() {
			if strings.HasPrefix(e.GetExecution().GetWorkflowId(), prefix) && e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
				id = e.GetExecution().GetWorkflowId()
				return true
			}
		}
		return false
	})
	return id
}
