package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/contract"
)

// heartbeatTimeout is how soon a copy or removal step on a crashed worker is
// retried elsewhere.
const heartbeatTimeout = 10 * time.Second

// stepSlack is how long a copy or removal step may run past its budget.
const stepSlack = 10 * time.Minute

// DataSpaceShareWorkflow runs one share. It carries out the desired state
// its connection sends (share-desired signals, or its input): with intent
// shared it copies the data space (Activating, then Active or Error); with
// intent removed it removes the data from the companion within the removal
// deadline (Removing Sharing, then gone, or Error). A new generation with
// the same intent retries a share in Error. It reports each acknowledged
// generation and each status change to its connection, and, from
// ProtocolProgressReport on, its progress after each step. It returns the
// final view once the data is removed, or stops, leaving the data as it is,
// when its connection workflow is gone.
func DataSpaceShareWorkflow(ctx workflow.Context, in ShareInput) (ShareView, error) {
	s := &share{
		in:       in,
		settings: in.Settings.WithDefaults(),
		logger:   workflow.GetLogger(ctx),
		view:     ShareView{DataSpace: in.DataSpace},
		signals:  newInbox(),
	}
	checkProtocol(ShareWorkflowName, in.Protocol)
	s.budget = newRunBudget(s.settings)
	s.budget.listenUpgrade(ctx, s.signals, in.Protocol)
	if st := in.State; st != nil {
		s.acked, s.view, s.checkpoint, s.removalDeadline = st.Acked, st.View, st.Checkpoint, st.RemovalDeadline
		s.copyStartedAt, s.copiedAtStart = st.CopyStartedAt, st.CopiedAtStart
		s.view.DataSpace, s.view.Requested = in.DataSpace, ""
	}
	if in.Desired.Generation > s.acked {
		s.receive(in.Desired)
	} else {
		s.desired = in.Desired
	}
	// The start acknowledged the input: the connection derived this
	// state itself, and the start set the search attribute to it.
	s.reported = ShareReport{Generation: s.acked, View: s.view}
	s.published = s.view.InitializationStatus
	if st, ok := workflow.GetTypedSearchAttributes(ctx).GetKeyword(AttrInitializationStatus); ok {
		s.published = InitializationStatus(st)
	}
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryStatus, func() (ShareView, error) { return s.view, nil },
		queryOptions(describeShareStatus)); err != nil {
		return ShareView{}, fmt.Errorf("register status query: %w", err)
	}
	s.signals.listen(ctx, SignalShareDesired, func(ctx workflow.Context, raw json.RawMessage) {
		var d ShareDesired
		if err := decodeSignal(raw, &d); err != nil {
			s.logger.Error("share-desired ignored", "error", err)
			return
		}
		s.receive(d)
	})
	return s.run(ctx)
}

// errInterrupted stops a copy or removal between steps: a new desired state
// changed the work, or the run should continue as new.
var errInterrupted = errors.New("interrupted")

// share is the running state of a DataSpaceShareWorkflow. Its lifecycle is
// view.InitializationStatus: Activating (copying), Active, Error (waiting
// for a new generation) and Removing Sharing (removing); the share ends
// when the removal is done.
type share struct {
	in       ShareInput
	settings Settings
	logger   log.Logger
	view     ShareView
	signals  *inbox
	budget   *runBudget

	// desired is what the connection asks; acked is its generation.
	desired ShareDesired
	acked   int64
	// reported is the last report the connection accepted; answer asks for
	// a report even when nothing changed since.
	reported ShareReport
	answer   bool

	// checkpoint is the last record id the initial sync has copied up to.
	checkpoint string
	// removalDeadline is when the running removal must be done.
	removalDeadline time.Time
	// copyStartedAt and copiedAtStart are when the running first sync
	// started and how many records it had then: its rate.
	copyStartedAt time.Time
	copiedAtStart int
	// unavailableSince is when the last step found the org store
	// unreachable; zero while it is reachable.
	unavailableSince time.Time

	// published is the status last written to the search attribute.
	published InitializationStatus
}

