package workflows

import (
	"time"

	"github.com/companionsync/companionsync/activities"
	"go.temporal.io/sdk/workflow"
)

// Health checks: the licence and companion check every
// HealthCheckInterval, and the status it implies.

// checkHealth re-sends every unacknowledged request, then runs the health
// check and moves the connection between Active or Incomplete and Inactive.
// A failing check changes nothing and is retried at the next interval. A
// disconnecting connection only re-sends: its interval keeps a lost report
// from holding the disconnect up.
func (c *connection) checkHealth(ctx workflow.Context) {
	c.NextHealthCheck = workflow.Now(ctx).Add(c.settings.HealthCheckInterval)
	c.resend()
	c.releases++
	if c.Disconnecting {
		return
	}
	step := c.shortStep(ctx, "health check: home licence and companion activity", 2*time.Minute,
		acts.CheckHealth, activities.HealthInput{Home: c.home, Companion: c.companion})
	var res activities.HealthResult
	if err := step.Get(ctx, &res); err != nil {
		c.logger.Warn("health check failed; keeping the current status", "error", err)
		return
	}
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

// healthCheckDue reports whether a health check should run now: at its
// interval, or at once after a recheck request.
func (c *connection) healthCheckDue(ctx workflow.Context) bool {
	if !c.checksHealth() {
		return false
	}
	return !workflow.Now(ctx).Before(c.NextHealthCheck)
}

// healthCheckTimer returns the timer of the next health check, made once per
// due time rather than on every pass.
func (c *connection) healthCheckTimer(ctx workflow.Context) workflow.Future {
	if c.healthTimer != nil && c.healthTimerAt.Equal(c.NextHealthCheck) {
		return c.healthTimer
	}
	if c.cancelHealth != nil {
		c.cancelHealth()
	}
	timerCtx, cancel := workflow.WithCancel(ctx)
	c.cancelHealth = cancel
	c.healthTimerAt = c.NextHealthCheck
	c.healthTimer = workflow.NewTimerWithOptions(timerCtx, max(c.NextHealthCheck.Sub(workflow.Now(ctx)), time.Millisecond),
		workflow.TimerOptions{Summary: "next health check"})
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
