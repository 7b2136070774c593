package e2e

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/faultproxy"
	"github.com/companionsync/companionsync/internal/testenv"
	"github.com/companionsync/companionsync/orgstore/storetest"
	"github.com/companionsync/companionsync/workflows"
)

// postgresBehindProxy creates a PostgreSQL database of the test's own and
// returns its URL through a proxy of the test's, which can take it away.
func postgresBehindProxy(t *testing.T, prefix string) (string, *faultproxy.Proxy) {
	t.Helper()
	target, err := url.Parse(storetest.NewPostgresDatabase(t, prefix))
	require.NoError(t, err)
	proxy, err := faultproxy.Start(target.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	target.Host = proxy.Addr()
	return target.String(), proxy
}

// outageLengths are the store outages TestStoreOutage injects:
// COMPANIONSYNC_OUTAGES (for example "60s,5m") overrides the default run's
// 30 seconds.
func outageLengths(t *testing.T) []time.Duration {
	spec := os.Getenv("COMPANIONSYNC_OUTAGES")
	if spec == "" {
		return []time.Duration{30 * time.Second}
	}
	var out []time.Duration
	for _, s := range strings.Split(spec, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		require.NoError(t, err, "COMPANIONSYNC_OUTAGES")
		out = append(out, d)
	}
	return out
}

// TestStoreOutage makes the PostgreSQL org store unreachable, through a
// proxy of the test's own, in the middle of a copy and then of a removal,
// while health checks and metadata rounds run every second. The copy and
// the removal wait for the store, the status says so while it lasts, and
// afterwards the counts are exact: nothing is reported Inactive or Error
// for an outage of ours, and no workflow task waits on the store.
func TestStoreOutage(t *testing.T) {
	for _, outage := range outageLengths(t) {
		t.Run(outage.String(), func(t *testing.T) { testStoreOutage(t, outage) })
	}
}

func testStoreOutage(t *testing.T, outage time.Duration) {
	store, proxy := postgresBehindProxy(t, "e2e_outage")

	settings := testenv.FastSettings()
	settings.BatchSize = 20
	// The removal's deadline counts the outage too: longer than both.
	settings.RemovalDeadline = 10*time.Minute + 2*outage
	// Enough records that the removal (a key range per batch, quick) is
	// still under way when the status first shows it.
	const seeded = 20_000
	env := testenv.Start(t, testenv.Options{OrgStore: store, SeedRecords: seeded, Settings: settings})
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	connectAndShare(t, c, ref, "default")

	checks := 0
	// cut takes the store away for the outage once the work has started,
	// checks what the status says meanwhile, and brings it back.
	cut := func(what string, started func(contract.ShareView) bool) {
		testenv.WaitStatus(t, c, ref, what+" under way", func(v contract.StatusView) bool {
			s, ok := testenv.Share(v, "default")
			return ok && started(s)
		})
		proxy.Down()
		downAt := time.Now()
		v := testenv.WaitStatus(t, c, ref, what+" waiting for the store", func(v contract.StatusView) bool {
			s, _ := testenv.Share(v, "default")
			return strings.Contains(s.Waiting, "the org store is unreachable since")
		})
		assert.Equal(t, contract.Active, v.Status, "an outage of the store is not the companion going inactive")
		time.Sleep(time.Until(downAt.Add(outage)))
		v, err := c.Status(ctx, ref)
		require.NoError(t, err)
		assert.Equal(t, contract.Active, v.Status)
		s, _ := testenv.Share(v, "default")
		assert.NotEqual(t, contract.ShareError, s.InitializationStatus, "%s: no Error for an outage", what)
		proxy.Up()
		checks++
	}

	cut("copy", func(s contract.ShareView) bool { return s.RecordsCopied > 0 })
	v := testenv.WaitStatus(t, c, ref, "copied", testenv.ShareIs("default", contract.ShareActive))
	s, _ := testenv.Share(v, "default")
	assert.Equal(t, seeded, s.RecordsCopied)
	assert.Empty(t, s.Waiting, "the outage is no longer shown")
	requireCopied(t, env, "acme", "acme-emea", "default")

	// A metadata round through the outage: changes published just before
	// the store goes away are applied once it is back, each exactly once,
	// and the sync never pauses for it.
	testenv.WaitStatus(t, c, ref, "metadata in sync", func(v contract.StatusView) bool {
		return v.MetadataSync.Status == contract.SyncSucceeded
	})
	last, err := env.Store.Demo().ChangeMetadata(ctx, "acme", "default", 5)
	require.NoError(t, err)
	proxy.Down()
	time.Sleep(outage)
	v, err = c.Status(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, contract.Active, v.Status)
	assert.False(t, v.MetadataSync.Paused, "an outage does not pause the metadata sync")
	proxy.Up()
	testenv.Eventually(t, 2*time.Minute, "every change applied", func() bool {
		cursor, synced, err := env.Store.Demo().MetadataCursor(ctx, "acme", "acme-emea", "default")
		return err == nil && synced && cursor == last
	})
	v = testenv.WaitStatus(t, c, ref, "the metadata sync Succeeded", func(v contract.StatusView) bool {
		return v.MetadataSync.Status == contract.SyncSucceeded && v.MetadataSync.PendingChanges == 0
	})
	assert.Zero(t, v.MetadataSync.ErrorCount, "no change failed")
	assert.False(t, v.MetadataSync.Paused)
	checks++

	_, err = c.Unshare(ctx, ref, "default")
	require.NoError(t, err)
	cut("removal", func(s contract.ShareView) bool {
		return s.InitializationStatus == contract.RemovingSharing && s.RecordsRemoved > 0
	})
	v = testenv.WaitStatus(t, c, ref, "removed", testenv.ShareGone("default"))
	n, err := env.Store.Demo().CompanionRecordCount(ctx, "acme", "acme-emea", "default")
	require.NoError(t, err)
	assert.Zero(t, n, "the removal leaves nothing")
	assert.Equal(t, 3, checks)

	// Nothing was reported Inactive or Error, and no workflow task of the
	// connection or the share waited on the store.
	for _, tr := range v.Transitions {
		assert.NotEqual(t, string(contract.Inactive), tr.Status, "transition %+v", tr)
		assert.NotEqual(t, string(contract.ShareError), tr.Status, "transition %+v", tr)
	}
	for _, id := range []string{workflows.ConnectionWorkflowID("acme", "acme-emea"), workflows.ShareWorkflowID("acme", "acme-emea", "default")} {
		assertShortWorkflowTasks(t, env, id, 5*time.Second)
	}
}

// assertShortWorkflowTasks fails when a workflow task of any run of id took
// longer than limit from start to completion.
func assertShortWorkflowTasks(t *testing.T, env *testenv.Env, id string, limit time.Duration) {
	t.Helper()
	ctx := context.Background()
	runs := []string{""}
	tasks := 0
	for len(runs) > 0 {
		run := runs[0]
		runs = runs[1:]
		started := map[int64]time.Time{}
		iter := env.Client.GetWorkflowHistory(ctx, id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for iter.HasNext() {
			ev, err := iter.Next()
			require.NoError(t, err)
			switch ev.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
				if prev := ev.GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId(); prev != "" {
					runs = append(runs, prev)
				}
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
				started[ev.GetEventId()] = ev.GetEventTime().AsTime()
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
				a := ev.GetWorkflowTaskCompletedEventAttributes()
				took := ev.GetEventTime().AsTime().Sub(started[a.GetStartedEventId()])
				assert.Less(t, took, limit, "%s: workflow task completed at event %d took %s", id, ev.GetEventId(), took)
				tasks++
			}
		}
	}
	assert.NotZero(t, tasks, "%s: read no workflow task", id)
}

// TestFrontendCut cuts every connection between the worker and the
// Temporal frontend for a minute in the middle of a copy: the worker
// reconnects by itself, the copy goes on (a step cut off is retried from
// its last heartbeat), and the records are exact, no share in Error.
// COMPANIONSYNC_FRONTEND_CUT shortens or lengthens the cut.
func TestFrontendCut(t *testing.T) {
	cutFor := time.Minute
	if v := os.Getenv("COMPANIONSYNC_FRONTEND_CUT"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "COMPANIONSYNC_FRONTEND_CUT")
		cutFor = d
	}
	settings := testenv.FastSettings()
	// Small steps, so that the copy is still running when the cut comes.
	settings.BatchSize, settings.StepBudget = 2, 20*time.Millisecond
	env := testenv.Start(t, testenv.Options{NoWorker: true, SeedRecords: 4000, Settings: settings})
	proxy, err := faultproxy.Start(env.Server.FrontendAddr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	env.Worker = env.NewWorkerWith(t, env.DialAt(t, proxy.Addr()))

	c := control.New(env.Client) // the test's own client is not cut
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	connectAndShare(t, c, ref, "default")
	testenv.WaitStatus(t, c, ref, "copy under way", func(v contract.StatusView) bool {
		s, _ := testenv.Share(v, "default")
		return s.RecordsCopied > 0
	})
	proxy.Down()
	before := companionCount(t, env, "acme", "acme-emea", "default")
	require.Less(t, before, 4000, "the cut comes in the middle of the copy")
	time.Sleep(cutFor)
	v, err := c.Status(context.Background(), ref)
	require.NoError(t, err, "the server answers without the worker (a stale view)")
	s, _ := testenv.Share(v, "default")
	assert.Equal(t, contract.Activating, s.InitializationStatus)
	proxy.Up()

	v = testenv.WaitStatus(t, c, ref, "copied", testenv.ShareIs("default", contract.ShareActive))
	s, _ = testenv.Share(v, "default")
	assert.Equal(t, 4000, s.RecordsCopied)
	requireCopied(t, env, "acme", "acme-emea", "default")
	for _, tr := range v.Transitions {
		assert.NotEqual(t, string(contract.ShareError), tr.Status, "transition %+v", tr)
	}
	accepted, refused := proxy.Counts()
	assert.NotZero(t, refused, "the worker tried to reconnect during the cut")
	assert.Greater(t, accepted, 1, "the worker reconnected after the cut")
}

// TestSlowStore delays every round trip to the PostgreSQL org store by
// COMPANIONSYNC_STORE_DELAY (for example 500ms) for a whole copy and
// removal, and checks that nothing times out into a retry (every step's
// first attempt is its last), that the share never reaches Error and the
// connection stays Active, and that the counts are exact; it logs how long
// each took. It runs only when the variable is set: at 2 s per round trip
// status reads still go stale (see docs/testing.md, "Faults").
func TestSlowStore(t *testing.T) {
	spec := os.Getenv("COMPANIONSYNC_STORE_DELAY")
	if spec == "" {
		t.Skip("set COMPANIONSYNC_STORE_DELAY (for example 500ms) to run it")
	}
	delay, err := time.ParseDuration(spec)
	require.NoError(t, err, "COMPANIONSYNC_STORE_DELAY")
	store, proxy := postgresBehindProxy(t, "e2e_slow")

	settings := testenv.FastSettings()
	settings.BatchSize = 100
	// A health check runs inside the connection's workflow task: on a slow
	// store its reads run at once and it gives up after 5 s, keeping the
	// status. Checks every minute leave the connection free to answer
	// reads and take the removal's reports.
	settings.HealthCheckInterval = time.Minute
	settings.MetadataSyncInterval = time.Minute
	// The production removal deadline: at 2 s per round trip one removal
	// step takes over a minute, FastSettings' deadline.
	settings.RemovalDeadline = 30 * time.Minute
	env := testenv.Start(t, testenv.Options{OrgStore: store, SeedRecords: 100, Settings: settings})
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}

	// The handshake (a one-off of some fifteen round trips) runs before the
	// store slows down; the copy, the removal, the health checks and the
	// metadata counts run on the slow store.
	_, err = c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)
	proxy.Delay(delay)
	start := time.Now()
	_, err = c.Share(ctx, ref, "default")
	require.NoError(t, err)
	v := waitLong(t, c, ref, "copied", testenv.ShareIs("default", contract.ShareActive))
	t.Logf("copy of 100 records in one batch with %s per round trip: %s", delay, time.Since(start).Round(time.Second))
	assert.Equal(t, contract.Active, v.Status)
	_, err = c.Unshare(ctx, ref, "default")
	require.NoError(t, err)
	start = time.Now()
	v = waitLong(t, c, ref, "removed", testenv.ShareGone("default"))
	t.Logf("removal: %s", time.Since(start).Round(time.Second))
	proxy.Delay(0)
	assert.Zero(t, companionCount(t, env, "acme", "acme-emea", "default"))
	for _, tr := range v.Transitions {
		assert.NotEqual(t, string(contract.ShareError), tr.Status, "transition %+v", tr)
		assert.NotEqual(t, string(contract.Inactive), tr.Status, "transition %+v", tr)
	}
	// No workflow task of the connection waited on the store for longer
	// than a health check's bound (and a task's round trip).
	assertShortWorkflowTasks(t, env, workflows.ConnectionWorkflowID("acme", "acme-emea"), 8*time.Second)
	steps := firstAttemptsOnly(t, env, workflows.ShareWorkflowID("acme", "acme-emea", "default"))
	assert.NotZero(t, steps)
	t.Logf("%d copy and removal steps, each done on its first attempt", steps)
}

