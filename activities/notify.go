package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/companionsync/companionsync/contract"
)

// AuditLog keeps the audit trail (orgstore.Store implements it).
type AuditLog interface {
	RecordAudit(ctx context.Context, entries []contract.AuditEntry) error
	Audit(ctx context.Context, connection string, since time.Time) ([]contract.AuditEntry, error)
}

// NoticeLog remembers which notifications were delivered and which fleet
// incidents are open (orgstore.Store implements it).
type NoticeLog interface {
	NoticeSent(ctx context.Context, id string) (bool, error)
	MarkNoticeSent(ctx context.Context, id string, at time.Time) error
	OpenIncidents(ctx context.Context) (map[string]string, error)
	OpenIncident(ctx context.Context, key, body string, since time.Time) error
	CloseIncident(ctx context.Context, key string) error
}

// Notifier delivers notifications: to the log always, and to a webhook
// when URL is set. A delivery is retried by the activity that makes it,
// across worker restarts, until the webhook answers 2xx; Log remembers
// delivered event IDs so that each is sent once.
type Notifier struct {
	// URL is the webhook (-notify-url); empty sends to the log only.
	URL string
	// Log remembers deliveries. Nil delivers without remembering (a retry
	// after a lost answer then sends twice, with the same event ID).
	Log NoticeLog
	// Client posts to URL; nil means a client with a 10 s timeout.
	Client *http.Client
	// Logger receives every notification; nil means slog.Default().
	Logger *slog.Logger
}

// NotifyInput is one notification to deliver.
type NotifyInput struct {
	Notice contract.Notice `json:"notice"`
}

// deliver sends n once: it logs it, posts it to the webhook, and records
// it. A failed post is a retryable error; the next attempt sends it again.
func (nf *Notifier) deliver(ctx context.Context, n contract.Notice) error {
	if nf.Log != nil {
		sent, err := nf.Log.NoticeSent(ctx, n.ID)
		if err != nil {
			return err
		}
		if sent {
			return nil
		}
	}
	if nf.URL != "" {
		if err := nf.post(ctx, n); err != nil {
			return err
		}
	}
	logger := nf.Logger
	if logger == nil {
		logger = slog.Default()
	}
	level := slog.LevelWarn
	if n.Data.State == contract.AlertStateResolved {
		level = slog.LevelInfo
	}
	logger.Log(ctx, level, "alert "+n.Data.State+": "+n.Data.Summary,
		"kind", n.Data.Kind, "connection", n.Data.Connection, "subject", n.Data.Subject,
		"since", n.Data.Since, "id", n.ID, "advice", n.Data.Advice)
	if nf.Log != nil {
		return nf.Log.MarkNoticeSent(ctx, n.ID, time.Now())
	}
	return nil
}

