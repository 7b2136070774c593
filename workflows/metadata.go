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

// maxErrorLog bounds the error-log entries kept in the workflow state; the
// store keeps them all.
const maxErrorLog = 500

// MetadataSyncWorkflow syncs the metadata of a connection's Active shares
// from home to companion. Every interval it applies the changes counted at
// the previous round (In Progress, then Succeeded or Error) and counts the
// next ones (Pending n). A failed round pauses the sync until its connection
// asks for a resume, which starts the next round at once. It carries out the
// desired state its connection sends (data spaces, suspension, resume, stop),
// reports each acknowledged generation and each change of its settled status
// (from ProtocolProgressReport on also In Progress, each round and each new
// pending count; before, its own query showed those), continues as new to
// keep its history short, and returns when asked to stop or when its
// connection workflow is gone.
func MetadataSyncWorkflow(ctx workflow.Context, in MetadataSyncInput) (MetadataSyncView, error) {
	st := in.State
	m := &metadataSync{
		in:       in,
		settings: in.Settings.WithDefaults(),
		logger:   workflow.GetLogger(ctx),
		view:     st.View,
		acked:    st.Acked,
		upTo:     st.UpTo,
		nextAt:   st.NextRoundAt,
		errorLog: st.ErrorLog,
		resume:   st.ResumePending,
		waiting:  st.Waiting,
		signals:  newInbox(),
	}
	m.view.Stopped, m.view.Requested, m.view.Orphaned = false, "", ""
	checkProtocol(MetadataSyncWorkflowName, in.Protocol)
	m.budget = newRunBudget(m.settings)
	m.budget.listenUpgrade(ctx, m.signals, in.Protocol)
	m.published = m.view.Status
	if st, ok := workflow.GetTypedSearchAttributes(ctx).GetKeyword(AttrMetadataSyncStatus); ok {
		m.published = MetadataSyncStatus(st)
	}
	if in.Desired.Generation > m.acked {
		m.receive(in.Desired)
	} else {
		m.desired = in.Desired
	}
	// The start acknowledged the input; the connection knows this state.
	m.reported = MetadataReport{Generation: m.acked, View: m.view}
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
	signals  *inbox
	budget   *runBudget

	// desired is what the connection asks; acked is its generation.
	desired MetadataDesired
	acked   int64
	// reported is the last report the connection accepted; answer asks for
	// a report even when nothing changed since.
	reported MetadataReport
	answer   bool

	// upTo is the highest change sequence counted for the next round.
	upTo     int64
	nextAt   time.Time
	errorLog []activities.ErrorLogEntry
	resume   bool
	// published is the status last written to the search attribute.
	published MetadataSyncStatus
	// waiting is set while the last count found nothing pending and
	// recorded it for the fleet watcher (ProtocolWatched): the next round
	// is then a resync, a ResyncInterval later, unless the watcher wakes
	// the sync (woken) or its data spaces change.
	waiting bool
	woken   bool

	// roundTimer fires at roundTimerAt, the next round; it lives across
	// waits and is cancelled only when the next round moves.
	roundTimer    workflow.Future
	roundTimerAt  time.Time
	cancelRoundAt workflow.CancelFunc
}

func (m *metadataSync) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryStatus, func() (MetadataSyncView, error) { return m.view, nil },
		queryOptions(describeMetadataStatus)); err != nil {
		return fmt.Errorf("register status query: %w", err)
	}
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryErrorLog, func() ([]activities.ErrorLogEntry, error) {
		return slices.Clone(m.errorLog), nil
	}, queryOptions(describeErrorLog)); err != nil {
		return fmt.Errorf("register error-log query: %w", err)
	}
	m.signals.listen(ctx, SignalMetadataDesired, func(ctx workflow.Context, raw json.RawMessage) {
		var d MetadataDesired
		if err := decodeSignal(raw, &d); err != nil {
			m.logger.Error("metadata-sync-desired ignored", "error", err)
			return
		}
		m.receive(d)
	})
	m.signals.listen(ctx, SignalMetadataWake, func(ctx workflow.Context, raw json.RawMessage) {
		var w MetadataWake
		if err := decodeSignal(raw, &w); err != nil {
			m.logger.Error("metadata-wake ignored", "error", err)
			return
		}
		m.woken = m.woken || rules(m.in.Protocol).watched
	})
	return nil
}

