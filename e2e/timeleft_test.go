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

// TestStatusShowsTimeLeft: while a first sync copies, the status shows its
// rate and an estimated completion in the future; while a removal runs, its
// deadline; and for the connection, the home's licence expiry and
// companion slots, as the store holds them.
func TestStatusShowsTimeLeft(t *testing.T) {
	settings := testenv.FastSettings()
	settings.BatchSize = 500
	env := testenv.Start(t, testenv.Options{Settings: settings})
	ctx := context.Background()
	require.NoError(t, env.Store.Demo().AddDataSpace(ctx, "acme", "big", 150_000))
	c := control.New(env.Client).WithQueryTimeout(10 * time.Second)
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	connectAndShare(t, c, ref, "big")

	v := testenv.WaitStatus(t, c, ref, "a copy with an estimate", func(v contract.StatusView) bool {
		sh, ok := testenv.Share(v, "big")
		return ok && sh.InitializationStatus == contract.Activating && sh.EstimatedCompletion != nil
	})
	read := time.Now()
	sh, _ := testenv.Share(v, "big")
	assert.Positive(t, sh.CopyRate, "records a second")
	assert.True(t, sh.EstimatedCompletion.After(read.Add(-2*time.Second)), "the estimate is ahead: %s", sh.EstimatedCompletion)
	left := float64(sh.RecordsTotal-sh.RecordsCopied) / sh.CopyRate
	assert.WithinDuration(t, read.Add(time.Duration(left*float64(time.Second))), *sh.EstimatedCompletion, 5*time.Second,
		"the estimate is what is left at the rate")
	t.Logf("copying: %d of %d at %.0f records/s, done at %s (in %s)", sh.RecordsCopied, sh.RecordsTotal, sh.CopyRate,
		sh.EstimatedCompletion.Format(time.RFC3339), time.Until(*sh.EstimatedCompletion).Round(time.Second))

	home, err := env.Store.Org(ctx, "acme")
	require.NoError(t, err)
	require.NotNil(t, v.Licence, "the licence from the handshake")
	assert.True(t, home.LicenceExpiresAt.Equal(v.Licence.ExpiresAt), "licence expiry %s, store %s", v.Licence.ExpiresAt, home.LicenceExpiresAt)
	assert.Equal(t, 1, v.Licence.CompanionsUsed)
	assert.Equal(t, home.MaxCompanions, v.Licence.CompanionsMax)
	assert.False(t, v.Licence.CheckedAt.IsZero())

	v = testenv.WaitStatus(t, c, ref, "the copy done", testenv.ShareIs("big", contract.ShareActive))
	sh, _ = testenv.Share(v, "big")
	assert.Nil(t, sh.EstimatedCompletion, "no estimate once Active")
	assert.Zero(t, sh.CopyRate)

	_, err = c.Unshare(ctx, ref, "big")
	require.NoError(t, err)
	began := time.Now()
	v = testenv.WaitStatus(t, c, ref, "a removal with its deadline", func(v contract.StatusView) bool {
		sh, ok := testenv.Share(v, "big")
		return ok && sh.InitializationStatus == contract.RemovingSharing && sh.RemovalDeadline != nil
	})
	sh, _ = testenv.Share(v, "big")
	assert.WithinDuration(t, began.Add(settings.RemovalDeadline), *sh.RemovalDeadline, 10*time.Second)
}
