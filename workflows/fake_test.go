package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/companionsync/companionsync/activities"
)

// fakeOrgs is an in-memory stand-in for the activities, used through the
// test environment's activity mocks. Tests change its fields to simulate the
// world: an expired licence, transient failures, metadata changes, conflicts.
type fakeOrgs struct {
	// healthChecks counts health checks; healthDown fails them.
	healthChecks int
	healthDown   bool
	mu           sync.Mutex

	ineligible *activities.Ineligibility
	// storeDown is how many handshakes still find the store unreachable.
	storeDown         int
	dataSpaces        map[string]int // data space -> records at home
	licenceExpired    bool
	companionInactive bool

	copyFailures    map[string]int // data space -> transient failures left
	copyDelay       time.Duration  // wall time one CopyRecords call takes
	copied          map[string]int
	removeDelay     time.Duration  // wall time one RemoveRecords call takes, removing nothing
	removeFailures  map[string]int // data space -> transient removal failures left
	removeCalls     int
	registered      bool
	deregistrations int

	changes   []fakeChange
	applied   map[int64]int // sequence -> times applied
	conflicts map[int64]bool

	// cancelled holds the copy and removal steps their workflow cancelled.
	// The test environment resolves a cancelled activity at once and lets
	// its goroutine run on, where a server with WaitForCancellation waits
	// until the activity has finished or acknowledged the cancellation. A
	// step cancelled before it touched the world therefore changes nothing,
	// so that, as on a server, a step's writes never land after its
	// workflow moved on (a removal after a cancelled copy must not find the
	// copy's records arriving later).
	cancelled map[string]bool
}

// stepKey names one activity execution: its run and activity ID.
func stepKey(info activity.Info) string {
	return info.WorkflowExecution.RunID + "/" + info.ActivityID
}

// cancel records that a step's workflow cancelled it; the test
// environment's activity-cancelled listener calls it.
func (f *fakeOrgs) cancel(info activity.Info) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelled[stepKey(info)] = true
}

// isCancelled reports whether the step running in ctx was cancelled; f.mu is
// held.
func (f *fakeOrgs) isCancelled(ctx context.Context) bool {
	return f.cancelled[stepKey(activity.GetInfo(ctx))]
}

type fakeChange struct {
	seq       int64
	dataSpace string
}

func newFakeOrgs() *fakeOrgs {
	return &fakeOrgs{
		dataSpaces:     map[string]int{"default": 25, "marketing": 10, "sales": 5},
		copyFailures:   map[string]int{},
		removeFailures: map[string]int{},
		copied:         map[string]int{},
		applied:        map[int64]int{},
		conflicts:      map[int64]bool{},
		cancelled:      map[string]bool{},
	}
}

func (f *fakeOrgs) names() []string {
	names := make([]string, 0, len(f.dataSpaces))
	for ds := range f.dataSpaces {
		names = append(names, ds)
	}
	slices.Sort(names)
	return names
}

func (f *fakeOrgs) Handshake(_ context.Context, in activities.HandshakeInput) (activities.HandshakeResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ineligible != nil {
		return activities.HandshakeResult{}, temporal.NewNonRetryableApplicationError(
			f.ineligible.Message, activities.ErrIneligible, nil, *f.ineligible)
	}
	if f.storeDown > 0 {
		f.storeDown--
		return activities.HandshakeResult{}, temporal.NewNonRetryableApplicationError(
			"handshake: the org store is unreachable: connection refused", activities.ErrStoreUnavailable, nil)
	}
	f.registered = true
	return activities.HandshakeResult{DataSpaces: f.names()}, nil
}

func (f *fakeOrgs) CheckHealth(_ context.Context, in activities.HealthInput) (activities.HealthResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.healthChecks++
	if f.healthDown {
		return activities.HealthResult{}, errors.New("the org store is down")
	}
	res := activities.HealthResult{Healthy: true, DataSpaces: f.names()}
	switch {
	case f.licenceExpired:
		res.Healthy, res.Reason = false, "the licence of acme expired; renew it"
	case f.companionInactive:
		res.Healthy, res.Reason = false, "the companion acme-emea is inactive; reactivate it"
	}
	return res, nil
}

