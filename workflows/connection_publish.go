package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Publishing the status: transitions, the status view the query answers,
// the search attributes the Web UI filters on, and the current details.

// maxTransitions bounds the transition history kept in the state.
const maxTransitions = 20

// setStatus changes the Connection Status and records the transition.
func (c *connection) setStatus(ctx workflow.Context, s ConnectionStatus, detail string) {
	if c.Status == s {
		return
	}
	c.Status = s
	c.transition(ctx, subjectConnection, string(s), detail)
}

// Subjects of transitions.
const (
	subjectConnection   = "connection"
	subjectMetadataSync = "metadata sync"
)

func subjectShare(ds string) string { return "data space " + ds }

func (c *connection) transition(ctx workflow.Context, subject, status, detail string) {
	c.Transitions = append(c.Transitions, Transition{At: workflow.Now(ctx), Subject: subject, Status: status, Detail: detail})
	if n := len(c.Transitions); n > maxTransitions {
		c.Transitions = slices.Clone(c.Transitions[n-maxTransitions:])
	}
}

// view is the status query's answer: what each child last reported, with
// requests it has not acknowledged yet named beside.
func (c *connection) view() StatusView {
	v := StatusView{
		Connection:    Reference(c.home, c.companion),
		Status:        c.Status,
		Reason:        c.Reason,
		Disconnecting: c.Disconnecting,
		DataSpaces:    []ShareView{},
		MetadataSync:  c.metadataView(),
		LastRejected:  c.LastRejected,
		Transitions:   slices.Clone(c.Transitions),
		Protocol:      c.protocol,
		Licence:       c.Licence,
		Watched:       c.settled(),
	}
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		v.DataSpaces = append(v.DataSpaces, c.shareView(ds))
	}
	return v
}

// metadataView is what the metadata sync last reported, with a resume it
// has not acknowledged yet.
func (c *connection) metadataView() MetadataSyncView {
	v := c.Metadata.Observed.View
	if c.Metadata.Desired.Resume > c.Metadata.Observed.Generation {
		v.Requested = RequestResume
	}
	return v
}

func (c *connection) shareView(ds string) ShareView {
	sh := c.Shares[ds]
	v := sh.Observed.View
	v.DataSpace = ds
	if sh.Pending() {
		v.Requested = sh.Request
	}
	if sh.Problem != "" {
		v.Error = sh.Problem
	}
	return v
}

// publish writes the search attributes that changed and the current details
// shown in the Web UI.
func (c *connection) publish(ctx workflow.Context) {
	want := map[string]string{
		AttrConnectionStatus.GetName():   string(c.Status),
		AttrMetadataSyncStatus.GetName(): string(c.Metadata.Observed.View.Status),
		AttrHomeOrg.GetName():            c.home,
		AttrCompanionOrg.GetName():       c.companion,
	}
	var updates []temporal.SearchAttributeUpdate
	for _, key := range publishedAttrs {
		name := key.GetName()
		if c.published[name] == want[name] {
			continue // unchanged, or never set and still empty
		}
		c.published[name] = want[name]
		if want[name] == "" {
			updates = append(updates, key.ValueUnset())
		} else {
			updates = append(updates, key.ValueSet(want[name]))
		}
	}
	if len(updates) > 0 {
		// The protocol rides on an update the run makes anyway: a worker
		// of the previous release, which never writes it, makes the same
		// updates at the same points, so it can replay this run's history.
		if proto := c.protocol.String(); rules(c.protocol).publishes && c.published[AttrProtocol.GetName()] != proto {
			c.published[AttrProtocol.GetName()] = proto
			updates = append(updates, AttrProtocol.ValueSet(proto))
		}
		if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
			c.logger.Warn("could not update search attributes", "error", err)
		}
	}
	workflow.SetCurrentDetails(ctx, c.details())
}

// publishedAttrs are the search attributes a connection keeps current. The
// protocol (from ProtocolPublished on) is written with the first of their
// updates that a run without it makes; a continued run starts with it,
// carried by continue-as-new or written by the run that moved (see
// protocolAfter).
var publishedAttrs = []temporal.SearchAttributeKeyKeyword{AttrConnectionStatus, AttrMetadataSyncStatus, AttrHomeOrg, AttrCompanionOrg}

