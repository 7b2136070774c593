package workflows

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The model test: a plain reference model of a connection's lifecycle and
// the real workflows (test environment, fake store) take the same random
// sequence of operations at random times. Each operation is sent as an
// update; the model says, from the status read just before, whether it must
// be refused and with which refusal type, and keeps what operators asked
// for. When the sequence has settled, the workflow's status must be what the
// model says, every accepted request must have been carried out, and the
// fake store must hold exactly the records of the Active shares.
//
// COMPANIONSYNC_MODEL_SEQUENCES sets how many seeded sequences run (500 by
// default); COMPANIONSYNC_MODEL_SEED replays one seed alone.

// model is the reference: what operators asked for and what the world is.
type model struct {
	intent          map[string]ShareIntent
	copyFailed      map[string]bool // copy failures were injected at some time
	removeFailed    map[string]bool // removal failures were injected at some time
	licenceExpired  bool
	companionGone   bool
	disconnected    bool
	dataSpaces      []string
	acceptedByModel int
}

// expectRefusal is the refusal type the workflow must answer op with, given
// the status v read just before, or "" when op must be accepted.
func (m *model) expectRefusal(v StatusView, op string, ds string) string {
	share, shared := ShareView{}, false
	for _, s := range v.DataSpaces {
		if s.DataSpace == ds {
			share, shared = s, true
		}
	}
	finished := v.Disconnecting || v.Status == Disconnected
	switch op {
	case MessageShare:
		switch {
		case finished:
			return RefusalDisconnecting
		case v.Status == Inactive:
			return RefusalConnectionInactive
		case shared:
			return RefusalAlreadyShared
		case !slices.Contains(m.dataSpaces, ds):
			return RefusalUnknownDataSpace
		}
	case MessageUnshare:
		switch {
		case finished:
			return RefusalDisconnecting
		case !shared:
			return RefusalNotShared
		case m.intent[ds] == IntentRemoved && share.InitializationStatus != ShareError:
			return RefusalAlreadyRemoving
		}
	case MessageRetry:
		switch {
		case finished:
			return RefusalDisconnecting
		case !shared:
			return RefusalNotShared
		case share.InitializationStatus != ShareError || share.Requested != "":
			return RefusalNotInError
		}
	case MessageResume:
		switch {
		case finished:
			return RefusalDisconnecting
		case !v.MetadataSync.Paused || v.MetadataSync.Requested != "":
			return RefusalNotPaused
		}
	case MessageRecheck:
		if finished {
			return RefusalDisconnecting
		}
	case MessageDisconnect:
		if finished {
			return RefusalDisconnecting
		}
	}
	return ""
}

// accept records an accepted operation.
func (m *model) accept(op, ds string) {
	m.acceptedByModel++
	switch op {
	case MessageShare:
		m.intent[ds] = IntentShared
	case MessageUnshare:
		m.intent[ds] = IntentRemoved
	case MessageDisconnect:
		m.disconnected = true
		for d := range m.intent {
			m.intent[d] = IntentRemoved
		}
	}
}

// modelSequences is how many seeded sequences a run checks.
func modelSequences(t *testing.T) (seeds []uint64) {
	if s := os.Getenv("COMPANIONSYNC_MODEL_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "COMPANIONSYNC_MODEL_SEED")
		return []uint64{seed}
	}
	n := 500
	if s := os.Getenv("COMPANIONSYNC_MODEL_SEQUENCES"); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		require.NoError(t, err, "COMPANIONSYNC_MODEL_SEQUENCES")
	}
	for i := range n {
		seeds = append(seeds, uint64(i+1))
	}
	return seeds
}

func TestModelRandomSequences(t *testing.T) {
	seeds := modelSequences(t)
	checked := 0
	for _, seed := range seeds {
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runModelSequence(t, seed)
			checked++
		})
		if !ok {
			t.Fatalf("seed %d failed; replay it alone with COMPANIONSYNC_MODEL_SEED=%d go test ./workflows -run TestModelRandomSequences", seed, seed)
		}
	}
	assert.Equal(t, len(seeds), checked, "every sequence ran to its end")
}