// ackShare is the state a share enters when it acknowledges a new
// generation of its desired state: intent removed starts a removal, and a
// share in Error (or not started) tries its intent again. The share applies
// it when it receives the generation; under ProtocolDeliveryAck the
// connection applies it when the generation is delivered, so both agree
// without a report.
func ackShare(v ShareView, d ShareDesired) ShareView {
	v = ackIntent(v, d)
	// A first sync held while the connection is Inactive says so.
	switch {
	case d.Suspended && v.InitializationStatus == Activating:
		v.Waiting, v.CopyRate, v.EstimatedCompletion = contract.SuspendedWaiting, 0, nil
	case !d.Suspended && v.Waiting == contract.SuspendedWaiting:
		v.Waiting = ""
	}
	return v
}

// ackIntent is the part of ackShare that the intent decides.
func ackIntent(v ShareView, d ShareDesired) ShareView {
	switch {
	case d.Intent == IntentRemoved && v.InitializationStatus != RemovingSharing:
		v.InitializationStatus, v.Error = RemovingSharing, ""
		v.RecordsRemoved, v.RecordsToRemove = 0, 0
	case v.InitializationStatus == ShareError || v.InitializationStatus == "":
		v.Error = ""
		v.InitializationStatus = Activating
		if d.Intent == IntentRemoved {
			v.InitializationStatus = RemovingSharing
		}
	}
	return v
}

// receive takes a desired state. An older or equal generation changes
// nothing (it is a re-send); a new one is acknowledged and decides the work:
// intent removed starts a removal, and a share in Error tries its intent again.
func (s *share) receive(d ShareDesired) {
	if d.Generation <= s.acked {
		s.answer = true // a re-send: the connection missed a report
		s.desired.Complete = d.Complete
		return
	}
	s.answer = s.answer || d.Answer
	if s.desired.Suspended && !d.Suspended {
		// The rate starts again: the time suspended is not copying time.
		s.copyStartedAt = time.Time{}
	}
	s.acked, s.desired = d.Generation, d
	if d.Intent == IntentRemoved && s.view.InitializationStatus != RemovingSharing {
		s.removalDeadline = time.Time{}
	}
	s.view = ackShare(s.view, d)
	// The connection knows: it derived the same state from the delivery.
	s.reported.Generation = s.acked
	s.reported.View.InitializationStatus, s.reported.View.Error = s.view.InitializationStatus, s.view.Error
	s.reported.View.RecordsRemoved, s.reported.View.RecordsToRemove = s.view.RecordsRemoved, s.view.RecordsToRemove
}

func (s *share) run(ctx workflow.Context) (ShareView, error) {
	for {
		if err := s.report(ctx); err != nil {
			return s.orphan(ctx)
		}
		if s.budget.due(ctx) {
			// Reported first, so the next run starts from what the connection knows.
			return ShareView{}, continueAsNew(ctx, ShareWorkflowName, s.signals, func() any {
				next := s.in
				next.Protocol = s.budget.protocolAfter(ctx, s.in.Protocol)
				next.Desired = s.desired
				next.State = &ShareState{Acked: s.acked, View: s.view, Checkpoint: s.checkpoint, RemovalDeadline: s.removalDeadline,
					CopyStartedAt: s.copyStartedAt, CopiedAtStart: s.copiedAtStart}
				return next
			})
		}
		var err error
		switch {
		case s.view.InitializationStatus == Activating && s.desired.Suspended:
			// Held while the connection is Inactive: wait for a new generation.
			s.wait(ctx, nil)
			s.budget.count(ctx)
		case s.view.InitializationStatus == Activating:
			err = s.copyData(ctx)
		case s.view.InitializationStatus == RemovingSharing:
			err = s.removeData(ctx)
			if err == nil {
				s.view.Removed = true
				if s.desired.Complete {
					// The connection run that started this workflow reads
					// its result: completing tells it.
					s.details(ctx)
					return s.view, nil
				}
				if rerr := s.report(ctx); rerr != nil {
					s.logger.Warn("the data is removed but the connection could not be told", "error", rerr)
				}
				return s.view, nil
			}
		default: // Active or Error: wait for a new generation
			s.wait(ctx, nil)
			s.budget.count(ctx)
		}
		switch {
		case errors.Is(err, errInterrupted) || err == nil:
		case errors.Is(err, errOrphaned):
			return s.orphan(ctx)
		default:
			s.fail(ctx, err)
		}
	}
}

