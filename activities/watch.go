package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/contract"
)

// Watches keeps what the fleet watcher compares: the health each waiting
// connection last saw and whether its metadata sync waits for changes. The
// org store keeps it (orgstore.Store); a store without it leaves the fleet
// unwatched, and connections then check on their own.
type Watches interface {
	// Watch records the health digest a connection saw.
	Watch(ctx context.Context, c companionsync.Connection, health string) error
	// Told records a digest the watcher told, unless the connection
	// recorded another than from meanwhile.
	Told(ctx context.Context, c companionsync.Connection, from, to string) (bool, error)
	// WatchMetadata records whether the metadata sync waits for changes
	// in spaces.
	WatchMetadata(ctx context.Context, c companionsync.Connection, spaces []string, waiting bool) error
	// SwapMetadataWaiting sets whether the metadata sync waits to to, if
	// it is from, and reports whether it was.
	SwapMetadataWaiting(ctx context.Context, c companionsync.Connection, from, to bool) (bool, error)
	// Unwatch forgets the connection.
	Unwatch(ctx context.Context, c companionsync.Connection) error
	// Watched reads every watched connection with the store's state now.
	Watched(ctx context.Context) ([]companionsync.Watched, error)
}

// healthDigest names a health result: equal results have equal digests.
func healthDigest(h HealthResult) string {
	raw, _ := json.Marshal(h)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:12])
}

// watches is the store's Watches, or nil.
func (a *Activities) watches() Watches {
	w, _ := a.Orgs.(Watches)
	return w
}

// watch records what a connection's own check saw.
func (a *Activities) watch(ctx context.Context, c companionsync.Connection, h HealthResult) error {
	if w := a.watches(); w != nil {
		return w.Watch(ctx, c, healthDigest(h))
	}
	return nil
}

// SweepInput asks for one sweep of the fleet watcher: Health compares every
// watched connection's health, Metadata the pending changes of the syncs
// that wait.
type SweepInput struct {
	Health   bool `json:"health,omitempty"`
	Metadata bool `json:"metadata,omitempty"`
}

// SweepResult is what a sweep did.
type SweepResult struct {
	// At is when it read the store.
	At time.Time `json:"at"`
	// Watched is how many connections it read; Woken how many connections
	// and metadata syncs it signalled; Failed how many signals failed
	// (their connection is told at the next sweep).
	Watched int `json:"watched"`
	Woken   int `json:"woken"`
	Failed  int `json:"failed"`
}

// sweepParallel bounds the signals a sweep sends at once.
const sweepParallel = 16

// Sweep is one round of the fleet watcher: it reads every watched
// connection with the store's state in a few queries, derives each one's
// health as a health check would, and signals the connections whose health
// differs from what they last saw (SignalWatch), and, with in.Metadata, the
// waiting metadata syncs that have pending changes (SignalMetadataWake).
// Nothing is signalled while nothing changed. A failed signal is counted and
// left: the next sweep finds the same difference and tries again.
//
// It is an activity of every worker (it reaches the namespace through the
// activity's client), so the watcher runs wherever connections run.
func (a *Activities) Sweep(ctx context.Context, in SweepInput) (SweepResult, error) {
	w := a.watches()
	if w == nil {
		return SweepResult{At: a.now()}, nil
	}
	temporal := activity.GetClient(ctx)
	res := SweepResult{At: a.now()}
	rows, err := w.Watched(ctx)
	if err != nil {
		return res, fmt.Errorf("sweep: %w", err)
	}
	res.Watched = len(rows)
	var woken, failed atomic.Int64
	var wg sync.WaitGroup
	slots := make(chan struct{}, sweepParallel)
	// signal sends one signal: before (when set) must succeed first, done
	// runs after a delivered signal and undo after a failed one.
	signal := func(workflowID, name string, arg any, before func(context.Context) (bool, error), done, undo func(context.Context) error) {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if before != nil {
				if ok, err := before(ctx); err != nil || !ok {
					if err != nil {
						failed.Add(1)
					}
					return
				}
			}
			err := temporal.SignalWorkflow(ctx, workflowID, "", name, arg)
			if err == nil && done != nil {
				err = done(ctx)
			} else if err != nil && undo != nil {
				_ = undo(ctx)
			}
			if err != nil {
				var nf *serviceerror.NotFound
				if !errors.As(err, &nf) {
					failed.Add(1)
				}
				return
			}
			woken.Add(1)
		})
	}
	for _, r := range rows {
		conn := r.Connection
		if in.Health && r.Health != "" {
			h := healthOf(r.HomeOrg, r.CompanionOrg, r.DataSpaces, r.CompanionsUsed, res.At)
			if d := healthDigest(h); d != r.Health {
				signal(contract.ConnectionWorkflowID(r.Home, r.Companion), contract.SignalWatch,
					contract.WatchReport{Health: h, At: res.At}, nil, func(ctx context.Context) error {
						_, err := w.Told(ctx, conn, r.Health, d)
						return err
					}, nil)
			}
		}
		if in.Metadata && r.MetadataWaiting && r.PendingChanges > 0 {
			// Taken before the wake, put back if the wake fails: the
			// sync's own record after the wake is the last word. A wake
			// too many costs a count; one too few, a day.
			signal(contract.MetadataSyncWorkflowID(r.Home, r.Companion), contract.SignalMetadataWake,
				contract.MetadataWake{Pending: r.PendingChanges, At: res.At},
				func(ctx context.Context) (bool, error) { return w.SwapMetadataWaiting(ctx, conn, true, false) },
				nil,
				func(ctx context.Context) error {
					_, err := w.SwapMetadataWaiting(ctx, conn, false, true)
					return err
				})
		}
	}
	wg.Wait()
	res.Woken, res.Failed = int(woken.Load()), int(failed.Load())
	return res, nil
}