// CopyRecords copies 10 records per call.
func (f *fakeOrgs) CopyRecords(ctx context.Context, in activities.CopyInput) (activities.CopyProgress, error) {
	f.mu.Lock()
	if d := f.copyDelay; d > 0 {
		// The test environment does not cancel a mocked activity's context:
		// a slow step is simulated with wall time.
		f.mu.Unlock()
		time.Sleep(d)
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	if f.isCancelled(ctx) {
		return activities.CopyProgress{}, temporal.NewCanceledError()
	}
	total, ok := f.dataSpaces[in.DataSpace]
	if !ok {
		return activities.CopyProgress{}, temporal.NewNonRetryableApplicationError(
			"data space "+in.DataSpace+" does not exist", activities.ErrUnknownDataSpace, nil)
	}
	if f.copyFailures[in.DataSpace] > 0 {
		f.copyFailures[in.DataSpace]--
		return activities.CopyProgress{}, errors.New("injected transient failure")
	}
	after, _ := strconv.Atoi(in.After)
	next := min(after+10, total)
	f.copied[in.DataSpace] = next
	return activities.CopyProgress{After: strconv.Itoa(next), Copied: next, Total: total, Done: next == total}, nil
}

// RemoveRecords removes 10 records per call.
func (f *fakeOrgs) RemoveRecords(ctx context.Context, in activities.RemoveInput) (activities.RemoveProgress, error) {
	f.mu.Lock()
	f.removeCalls++
	if d := f.removeDelay; d > 0 {
		f.mu.Unlock()
		time.Sleep(d)
		return activities.RemoveProgress{Remaining: f.copiedCount(in.DataSpace)}, nil
	}
	defer f.mu.Unlock()
	if f.isCancelled(ctx) {
		return activities.RemoveProgress{}, temporal.NewCanceledError()
	}
	if f.removeFailures[in.DataSpace] > 0 {
		f.removeFailures[in.DataSpace]--
		return activities.RemoveProgress{}, errors.New("injected transient removal failure")
	}
	n := min(10, f.copied[in.DataSpace])
	f.copied[in.DataSpace] -= n
	left := f.copied[in.DataSpace]
	if left == 0 {
		delete(f.copied, in.DataSpace)
	}
	return activities.RemoveProgress{Removed: n, Remaining: left, Done: left == 0}, nil
}

func (f *fakeOrgs) addChanges(ds string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.changes = append(f.changes, fakeChange{seq: int64(len(f.changes) + 1), dataSpace: ds})
	}
}

func (f *fakeOrgs) unapplied(dataSpaces []string, upTo int64) []fakeChange {
	var out []fakeChange
	for _, ch := range f.changes {
		if f.applied[ch.seq] == 0 && slices.Contains(dataSpaces, ch.dataSpace) && (upTo == 0 || ch.seq <= upTo) {
			out = append(out, ch)
		}
	}
	return out
}

func (f *fakeOrgs) CountPendingMetadata(_ context.Context, in activities.PendingInput) (activities.PendingResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pending := f.unapplied(in.DataSpaces, 0)
	res := activities.PendingResult{Changes: len(pending)}
	if len(pending) > 0 {
		res.UpTo = pending[len(pending)-1].seq
	}
	return res, nil
}

func (f *fakeOrgs) ApplyMetadata(_ context.Context, in activities.ApplyInput) (activities.ApplyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var res activities.ApplyResult
	for _, ch := range f.unapplied(in.DataSpaces, in.UpTo) {
		if f.conflicts[ch.seq] {
			res.Failures = append(res.Failures, activities.ErrorLogEntry{
				Sequence: ch.seq, DataSpace: ch.dataSpace, Object: "Segment" + strconv.Itoa(int(ch.seq)),
				Kind: activities.KindConflict, Message: fmt.Sprintf("change %d conflicts with a local edit", ch.seq),
				At: time.Unix(0, 0).UTC(),
			})
			continue
		}
		if len(res.Failures) == 0 {
			f.applied[ch.seq]++
			res.Applied++
		}
	}
	if len(res.Failures) > 0 {
		return activities.ApplyResult{}, temporal.NewNonRetryableApplicationError(
			res.Failures[0].Message, activities.ErrMetadataConflict, nil, res)
	}
	return res, nil
}

func (f *fakeOrgs) RecordSyncFailure(context.Context, activities.RecordFailureInput) error {
	return nil
}

func (f *fakeOrgs) Disconnect(context.Context, activities.DisconnectInput) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registered = false
	f.deregistrations++
	return nil
}

func (f *fakeOrgs) copiedCount(ds string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.copied[ds]
}

// set runs fn under the fake's lock.
func (f *fakeOrgs) set(fn func(f *fakeOrgs)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}
