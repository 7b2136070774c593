package activities_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/activities"
)

// heldOrgs holds the copy's second batch until released: the attempt of a
// worker that lost touch with Temporal while the workflow moved on.
type heldOrgs struct {
	companionsync.Orgs
	held     chan struct{}
	release  chan struct{}
	batches  int
	lastErr  error
	heldOnce bool
}

func (h *heldOrgs) CopyBatch(ctx context.Context, s companionsync.Share, after string, limit int) (companionsync.CopiedBatch, error) {
	h.batches++
	if h.batches == 2 && !h.heldOnce {
		h.heldOnce = true
		close(h.held)
		<-h.release
	}
	b, err := h.Orgs.CopyBatch(ctx, s, after, limit)
	h.lastErr = err
	return b, err
}

// TestACopyAttemptLeftRunningIsFencedOffByTheRemoval: a copy attempt that
// still runs after the workflow gave up on it and removed the share (its
// step scheduled earlier than the removal's) writes nothing more: its next
// batch fails with the non-retryable Fenced error, and the companion keeps
// nothing of the data space.
func TestACopyAttemptLeftRunningIsFencedOffByTheRemoval(t *testing.T) {
	s := openStore(t)
	orgs := &heldOrgs{Orgs: s, held: make(chan struct{}), release: make(chan struct{})}
	copier := &activities.Activities{Orgs: orgs}
	remover := &activities.Activities{Orgs: s}
	copyEnv := newEnv(t, copier)

	type result struct {
		p   activities.CopyProgress
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := execute[activities.CopyProgress](t, copyEnv, copier.CopyRecords,
			activities.CopyInput{Home: "acme", Companion: "acme-emea", DataSpace: "sales", BatchSize: 50})
		done <- result{p, err}
	}()
	<-orgs.held // one batch copied, the second in flight

	r, err := execute[activities.RemoveProgress](t, newEnv(t, remover), remover.RemoveRecords,
		activities.RemoveInput{Home: "acme", Companion: "acme-emea", DataSpace: "sales", BatchSize: 50})
	require.NoError(t, err)
	require.True(t, r.Done)
	assert.Equal(t, 50, r.Removed, "the removal removed the first batch")

	close(orgs.release)
	res := <-done
	require.Error(t, res.err, "the copy left running must not finish")
	assert.Equal(t, activities.ErrFenced, applicationError(t, res.err).Type())
	assert.True(t, applicationError(t, res.err).NonRetryable())
	assert.ErrorIs(t, orgs.lastErr, companionsync.ErrFenced)
	assert.Equal(t, 2, orgs.batches, "the copy stopped at its first fenced batch")
	n, err := s.CopiedCount(context.Background(), companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "sales"})
	require.NoError(t, err)
	assert.Zero(t, n, "the companion keeps nothing of the removed data space")
}
