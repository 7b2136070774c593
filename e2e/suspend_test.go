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

// TestInactiveSuspendsFirstSyncs: a first sync in progress stops after its
// step when the connection goes Inactive and says so; it copies nothing
// while Inactive (two health checks pass with the count unchanged); once a
// health check passes again it goes on from its checkpoint and ends with
// exactly the home org's records.
func TestInactiveSuspendsFirstSyncs(t *testing.T) {
	settings := testenv.FastSettings()
	settings.BatchSize, settings.StepBudget = 100, 100*time.Millisecond
	env := testenv.Start(t, testenv.Options{SeedRecords: 60_000, Settings: settings})
	ctx := context.Background()
	c := control.New(env.Client)
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	demo := env.Store.Demo()
	count := func() int {
		n, err := demo.CompanionRecordCount(ctx, "acme", "acme-emea", "default")
		require.NoError(t, err)
		return n
	}

	_, err := c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)
	_, err = c.Share(ctx, ref, "default")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "a first sync in progress", func(v contract.StatusView) bool {
		s, ok := testenv.Share(v, "default")
		return ok && s.InitializationStatus == contract.Activating && s.RecordsCopied > 0
	})

	require.NoError(t, demo.Deactivate(ctx, "acme-emea"))
	_, err = c.Recheck(ctx, ref)
	require.NoError(t, err)
	v := testenv.WaitStatus(t, c, ref, "the first sync suspended", func(v contract.StatusView) bool {
		s, ok := testenv.Share(v, "default")
		return v.Status == contract.Inactive && ok && s.Waiting == contract.SuspendedWaiting
	})
	s, _ := testenv.Share(v, "default")
	assert.Equal(t, contract.Activating, s.InitializationStatus, "the status stays; the waiting line says why it does not move")
	assert.Nil(t, s.EstimatedCompletion, "no estimate while suspended")
	// The share's own view says so too, and its step in flight ends.
	shareID := contract.ShareWorkflowID("acme", "acme-emea", "default")
	testenv.Eventually(t, 30*time.Second, "the share's workflow holding, no step running", func() bool {
		var sv contract.ShareView
		q, err := env.Client.QueryWorkflow(ctx, shareID, "", contract.QueryStatus)
		if err != nil || q.Get(&sv) != nil || sv.Waiting != contract.SuspendedWaiting {
			return false
		}
		d, err := env.Client.DescribeWorkflowExecution(ctx, shareID, "")
		return err == nil && len(d.GetPendingActivities()) == 0
	})
	held := count()
	require.Less(t, held, 60_000, "suspended before the end")
	// Two health checks pass (each reads the licence again): nothing copied.
	checked := v.Licence.CheckedAt
	for i := 0; i < 2; i++ {
		v = testenv.WaitStatus(t, c, ref, "a health check", func(v contract.StatusView) bool {
			return v.Licence != nil && v.Licence.CheckedAt.After(checked)
		})
		checked = v.Licence.CheckedAt
	}
	assert.Equal(t, held, count(), "nothing copied while Inactive")

	require.NoError(t, demo.Reactivate(ctx, "acme-emea"))
	_, err = c.Recheck(ctx, ref)
	require.NoError(t, err)
	v = testenv.WaitStatus(t, c, ref, "the copy finished", testenv.ShareIs("default", contract.ShareActive))
	s, _ = testenv.Share(v, "default")
	assert.Empty(t, s.Waiting)
	requireCopied(t, env, "acme", "acme-emea", "default")
	var suspended, resumed int
	for _, tr := range v.Transitions {
		switch tr.Status {
		case "first sync suspended":
			suspended++
		case "first sync resumed":
			resumed++
		}
	}
	assert.Equal(t, 1, suspended, "transitions: %v", v.Transitions)
	assert.Equal(t, 1, resumed, "transitions: %v", v.Transitions)
}

// TestSuspendedAtOnce: a share suspended right after it starts, before its
// first step ends, and resumed, copies everything. The data space is large
// and its batches small, so the copy cannot end before the re-check that
// suspends it (200 records once ended first, under load).
func TestSuspendedAtOnce(t *testing.T) {
	settings := testenv.FastSettings()
	settings.BatchSize = 50
	env := testenv.Start(t, testenv.Options{SeedRecords: 20_000, Settings: settings})
	ctx := context.Background()
	c := control.New(env.Client)
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	demo := env.Store.Demo()
	_, err := c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)
	_, err = c.Share(ctx, ref, "default")
	require.NoError(t, err)
	require.NoError(t, demo.Deactivate(ctx, "acme-emea"))
	_, err = c.Recheck(ctx, ref)
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "default suspended", func(v contract.StatusView) bool {
		s, ok := testenv.Share(v, "default")
		return ok && s.Waiting == contract.SuspendedWaiting
	})
	require.NoError(t, demo.Reactivate(ctx, "acme-emea"))
	_, err = c.Recheck(ctx, ref)
	require.NoError(t, err)
	defer func() {
		if t.Failed() {
			var sv contract.ShareView
			q, err := env.Client.QueryWorkflow(ctx, contract.ShareWorkflowID("acme", "acme-emea", "default"), "", contract.QueryStatus)
			if err == nil {
				_ = q.Get(&sv)
			}
			d, _ := env.Client.DescribeWorkflowExecution(ctx, contract.ShareWorkflowID("acme", "acme-emea", "default"), "")
			t.Logf("share view %+v err %v; pending %v", sv, err, d.GetPendingActivities())
			it := env.Client.GetWorkflowHistory(ctx, contract.ShareWorkflowID("acme", "acme-emea", "default"), "", false, 0)
			for it.HasNext() {
				ev, _ := it.Next()
				t.Logf("event %d %s", ev.GetEventId(), ev.GetEventType())
			}
		}
	}()
	testenv.WaitStatus(t, c, ref, "default Active", testenv.ShareIs("default", contract.ShareActive))
	requireCopied(t, env, "acme", "acme-emea", "default")
}
