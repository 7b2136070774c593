package orgstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync"
)

func TestDemoFaultsFailInjectedCopyBatches(t *testing.T) {
	s := open(t, 1000)
	ctx := context.Background()
	d := WithDemoFaults(s)
	sh := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "marketing"}
	other := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "sales"}

	const n = 3
	require.NoError(t, s.InjectCopyFailures(ctx, "acme", "acme-emea", "marketing", n))
	for i := range n {
		_, err := d.CopyBatch(ctx, sh, "", 10)
		require.Error(t, err, "batch %d", i)
		assert.EqualError(t, err, fmt.Sprintf("injected transient failure (%d left)", n-1-i))
		assert.NotErrorIs(t, err, companionsync.ErrNotFound, "an injected failure is transient")
		copied, err := s.CopiedCount(ctx, sh)
		require.NoError(t, err)
		assert.Zero(t, copied, "a failed batch copies nothing")

		b, err := d.CopyBatch(ctx, other, "", 10)
		require.NoError(t, err, "another share of the companion is not affected")
		assert.Equal(t, 10, b.Copied)
	}
	b, err := d.CopyBatch(ctx, sh, "", 10)
	require.NoError(t, err, "the failures are used up")
	assert.Equal(t, 10, b.Copied)

	// The bare store ignores injections.
	require.NoError(t, s.InjectCopyFailures(ctx, "acme", "acme-emea", "marketing", 1))
	b, err = s.CopyBatch(ctx, sh, b.Last, 10)
	require.NoError(t, err)
	assert.Equal(t, 10, b.Copied)
	_, taken, err := s.TakeInjectedFailure(ctx, sh)
	require.NoError(t, err)
	assert.True(t, taken, "the bare store left the injected failure")
	_, taken, err = s.TakeInjectedFailure(ctx, sh)
	require.NoError(t, err)
	assert.False(t, taken)

	// Errors of the store itself pass through.
	_, err = d.CopyBatch(ctx, companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "finance"}, "", 10)
	assert.ErrorIs(t, err, companionsync.ErrNotFound)

	// CompleteRemoval clears the share's injected failures.
	require.NoError(t, s.InjectCopyFailures(ctx, "acme", "acme-emea", "marketing", 2))
	require.NoError(t, d.CompleteRemoval(ctx, sh))
	_, err = d.CopyBatch(ctx, sh, "", 10)
	assert.NoError(t, err)
}
