package e2e

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// heldRegistry holds every registration until released: a handshake that
// takes its time.
type heldRegistry struct {
	companionsync.Orgs
	release chan struct{}
	held    atomic.Int64
}

func (h *heldRegistry) Register(ctx context.Context, c companionsync.Connection, maxCompanions int) error {
	h.held.Add(1)
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return h.Orgs.Register(ctx, c, maxCompanions)
}

// TestConnectingIsSeenWhileTheHandshakeIsHeld: while the handshake waits
// on the org store, the connection reads Connecting (status query and
// search attribute), refuses shares as still connecting, and becomes
// Incomplete once the handshake passes.
func TestConnectingIsSeenWhileTheHandshakeIsHeld(t *testing.T) {
	env := testenv.Start(t, testenv.Options{NoWorker: true})
	orgs := &heldRegistry{Orgs: env.Store, release: make(chan struct{})}
	newWorkerOn(t, env, orgs)

	// The handshake runs inside the connection's workflow task: while it
	// waits, a status read gets the published state (Connecting) after the
	// default query timeout, or a live answer between the task's
	// heartbeats. The whole check stays within the handshake's 30 s.
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	connected := make(chan error, 1)
	go func() {
		_, err := c.Connect(ctx, ref, contract.Settings{})
		connected <- err
	}()

	testenv.Eventually(t, 30*time.Second, "the handshake held", func() bool { return orgs.held.Load() > 0 })
	held := time.Now()
	var v contract.StatusView
	testenv.Eventually(t, 10*time.Second, "Connecting", func() bool {
		var err error
		v, err = c.Status(ctx, ref)
		return err == nil && v.Status == contract.Connecting
	})
	t.Logf("Connecting seen %s into the held handshake (published state: %t)", time.Since(held).Round(time.Millisecond), v.Stale)
	_, err := c.Share(ctx, ref, "default")
	require.ErrorIs(t, err, control.ErrStillConnecting, "a share waits for the handshake")
	select {
	case err := <-connected:
		t.Fatalf("connect returned while the handshake was held: %v", err)
	default:
	}

	close(orgs.release)
	require.NoError(t, <-connected)
	require.Less(t, time.Since(held), 25*time.Second, "the check ran within the handshake's bound")
	v = testenv.WaitStatus(t, c, ref, "Incomplete", func(v contract.StatusView) bool { return v.Status == contract.Incomplete })
	assert.Equal(t, contract.Incomplete, v.Status)
}
