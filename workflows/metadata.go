package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
)

// eventsPerRound is an upper bound of the history events one round adds
// (count, apply and report activities and signals, status upserts and the
// round timer); the end-to-end tests measure the real number.
const eventsPerRound = 30

// maxErrorLog bounds the error-log entries kept in the workflow state; the
// store keeps them all.
const maxErrorLog = 500

// MetadataSyncWorkflow syncs the metadata of a connection's Active shares
// from home to companion. Every interval it applies the changes counted at
// the previous round (In Progress, then Succeeded or Error) and counts the
// next ones (Pending n). A failed round pauses the sync until a resume
// signal, which starts the next round at once. It idles while suspended or
// without data spaces, continues as new to keep its history short, and
// returns when its connection sends stop.
func MetadataSyncWorkflow(ctx workflow.Context, in MetadataSyncInput) (MetadataSyncView, error) {
	m := &metadataSync{
		in:       in,
		settings: in.Settings.withDefaults(),
		logger:   workflow.GetLogger(ctx),
		view:     in.State,
		scope:    in.Scope,
		upTo:     in.UpTo,
		errorLog: in.ErrorLog,
		resume:   in.ResumePending,
	}
	m.view.Stopped = false
	if err := m.registerHandlers(ctx); err != nil {
		return MetadataSyncView{}, err
	}
	return m.run(ctx)
}

// metadataSync is the running state of a MetadataSyncWorkflow.
type metadataSync struct {
	in       MetadataSyncInput
	settings Settings
	logger   log.Logger
	view     MetadataSyncView
	scope    SyncScope
	// upTo is the highest change sequence counted for the next round.
	upTo     int64
	errorLog []activities.ErrorLogEntry

	stop, resume bool
	// roundsThisRun bounds a run deterministically, even where the history
	// length is not known (the SDK's test environment).
	roundsThisRun int
	signals       map[string]workflow.ReceiveChannel
}

func (m *metadataSync) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (MetadataSyncView, error) { return m.view, nil }); err != nil {
		return fmt.Errorf("register status query: %w", err)
	}
	if err := workflow.SetQueryHandler(ctx, QueryErrorLog, func() ([]activities.ErrorLogEntry, error) {
		return slices.Clone(m.errorLog), nil
	}); err != nil {
		return fmt.Errorf("register error-log query: %w", err)
	}
	m.signals = map[string]workflow.ReceiveChannel{
		SignalScope:   workflow.GetSignalChannel(ctx, SignalScope),
		SignalStop:    workflow.GetSignalChannel(ctx, SignalStop),
		MessageResume: workflow.GetSignalChannel(ctx, MessageResume),
	}
	return nil
}

// wait blocks until a signal arrives or, with a positive timeout, the next
// round is due; then it takes every signal already buffered. Only the main
// loop receives signals, so none is consumed and lost by a run that is
// continuing as new.
func (m *metadataSync) wait(ctx workflow.Context, timeout time.Duration) {
	sel := workflow.NewSelector(ctx)
	for _, name := range workflow.DeterministicKeys(m.signals) {
		sel.AddReceive(m.signals[name], func(ch workflow.ReceiveChannel, _ bool) { m.receive(ctx, name, ch) })
	}
	if timeout > 0 {
		timerCtx, cancel := workflow.WithCancel(ctx)
		defer cancel()
		sel.AddFuture(workflow.NewTimerWithOptions(timerCtx, timeout, workflow.TimerOptions{Summary: "next metadata sync round"}),
			func(workflow.Future) {})
	}
	sel.Select(ctx)
	for sel.HasPending() {
		sel.Select(ctx)
	}
}

// receive takes one signal and records what it asks for.
func (m *metadataSync) receive(ctx workflow.Context, name string, ch workflow.ReceiveChannel) {
	switch name {
	case SignalScope:
		var raw json.RawMessage
		ch.Receive(ctx, &raw)
		var scope SyncScope
		if err := json.Unmarshal(raw, &scope); err != nil {
			m.logger.Error("scope signal ignored: malformed payload", "error", err)
			return
		}
		m.scope = scope
	case SignalStop:
		ch.Receive(ctx, nil)
		m.stop = true
	case MessageResume:
		ch.Receive(ctx, nil)
		if m.view.Paused {
			m.resume = true
		} else {
			m.logger.Warn("resume ignored: metadata sync is not paused")
		}
	}
}