func (nf *Notifier) post(ctx context.Context, n contract.Notice) error {
	body, err := json.Marshal(n)
	if err != nil {
		return temporal.NewNonRetryableApplicationError("encode notice", "BadNotice", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, nf.URL, bytes.NewReader(body))
	if err != nil {
		return temporal.NewNonRetryableApplicationError("notify URL", "BadNotifyURL", err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	hc := nf.Client
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("post notice %s: %w", n.ID, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post notice %s: the webhook answered %s: %s", n.ID, resp.Status, strings.TrimSpace(string(answer)))
	}
	return nil
}

// Notify delivers one notification of a connection (see Notifier). It is
// retried until delivered: its schedule-to-close bounds how long.
func (a *Activities) Notify(ctx context.Context, in NotifyInput) error {
	if a.Notifier == nil {
		activity.GetLogger(ctx).Warn("alert "+in.Notice.Data.State+": "+in.Notice.Data.Summary,
			"kind", in.Notice.Data.Kind, "connection", in.Notice.Data.Connection, "subject", in.Notice.Data.Subject)
		return nil
	}
	return a.Notifier.deliver(ctx, in.Notice)
}

// RecordAuditInput is a batch of audit entries of one connection.
type RecordAuditInput struct {
	Entries []contract.AuditEntry `json:"entries"`
}

// RecordAudit adds entries to the audit trail; an entry already recorded is
// left alone, so a retry records nothing twice. An unreachable store fails
// it at once (the connection keeps the entries and tries again).
func (a *Activities) RecordAudit(ctx context.Context, in RecordAuditInput) error {
	log := a.auditLog()
	if log == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, shortStepStoreTimeout)
	defer cancel()
	err := log.RecordAudit(ctx, in.Entries)
	if err != nil && a.shortStepOutage(ctx, err) {
		return storeDown(err, "record the audit trail")
	}
	return err
}

// auditLog is where the audit trail goes: Audit, or Orgs when it keeps one.
func (a *Activities) auditLog() AuditLog {
	if a.Audit != nil {
		return a.Audit
	}
	if l, ok := a.Orgs.(AuditLog); ok {
		return l
	}
	return nil
}

// FleetAlertsInput is the reconciler's view of the fleet-wide incidents it
// is responsible for (vanished and stuck workflows), found by one run.
type FleetAlertsInput struct {
	// Kinds are the alert kinds the run checked; open incidents of these
	// kinds that are not in Alerts have cleared.
	Kinds  []string         `json:"kinds"`
	Alerts []contract.Alert `json:"alerts"`
	// At is the run's time: the Since of a new incident.
	At time.Time `json:"at"`
}

// FleetAlertsResult says what the call notified.
type FleetAlertsResult struct {
	Fired    int `json:"fired"`
	Resolved int `json:"resolved"`
}

// NotifyFleet notifies the incidents the reconciler found that were not
// open yet, and resolves those it no longer finds. Each is recorded as open
// or closed only once its notice is delivered, so a failed delivery is
// retried by the activity, and by the next run should the activity give up.
func (f *Fleet) NotifyFleet(ctx context.Context, in FleetAlertsInput) (FleetAlertsResult, error) {
	var res FleetAlertsResult
	if f.Notifier == nil || f.Notifier.Log == nil {
		return res, nil
	}
	open, err := f.Notifier.Log.OpenIncidents(ctx)
	if err != nil {
		return res, err
	}
	current := map[string]contract.Alert{}
	for _, a := range in.Alerts {
		current[alertKey(a)] = a
	}
	var errs []error
	for key, a := range current {
		if _, ok := open[key]; ok {
			continue
		}
		a.State, a.Version, a.Since = contract.AlertStateFiring, 1, in.At
		body, _ := json.Marshal(a)
		n := NewNotice(a, "companionsync/fleet", key+"@"+in.At.UTC().Format(time.RFC3339Nano), in.At)
		if err := f.Notifier.deliver(ctx, n); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := f.Notifier.Log.OpenIncident(ctx, key, string(body), in.At); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Fired++
	}
	checked := map[string]bool{}
	for _, k := range in.Kinds {
		checked[k] = true
	}
	for key, body := range open {
		if _, ok := current[key]; ok {
			continue
		}
		var a contract.Alert
		if err := json.Unmarshal([]byte(body), &a); err != nil || !checked[a.Kind] {
			continue
		}
		a.State = contract.AlertStateResolved
		n := NewNotice(a, "companionsync/fleet", key+"@"+a.Since.UTC().Format(time.RFC3339Nano), in.At)
		if err := f.Notifier.deliver(ctx, n); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := f.Notifier.Log.CloseIncident(ctx, key); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Resolved++
	}
	return res, errors.Join(errs...)
}

func alertKey(a contract.Alert) string {
	return a.Kind + "/" + a.Connection + "/" + a.Subject
}

// NewNotice wraps an alert in its CloudEvents envelope. incident
// identifies the incident (stable across retries); the event ID adds the
// alert's state, so the firing and the resolved notice of one incident
// are two events.
func NewNotice(a contract.Alert, source, incident string, at time.Time) contract.Notice {
	typ := contract.NoticeFiring
	if a.State == contract.AlertStateResolved {
		typ = contract.NoticeResolved
	}
	subject := a.Kind
	if a.Connection != "" {
		subject += "/" + a.Connection
	}
	if a.Subject != "" {
		subject += "/" + a.Subject
	}
	a.Version = 1
	return contract.Notice{
		SpecVersion:     "1.0",
		ID:              incident + "#" + a.State,
		Source:          source,
		Type:            typ,
		Subject:         subject,
		Time:            at.UTC(),
		DataContentType: "application/json",
		DataSchema:      contract.AlertSchema,
		Data:            a,
	}
}

// ReportFindingsInput is what a reconciler run leaves for operators: the
// audit entries of its repairs, and the fleet incidents it found.
type ReportFindingsInput struct {
	Audit  []contract.AuditEntry `json:"audit"`
	Alerts FleetAlertsInput      `json:"alerts"`
}

// ReportFindings records the repairs of a reconciler run in the audit
// trail and notifies the incidents it found (NotifyFleet).
func (f *Fleet) ReportFindings(ctx context.Context, in ReportFindingsInput) (FleetAlertsResult, error) {
	if log, ok := f.Orgs.(AuditLog); ok && len(in.Audit) > 0 {
		if err := log.RecordAudit(ctx, in.Audit); err != nil {
			return FleetAlertsResult{}, err
		}
	}
	return f.NotifyFleet(ctx, in.Alerts)
}
