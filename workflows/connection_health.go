package workflows

import (
	"encoding/json"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/contract"
)

// Health checks: the licence and companion check every
// HealthCheckInterval while something is in flight, and the status it
// implies. From ProtocolWatched on, a connection with nothing in flight
// (settled) sets no health-check timer: the fleet watcher reads its health
// in each sweep and signals it (SignalWatch) only when it changed, and the
// connection checks on its own once per ResyncInterval and at its
// licence's warning and expiry times.

// checkHealth re-sends every unacknowledged request, then runs the health
// check and moves the connection between Active or Incomplete and Inactive.
// A failing check changes nothing and is retried at the next interval. A
// disconnecting connection only re-sends: its interval keeps a lost report
// from holding the disconnect up.
func (c *connection) checkHealth(ctx workflow.Context) {
	c.NextHealthCheck = workflow.Now(ctx).Add(c.settings.HealthCheckInterval)
	c.Recheck = false
	c.resend()
	c.releases++
	if c.Disconnecting {
		return
	}
	watch := rules(c.protocol).watched
	step := c.shortStep(ctx, "health check: home licence and companion activity", 2*time.Minute,
		acts.CheckHealth, activities.HealthInput{Home: c.home, Companion: c.companion, Watch: watch})
	var res activities.HealthResult
	if err := step.Get(ctx, &res); err != nil {
		c.logger.Warn("health check failed; keeping the current status", "error", err)
		c.checkFailedAt = workflow.Now(ctx)
		return
	}
	c.checkFailedAt = time.Time{}
	c.Watched = c.Watched || watch
	c.applyHealth(ctx, res)
}

// applyHealth takes what a health check or the fleet watcher found.
func (c *connection) applyHealth(ctx workflow.Context, res activities.HealthResult) {
	c.LastCheck = workflow.Now(ctx)
	if len(res.DataSpaces) > 0 {
		c.DataSpaces = res.DataSpaces
	}
	c.readLicence(ctx, res.Licence)
	switch {
	case !res.Healthy:
		if c.Status != Inactive || c.Reason != res.Reason {
			c.Reason = res.Reason
			c.setStatus(ctx, Inactive, res.Reason)
		}
	case c.Status == Inactive:
		c.Reason = ""
		c.setStatus(ctx, c.functioningStatus(), "health check passed")
	}
}

// watched takes the fleet watcher's report of a changed health. A run that
// does not wait for the watcher ignores it: its own checks read the same.
func (c *connection) watched(ctx workflow.Context, raw json.RawMessage) {
	var r contract.WatchReport
	if err := decodeSignal(raw, &r); err != nil {
		c.logger.Error("watch report ignored", "error", err)
		return
	}
	if !rules(c.protocol).watched || !c.Handshaken || c.Disconnecting {
		return
	}
	c.applyHealth(ctx, r.Health)
}

// functioningStatus is the status of a healthy connection: Active with at
// least one share, Incomplete without.
func (c *connection) functioningStatus() ConnectionStatus {
	if len(c.Shares) > 0 {
		return Active
	}
	return Incomplete
}

// checksHealth reports whether the health-check interval runs: not while
// connecting, and while disconnecting only to re-send.
func (c *connection) checksHealth() bool {
	return c.Status != Connecting
}

// settled reports whether the connection waits for the fleet watcher
// rather than its own interval: it runs ProtocolWatched and has recorded
// what it saw for the watcher, and nothing is in flight — no request
// unacknowledged, no share removing or waiting to start, no disconnect.
func (c *connection) settled() bool {
	if !rules(c.protocol).watched || !c.Watched || c.Disconnecting || !c.startAgainAt.IsZero() {
		return false
	}
	switch c.Status {
	case Active, Incomplete, Inactive:
	default:
		return false
	}
	if m := c.Metadata; m.Observed.Generation < m.Desired.Generation {
		return false
	}
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		if sh := c.Shares[ds]; sh.Pending() || sh.Problem != "" || sh.Observed.View.InitializationStatus == RemovingSharing {
			return false
		}
	}
	return true
}

// holdChecks keeps the interval's next check an interval ahead while the
// connection is settled and on the pass that ends a quiet spell, so that
// work arriving after it (a request, a report) is checked an interval
// later, not at once: the watcher has kept its health fresh meanwhile.
func (c *connection) holdChecks(ctx workflow.Context) {
	settled := c.settled()
	if settled || c.quiet {
		c.NextHealthCheck = workflow.Now(ctx).Add(c.settings.HealthCheckInterval)
	}
	c.quiet = settled
}

// nextCheck is when the next health check runs: at once after a re-check
// request; at the interval while not settled (a run that moved onto
// ProtocolWatched is not settled before its first check records what it
// saw for the watcher); when settled, at the resync or at the licence's
// warning or expiry time, whichever comes first, and an interval after a
// failed check.
func (c *connection) nextCheck() time.Time {
	if c.Recheck {
		return c.LastCheck
	}
	if !c.settled() {
		return c.NextHealthCheck
	}
	if !c.checkFailedAt.IsZero() {
		return c.checkFailedAt.Add(c.settings.HealthCheckInterval)
	}
	next := c.LastCheck.Add(c.settings.ResyncInterval)
	if l := c.Licence; l != nil && !l.ExpiresAt.IsZero() {
		for _, at := range []time.Time{l.ExpiresAt.Add(-c.settings.LicenceWarning), l.ExpiresAt} {
			if at.After(c.LastCheck) && at.Before(next) {
				next = at
			}
		}
	}
	return next
}

// healthCheckDue reports whether a health check should run now: at its
// interval, or at once after a recheck request.
func (c *connection) healthCheckDue(ctx workflow.Context) bool {
	if !c.checksHealth() {
		return false
	}
	return !workflow.Now(ctx).Before(c.nextCheck())
}

// healthCheckTimer returns the timer of the next health check, made once per
// due time rather than on every pass.
func (c *connection) healthCheckTimer(ctx workflow.Context) workflow.Future {
	at := c.nextCheck()
	if c.healthTimer != nil && c.healthTimerAt.Equal(at) {
		return c.healthTimer
	}
	if c.cancelHealth != nil {
		c.cancelHealth()
	}
	timerCtx, cancel := workflow.WithCancel(ctx)
	c.cancelHealth = cancel
	c.healthTimerAt = at
	summary := "next health check"
	if c.settled() {
		summary = "resync: health check of a quiet connection (the fleet watcher wakes it sooner on a change)"
	}
	c.healthTimer = workflow.NewTimerWithOptions(timerCtx, max(at.Sub(workflow.Now(ctx)), time.Millisecond),
		workflow.TimerOptions{Summary: summary})
	return c.healthTimer
}

// readLicence keeps what a health check or the handshake read of the home's
// licence and companion slots, for the status. A result of a worker of an
// earlier release, which reads none, leaves the last one.
func (c *connection) readLicence(ctx workflow.Context, l Licence) {
	if l.ExpiresAt.IsZero() && l.CompanionsMax == 0 {
		return
	}
	l.CheckedAt = workflow.Now(ctx)
	c.Licence = &l
}