// wait blocks until a signal arrives or, when step is not nil, the step
// finishes, then handles every signal already buffered.
func (s *share) wait(ctx workflow.Context, step workflow.Future) {
	sel := workflow.NewSelector(ctx)
	s.signals.addTo(ctx, sel)
	if step != nil {
		sel.AddFuture(step, func(workflow.Future) {})
	}
	sel.Select(ctx)
	for sel.HasPending() {
		sel.Select(ctx)
	}
}

// copyData runs the initial sync step by step from the checkpoint. It
// returns nil once the data space is copied (the share is then Active),
// errInterrupted when a removal was asked for (the running step is cancelled
// and waited for, so a copy and a removal never overlap) or the run should
// continue as new, and the step's error when it failed for good.
func (s *share) copyData(ctx workflow.Context) error {
	ctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	if s.copyStartedAt.IsZero() {
		s.copyStartedAt, s.copiedAtStart = workflow.Now(ctx), s.view.RecordsCopied
	}
	actx := s.stepOptions(ctx, s.settings.InitialSyncRetry, fmt.Sprintf("copy records of %s to %s", s.in.DataSpace, s.in.Companion))
	for {
		step := workflow.ExecuteActivity(actx, acts.CopyRecords, activities.CopyInput{
			Home: s.in.Home, Companion: s.in.Companion, DataSpace: s.in.DataSpace,
			After: s.checkpoint, BatchSize: s.settings.BatchSize, MaxBatchSize: s.settings.MaxBatchSize, Budget: s.settings.StepBudget,
			UnavailableSince: s.unavailableSince,
		})
		for !step.IsReady() && s.view.InitializationStatus == Activating {
			s.wait(ctx, step)
			if s.report(ctx) != nil {
				cancel()
				_ = step.Get(ctx, nil)
				return errOrphaned
			}
		}
		if s.view.InitializationStatus != Activating {
			cancel()
			_ = step.Get(ctx, nil)
			return errInterrupted
		}
		var p activities.CopyProgress
		if err := step.Get(ctx, &p); err != nil {
			return err
		}
		s.checkpoint = p.After
		if p.Outage == nil || p.Total > 0 {
			s.view.RecordsCopied, s.view.RecordsTotal = p.Copied, p.Total
		}
		s.estimate(ctx)
		s.waiting(p.Outage)
		s.details(ctx)
		if p.Done {
			s.setStatus(ctx, ShareActive)
			return nil
		}
		if s.desired.Suspended {
			// The step is done and its checkpoint kept: hold here.
			s.view = ackShare(s.view, s.desired)
			s.details(ctx)
			if s.report(ctx) != nil {
				return errOrphaned
			}
			return errInterrupted
		}
		if s.report(ctx) != nil {
			return errOrphaned
		}
		if s.budget.count(ctx) {
			return errInterrupted
		}
	}
}