// childAttrs are a child's search attributes at start: attrs and, from
// ProtocolPublished on, its protocol, so that the child need not write it.
func (c *connection) childAttrs(attrs ...temporal.SearchAttributeUpdate) temporal.SearchAttributes {
	if rules(c.protocol).publishes {
		attrs = append(attrs, AttrProtocol.ValueSet(c.protocol.String()))
	}
	return temporal.NewSearchAttributes(attrs...)
}

// details renders the status as a small markdown table for the Web UI.
func (c *connection) details() string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s → %s**\n\n", c.home, c.companion)
	fmt.Fprintf(&b, "| | status | detail |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| Connection | %s | %s |\n", c.Status, mdCell(c.connectionDetail()))
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		v := c.shareView(ds)
		status := string(v.InitializationStatus)
		if v.Requested != "" {
			status += " (" + v.Requested + " requested)"
		}
		fmt.Fprintf(&b, "| Data space `%s` | %s | %s |\n", ds, status, mdCell(shareDetail(v)))
	}
	if m := c.metadataView(); m.Status != "" {
		status := string(m.Status)
		if m.Requested != "" {
			status += " (" + m.Requested + " requested)"
		}
		fmt.Fprintf(&b, "| Metadata sync | %s | %s |\n", status, mdCell(metadataDetail(m)))
	}
	if l := c.Licence; l != nil {
		fmt.Fprintf(&b, "\nHome licence expires %s; companions %d of %d used (checked %s)\n",
			l.ExpiresAt.UTC().Format(time.RFC3339), l.CompanionsUsed, l.CompanionsMax, l.CheckedAt.UTC().Format(time.RFC3339))
	}
	if c.LastRejected != "" {
		fmt.Fprintf(&b, "\nLast rejected message: %s\n", mdCell(c.LastRejected))
	}
	// The input holds only the settings its starter chose; these are the
	// ones in force, with the worker's defaults filled in.
	fmt.Fprintf(&b, "\nSettings: health check every %s, metadata sync every %s, removal deadline %s, batches of %d\n",
		c.settings.HealthCheckInterval, c.settings.MetadataSyncInterval, c.settings.RemovalDeadline, c.settings.BatchSize)
	return b.String()
}

func (c *connection) connectionDetail() string {
	if c.Disconnecting {
		return fmt.Sprintf("disconnecting: %d share(s) left to remove", len(c.Shares))
	}
	return c.Reason
}

func shareDetail(v ShareView) string {
	switch v.InitializationStatus {
	case Activating:
		s := fmt.Sprintf("%d of %d records copied", v.RecordsCopied, v.RecordsTotal)
		if v.EstimatedCompletion != nil {
			s += fmt.Sprintf(", %.0f records/s, done about %s", v.CopyRate, v.EstimatedCompletion.UTC().Format(time.RFC3339))
		}
		return s
	case RemovingSharing:
		s := fmt.Sprintf("%d of %d records removed", v.RecordsRemoved, v.RecordsToRemove)
		if v.RemovalDeadline != nil {
			s += ", deadline " + v.RemovalDeadline.UTC().Format(time.RFC3339)
		}
		return s
	case ShareError:
		return v.Error + " · retry it once the cause is fixed; if it fails again, create a support ticket (starter support-bundle)"
	}
	return fmt.Sprintf("%d records", v.RecordsTotal)
}

func metadataDetail(m MetadataSyncView) string {
	switch m.Status {
	case SyncPending:
		return fmt.Sprintf("%d change(s) pending", m.PendingChanges)
	case SyncError:
		return fmt.Sprintf("paused: %d error(s): %s", m.ErrorCount, m.Error)
	}
	return ""
}

func mdCell(s string) string { return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s) }

// rootMessage is the message of the innermost error: the activity's own words
// rather than the SDK's wrapping.
func rootMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