// runModelSequence runs one seeded sequence of operations against the model
// and the workflows.
func runModelSequence(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	h := newHarness(t)
	// An accepted disconnect ends the workflow, and with it the callbacks
	// scheduled later: this test counts its callbacks itself.
	h.uncounted = true
	ran, disconnectedAt := 0, -1
	names := h.orgs.names()
	m := &model{
		intent: map[string]ShareIntent{}, copyFailed: map[string]bool{}, removeFailed: map[string]bool{},
		dataSpaces: names,
	}
	settings := testSettings()
	settings.RemovalDeadline = time.Hour
	// One attempt per step: the SDK's test environment can leave an activity
	// counted as running when it is cancelled during a retry backoff, which
	// stops its clock. Retries with backoff are covered by the other tests.
	settings.InitialSyncRetry.MaximumAttempts = 1
	settings.ActivityRetry.MaximumAttempts = 1
	h.orgs.addChanges("default", rng.IntN(4))

	pick := func() string {
		if rng.IntN(10) == 0 {
			return "no-such-space"
		}
		return names[rng.IntN(len(names))]
	}
	ops := 5 + rng.IntN(20)
	at := time.Second
	var outcomes []func()
	for i := range ops {
		// Gaps of zero make operations race the work the previous ones started.
		switch rng.IntN(3) {
		case 0:
		case 1:
			at += time.Duration(rng.IntN(3000)) * time.Millisecond
		default:
			at += time.Duration(rng.IntN(20)) * time.Minute
		}
		roll := rng.IntN(100)
		ds := pick()
		h.at(at, func() {
			ran++
			var op string
			var args []any
			switch {
			case roll < 30:
				op, args = MessageShare, []any{DataSpaceRequest{DataSpace: ds}}
			case roll < 50:
				op, args = MessageUnshare, []any{DataSpaceRequest{DataSpace: ds}}
			case roll < 58:
				op, args = MessageRetry, []any{DataSpaceRequest{DataSpace: ds}}
			case roll < 63:
				op = MessageResume
			case roll < 68:
				op = MessageRecheck
			case roll < 71:
				op = MessageDisconnect
			case roll < 76:
				h.orgs.set(func(f *fakeOrgs) { f.licenceExpired = !f.licenceExpired })
				m.licenceExpired = !m.licenceExpired
				return
			case roll < 80:
				h.orgs.set(func(f *fakeOrgs) { f.companionInactive = !f.companionInactive })
				m.companionGone = !m.companionGone
				return
			case roll < 88:
				if ds != "no-such-space" {
					h.orgs.set(func(f *fakeOrgs) { f.copyFailures[ds] += 1 + rng.IntN(4) })
					m.copyFailed[ds] = true
				}
				return
			case roll < 93:
				if ds != "no-such-space" {
					h.orgs.set(func(f *fakeOrgs) { f.removeFailures[ds] += 1 + rng.IntN(4) })
					m.removeFailed[ds] = true
				}
				return
			default:
				h.orgs.set(func(f *fakeOrgs) {
					f.changes = append(f.changes, fakeChange{seq: int64(len(f.changes) + 1), dataSpace: ds})
					if rng.IntN(3) == 0 {
						f.conflicts[int64(len(f.changes))] = true
					}
				})
				return
			}
			// The model judges the update on the status its validator saw.
			var want string
			var seen StatusView
			out := &updateOutcome{}
			out.validated = func(rejected error) {
				seen = h.status()
				want = m.expectRefusal(seen, op, ds)
				if rejected == nil {
					m.accept(op, ds)
					if op == MessageDisconnect {
						disconnectedAt = i
					}
				}
			}
			h.updateWith(out, op, args...)
			outcomes = append(outcomes, func() {
				if !out.done && disconnectedAt >= 0 {
					return // sent as an accepted disconnect ended the workflow
				}
				require.True(t, out.done, "op %d %s %s was never answered", i, op, ds)
				assert.Equal(t, want, refusalKind(out.rejected), "op %d %s %s on %+v: refusal %v", i, op, ds, seen, out.rejected)
				assert.NoError(t, out.failed, "op %d %s %s", i, op, ds)
			})
		})
	}
	// Settle: failures are used up, a recheck and two health intervals pass.
	settle := at + 3*time.Hour
	h.at(settle-time.Hour, func() {
		ran++
		h.orgs.set(func(f *fakeOrgs) { f.conflicts = map[int64]bool{} })
		if v := h.status(); !v.Disconnecting && v.Status != Disconnected {
			h.update(MessageRecheck)
		}
	})
	h.at(settle, func() {
		ran++
		if m.disconnected {
			return // the workflow has ended; checked below
		}
		checkSettled(t, h, m)
		h.env.SignalWorkflow(MessageDisconnect, nil)
	})
	h.run(settings)

	if disconnectedAt < 0 {
		require.Equal(t, ops+2, ran, "every operation and both settle checks ran")
	} else {
		require.GreaterOrEqual(t, ran, disconnectedAt+1, "every operation up to the disconnect ran")
	}
	require.Len(t, outcomes, len(outcomes))
	for _, check := range outcomes {
		check()
	}
	v := h.final()
	assert.Equal(t, Disconnected, v.Status)
	assert.Empty(t, v.DataSpaces)
	h.orgs.set(func(f *fakeOrgs) {
		assert.Empty(t, f.copied, "no data left behind after the disconnect")
		for seq, n := range f.applied {
			assert.LessOrEqual(t, n, 1, "change %d applied %d times", seq, n)
		}
		assert.Equal(t, 1, f.deregistrations)
	})
}