// removeData removes the data space's data from the companion step by step,
// within the removal deadline. New generations received meanwhile are
// acknowledged; the removal goes on.
func (s *share) removeData(ctx workflow.Context) error {
	deadline := s.settings.RemovalDeadline
	if s.removalDeadline.IsZero() {
		s.removalDeadline = workflow.Now(ctx).Add(deadline)
	}
	shown := s.removalDeadline
	s.view.RemovalDeadline = &shown
	defer func() { s.view.RemovalDeadline = nil }()
	ctx, cancel := workflow.WithCancel(ctx)
	done := false
	defer func() {
		// A finished removal ends the run, which drops the deadline timer:
		// cancelling it would only add an event.
		if !done {
			cancel()
		}
	}()
	timer := workflow.NewTimerWithOptions(ctx, max(s.removalDeadline.Sub(workflow.Now(ctx)), time.Millisecond),
		workflow.TimerOptions{Summary: "removal deadline"})
	actx := s.stepOptions(ctx, s.settings.ActivityRetry, fmt.Sprintf("remove %s from %s", s.in.DataSpace, s.in.Companion))
	for {
		step := workflow.ExecuteActivity(actx, acts.RemoveRecords, activities.RemoveInput{
			Home: s.in.Home, Companion: s.in.Companion, DataSpace: s.in.DataSpace,
			BatchSize: s.settings.BatchSize, MaxBatchSize: s.settings.MaxBatchSize, Budget: s.settings.StepBudget,
			UnavailableSince: s.unavailableSince,
		})
		for !step.IsReady() && !timer.IsReady() {
			sel := workflow.NewSelector(ctx)
			s.signals.addTo(ctx, sel)
			sel.AddFuture(step, func(workflow.Future) {})
			sel.AddFuture(timer, func(workflow.Future) {})
			sel.Select(ctx)
			// A removal goes on without its connection: an operator asked for it.
			_ = s.report(ctx)
		}
		if !step.IsReady() {
			cancel()
			_ = step.Get(ctx, nil)
			s.removalDeadline = time.Time{}
			return fmt.Errorf("removal did not finish within %s (%d of %d records removed); retry or unshare to continue",
				deadline, s.view.RecordsRemoved, s.view.RecordsToRemove)
		}
		var p activities.RemoveProgress
		if err := step.Get(ctx, &p); err != nil {
			s.removalDeadline = time.Time{}
			return err
		}
		s.view.RecordsRemoved += p.Removed
		if p.Outage == nil || p.Removed > 0 || p.Remaining > 0 {
			s.view.RecordsToRemove = s.view.RecordsRemoved + p.Remaining
		}
		s.waiting(p.Outage)
		s.details(ctx)
		if p.Done {
			s.removalDeadline = time.Time{}
			done = true
			return nil
		}
		// A removal goes on without its connection: an operator asked for it.
		_ = s.report(ctx)
		if s.budget.count(ctx) {
			return errInterrupted
		}
	}
}

// estimate sets the first sync's rate since it started and when it will be
// done at that rate, once it has copied records. The completion is an
// absolute time, so it does not age between reports.
func (s *share) estimate(ctx workflow.Context) {
	now := workflow.Now(ctx)
	moved, elapsed := s.view.RecordsCopied-s.copiedAtStart, now.Sub(s.copyStartedAt)
	if moved <= 0 || elapsed <= 0 {
		return
	}
	rate := float64(moved) / elapsed.Seconds()
	left := max(s.view.RecordsTotal-s.view.RecordsCopied, 0)
	eta := now.Add(time.Duration(float64(left) / rate * float64(time.Second))).Truncate(time.Second)
	s.view.CopyRate, s.view.EstimatedCompletion = math.Round(rate*10)/10, &eta
}

// waiting shows an outage of the org store that a step ended on, and keeps
// its start for the next step; a step without one clears both.
func (s *share) waiting(o *activities.Outage) {
	if o == nil {
		s.unavailableSince, s.view.Waiting = time.Time{}, ""
		return
	}
	s.unavailableSince, s.view.Waiting = o.Since, o.String()
}