func (m *metadataSync) run(ctx workflow.Context) (MetadataSyncView, error) {
	if m.in.State.Status == "" {
		m.count(ctx)
		m.nextRound(ctx)
	}
	m.report(ctx)
	for !m.stop {
		switch {
		case m.resume:
			m.resume = false
			m.view.Paused = false
			if m.scope.Suspended || len(m.scope.DataSpaces) == 0 {
				m.report(ctx) // unpaused; rounds start again with the connection
				continue
			}
			m.count(ctx)
			m.round(ctx)
		case m.idle():
			m.wait(ctx, 0)
		case !workflow.Now(ctx).Before(m.in.NextRoundAt):
			m.round(ctx)
		default:
			m.wait(ctx, m.in.NextRoundAt.Sub(workflow.Now(ctx)))
		}
		if !m.stop && m.shouldContinueAsNew(ctx) {
			m.drainSignals(ctx)
			if !m.stop {
				return MetadataSyncView{}, m.continueAsNew(ctx)
			}
		}
	}
	m.view.Stopped = true
	m.report(ctx)
	return m.view, nil
}

// idle reports whether no round should run: paused after an error,
// suspended by the connection, or nothing to sync.
func (m *metadataSync) idle() bool {
	return m.view.Paused || m.scope.Suspended || len(m.scope.DataSpaces) == 0
}

// round applies the changes counted last time, then counts the next ones.
func (m *metadataSync) round(ctx workflow.Context) {
	m.nextRound(ctx)
	m.view.Rounds++
	m.roundsThisRun++
	if m.view.PendingChanges > 0 {
		m.setStatus(ctx, SyncInProgress)
		if err := m.apply(ctx); err != nil {
			m.pause(ctx, err)
			return
		}
		m.view.ErrorCount, m.view.Error, m.errorLog = 0, "", nil
	}
	now := workflow.Now(ctx)
	m.view.LastSucceededAt = &now
	m.count(ctx)
}

// apply runs one round's activity. Its failures carry the error-log entries.
func (m *metadataSync) apply(ctx workflow.Context) error {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    5 * time.Minute,
		ScheduleToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:       heartbeatTimeout,
		RetryPolicy:            m.settings.ActivityRetry.policy(),
		Summary:                fmt.Sprintf("apply %d metadata change(s)", m.view.PendingChanges),
	})
	return workflow.ExecuteActivity(actx, acts.ApplyMetadata, activities.ApplyInput{
		Home: m.in.Home, Companion: m.in.Companion, DataSpaces: m.scope.DataSpaces,
		UpTo: m.upTo, Round: m.roundID(ctx),
	}).Get(ctx, nil)
}

// pause records a failed round and stops syncing until resumed.
func (m *metadataSync) pause(ctx workflow.Context, err error) {
	var appErr *temporal.ApplicationError
	var res activities.ApplyResult
	if errors.As(err, &appErr) && appErr.HasDetails() && appErr.Details(&res) == nil && len(res.Failures) > 0 {
		m.errorLog = res.Failures
	} else {
		entry := activities.ErrorLogEntry{Kind: activities.KindFailed, Message: rootMessage(err), At: workflow.Now(ctx)}
		m.errorLog = []activities.ErrorLogEntry{entry}
		rctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: 30 * time.Second, ScheduleToCloseTimeout: 5 * time.Minute,
			RetryPolicy: m.settings.ActivityRetry.policy(), Summary: "record the failed round",
		})
		if rerr := workflow.ExecuteActivity(rctx, acts.RecordSyncFailure, activities.RecordFailureInput{
			Home: m.in.Home, Companion: m.in.Companion, Round: m.roundID(ctx), Message: entry.Message,
		}).Get(ctx, nil); rerr != nil {
			m.logger.Error("could not record the failed round", "error", rerr)
		}
	}
	if len(m.errorLog) > maxErrorLog {
		m.errorLog = m.errorLog[:maxErrorLog]
	}
	m.view.ErrorCount = len(res.Failures)
	if m.view.ErrorCount == 0 {
		m.view.ErrorCount = 1
	}
	m.view.Error = m.errorLog[0].Message
	m.view.Paused = true
	m.logger.Warn("metadata round failed; sync paused until resume", "errors", m.view.ErrorCount, "error", err)
	m.setStatus(ctx, SyncError)
}

