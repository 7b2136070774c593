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

// TestFullLifecycle: connect, share two data spaces, sync metadata, unshare
// one, disconnect; the companion's data follows every step.
func TestFullLifecycle(t *testing.T) {
	settings := testenv.FastSettings()
	settings.MetadataSyncInterval = 2 * time.Second // long enough to see Pending
	env := testenv.Start(t, testenv.Options{Settings: settings})
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}

	connectAndShare(t, c, ref, "default", "marketing")
	v := testenv.WaitStatus(t, c, ref, "both shares Active", func(v contract.StatusView) bool {
		return testenv.ShareIs("default", contract.ShareActive)(v) && testenv.ShareIs("marketing", contract.ShareActive)(v)
	})
	assert.Equal(t, contract.Active, v.Status)
	requireCopied(t, env, "acme", "acme-emea", "default")
	requireCopied(t, env, "acme", "acme-emea", "marketing")

	testenv.WaitStatus(t, c, ref, "metadata sync Succeeded", func(v contract.StatusView) bool {
		return v.MetadataSync.Status == contract.SyncSucceeded
	})
	_, err := env.Store.Demo().ChangeMetadata(ctx, "acme", "marketing", 3)
	require.NoError(t, err)
	v = testenv.WaitStatus(t, c, ref, "Pending 3", func(v contract.StatusView) bool {
		return v.MetadataSync.Status == contract.SyncPending
	})
	assert.Equal(t, 3, v.MetadataSync.PendingChanges)
	v = testenv.WaitStatus(t, c, ref, "Succeeded after the round", func(v contract.StatusView) bool {
		return v.MetadataSync.Status == contract.SyncSucceeded
	})
	require.NotNil(t, v.MetadataSync.LastSucceededAt)
	objects, err := env.Store.Demo().CompanionMetadata(ctx, "acme", "acme-emea", "marketing")
	require.NoError(t, err)
	assert.NotEmpty(t, objects)

	_, err = c.Unshare(ctx, ref, "marketing")
	require.NoError(t, err)
	v = testenv.WaitStatus(t, c, ref, "marketing removed", testenv.ShareGone("marketing"))
	assert.Equal(t, contract.Active, v.Status)
	assert.Zero(t, companionCount(t, env, "acme", "acme-emea", "marketing"), "unshared rows gone")
	requireCopied(t, env, "acme", "acme-emea", "default") // the other share intact

	v, err = c.Disconnect(ctx, ref, true)
	require.NoError(t, err)
	assert.Equal(t, contract.Disconnected, v.Status)
	assert.Zero(t, companionCount(t, env, "acme", "acme-emea", "default"), "nothing left in the companion")
	// The companion is free again: a new connection of the pair is accepted.
	_, err = c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)
	_, err = c.Disconnect(ctx, ref, true)
	require.NoError(t, err)
}

// TestWorkerCrash kills a worker process with SIGKILL during an initial sync
// and during a removal; a new worker finishes both with no record lost or
// duplicated.
func TestWorkerCrash(t *testing.T) {
	settings := testenv.FastSettings()
	settings.BatchSize = 50
	// Short steps: the status shows progress several times before half
	// the records are copied, also on a fast machine.
	settings.StepBudget = 50 * time.Millisecond
	env := testenv.Start(t, testenv.Options{SeedRecords: 60000, NoWorker: true, Settings: settings})
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}

	crashing := startWorkerProcess(t, env)
	_, err := c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)
	_, err = c.Share(ctx, ref, "marketing")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "marketing Active", testenv.ShareIs("marketing", contract.ShareActive))
	_, err = c.Share(ctx, ref, "default")
	require.NoError(t, err)
	v := testenv.WaitStatus(t, c, ref, "initial sync under way", func(v contract.StatusView) bool {
		s, ok := testenv.Share(v, "default")
		return ok && s.RecordsCopied > 0 && s.RecordsCopied < s.RecordsTotal/2
	})
	crashing.kill()
	before := companionCount(t, env, "acme", "acme-emea", "default")
	s, _ := testenv.Share(v, "default")
	t.Logf("killed the worker with %d of %d records copied", before, s.RecordsTotal)
	require.Less(t, before, s.RecordsTotal, "the crash happened mid-sync")

	recovering := newWorker(t, env)
	testenv.WaitStatus(t, c, ref, "default Active after the crash", testenv.ShareIs("default", contract.ShareActive))
	requireCopied(t, env, "acme", "acme-emea", "default")
	recovering.stop()

	// Now a crash during the removal.
	crashing = startWorkerProcess(t, env)
	_, err = c.Unshare(ctx, ref, "default")
	require.NoError(t, err)
	total := s.RecordsTotal
	deadline := time.Now().Add(time.Minute)
	for n := companionCount(t, env, "acme", "acme-emea", "default"); n == total; n = companionCount(t, env, "acme", "acme-emea", "default") {
		require.True(t, time.Now().Before(deadline), "removal did not start")
		time.Sleep(10 * time.Millisecond)
	}
	crashing.kill()
	left := companionCount(t, env, "acme", "acme-emea", "default")
	t.Logf("killed the worker with %d of %d records left to remove", left, total)

	newWorker(t, env)
	testenv.WaitStatus(t, c, ref, "default removed after the crash", testenv.ShareGone("default"))
	assert.Zero(t, companionCount(t, env, "acme", "acme-emea", "default"))
	requireCopied(t, env, "acme", "acme-emea", "marketing")
	_, err = c.Disconnect(ctx, ref, true)
	require.NoError(t, err)
}

