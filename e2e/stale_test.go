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

// TestStatusWithoutWorkerIsThePublishedState stops the only worker and
// reads a connection's status: instead of waiting for a query no one will
// answer, Status returns the statuses the workflows last published in their
// search attributes, marked stale. A worker started again answers in full.
func TestStatusWithoutWorkerIsThePublishedState(t *testing.T) {
	env := testenv.Start(t, testenv.Options{NoWorker: true})
	w := newWorker(t, env)
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	connectAndShare(t, c, ref, "default", "marketing")
	live := testenv.WaitStatus(t, c, ref, "both Active and the metadata sync running", func(v contract.StatusView) bool {
		return testenv.ShareIs("default", contract.ShareActive)(v) && testenv.ShareIs("marketing", contract.ShareActive)(v) &&
			v.MetadataSync.Status == contract.SyncSucceeded
	})
	require.False(t, live.Stale)
	// Visibility is eventually consistent: wait until it shows what the
	// workflows published.
	testenv.Eventually(t, 30*time.Second, "search attributes published", func() bool {
		got, err := c.List(ctx, control.Filter{Home: "acme"})
		return err == nil && len(got) == 1 && got[0].Status == string(contract.Active) && got[0].MetadataSyncStatus == string(contract.SyncSucceeded)
	})

	w.stop()
	start := time.Now()
	v, err := c.Status(ctx, ref)
	elapsed := time.Since(start)
	require.NoError(t, err)
	t.Logf("status without a worker answered in %s (query timeout %s)", elapsed, control.DefaultQueryTimeout)
	assert.True(t, v.Stale, "marked stale")
	assert.Equal(t, contract.Active, v.Status)
	assert.Equal(t, contract.RunRunning, v.Workflow)
	assert.Equal(t, contract.SyncSucceeded, v.MetadataSync.Status)
	require.Len(t, v.DataSpaces, 2)
	for i, ds := range []string{"default", "marketing"} {
		assert.Equal(t, ds, v.DataSpaces[i].DataSpace)
		assert.Equal(t, contract.ShareActive, v.DataSpaces[i].InitializationStatus)
	}

	newWorker(t, env)
	v, err = c.WithQueryTimeout(30*time.Second).Status(ctx, ref)
	require.NoError(t, err)
	assert.False(t, v.Stale, "a worker answers again")
	assert.Len(t, v.DataSpaces, 2)
}
