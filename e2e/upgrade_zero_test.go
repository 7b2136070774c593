package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// TestEveryProtocolMovesInEitherOrder: a connection on any earlier
// protocol and its children move one at a time, in either order, and every
// request made while the pair is split is carried out: a share started, a
// share removed, a metadata change applied, then a disconnect.
func TestEveryProtocolMovesInEitherOrder(t *testing.T) {
	for p := contract.OldestProtocol; p < contract.CurrentProtocol; p++ {
		for _, first := range []string{"connection", "children"} {
			t.Run(fmt.Sprintf("protocol %d, %s first", p, first), func(t *testing.T) {
				testSplitMove(t, p, first)
			})
		}
	}
}

func testSplitMove(t *testing.T, p contract.Protocol, first string) {
	env, c := startFleet(t)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	shareOnProtocol(t, env, c, ref, p)
	conn := contract.ConnectionWorkflowID(ref.Home, ref.Companion)
	children := []string{contract.ShareWorkflowID(ref.Home, ref.Companion, "default"), contract.MetadataSyncWorkflowID(ref.Home, ref.Companion)}
	move := func(ids ...string) {
		for _, id := range ids {
			require.NoError(t, env.Client.SignalWorkflow(ctx, id, "", contract.SignalUpgrade, nil))
		}
		testenv.Eventually(t, time.Minute, "moved", func() bool {
			for _, id := range ids {
				if runProtocol(t, env, id) != int(contract.CurrentProtocol) {
					return false
				}
			}
			return true
		})
	}
	if first == "connection" {
		move(conn)
	} else {
		move(children...)
	}
	// The pair is split: requests go on.
	_, err := c.Share(ctx, ref, "marketing")
	require.NoError(t, err)
	_, err = c.Unshare(ctx, ref, "default")
	require.NoError(t, err)
	_, err = env.Store.Demo().ChangeMetadata(ctx, ref.Home, "marketing", 1)
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "marketing Active, default gone", func(v contract.StatusView) bool {
		return testenv.ShareIs("marketing", contract.ShareActive)(v) && testenv.ShareGone("default")(v)
	})
	if first == "connection" {
		move(contract.MetadataSyncWorkflowID(ref.Home, ref.Companion))
	} else {
		move(conn)
	}
	testenv.Eventually(t, time.Minute, "the change applied", func() bool {
		n, _, err := env.Store.PendingChanges(ctx, connectionOf(ref), []string{"marketing"})
		require.NoError(t, err)
		return n == 0
	})
	n, err := env.Store.Demo().CompanionRecordCount(ctx, ref.Home, ref.Companion, "default")
	require.NoError(t, err)
	assert.Zero(t, n, "default removed from the companion")
	requireCopied(t, env, ref.Home, ref.Companion, "marketing")
	v, err := c.Disconnect(ctx, ref, true)
	require.NoError(t, err)
	assert.Equal(t, contract.Disconnected, v.Status)
}

// shareOnProtocol starts ref's connection on protocol p (see
// startOnProtocol) and shares "default", waiting until it is Active and the
// metadata sync has run.
func shareOnProtocol(t *testing.T, env *testenv.Env, c *control.Client, ref control.Ref, p contract.Protocol) {
	t.Helper()
	require.NoError(t, startOnProtocol(context.Background(), env.Client, ref, p))
	testenv.WaitStatus(t, c, ref, "Incomplete", func(v contract.StatusView) bool { return v.Status == contract.Incomplete })
	_, err := c.Share(context.Background(), ref, "default")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "default Active, metadata synced", func(v contract.StatusView) bool {
		return testenv.ShareIs("default", contract.ShareActive)(v) && v.MetadataSync.Status == contract.SyncSucceeded
	})
}
