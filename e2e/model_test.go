package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/refmodel"
	"github.com/companionsync/companionsync/internal/testenv"
)

// TestModelOnRealServer drives a real server, worker and store and the
// reference model with the same random operations, as fast as the client
// sends them, with a history budget small enough that all three workflows
// continue as new many times. Refusals must be typed; once the sequence has
// settled the status must agree with the model and the companion must hold
// exactly the records of the Active shares; after the final disconnect
// nothing may be left. COMPANIONSYNC_E2E_MODEL_SEEDS sets how many seeds
// run (2 by default).
func TestModelOnRealServer(t *testing.T) {
	seeds := 2
	if s := os.Getenv("COMPANIONSYNC_E2E_MODEL_SEEDS"); s != "" {
		var err error
		seeds, err = strconv.Atoi(s)
		require.NoError(t, err, "COMPANIONSYNC_E2E_MODEL_SEEDS")
	}
	settings := testenv.FastSettings()
	settings.EventBudget = 80 // continue as new often
	settings.HealthCheckInterval = 300 * time.Millisecond
	settings.InitialSyncRetry.MaximumAttempts = 2
	settings.ActivityRetry.MaximumAttempts = 2
	env := testenv.Start(t, testenv.Options{SeedRecords: 300, Settings: settings})
	c := control.New(env.Client)
	checked := 0
	for seed := 1; seed <= seeds; seed++ {
		// One companion per seed: each sequence is a connection of its own.
		if seed > 2 {
			t.Fatalf("the seed store has two free companions of acme: at most 2 seeds")
		}
		companion := []string{"acme-emea", "acme-apac"}[seed-1]
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runRealModelSequence(t, env, c, uint64(seed), control.Ref{Home: "acme", Companion: companion})
			checked++
		})
	}
	require.Equal(t, seeds, checked, "every sequence ran to its end")
}

func runRealModelSequence(t *testing.T, env *testenv.Env, c *control.Client, seed uint64, ref control.Ref) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 0xe2e))
	dataSpaces, err := env.Store.DataSpaces(ctx, ref.Home)
	require.NoError(t, err)
	m := refmodel.New(dataSpaces)
	require.NoError(t, env.Store.Demo().RenewLicence(ctx, ref.Home), "a healthy home, whatever an earlier sequence left")
	_, err = c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)

	for i := range 40 {
		ds := dataSpaces[rng.IntN(len(dataSpaces))]
		var op string
		var call func() error
		switch roll := rng.IntN(100); {
		case roll < 35:
			op, call = contract.MessageShare, func() error { _, err := c.Share(ctx, ref, ds); return err }
		case roll < 60:
			op, call = contract.MessageUnshare, func() error { _, err := c.Unshare(ctx, ref, ds); return err }
		case roll < 68:
			op, call = contract.MessageRetry, func() error { _, err := c.Retry(ctx, ref, ds); return err }
		case roll < 72:
			op, call = contract.MessageResume, func() error { _, err := c.Resume(ctx, ref); return err }
		case roll < 80:
			op, call = contract.MessageRecheck, func() error { _, err := c.Recheck(ctx, ref); return err }
		case roll < 86:
			require.NoError(t, env.Store.Demo().InjectCopyFailures(ctx, ref.Home, ref.Companion, ds, 1+rng.IntN(4)))
			m.CopyFailed[ds] = true
			continue
		case roll < 90:
			if m.LicenceExpired {
				require.NoError(t, env.Store.Demo().RenewLicence(ctx, ref.Home))
			} else {
				require.NoError(t, env.Store.Demo().ExpireLicence(ctx, ref.Home))
			}
			m.LicenceExpired = !m.LicenceExpired
			continue
		default:
			_, err := env.Store.Demo().ChangeMetadata(ctx, ref.Home, ds, 1+rng.IntN(3))
			require.NoError(t, err)
			continue
		}
		err := call()
		var refused *control.RefusedError
		switch {
		case err == nil:
			m.Accept(op, ds)
		case errors.As(err, &refused):
			require.NotEmpty(t, refused.Kind, "op %d %s %s: an untyped refusal: %v", i, op, ds, err)
		default:
			require.NoError(t, err, "op %d %s %s", i, op, ds)
		}
	}

	// Settle: a healthy licence, then wait until the status agrees.
	if m.LicenceExpired {
		require.NoError(t, env.Store.Demo().RenewLicence(ctx, ref.Home))
		m.LicenceExpired = false
	}
	copied := func(ds string) int { return companionCount(t, env, ref.Home, ref.Companion, ds) }
	total := func(ds string) int {
		n, err := env.Store.Demo().CountRecords(ctx, ref.Home, ds)
		require.NoError(t, err)
		return n
	}
	var diffs []string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last differences from the model: %v", diffs)
		}
	})
	testenv.Eventually(t, 2*time.Minute, "the status agrees with the model", func() bool {
		if _, err := c.Recheck(ctx, ref); err != nil {
			return false
		}
		for _, ds := range m.Shared() {
			// A share left in Error by injected failures is retried once the
			// failures are used up.
			if v, err := c.Status(ctx, ref); err == nil {
				if sh, ok := testenv.Share(v, ds); ok && sh.InitializationStatus == contract.ShareError && sh.Requested == "" {
					_, _ = c.Retry(ctx, ref, ds)
				}
			}
		}
		v, err := c.Status(ctx, ref)
		require.NoError(t, err)
		diffs = m.Settled(v, copied, total)
		return len(diffs) == 0
	})
	var runs, continued int
	testenv.Eventually(t, 30*time.Second, "the connection continued as new", func() bool {
		runs, continued = runsOf(t, env.Client, contract.ConnectionWorkflowID(ref.Home, ref.Companion))
		return continued > 0
	})
	t.Logf("seed %d: %d requests accepted; the connection ran %d runs", seed, m.Accepted, runs)

	final, err := c.Disconnect(ctx, ref, true)
	require.NoError(t, err)
	require.Equal(t, contract.Disconnected, final.Status)
	for _, ds := range dataSpaces {
		require.Zero(t, copied(ds), "no record of %s left in the companion", ds)
	}
}