// receive takes a desired state. A re-sent generation is answered with a
// report; a new one is acknowledged, and resumes a paused sync when it
// carries a resume not acknowledged before.
func (m *metadataSync) receive(d MetadataDesired) {
	if d.Generation <= m.acked {
		m.answer = true
		m.desired.Complete = d.Complete
		return
	}
	m.answer = m.answer || d.Answer
	if d.Resume > m.acked && m.view.Paused {
		m.resume = true
	}
	if m.waiting && !slices.Equal(d.DataSpaces, m.desired.DataSpaces) {
		m.woken = true // count the new data spaces, and watch them
	}
	m.acked, m.desired = d.Generation, d
	m.reported.Generation = m.acked // the connection knows from the delivery
}

// wait blocks until a signal arrives or, with a positive timeout, the next
// round is due; then it takes every signal already buffered.
func (m *metadataSync) wait(ctx workflow.Context, timeout time.Duration) {
	sel := workflow.NewSelector(ctx)
	m.signals.addTo(ctx, sel)
	if timeout > 0 {
		sel.AddFuture(m.nextRoundTimer(ctx, timeout), func(workflow.Future) {})
	}
	sel.Select(ctx)
	for sel.HasPending() {
		sel.Select(ctx)
	}
}

// nextRoundTimer returns the timer of the next round, made once per round
// rather than on every wait; a timer of a round that moved is cancelled.
func (m *metadataSync) nextRoundTimer(ctx workflow.Context, timeout time.Duration) workflow.Future {
	if m.roundTimer != nil && m.roundTimerAt.Equal(m.nextAt) {
		return m.roundTimer
	}
	if m.cancelRoundAt != nil {
		m.cancelRoundAt()
	}
	timerCtx, cancel := workflow.WithCancel(ctx)
	m.cancelRoundAt, m.roundTimerAt = cancel, m.nextAt
	m.roundTimer = workflow.NewTimerWithOptions(timerCtx, timeout, workflow.TimerOptions{Summary: "next metadata sync round"})
	return m.roundTimer
}

func (m *metadataSync) run(ctx workflow.Context) (MetadataSyncView, error) {
	if m.view.Status == "" {
		m.count(ctx)
		if !m.waiting {
			m.nextRound(ctx)
		}
	}
	for {
		if err := m.report(ctx); err != nil {
			return m.orphan(ctx)
		}
		if m.desired.Stop {
			m.view.Stopped = true
			if m.desired.Complete {
				// The connection run that started this workflow reads its
				// result: completing tells it.
				m.publishStatus(ctx)
				m.details(ctx)
				return m.view, nil
			}
			if err := m.report(ctx); err != nil {
				m.logger.Warn("stopped, but the connection could not be told", "error", err)
			}
			return m.view, nil
		}
		if m.budget.due(ctx) {
			// Reported first, so the next run starts from what the connection knows.
			return MetadataSyncView{}, continueAsNew(ctx, MetadataSyncWorkflowName, m.signals, func() any {
				next := m.in
				next.Protocol = m.budget.protocolAfter(ctx, m.in.Protocol)
				next.Desired = m.desired
				next.State = MetadataSyncState{
					Acked: m.acked, View: m.view, UpTo: m.upTo, NextRoundAt: m.nextAt,
					ErrorLog: m.errorLog, ResumePending: m.resume, Waiting: m.waiting,
				}
				return next
			})
		}
		switch {
		case m.resume:
			m.resume = false
			m.view.Paused = false
			if !m.idle() {
				m.count(ctx)
				m.round(ctx)
			}
		case m.woken:
			// Changes arrived (or the data spaces changed) while the sync
			// waited: count them now, and apply them an interval later.
			m.woken = false
			if !m.idle() {
				m.count(ctx)
				if !m.waiting {
					m.nextRound(ctx)
				}
			}
		case m.idle():
			m.wait(ctx, 0)
		case !workflow.Now(ctx).Before(m.nextAt):
			m.round(ctx)
		default:
			m.wait(ctx, m.nextAt.Sub(workflow.Now(ctx)))
		}
		m.budget.count(ctx)
	}
}

// orphan ends a sync whose connection workflow is gone.
func (m *metadataSync) orphan(ctx workflow.Context) (MetadataSyncView, error) {
	m.view.Orphaned = orphanReason(ctx, m.in.Home, m.in.Companion)
	m.logger.Error("metadata sync stopped", "reason", m.view.Orphaned)
	m.details(ctx)
	return m.view, nil
}

// idle reports whether no round should run: paused after an error,
// suspended by the connection, or nothing to sync.
func (m *metadataSync) idle() bool {
	return m.view.Paused || m.desired.Suspended || len(m.desired.DataSpaces) == 0
}

