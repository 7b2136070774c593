package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

var metricsLine = regexp.MustCompile(`metrics\s+(http://\S+)`)

// TestWorkerSchedulesTheReconciler: the worker creates the reconciler's
// schedule (interval from the flag, overlap SKIP), a restarted worker with
// another interval updates it rather than adding one, and a scheduled run
// repairs what it finds without anyone asking: the demo seed registers
// globex/globex-emea with no workflow, and the next run starts one. Its
// findings gauge reaches the metrics endpoint.
func TestWorkerSchedulesTheReconciler(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	first := startWorker(t, dir, "-reconcile-interval", "1h")
	first.stop(t)
	p := startWorker(t, dir, "-reconcile-interval", "2s")
	raw, err := control.Dial(ctx, control.DialOptions{Address: p.frontend, Keys: devKeys(t, dir)})
	require.NoError(t, err)
	defer raw.Close()

	var ids []string
	iter, err := raw.ScheduleClient().List(ctx, client.ScheduleListOptions{})
	require.NoError(t, err)
	for iter.HasNext() {
		e, err := iter.Next()
		require.NoError(t, err)
		ids = append(ids, e.ID)
	}
	assert.Equal(t, []string{contract.ReconcilerScheduleID}, ids, "one schedule, updated by the second start")
	d, err := raw.ScheduleClient().GetHandle(ctx, contract.ReconcilerScheduleID).Describe(ctx)
	require.NoError(t, err)
	require.Len(t, d.Schedule.Spec.Intervals, 1)
	assert.Equal(t, 2*time.Second, d.Schedule.Spec.Intervals[0].Every, "the second start's interval")
	assert.Equal(t, enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, d.Schedule.Policy.Overlap)

	connID := contract.ConnectionWorkflowID("globex", "globex-emea")
	testenv.Eventually(t, time.Minute, "a scheduled run restarts the seeded connection", func() bool {
		desc, err := raw.DescribeWorkflowExecution(ctx, connID, "")
		return err == nil && desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	})
	c := p.client(t)
	testenv.Eventually(t, time.Minute, "the adopted connection is Incomplete (nothing shared)", func() bool {
		v, err := c.Status(ctx, control.Ref{Home: "globex", Companion: "globex-emea"})
		return err == nil && v.Status == contract.Incomplete
	})

	m := metricsLine.FindStringSubmatch(p.stdout.String())
	require.NotNil(t, m, "metrics address in %q", p.stdout.String())
	testenv.Eventually(t, time.Minute, "the findings gauge on /metrics", func() bool {
		resp, err := http.Get(m[1])
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), contract.MetricFindings) &&
			strings.Contains(string(body), `kind="`+string(contract.FindingConnectionWorkflowMissing)+`"`)
	})
}

func TestConfigReconcileInterval(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := parseConfig(nil, none, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, devReconcileInterval, cfg.ReconcileInterval, "short on the dev server")
	cfg, err = parseConfig([]string{"-temporal-address", "temporal:7233", "-codec-addr", ""}, none, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 30*time.Minute, cfg.ReconcileInterval, "30m on a cluster")
	cfg, err = parseConfig([]string{"-reconcile-interval", "0"}, none, io.Discard)
	require.NoError(t, err)
	assert.Zero(t, cfg.ReconcileInterval, "0 leaves the schedule alone")
	cfg, err = parseConfig(nil, func(k string) string {
		return map[string]string{"COMPANIONSYNC_RECONCILE_INTERVAL": "5m"}[k]
	}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 5*time.Minute, cfg.ReconcileInterval, "from the environment")
	for _, bad := range []string{"1ms", "soon"} {
		_, err := parseConfig([]string{"-reconcile-interval", bad}, none, io.Discard)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "reconcile-interval")
	}
}
