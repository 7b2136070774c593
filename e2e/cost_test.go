package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// TestLifecycleEventCost measures the history events of one connection
// lifecycle — connect, share a small data space, Active, disconnect,
// Disconnected — over every run of every workflow it starts. It logs the
// numbers; it asserts only that they were measured (the benchmark tracks
// the cost).
func TestLifecycleEventCost(t *testing.T) {
	env := testenv.Start(t, testenv.Options{SeedRecords: 100}) // marketing: 10 records
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	connectAndShare(t, c, ref, "marketing")
	testenv.WaitStatus(t, c, ref, "marketing Active", testenv.ShareIs("marketing", contract.ShareActive))
	_, err := c.Disconnect(ctx, ref, true)
	require.NoError(t, err)

	total := 0
	for _, id := range []string{
		contract.ConnectionWorkflowID(ref.Home, ref.Companion),
		contract.ShareWorkflowID(ref.Home, ref.Companion, "marketing"),
		contract.MetadataSyncWorkflowID(ref.Home, ref.Companion),
	} {
		n := historyEvents(t, env.Client, id)
		t.Logf("%s: %d events: %s", id, n, eventTypes(t, env.Client, id))
		if testing.Verbose() {
			t.Logf("%s, latest run, in order:\n%s", id, eventSequence(t, env.Client, id))
		}
		total += n
	}
	t.Logf("one lifecycle: %d history events", total)
	require.Positive(t, total)
}

// historyEvents sums the history length of every run of a workflow ID.
func historyEvents(t *testing.T, c client.Client, workflowID string) int {
	t.Helper()
	n := 0
	// Visibility records a run's history length when it closes, a moment later.
	testenv.Eventually(t, 30*time.Second, "visibility has the closed runs of "+workflowID, func() bool {
		resp, err := c.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("WorkflowId = '%s'", workflowID)})
		require.NoError(t, err)
		n = 0
		for _, e := range resp.GetExecutions() {
			if e.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING || e.GetHistoryLength() == 0 {
				return false
			}
			n += int(e.GetHistoryLength())
		}
		return n > 0
	})
	return n
}

// eventTypes counts the events of the workflow's latest run by type, the
// breakdown that shows where a lifecycle's events go.
func eventTypes(t *testing.T, c client.Client, workflowID string) string {
	t.Helper()
	counts := map[string]int{}
	it := c.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		counts[strings.TrimPrefix(ev.GetEventType().String(), "EVENT_TYPE_")]++
	}
	keys := slices.Sorted(maps.Keys(counts))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, counts[k])
	}
	return strings.Join(parts, " ")
}

// eventSequence lists the events of the workflow's latest run in order, each
// with what names it (signal, update, activity, child, timer summary): the
// timeline to read when events per lifecycle move.
func eventSequence(t *testing.T, c client.Client, workflowID string) string {
	t.Helper()
	var b strings.Builder
	it := c.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		name := ""
		switch {
		case ev.GetWorkflowExecutionSignaledEventAttributes() != nil:
			name = ev.GetWorkflowExecutionSignaledEventAttributes().GetSignalName()
		case ev.GetWorkflowExecutionUpdateAcceptedEventAttributes() != nil:
			name = ev.GetWorkflowExecutionUpdateAcceptedEventAttributes().GetAcceptedRequest().GetInput().GetName()
		case ev.GetActivityTaskScheduledEventAttributes() != nil:
			name = ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
		case ev.GetStartChildWorkflowExecutionInitiatedEventAttributes() != nil:
			name = ev.GetStartChildWorkflowExecutionInitiatedEventAttributes().GetWorkflowId()
		case ev.GetSignalExternalWorkflowExecutionInitiatedEventAttributes() != nil:
			a := ev.GetSignalExternalWorkflowExecutionInitiatedEventAttributes()
			name = a.GetSignalName() + " → " + a.GetWorkflowExecution().GetWorkflowId()
		case ev.GetMarkerRecordedEventAttributes() != nil:
			name = ev.GetMarkerRecordedEventAttributes().GetMarkerName()
		case ev.GetTimerStartedEventAttributes() != nil:
			name = ev.GetUserMetadata().GetSummary().String()
		}
		fmt.Fprintf(&b, "%3d %s %s\n", ev.GetEventId(), strings.TrimPrefix(ev.GetEventType().String(), "EVENT_TYPE_"), name)
	}
	return b.String()
}
