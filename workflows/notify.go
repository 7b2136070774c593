package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/contract"
)

// Notifications, workflow side. After each pass the connection derives,
// from its own view, the alert conditions that hold (incidents), compares
// them with those it holds open, and queues a notice for each that opened
// or cleared. Notices are delivered one at a time by the Notify activity,
// retried until delivered for up to noticeDeadline, across worker restarts
// (it is a regular activity) and continue-as-new (the queue is state).
// The notice's ID is stable, so a delivery repeated after a continue-as-new
// is recognised by the worker and sent once. An idle connection adds no
// event: the comparison is in memory.

// noticeDeadline bounds the delivery of one notice; past it the notice is
// dropped (it stays in the worker's log).
const noticeDeadline = 24 * time.Hour

// incidentsNow are the alert conditions that hold now, by key.
func (c *connection) incidentsNow(now time.Time) map[string]contract.Incident {
	ref := Reference(c.home, c.companion)
	out := map[string]contract.Incident{}
	add := func(i contract.Incident) { out[i.Key()] = i }
	if c.Status == Inactive {
		add(contract.Incident{Kind: contract.AlertInactive, Summary: fmt.Sprintf("connection %s is Inactive: %s", ref, c.Reason),
			Advice: fmt.Sprintf("renew the home org's licence or reactivate the companion, then run starter recheck --connection %s", ref)})
	}
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		v := c.shareView(ds)
		if v.InitializationStatus == ShareError && v.Requested == "" {
			add(contract.Incident{Kind: contract.AlertShareError, Subject: ds,
				Summary: fmt.Sprintf("data space %s of %s is in Error: %s", ds, ref, v.Error),
				Advice:  fmt.Sprintf("fix the cause and run starter retry --connection %s --data-space %s; if it fails again, create a support ticket with starter support-bundle --connection %s", ref, ds, ref)})
		}
		if v.RemovalDeadline != nil && now.After(*v.RemovalDeadline) && !v.Removed && v.InitializationStatus != ShareError {
			add(contract.Incident{Kind: contract.AlertRemovalOverdue, Subject: ds,
				Summary: fmt.Sprintf("the removal of data space %s from %s passed its deadline %s", ds, ref, v.RemovalDeadline.UTC().Format(time.RFC3339)),
				Advice:  fmt.Sprintf("see starter status --connection %s for what it waits on (the org store, a worker)", ref)})
		}
	}
	if m := c.metadataView(); m.Paused && m.Requested == "" && !c.Disconnecting {
		add(contract.Incident{Kind: contract.AlertMetadataPaused,
			Summary: fmt.Sprintf("the metadata sync of %s is paused after a failed round", ref),
			Advice:  fmt.Sprintf("read starter error-log --connection %s, fix the conflicts, then run starter resume --connection %s", ref, ref)})
	}
	if l := c.Licence; l != nil && c.Status != Inactive && !c.Disconnecting && l.ExpiresAt.Sub(now) < c.settings.LicenceWarning {
		add(contract.Incident{Kind: contract.AlertLicenceExpiring,
			Summary: fmt.Sprintf("the licence of home org %s expires at %s", c.home, l.ExpiresAt.UTC().Format(time.RFC3339)),
			Advice:  "renew the home org's licence; the connection goes Inactive when it expires"})
	}
	return out
}

// watchIncidents opens the incidents that began and clears those that
// ended, queueing a notice for each.
func (c *connection) watchIncidents(ctx workflow.Context) {
	if !rules(c.protocol).accountable || !c.Handshaken {
		return
	}
	now := workflow.Now(ctx)
	current := c.incidentsNow(now)
	if c.Incidents == nil {
		c.Incidents = map[string]contract.Incident{}
	}
	for _, key := range workflow.DeterministicKeys(c.Incidents) {
		if _, ok := current[key]; !ok {
			open := c.Incidents[key]
			delete(c.Incidents, key)
			c.queueNotice(now, open, contract.AlertStateResolved)
		}
	}
	for _, key := range workflow.DeterministicKeys(current) {
		if _, ok := c.Incidents[key]; ok {
			continue
		}
		i := current[key]
		i.Since = now
		c.Incidents[key] = i
		c.queueNotice(now, i, contract.AlertStateFiring)
	}
}

func (c *connection) queueNotice(now time.Time, i contract.Incident, state string) {
	ref := Reference(c.home, c.companion)
	a := contract.Alert{Kind: i.Kind, State: state, Connection: ref, Subject: i.Subject, Summary: i.Summary, Since: i.Since, Advice: i.Advice}
	incident := fmt.Sprintf("%s/%s@%s", ref, i.Key(), i.Since.UTC().Format(time.RFC3339Nano))
	c.Notices = append(c.Notices, activities.NewNotice(a, "companionsync/"+ref, incident, now))
}

// notify starts the delivery of the oldest notice, unless one is in flight.
func (c *connection) notify(ctx workflow.Context) {
	c.notifyWithin(ctx, noticeDeadline)
}

// notifyWithin is notify with a deadline for the delivery.
func (c *connection) notifyWithin(ctx workflow.Context, deadline time.Duration) {
	if c.notifying != nil || len(c.Notices) == 0 {
		return
	}
	n := c.Notices[0]
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: deadline,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
		Summary:                "notify: " + n.Data.State + " " + n.Subject,
	})
	c.notifying = workflow.ExecuteActivity(actx, acts.Notify, activities.NotifyInput{Notice: n})
}

// notified takes the end of a delivery: the notice leaves the queue,
// delivered or, past noticeDeadline, given up.
func (c *connection) notified(ctx workflow.Context, f workflow.Future) {
	if err := f.Get(ctx, nil); err != nil {
		c.logger.Error("notification given up", "id", c.Notices[0].ID, "error", err)
	}
	c.notifying = nil
	c.Notices = c.Notices[1:]
}

// flushNotices delivers what is queued before the run ends for good. From
// ProtocolWatched on, a notice not yet in flight gets finalNoticeDeadline: a
// webhook that keeps failing holds a disconnected connection's workflow open
// minutes, not a day per notice (each notice given up stays in the worker's
// log).
func (c *connection) flushNotices(ctx workflow.Context) {
	deadline := noticeDeadline
	if rules(c.protocol).watched {
		deadline = finalNoticeDeadline
	}
	for len(c.Notices) > 0 {
		c.notifyWithin(ctx, deadline)
		c.notified(ctx, c.notifying)
	}
}

// finalNoticeDeadline bounds the delivery of each notice queued when a
// connection ends.
const finalNoticeDeadline = 10 * time.Minute