// TestServerRestart stops the server and the worker while connections are
// Activating, Pending and in Error, starts both again on the same database,
// and sees every workflow continue and end right.
func TestServerRestart(t *testing.T) {
	settings := testenv.FastSettings()
	settings.BatchSize = 50
	settings.MetadataSyncInterval = 3 * time.Second
	env := testenv.Start(t, testenv.Options{SeedRecords: 60000, NoWorker: true, Settings: settings})
	c := control.New(env.Client)
	ctx := context.Background()
	emea := control.Ref{Home: "acme", Companion: "acme-emea"}
	apac := control.Ref{Home: "acme", Companion: "acme-apac"}

	w := newWorker(t, env)
	for _, ref := range []control.Ref{emea, apac} {
		_, err := c.Connect(ctx, ref, contract.Settings{})
		require.NoError(t, err)
	}
	// acme-apac: a share in Error (every attempt of the initial sync fails).
	require.NoError(t, env.Store.Demo().InjectCopyFailures(ctx, "acme", "acme-apac", "sales", int(settings.InitialSyncRetry.MaximumAttempts)))
	_, err := c.Share(ctx, apac, "sales")
	require.NoError(t, err)
	// acme-emea: metadata Pending on marketing, and default Activating.
	_, err = c.Share(ctx, emea, "marketing")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, emea, "metadata sync running", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncSucceeded })
	_, err = env.Store.Demo().ChangeMetadata(ctx, "acme", "marketing", 2)
	require.NoError(t, err)
	testenv.WaitStatus(t, c, emea, "Pending", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncPending })
	_, err = c.Share(ctx, emea, "default")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, emea, "default Activating", func(v contract.StatusView) bool {
		s, ok := testenv.Share(v, "default")
		return ok && s.RecordsCopied > 0 && s.RecordsCopied < s.RecordsTotal
	})
	testenv.WaitStatus(t, c, apac, "sales in Error", testenv.ShareIs("sales", contract.ShareError))

	w.stop()
	require.NoError(t, env.Server.Stop())
	env.StartServer(t)
	env.Dial(t)
	c = control.New(env.Client)
	newWorker(t, env)

	v := testenv.WaitStatus(t, c, emea, "default Active and metadata applied after the restart", func(v contract.StatusView) bool {
		return testenv.ShareIs("default", contract.ShareActive)(v) && v.MetadataSync.Status == contract.SyncSucceeded
	})
	assert.Equal(t, contract.Active, v.Status)
	requireCopied(t, env, "acme", "acme-emea", "default")
	v, err = c.Status(ctx, apac)
	require.NoError(t, err)
	s, _ := testenv.Share(v, "sales")
	assert.Equal(t, contract.ShareError, s.InitializationStatus)
	assert.Contains(t, s.Error, "injected transient failure")
	_, err = c.Retry(ctx, apac, "sales")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, apac, "sales Active after retry", testenv.ShareIs("sales", contract.ShareActive))
	requireCopied(t, env, "acme", "acme-apac", "sales")
	for _, ref := range []control.Ref{emea, apac} {
		v, err := c.Disconnect(ctx, ref, true)
		require.NoError(t, err)
		assert.Equal(t, contract.Disconnected, v.Status)
	}
}
