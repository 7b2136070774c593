//go:build linux

package e2e

import (
	"context"
	"fmt"
	"go.temporal.io/sdk/converter"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/orgstore"
)

// TestClusterRollingUpgrade is the rolling deploy of a release on the
// production shape: a temporal-server on PostgreSQL, two workers of the
// previous release serving ten connections under traffic (rechecks and
// metadata changes), then two workers of this release beside them, then the
// old ones stopped one by one. While an old worker polls, no run moves; once
// the last one stopped, every workflow moves onto the current protocol; the
// connections stay Active with exact counts, and no history holds a failed
// workflow task.
func TestClusterRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the previous release and runs a cluster on PostgreSQL")
	}
	bins := buildUpgradeWorkers(t, "")
	cl := StartCluster(t, ClusterOptions{
		SeedRecords: 10,
		WorkerEnv:   []string{"COMPANIONSYNC_HEALTH_CHECK_INTERVAL=2s", "COMPANIONSYNC_METADATA_SYNC_INTERVAL=2s"},
	})
	ctx := context.Background()
	store, err := orgstore.Open(ctx, cl.OrgStoreURL)
	require.NoError(t, err)
	defer store.Close()
	// pairs connections before the deploy, and extra ones connected while
	// old and new workers poll side by side.
	const pairs, extra, records = 10, 2, 3000
	all := make([]control.Ref, pairs+extra)
	refs, during := all[:pairs], all[pairs:]
	for i := range all {
		home := fmt.Sprintf("rolling-h%02d", i)
		all[i] = control.Ref{Home: home, Companion: home + "-c"}
		require.NoError(t, store.Demo().AddOrg(ctx, companionsync.Org{ID: home, Role: companionsync.RoleHome,
			Kind: companionsync.KindProduction, LicenceExpiresAt: time.Now().AddDate(1, 0, 0), MaxCompanions: 1}))
		require.NoError(t, store.Demo().AddOrg(ctx, companionsync.Org{ID: all[i].Companion, Role: companionsync.RoleCompanion,
			Kind: companionsync.KindProduction, Active: true}))
		require.NoError(t, store.Demo().AddDataSpace(ctx, home, "default", records))
	}
	old := []*WorkerProcess{cl.NewWorkerFrom(bins.old), cl.NewWorkerFrom(bins.old)}
	for _, w := range old {
		w.Start(t)
	}
	c := control.New(cl.Client).WithQueryTimeout(time.Minute)
	for _, ref := range refs {
		_, err := c.Connect(ctx, ref, contract.Settings{})
		require.NoError(t, err)
		_, err = c.Share(ctx, ref, "default")
		require.NoError(t, err)
	}
	for _, ref := range refs {
		waitUpgrade(t, c, ref, "Active with its metadata sync", 2*time.Minute, func(v contract.StatusView) bool {
			return v.Status == contract.Active && v.MetadataSync.Status == contract.SyncSucceeded
		})
	}

	// Traffic through the whole deploy: rechecks and metadata changes.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var requests, failures atomic.Int64
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			ref := refs[i%pairs]
			requests.Add(1)
			if _, err := store.Demo().ChangeMetadata(ctx, ref.Home, "default", 1); err != nil {
				failures.Add(1)
			}
			if _, err := c.Recheck(ctx, ref); err != nil {
				failures.Add(1)
				t.Logf("recheck %s: %v", ref, err)
			}
		}
	})

	before := protocols(t, cl.Client)
	cl.NewWorker().Start(t)
	cl.NewWorker().Start(t)
	// Old and new side by side: nothing moves while an old worker polls,
	// and connections started meanwhile run on whichever worker takes them.
	for _, ref := range during {
		_, err := c.Connect(ctx, ref, contract.Settings{})
		require.NoError(t, err)
		_, err = c.Share(ctx, ref, "default")
		require.NoError(t, err)
	}
	overlap := time.Now().Add(20 * time.Second)
	for time.Now().Before(overlap) {
		for id, p := range protocols(t, cl.Client) {
			if _, existed := before[id]; existed {
				require.NotEqual(t, contract.CurrentProtocol.String(), p, "%s moved while a worker of the previous release polled", id)
			}
		}
		time.Sleep(time.Second)
	}
	var stopped time.Time
	for _, w := range old {
		code, err := w.Stop()
		require.NoError(t, err)
		require.Zero(t, code, "%s exit status", w.Name())
		stopped = time.Now()
	}
	moved := waitMoved(cl.Client, before, 5*time.Minute)
	require.Len(t, moved, len(before), "every running workflow moved to protocol %d", contract.CurrentProtocol)
	var last time.Duration
	for _, at := range moved {
		last = max(last, at.Sub(stopped))
	}
	t.Logf("all %d running workflows on protocol %d %s after the last worker of the previous release stopped",
		len(moved), contract.CurrentProtocol, last.Round(100*time.Millisecond))
	close(stop)
	wg.Wait()
	t.Logf("traffic during the deploy: %d rounds, %d failed requests", requests.Load(), failures.Load())
	assert.Zero(t, failures.Load(), "requests failed during the deploy")

	for _, ref := range all {
		waitUpgrade(t, c, ref, "Active on the current protocol with its changes synced", 2*time.Minute, func(v contract.StatusView) bool {
			return v.Status == contract.Active && v.Protocol == contract.CurrentProtocol &&
				v.MetadataSync.Status == contract.SyncSucceeded && v.MetadataSync.PendingChanges == 0
		})
		n, err := store.Demo().CompanionRecordCount(ctx, ref.Home, ref.Companion, "default")
		require.NoError(t, err)
		assert.Equal(t, records, n, "%s records", ref)
		_, err = c.Unshare(ctx, ref, "default")
		require.NoError(t, err, "unshare %s after the deploy", ref)
	}
	var fcs []converter.FailureConverter
	if cl.Keys != nil {
		_, fc := codec.NewConverters(cl.Keys)
		fcs = append(fcs, fc)
	}
	failed, timedOut := taskFailures(ctx, t, cl.Client, fcs...)
	// A connection started during the overlap may be started by a new
	// worker on the current protocol and then taken by an old one, which
	// refuses a protocol newer than its own: that task fails, by design,
	// until a new worker takes it. Any other failure is a fault.
	var unexpected []string
	refused, unknown := 0, 0
	for _, f := range failed {
		duringRun := false
		for _, ref := range during {
			duringRun = duringRun || strings.Contains(f, ":"+ref.Home+":")
		}
		if duringRun && strings.Contains(f, "newer than this worker's") {
			refused++
			continue
		}
		// The fleet watcher, started by the first new worker, is a type
		// the previous release does not know: its task fails on an old
		// worker until a new one takes it.
		if strings.HasPrefix(f, contract.WatcherWorkflowID+" ") && strings.Contains(f, "unable to find workflow type: "+contract.WatcherWorkflowName) {
			unknown++
			continue
		}
		unexpected = append(unexpected, f)
	}
	t.Logf("workflow tasks of runs started during the overlap refused by workers of the previous release: %d", refused)
	t.Logf("fleet watcher tasks failed on workers of the previous release (type unknown to them): %d", unknown)
	assert.Empty(t, unexpected, "workflow tasks failed")
	t.Logf("workflow task timeouts (stopped workers' sticky tasks) and completions refused for new events: %d", timedOut)
	for _, w := range cl.Workers[2:] {
		b, err := os.ReadFile(w.LogPath())
		require.NoError(t, err)
		if strings.Contains(string(b), "older runs wait") {
			return
		}
	}
	t.Error("no worker of this release logged that it held the moves while old workers polled")
}
