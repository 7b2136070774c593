package workflows

import (
	"testing"
	"time"
)

// What the external model test (model_test.go, package workflows_test)
// needs of this package's test harness. It lives outside the package
// because the reference model it checks against, internal/refmodel,
// imports this package.

// RefusalKind is the refusal type of an update's error, "" for none.
var RefusalKind = refusalKind

// TestSettings are the unit tests' settings.
var TestSettings = testSettings

// ModelHarness runs a connection in the test environment against a fake
// world for the model test. It counts no callbacks: the model test does.
type ModelHarness struct{ h *harness }

// NewModelHarness starts a harness for one sequence.
func NewModelHarness(t *testing.T) *ModelHarness {
	h := newHarness(t)
	h.uncounted = true
	return &ModelHarness{h: h}
}

// At runs fn at d after the start.
func (m *ModelHarness) At(d time.Duration, fn func()) { m.h.at(d, fn) }

// Run runs the connection to its end.
func (m *ModelHarness) Run(s Settings) { m.h.run(s) }

// UseProtocol sets the connection's acknowledgement protocol.
func (m *ModelHarness) UseProtocol(p Protocol) { m.h.protocol = p }

// Status queries the connection.
func (m *ModelHarness) Status() StatusView { return m.h.status() }

// Final is the connection's result.
func (m *ModelHarness) Final() StatusView { return m.h.final() }

// Update sends an update; validated is called with the validator's verdict
// while the state it saw is current. The returned function reports the
// outcome once the workflow has run.
func (m *ModelHarness) Update(name string, validated func(rejected error), args ...any) func() (done bool, rejected, failed error) {
	out := m.h.updateWith(&updateOutcome{validated: validated}, name, args...)
	return func() (bool, error, error) { return out.done, out.rejected, out.failed }
}

// DataSpaces are the fake home org's data spaces.
func (m *ModelHarness) DataSpaces() []string { return m.h.orgs.names() }

// Records is the number of records of a data space at home.
func (m *ModelHarness) Records(ds string) int { return m.h.orgs.dataSpaces[ds] }

// Copied is the number of a data space's records in the companion.
func (m *ModelHarness) Copied(ds string) int { return m.h.orgs.copiedCount(ds) }

// World changes the fake world under its lock.
func (m *ModelHarness) World(fn func(w *World)) {
	m.h.orgs.set(func(f *fakeOrgs) { fn(&World{f: f}) })
}

// World is the fake world, changed only inside ModelHarness.World.
type World struct{ f *fakeOrgs }

// ToggleLicence expires or renews the home licence.
func (w *World) ToggleLicence() { w.f.licenceExpired = !w.f.licenceExpired }

// ToggleCompanion deactivates or reactivates the companion.
func (w *World) ToggleCompanion() { w.f.companionInactive = !w.f.companionInactive }

// FailCopies makes the next n copy steps of ds fail.
func (w *World) FailCopies(ds string, n int) { w.f.copyFailures[ds] += n }

// FailRemovals makes the next n removal steps of ds fail.
func (w *World) FailRemovals(ds string, n int) { w.f.removeFailures[ds] += n }

// AddChange appends a metadata change of ds, conflicting if asked.
func (w *World) AddChange(ds string, conflict bool) {
	w.f.changes = append(w.f.changes, fakeChange{seq: int64(len(w.f.changes) + 1), dataSpace: ds})
	if conflict {
		w.f.conflicts[int64(len(w.f.changes))] = true
	}
}

// ResolveConflicts resolves every conflict.
func (w *World) ResolveConflicts() { w.f.conflicts = map[int64]bool{} }

// CompanionEmpty reports whether the companion holds no record at all.
func (w *World) CompanionEmpty() bool { return len(w.f.copied) == 0 }

// MostApplications is the most times one change was applied.
func (w *World) MostApplications() int {
	most := 0
	for _, n := range w.f.applied {
		most = max(most, n)
	}
	return most
}

// Deregistrations counts the connection's deregistrations.
func (w *World) Deregistrations() int { return w.f.deregistrations }