// waitLong is testenv.WaitStatus with room for a slow store: 8 minutes.
func waitLong(t *testing.T, c *control.Client, ref control.Ref, what string, cond func(contract.StatusView) bool) contract.StatusView {
	t.Helper()
	deadline := time.Now().Add(8 * time.Minute)
	for {
		v, err := c.Status(context.Background(), ref)
		if err == nil && !v.Stale && cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last status %+v, error %v", what, v, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// firstAttemptsOnly fails when an activity of any run of id needed a second
// attempt, and returns how many activities ran.
func firstAttemptsOnly(t *testing.T, env *testenv.Env, id string) int {
	t.Helper()
	runs, n := []string{""}, 0
	for len(runs) > 0 {
		run := runs[0]
		runs = runs[1:]
		iter := env.Client.GetWorkflowHistory(context.Background(), id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for iter.HasNext() {
			ev, err := iter.Next()
			require.NoError(t, err)
			switch ev.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
				if prev := ev.GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId(); prev != "" {
					runs = append(runs, prev)
				}
			case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
				a := ev.GetActivityTaskStartedEventAttributes()
				assert.Equal(t, int32(1), a.GetAttempt(), "%s: activity at event %d ran attempt %d (%s)", id, ev.GetEventId(), a.GetAttempt(), a.GetLastFailure().GetMessage())
				n++
			}
		}
	}
	return n
}

// TestConnectWaitsForTheStore connects while the org store is unreachable:
// the connection stays Connecting and says it waits for the store, and the
// connect completes, Incomplete, once the store is back; no workflow task
// waits on the store meanwhile.
func TestConnectWaitsForTheStore(t *testing.T) {
	store, proxy := postgresBehindProxy(t, "e2e_connect")
	env := testenv.Start(t, testenv.Options{OrgStore: store, SeedRecords: 100})
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}

	proxy.Down()
	down := time.Now()
	connected := make(chan error, 1)
	go func() {
		_, err := c.Connect(ctx, ref, contract.Settings{})
		connected <- err
	}()
	var v contract.StatusView
	testenv.Eventually(t, time.Minute, "Connecting, waiting for the store", func() bool {
		var err error
		v, err = c.Status(ctx, ref)
		return err == nil && !v.Stale && v.Status == contract.Connecting && strings.Contains(v.Reason, "waiting for the org store")
	})
	t.Logf("while the store is down: %s: %s", v.Status, v.Reason)
	select {
	case err := <-connected:
		t.Fatalf("connect returned while the store was down: %v", err)
	default:
	}
	testenv.Eventually(t, time.Minute, "the outage lasting 20 s", func() bool { return time.Since(down) > 20*time.Second })
	proxy.Up()
	require.NoError(t, <-connected, "connect completes once the store is back")
	v = testenv.WaitStatus(t, c, ref, "Incomplete", func(v contract.StatusView) bool { return v.Status == contract.Incomplete })
	assert.Empty(t, v.Reason)
	assertShortWorkflowTasks(t, env, workflows.ConnectionWorkflowID(ref.Home, ref.Companion), 12*time.Second)
}