// stepOptions are the options of a copy or removal step: bounded by the step
// budget, heartbeating, and waited for when cancelled so that a copy and a
// removal never overlap.
func (s *share) stepOptions(ctx workflow.Context, retry RetrySettings, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// A step ends after its budget, at the end of a batch; on a slow
		// store (seconds per statement) a batch can take minutes. The
		// heartbeat timeout, not this one, catches a worker that is gone.
		StartToCloseTimeout: s.settings.StepBudget + stepSlack,
		HeartbeatTimeout:    heartbeatTimeout,
		RetryPolicy:         retry.Policy(),
		WaitForCancellation: true,
		Summary:             summary,
	})
}

// fail puts the share in Error with the reason; a new generation leaves it.
func (s *share) fail(ctx workflow.Context, err error) {
	s.waiting(nil)
	s.view.Error = rootMessage(err)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == activities.ErrUnknownDataSpace {
		s.view.Error += "; unshare it"
	}
	s.logger.Warn("share failed", "dataSpace", s.in.DataSpace, "error", err)
	s.setStatus(ctx, ShareError)
}

// orphan ends a share whose connection workflow is gone. It leaves the
// companion's data as it is; the registry's reconciler restarts the
// connection, which restarts the share.
func (s *share) orphan(ctx workflow.Context) (ShareView, error) {
	s.view.Orphaned = orphanReason(ctx, s.in.Home, s.in.Companion) + "; data left as it is"
	s.logger.Error("share stopped", "reason", s.view.Orphaned)
	s.details(ctx)
	return s.view, nil
}

func (s *share) setStatus(ctx workflow.Context, st InitializationStatus) {
	s.view.InitializationStatus = st
	if st != Activating {
		s.copyStartedAt, s.copiedAtStart = time.Time{}, 0
		s.view.CopyRate, s.view.EstimatedCompletion = 0, nil
	}
	s.details(ctx)
}

// report tells the connection the acknowledged generation and the status,
// when either changed since the last report, and publishes the status in
// the search attribute. It fails only when the connection workflow is gone.
func (s *share) report(ctx workflow.Context) error {
	if s.published != s.view.InitializationStatus {
		s.published = s.view.InitializationStatus
		if err := workflow.UpsertTypedSearchAttributes(ctx, AttrInitializationStatus.ValueSet(string(s.published))); err != nil {
			s.logger.Warn("could not update search attributes", "error", err)
		}
		s.details(ctx)
	}
	r := ShareReport{Generation: s.acked, View: s.view}
	// progressOnly: only the counts changed, and the next report carries
	// newer ones.
	progressOnly := !s.answer && r.Generation == s.reported.Generation && r.View.InitializationStatus == s.reported.View.InitializationStatus &&
		r.View.Error == s.reported.View.Error && r.View.Waiting == s.reported.View.Waiting && !r.View.Removed
	if progressOnly && (sameProgress(r.View, s.reported.View)) {
		return nil
	}
	s.answer = false
	s.details(ctx)
	delivered, err := reportToConnection(ctx, s.in.Home, s.in.Companion, SignalShareReport, r, progressOnly)
	if delivered {
		s.reported = r
	}
	return err
}

// sameProgress reports whether two views count the same copied and removed
// records.
func sameProgress(a, b ShareView) bool {
	return a.RecordsCopied == b.RecordsCopied && a.RecordsTotal == b.RecordsTotal &&
		a.RecordsRemoved == b.RecordsRemoved && a.RecordsToRemove == b.RecordsToRemove
}

// details refreshes the one-line state shown in the Web UI.
func (s *share) details(ctx workflow.Context) {
	line := fmt.Sprintf("**%s → %s · %s**: %s — %s", s.in.Home, s.in.Companion, s.in.DataSpace,
		s.view.InitializationStatus, mdCell(shareDetail(s.view)))
	if s.view.Orphaned != "" {
		line += "\n\n" + mdCell(s.view.Orphaned)
	}
	workflow.SetCurrentDetails(ctx, line)
}
