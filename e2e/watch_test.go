package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// TestQuietConnectionKeepsItsPromises: a quiet connection (Active, copied,
// metadata caught up) writes nothing to its history while nothing changes,
// and still shows, without anyone asking for a re-check, within a few
// intervals: a companion deactivated and reactivated, a licence expired and
// renewed (health-check interval), pending metadata changes (metadata
// interval), a conflict pausing the sync (one round). The fleet watcher's
// wake is what brings each: the connection's own resync is a day away.
func TestQuietConnectionKeepsItsPromises(t *testing.T) {
	const interval = 2 * time.Second
	settings := testenv.FastSettings()
	settings.HealthCheckInterval, settings.MetadataSyncInterval = interval, interval
	env := testenv.Start(t, testenv.Options{Settings: settings, SeedRecords: 200})
	ctx := context.Background()
	c := control.New(env.Client)
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	demo := env.Store.Demo()
	connectAndShare(t, c, ref, "marketing")
	quiet := func(v contract.StatusView) bool {
		return v.Watched && testenv.ShareIs("marketing", contract.ShareActive)(v) &&
			v.MetadataSync.Status == contract.SyncSucceeded && v.MetadataSync.PendingChanges == 0
	}
	testenv.WaitStatus(t, c, ref, "quiet", quiet)

	// Quiet: three intervals pass without an event in the connection's
	// history or its metadata sync's.
	length := func(id string) int64 {
		d, err := env.Client.DescribeWorkflowExecution(ctx, id, "")
		require.NoError(t, err)
		return d.GetWorkflowExecutionInfo().GetHistoryLength()
	}
	connID, syncID := contract.ConnectionWorkflowID(ref.Home, ref.Companion), contract.MetadataSyncWorkflowID(ref.Home, ref.Companion)
	testenv.Eventually(t, time.Minute, "histories still for three intervals", func() bool {
		c0, s0 := length(connID), length(syncID)
		time.Sleep(3 * interval)
		return length(connID) == c0 && length(syncID) == s0
	})

	shown := 0
	// within waits for what a promise says must show: WaitStatus gives up
	// after two minutes, the connection's own resync is a day away, so
	// only the watcher's wake passes it. The time it took is logged (the
	// benchmarks measure it).
	within := func(what string, cond func(contract.StatusView) bool) {
		t.Helper()
		start := time.Now()
		testenv.WaitStatus(t, c, ref, what, cond)
		t.Logf("%s: shown after %s (the watcher sweeps every %s)", what, time.Since(start).Round(100*time.Millisecond), interval)
		shown++
	}
	defer func() { assert.Equal(t, 6, shown, "promises checked") }()
	inactive := func(v contract.StatusView) bool { return v.Status == contract.Inactive }
	active := func(v contract.StatusView) bool { return v.Status == contract.Active }

	require.NoError(t, demo.Deactivate(ctx, ref.Companion))
	within("Inactive after the companion's deactivation", inactive)
	require.NoError(t, demo.Reactivate(ctx, ref.Companion))
	within("Active after its reactivation", active)
	require.NoError(t, demo.ExpireLicence(ctx, ref.Home))
	within("Inactive after the licence expired", inactive)
	require.NoError(t, demo.RenewLicence(ctx, ref.Home))
	within("Active after its renewal", active)
	testenv.WaitStatus(t, c, ref, "quiet again", quiet)

	before := testenv.WaitStatus(t, c, ref, "metadata caught up", quiet).MetadataSync.Rounds
	_, err := demo.ChangeMetadata(ctx, ref.Home, "marketing", 2)
	require.NoError(t, err)
	within("the pending changes counted or applied", func(v contract.StatusView) bool {
		m := v.MetadataSync
		return m.PendingChanges == 2 || m.Rounds > before
	})
	testenv.WaitStatus(t, c, ref, "the changes applied", func(v contract.StatusView) bool {
		return v.MetadataSync.Rounds > before && v.MetadataSync.PendingChanges == 0 && v.MetadataSync.Status == contract.SyncSucceeded
	})

	_, err = demo.MakeConflict(ctx, ref.Home, ref.Companion, "marketing")
	require.NoError(t, err)
	within("the sync paused on the conflict", func(v contract.StatusView) bool {
		return v.MetadataSync.Paused && v.MetadataSync.Status == contract.SyncError
	})
}
