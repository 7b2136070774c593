package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// An outage of the org store is ours, not a failure of the work: a copy or
// removal step that finds the store unreachable waits for it inside the
// activity (heartbeating, so the attempt stays alive), and returns its
// progress with the outage when the wait is over, without spending an
// attempt of its retry policy. The workflow shows the outage and starts the
// next step, which waits on. Only an outage longer than the outage limit
// fails the step, and then the retry policy decides as for any failure.
// Short steps that run inside a workflow task (health checks, counts) fail
// at once instead, so that no workflow task waits on the store.

// DefaultOutageLimit is how long copies and removals wait for an
// unreachable org store before their steps fail.
const DefaultOutageLimit = 10 * time.Minute

// DefaultOutageWait bounds one step's wait for the store; the step then
// returns so that the workflow shows the outage.
const DefaultOutageWait = 10 * time.Second

// shortStepStoreTimeout bounds each store call of a short step.
const shortStepStoreTimeout = 5 * time.Second

// Outage is an unreachable org store, as a step reports it.
type Outage struct {
	// Since is when the store was first found unreachable.
	Since time.Time `json:"since"`
	// Until is when the steps stop waiting and fail.
	Until time.Time `json:"until"`
	// Error is the last error of the store.
	Error string `json:"error"`
}

// String is the outage as a status shows it.
func (o *Outage) String() string {
	return fmt.Sprintf("the org store is unreachable since %s; waiting until %s (%s)",
		o.Since.UTC().Format(time.RFC3339), o.Until.UTC().Format(time.RFC3339), o.Error)
}

func (a *Activities) outageLimit() time.Duration {
	if a.OutageLimit > 0 {
		return a.OutageLimit
	}
	return DefaultOutageLimit
}

// StoreUnavailableMetric counts the store calls of activities that found
// the org store unreachable; the SDK tags it with the activity and workflow
// types and the task queue (on /metrics: ..._total). It rises for as long
// as an outage lasts: a copy or removal in progress counts about one a
// second, a health check or count one per attempt.
const StoreUnavailableMetric = "companionsync_org_store_unavailable"

// unavailable reports whether err is the store being unreachable (and not
// the activity being cancelled), and counts it.
func (a *Activities) unavailable(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil || a.Unavailable == nil || !a.Unavailable(err) {
		return false
	}
	activity.GetMetricsHandler(ctx).Counter(StoreUnavailableMetric).Inc(1)
	return true
}

// shortStepOutage reports whether err of a short step's store call (under
// its shortStepStoreTimeout bound, ctx) is an outage: the store unreachable,
// or too slow to answer within the bound. Either way the step gives up at
// once and holds its workflow task no longer. It counts the outage.
func (a *Activities) shortStepOutage(ctx context.Context, err error) bool {
	if a.unavailable(ctx, err) {
		return true
	}
	if err == nil || a.Unavailable == nil || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return false
	}
	activity.GetMetricsHandler(ctx).Counter(StoreUnavailableMetric).Inc(1)
	return true
}

// awaitStore waits, heartbeating details, until probe succeeds (true) or the
// step's wait is over (false).
func (a *Activities) awaitStore(ctx context.Context, details any, probe func(context.Context) error) bool {
	wait := a.OutageWait
	if wait <= 0 {
		wait = DefaultOutageWait
	}
	until := a.now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Add(-2*time.Second).Before(until) {
		until = d.Add(-2 * time.Second)
	}
	for a.now().Before(until) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
		activity.RecordHeartbeat(ctx, details)
		pctx, cancel := context.WithTimeout(ctx, shortStepStoreTimeout)
		err := probe(pctx)
		cancel()
		if err == nil {
			return true
		}
		activity.GetMetricsHandler(ctx).Counter(StoreUnavailableMetric).Inc(1)
	}
	return false
}

// outage is the outage a step reports after err, under the one reported by
// the step before (since); past the outage limit it is an error instead.
func (a *Activities) outage(since time.Time, err error, doing string) (*Outage, error) {
	if since.IsZero() {
		since = a.now()
	}
	o := &Outage{Since: since, Until: since.Add(a.outageLimit()), Error: err.Error()}
	if !a.now().Before(o.Until) {
		return nil, fmt.Errorf("%s: the org store has been unreachable since %s, longer than the outage limit of %s: %w",
			doing, since.UTC().Format(time.RFC3339), a.outageLimit(), err)
	}
	return o, nil
}

// storeDown is the error of a short step that found the store unreachable:
// non-retryable, so the workflow task that runs it goes on at once.
func storeDown(err error, doing string) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: the org store is unreachable: %v", doing, err),
		ErrStoreUnavailable, nil)
}

// keepAliveEvery is how often a copy or removal heartbeats while a store
// call is in flight: well inside the steps' heartbeat timeout, so a slow
// store (seconds per statement) never times an attempt out for silence.
const keepAliveEvery = 2 * time.Second

// keepAlive heartbeats the latest details set on it, from a goroutine of
// its own, until stop: the activity's heartbeats go on while one store call
// takes longer than the heartbeat timeout.
type keepAlive struct {
	mu      sync.Mutex
	details any
	stop    chan struct{}
	done    chan struct{}
}

func startKeepAlive(ctx context.Context, details any) *keepAlive {
	k := &keepAlive{details: details, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(k.done)
		t := time.NewTicker(keepAliveEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-k.stop:
				return
			case <-t.C:
				k.mu.Lock()
				d := k.details
				k.mu.Unlock()
				activity.RecordHeartbeat(ctx, d)
			}
		}
	}()
	return k
}

// set replaces the details heartbeated from now on (a copy of the
// progress, never a pointer the activity goes on changing).
func (k *keepAlive) set(details any) {
	k.mu.Lock()
	k.details = details
	k.mu.Unlock()
}

// close stops the heartbeats and waits for the goroutine.
func (k *keepAlive) close() {
	close(k.stop)
	<-k.done
}
