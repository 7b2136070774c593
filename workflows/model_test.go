package workflows_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/internal/refmodel"
	"github.com/companionsync/companionsync/workflows"
)

// The model test: the reference model (internal/refmodel) and the real
// workflows (test environment, fake world) take the same random sequence of
// operations at random times. Each operation is sent as an update; the model
// says, from the status its validator saw, whether it must be refused and
// with which refusal type, and keeps what operators asked for. When the
// sequence has settled, the workflow's status must be what the model says,
// every accepted request must have been carried out, and the fake store
// must hold exactly the records of the Active shares; after the final
// disconnect nothing may be left.
//
// COMPANIONSYNC_MODEL_SEQUENCES sets how many seeded sequences run (500 by
// default); COMPANIONSYNC_MODEL_SEED replays one seed alone.

// modelSeeds are the seeds a run checks.
func modelSeeds(t *testing.T) (seeds []uint64) {
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
	testModel(t, workflows.CurrentProtocol, modelSeeds(t))
}

// TestModelRandomSequencesPreviousProtocol runs the model against
// connections on every earlier supported protocol, which this release
// still runs until they move.
func TestModelRandomSequencesPreviousProtocol(t *testing.T) {
	seeds := modelSeeds(t)
	older := workflows.SupportedProtocols()
	older = older[:len(older)-1]
	require.NotEmpty(t, older, "a release supports the protocol before the current one")
	for _, p := range older {
		t.Run(fmt.Sprintf("protocol=%d", p), func(t *testing.T) {
			testModel(t, p, seeds[:min(len(seeds), 200)])
		})
	}
}

func testModel(t *testing.T, protocol workflows.Protocol, seeds []uint64) {
	checked := 0
	for _, seed := range seeds {
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runModelSequence(t, protocol, seed)
			checked++
		})
		if !ok {
			// Operations due at the same moment run in the order the test
			// environment's timers fire, which varies from run to run: a
			// seed may need many runs to fail again.
			t.Fatalf("seed %d failed; replay it alone with COMPANIONSYNC_MODEL_SEED=%d go test ./workflows -run %s -count=500", seed, seed, t.Name())
		}
	}
	assert.Equal(t, len(seeds), checked, "every sequence ran to its end")
}