// checkSettled compares the settled workflow status with the model.
func checkSettled(t *testing.T, h *harness, m *model) {
	v := h.status()
	var shared []string
	for ds, intent := range m.intent {
		if intent == IntentShared {
			shared = append(shared, ds)
		}
	}
	slices.Sort(shared)
	var listed []string
	for _, s := range v.DataSpaces {
		assert.Empty(t, s.Requested, "data space %s: request not acknowledged after settling", s.DataSpace)
		if m.intent[s.DataSpace] == IntentRemoved {
			// A removal whose retries were used up waits in Error.
			assert.True(t, m.removeFailed[s.DataSpace], "data space %s unshared but still listed: %+v", s.DataSpace, s)
			assert.Equal(t, ShareError, s.InitializationStatus, "data space %s", s.DataSpace)
			continue
		}
		listed = append(listed, s.DataSpace)
		switch s.InitializationStatus {
		case ShareActive:
			assert.Equal(t, h.orgs.copiedCount(s.DataSpace), h.orgs.dataSpaces[s.DataSpace],
				"data space %s is Active: the companion holds all its records", s.DataSpace)
		case ShareError:
			assert.True(t, m.copyFailed[s.DataSpace] || m.removeFailed[s.DataSpace], "data space %s in Error: %s", s.DataSpace, s.Error)
		default:
			t.Errorf("data space %s settled in %s", s.DataSpace, s.InitializationStatus)
		}
	}
	assert.Equal(t, shared, listed, "shared data spaces")
	for _, ds := range h.orgs.names() {
		if m.intent[ds] != IntentShared && !m.removeFailed[ds] {
			assert.Zero(t, h.orgs.copiedCount(ds), "data space %s was never shared or was unshared: nothing in the companion", ds)
		}
	}
	want := Incomplete
	switch {
	case m.licenceExpired || m.companionGone:
		want = Inactive
	case len(v.DataSpaces) > 0:
		want = Active
	}
	assert.Equal(t, want, v.Status, "connection status")
	assert.Empty(t, v.MetadataSync.Requested, "resume not acknowledged after settling")
}