// count asks how many changes the next round will apply and shows Pending n,
// or Succeeded when nothing is pending.
func (m *metadataSync) count(ctx workflow.Context) {
	if len(m.scope.DataSpaces) == 0 {
		m.settle(ctx)
		return
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second, ScheduleToCloseTimeout: 5 * time.Minute,
		RetryPolicy: m.settings.ActivityRetry.policy(), Summary: "count pending metadata changes",
	})
	var res activities.PendingResult
	if err := workflow.ExecuteActivity(actx, acts.CountPendingMetadata, activities.PendingInput{
		Home: m.in.Home, Companion: m.in.Companion, DataSpaces: m.scope.DataSpaces,
	}).Get(ctx, &res); err != nil {
		m.logger.Warn("could not count pending metadata changes; the next round counts again", "error", err)
		m.settle(ctx)
		return
	}
	m.upTo = res.UpTo
	changed := m.view.PendingChanges != res.Changes
	m.view.PendingChanges = res.Changes
	next := SyncSucceeded
	if res.Changes > 0 {
		next = SyncPending
	}
	if m.view.Status != next {
		m.setStatus(ctx, next)
	} else if changed {
		m.report(ctx)
	}
}

// settle leaves In Progress after a round whose next count is unknown.
func (m *metadataSync) settle(ctx workflow.Context) {
	if m.view.Status == SyncInProgress {
		m.view.PendingChanges = 0
		m.setStatus(ctx, SyncSucceeded)
	}
}

func (m *metadataSync) nextRound(ctx workflow.Context) {
	m.in.NextRoundAt = workflow.Now(ctx).Add(m.settings.MetadataSyncInterval)
}

// roundID names a round for idempotent error-log writes.
func (m *metadataSync) roundID(ctx workflow.Context) string {
	return fmt.Sprintf("%s/%d", MetadataSyncWorkflowID(m.in.Home, m.in.Companion), m.view.Rounds)
}

func (m *metadataSync) setStatus(ctx workflow.Context, st MetadataSyncStatus) {
	if m.view.Status == st {
		return
	}
	m.view.Status = st
	if err := workflow.UpsertTypedSearchAttributes(ctx, AttrMetadataSyncStatus.ValueSet(string(st))); err != nil {
		m.logger.Warn("could not update search attributes", "error", err)
	}
	m.report(ctx)
}

// report tells the connection the sync's state and refreshes the UI details.
func (m *metadataSync) report(ctx workflow.Context) {
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s → %s · metadata sync**: %s %s — data spaces %v",
		m.in.Home, m.in.Companion, m.view.Status, mdCell(metadataDetail(m.view)), m.scope.DataSpaces))
	parent := ConnectionWorkflowID(m.in.Home, m.in.Companion)
	if err := workflow.SignalExternalWorkflow(ctx, parent, "", SignalMetadataReport, m.view).Get(ctx, nil); err != nil {
		m.logger.Warn("could not report to the connection", "connection", parent, "error", err)
	}
}

func (m *metadataSync) shouldContinueAsNew(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= m.settings.EventBudget ||
		m.roundsThisRun >= max(1, m.settings.EventBudget/eventsPerRound)
}

// drainSignals takes the signals buffered but not yet received, so none is
// lost across continue-as-new.
func (m *metadataSync) drainSignals(ctx workflow.Context) {
	for _, name := range workflow.DeterministicKeys(m.signals) {
		for m.signals[name].Len() > 0 {
			m.receive(ctx, name, m.signals[name])
		}
	}
}

// continueAsNew carries the whole state to the next run.
func (m *metadataSync) continueAsNew(ctx workflow.Context) error {
	next := m.in
	next.Scope, next.State, next.UpTo, next.ErrorLog = m.scope, m.view, m.upTo, m.errorLog
	next.ResumePending = m.resume
	return workflow.NewContinueAsNewError(ctx, MetadataSyncWorkflowName, next)
}