// runModelSequence runs one seeded sequence against the model and the
// workflows.
func runModelSequence(t *testing.T, protocol workflows.Protocol, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	h := workflows.NewModelHarness(t)
	h.UseProtocol(protocol)
	names := h.DataSpaces()
	m := refmodel.New(names)
	settings := workflows.TestSettings()
	settings.RemovalDeadline = time.Hour
	// One attempt per step: the SDK's test environment can leave an activity
	// counted as running when it is cancelled during a retry backoff, which
	// stops its clock. Retries with backoff are covered by the other tests.
	// Continue-as-new is not forced here either: the test environment runs a
	// continued child under its first parent run; it is covered by
	// TestContinueAsNew* and, with the same model, by e2e.TestModelOnRealServer.
	settings.InitialSyncRetry.MaximumAttempts = 1
	settings.ActivityRetry.MaximumAttempts = 1
	h.World(func(w *workflows.World) {
		for range rng.IntN(4) {
			w.AddChange("default", false)
		}
	})

	pick := func() string {
		if rng.IntN(10) == 0 {
			return "no-such-space"
		}
		return names[rng.IntN(len(names))]
	}
	// An accepted disconnect ends the workflow, and with it the callbacks
	// scheduled later: the test counts its callbacks itself.
	ran, disconnectedAt := 0, -1
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
		roll, ds, n, conflict := rng.IntN(100), pick(), 1+rng.IntN(4), rng.IntN(3) == 0
		h.At(at, func() {
			ran++
			var op string
			var args []any
			switch {
			case roll < 30:
				op, args = workflows.MessageShare, []any{workflows.DataSpaceRequest{DataSpace: ds}}
			case roll < 50:
				op, args = workflows.MessageUnshare, []any{workflows.DataSpaceRequest{DataSpace: ds}}
			case roll < 58:
				op, args = workflows.MessageRetry, []any{workflows.DataSpaceRequest{DataSpace: ds}}
			case roll < 63:
				op = workflows.MessageResume
			case roll < 68:
				op = workflows.MessageRecheck
			case roll < 71:
				op = workflows.MessageDisconnect
			case roll < 76:
				h.World(func(w *workflows.World) { w.ToggleLicence() })
				m.LicenceExpired = !m.LicenceExpired
				return
			case roll < 80:
				h.World(func(w *workflows.World) { w.ToggleCompanion() })
				m.CompanionInactive = !m.CompanionInactive
				return
			case roll < 88:
				if ds != "no-such-space" {
					h.World(func(w *workflows.World) { w.FailCopies(ds, n) })
					m.CopyFailed[ds] = true
				}
				return
			case roll < 93:
				if ds != "no-such-space" {
					h.World(func(w *workflows.World) { w.FailRemovals(ds, n) })
					m.RemoveFailed[ds] = true
				}
				return
			default:
				if ds != "no-such-space" {
					h.World(func(w *workflows.World) { w.AddChange(ds, conflict) })
				}
				return
			}
			// The model judges the update on the status its validator saw.
			var want string
			var seen workflows.StatusView
			outcome := h.Update(op, func(rejected error) {
				seen = h.Status()
				want = m.ExpectRefusal(seen, op, ds)
				if rejected == nil {
					m.Accept(op, ds)
					if op == workflows.MessageDisconnect {
						disconnectedAt = i
					}
				}
			}, args...)
			outcomes = append(outcomes, func() {
				done, rejected, failed := outcome()
				if !done && disconnectedAt >= 0 {
					return // sent as an accepted disconnect ended the workflow
				}
				require.True(t, done, "op %d %s %s was never answered", i, op, ds)
				assert.Equal(t, want, workflows.RefusalKind(rejected), "op %d %s %s on %+v: refusal %v", i, op, ds, seen, rejected)
				assert.NoError(t, failed, "op %d %s %s", i, op, ds)
			})
		})
	}
	// Settle: conflicts resolved, a recheck, and two health intervals.
	settle := at + 3*time.Hour
	h.At(settle-time.Hour, func() {
		ran++
		h.World(func(w *workflows.World) { w.ResolveConflicts() })
		if v := h.Status(); !v.Disconnecting && v.Status != workflows.Disconnected {
			h.Update(workflows.MessageRecheck, nil)
		}
	})
	h.At(settle, func() {
		ran++
		if m.Disconnected {
			return // the workflow has ended; checked below
		}
		v := h.Status()
		if !assert.Empty(t, m.Settled(v, h.Copied, h.Records), "settled status against the model") {
			for _, tr := range v.Transitions {
				t.Logf("transition: %s %s: %s %s", tr.At.Format(time.TimeOnly), tr.Subject, tr.Status, tr.Detail)
			}
		}
		h.Update(workflows.MessageDisconnect, nil)
	})
	h.Run(settings)

	if disconnectedAt < 0 {
		require.Equal(t, ops+2, ran, "every operation and both settle checks ran")
	} else {
		require.GreaterOrEqual(t, ran, disconnectedAt+1, "every operation up to the disconnect ran")
	}
	for _, check := range outcomes {
		check()
	}
	v := h.Final()
	assert.Equal(t, workflows.Disconnected, v.Status)
	assert.Empty(t, v.DataSpaces)
	h.World(func(w *workflows.World) {
		assert.True(t, w.CompanionEmpty(), "no data left behind after the disconnect")
		assert.LessOrEqual(t, w.MostApplications(), 1, "no metadata change applied twice")
		assert.Equal(t, 1, w.Deregistrations())
	})
}