// round applies the changes counted last time, then counts the next ones.
func (m *metadataSync) round(ctx workflow.Context) {
	m.nextRound(ctx)
	m.view.Rounds++
	if m.view.PendingChanges > 0 {
		m.setStatus(ctx, SyncInProgress)
		m.publishStatus(ctx)
		if m.report(ctx) != nil {
			return // the run's next report finds the connection gone
		}
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
		RetryPolicy:            m.settings.ActivityRetry.Policy(),
		Summary:                fmt.Sprintf("apply %d metadata change(s)", m.view.PendingChanges),
	})
	return workflow.ExecuteActivity(actx, acts.ApplyMetadata, activities.ApplyInput{
		Home: m.in.Home, Companion: m.in.Companion, DataSpaces: m.desired.DataSpaces,
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
			RetryPolicy: m.settings.ActivityRetry.Policy(), Summary: "record the failed round",
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
	if len(m.desired.DataSpaces) == 0 {
		m.settle(ctx)
		return
	}
	watch := rules(m.in.Protocol).watched
	step := runShortStep(ctx, shortStepOptions{"count pending metadata changes", 5 * time.Minute, m.settings.ActivityRetry},
		acts.CountPendingMetadata, activities.PendingInput{Home: m.in.Home, Companion: m.in.Companion, DataSpaces: m.desired.DataSpaces,
			Watch: watch})
	var res activities.PendingResult
	if err := step.Get(ctx, &res); err != nil {
		m.logger.Warn("could not count pending metadata changes; the next round counts again", "error", err)
		m.waiting = false
		m.settle(ctx)
		return
	}
	m.waiting = watch && res.Changes == 0
	if m.waiting {
		// Nothing to apply: the next round is a resync, unless the fleet
		// watcher wakes the sync first.
		m.nextAt = workflow.Now(ctx).Add(m.settings.ResyncInterval)
	}
	m.upTo = res.UpTo
	changed := m.view.PendingChanges != res.Changes
	m.view.PendingChanges = res.Changes
	next := SyncSucceeded
	if res.Changes > 0 {
		next = SyncPending
	}
	m.setStatus(ctx, next)
	if changed {
		m.details(ctx)
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
	m.nextAt = workflow.Now(ctx).Add(m.settings.MetadataSyncInterval)
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
	m.details(ctx)
}

// publishStatus writes the status to the search attribute when it changed.
func (m *metadataSync) publishStatus(ctx workflow.Context) {
	if m.published == m.view.Status {
		return
	}
	m.published = m.view.Status
	if err := workflow.UpsertTypedSearchAttributes(ctx, AttrMetadataSyncStatus.ValueSet(string(m.view.Status))); err != nil {
		m.logger.Warn("could not update search attributes", "error", err)
	}
}

// report tells the connection the acknowledged generation and the settled
// status, when either changed since the last report. It fails only when the
// connection workflow is gone.
func (m *metadataSync) report(ctx workflow.Context) error {
	m.publishStatus(ctx)
	m.details(ctx)
	r := MetadataReport{Generation: m.acked, View: m.view}
	prev := m.reported.View
	if !m.answer && r.Generation == m.reported.Generation && r.View.Status == prev.Status &&
		r.View.Paused == prev.Paused && r.View.Stopped == prev.Stopped &&
		(sameRound(r.View, prev)) {
		return nil
	}
	m.answer = false
	delivered, err := reportToConnection(ctx, m.in.Home, m.in.Companion, SignalMetadataReport, r, false)
	if delivered {
		m.reported = r
	}
	return err
}

// sameRound reports whether two views tell the same rounds, pending count
// and errors.
func sameRound(a, b MetadataSyncView) bool {
	return a.Rounds == b.Rounds && a.PendingChanges == b.PendingChanges &&
		a.ErrorCount == b.ErrorCount && a.Error == b.Error
}

// details refreshes the one-line state shown in the Web UI.
func (m *metadataSync) details(ctx workflow.Context) {
	line := fmt.Sprintf("**%s → %s · metadata sync**: %s %s — data spaces %v",
		m.in.Home, m.in.Companion, m.view.Status, mdCell(metadataDetail(m.view)), m.desired.DataSpaces)
	if m.view.Orphaned != "" {
		line += "\n\n" + mdCell(m.view.Orphaned)
	}
	workflow.SetCurrentDetails(ctx, line)
}
