package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
)

// heartbeatTimeout is how soon a copy or removal step on a crashed worker is
// retried elsewhere.
const heartbeatTimeout = 10 * time.Second

// DataSpaceShareWorkflow runs one share: the initial sync (Activating, then
// Active or Error), retries from Error, and the removal of the data space
// from the companion on unshare (Removing Sharing, bounded by a deadline).
// It reports every change to its connection by signal and returns the final
// view once the data is removed.
func DataSpaceShareWorkflow(ctx workflow.Context, in ShareInput) (ShareView, error) {
	s := &share{
		in:       in,
		settings: in.Settings.withDefaults(),
		logger:   workflow.GetLogger(ctx),
		view:     ShareView{DataSpace: in.DataSpace, InitializationStatus: Activating},
		unshare:  workflow.GetSignalChannel(ctx, MessageUnshare),
		retry:    workflow.GetSignalChannel(ctx, MessageRetry),
	}
	if st := in.State; st != nil {
		s.view, s.checkpoint, s.removing, s.removalDeadline = st.View, st.Checkpoint, st.Removing, st.RemovalDeadline
		s.view.DataSpace = in.DataSpace
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (ShareView, error) { return s.view, nil }); err != nil {
		return ShareView{}, fmt.Errorf("register status query: %w", err)
	}
	return s.run(ctx)
}

// errContinueAsNew stops a copy or removal between steps when the run's
// history is long enough to continue as new.
var errContinueAsNew = errors.New("continue as new")

// eventsPerStep is an upper bound of the history events one copy or removal
// step adds (the activity, its workflow tasks and the report signal).
const eventsPerStep = 15

// share is the running state of a DataSpaceShareWorkflow.
type share struct {
	in       ShareInput
	settings Settings
	logger   log.Logger
	view     ShareView

	// checkpoint is the last record id the initial sync has copied up to.
	checkpoint string
	// removing is set once an unshare has been received; from then on every
	// step serves the removal.
	removing bool
	// removalDeadline is when the running removal must be done.
	removalDeadline time.Time
	// stepsThisRun bounds a run deterministically, even where the history
	// length is not known (the SDK's test environment).
	stepsThisRun int

	unshare workflow.ReceiveChannel
	retry   workflow.ReceiveChannel
}

func (s *share) run(ctx workflow.Context) (ShareView, error) {
	if s.in.State == nil {
		s.report(ctx)
	}
	for {
		if s.removing {
			err := s.removeData(ctx)
			switch {
			case errors.Is(err, errContinueAsNew):
				return ShareView{}, s.continueAsNew(ctx)
			case err == nil:
				for s.unshare.ReceiveAsync(nil) {
					// Unshares repeated during the removal are done with it.
				}
				s.view.Removed = true
				s.report(ctx)
				return s.view, nil
			}
			s.fail(ctx, err)
			s.waitInError(ctx)
			continue
		}
		err := s.copyData(ctx)
		switch {
		case errors.Is(err, errContinueAsNew):
			return ShareView{}, s.continueAsNew(ctx)
		case s.removing:
		case err != nil:
			s.fail(ctx, err)
			s.waitInError(ctx)
		default:
			s.setStatus(ctx, ShareActive)
			s.awaitUnshare(ctx, nil, "the share is Active")
		}
	}
}

// shouldContinueAsNew reports whether the run's history is long enough to
// continue as new between two steps.
func (s *share) shouldContinueAsNew(ctx workflow.Context) bool {
	s.stepsThisRun++
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= s.settings.EventBudget ||
		s.stepsThisRun >= max(1, s.settings.EventBudget/eventsPerStep)
}

// continueAsNew carries the share, and an unshare not yet received, to the
// next run. Retries are only valid in Error, where no run continues as new.
func (s *share) continueAsNew(ctx workflow.Context) error {
	for s.unshare.ReceiveAsync(nil) {
		s.removing = true
	}
	for s.retry.ReceiveAsync(nil) {
		s.logger.Warn("retry ignored: the share is not in Error")
	}
	return workflow.NewContinueAsNewError(ctx, ShareWorkflowName, ShareInput{
		Home: s.in.Home, Companion: s.in.Companion, DataSpace: s.in.DataSpace, Settings: s.in.Settings,
		State: &ShareState{View: s.view, Checkpoint: s.checkpoint, Removing: s.removing, RemovalDeadline: s.removalDeadline},
	})
}

// copyData runs the initial sync step by step from the checkpoint until the
// data space is copied, a step fails for good, or an unshare arrives (which
// cancels the running step and waits for it to stop).
func (s *share) copyData(ctx workflow.Context) error {
	s.setStatus(ctx, Activating)
	ctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	actx := s.stepOptions(ctx, s.settings.InitialSyncRetry, fmt.Sprintf("copy records of %s to %s", s.in.DataSpace, s.in.Companion))
	for {
		step := workflow.ExecuteActivity(actx, acts.CopyRecords, activities.CopyInput{
			Home: s.in.Home, Companion: s.in.Companion, DataSpace: s.in.DataSpace,
			After: s.checkpoint, BatchSize: s.settings.BatchSize, Budget: s.settings.StepBudget,
		})
		if s.awaitUnshare(ctx, step, "the share is not in Error"); s.removing {
			cancel()
			_ = step.Get(ctx, nil)
			return nil
		}
		var p activities.CopyProgress
		if err := step.Get(ctx, &p); err != nil {
			return err
		}
		s.checkpoint = p.After
		s.view.RecordsCopied, s.view.RecordsTotal = p.Copied, p.Total
		s.report(ctx)
		if p.Done {
			return nil
		}
		if s.shouldContinueAsNew(ctx) {
			return errContinueAsNew
		}
	}
}

// awaitUnshare waits until an unshare arrives or, when step is not nil, the
// step finishes first. Retries are not valid while it waits (why says so)
// and are dropped.
func (s *share) awaitUnshare(ctx workflow.Context, step workflow.Future, why string) {
	for !s.removing && (step == nil || !step.IsReady()) {
		sel := workflow.NewSelector(ctx)
		if step != nil {
			sel.AddFuture(step, func(workflow.Future) {})
		}
		sel.AddReceive(s.unshare, func(ch workflow.ReceiveChannel, _ bool) {
			ch.Receive(ctx, nil)
			s.removing = true
		})
		sel.AddReceive(s.retry, func(ch workflow.ReceiveChannel, _ bool) {
			ch.Receive(ctx, nil)
			s.logger.Warn("retry ignored: " + why)
		})
		sel.Select(ctx)
	}
}

// removeData removes the data space's data from the companion step by step,
// within the removal deadline.
func (s *share) removeData(ctx workflow.Context) error {
	deadline := s.settings.RemovalDeadline
	if s.removalDeadline.IsZero() {
		s.view.RecordsRemoved, s.view.RecordsToRemove = 0, 0
		s.removalDeadline = workflow.Now(ctx).Add(deadline)
	}
	s.setStatus(ctx, RemovingSharing)
	ctx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	timer := workflow.NewTimerWithOptions(ctx, max(s.removalDeadline.Sub(workflow.Now(ctx)), time.Millisecond),
		workflow.TimerOptions{Summary: "removal deadline"})
	actx := s.stepOptions(ctx, s.settings.ActivityRetry, fmt.Sprintf("remove %s from %s", s.in.DataSpace, s.in.Companion))
	for {
		step := workflow.ExecuteActivity(actx, acts.RemoveRecords, activities.RemoveInput{
			Home: s.in.Home, Companion: s.in.Companion, DataSpace: s.in.DataSpace,
			BatchSize: s.settings.BatchSize, Budget: s.settings.StepBudget,
		})
		expired := false
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(step, func(workflow.Future) {})
		sel.AddFuture(timer, func(workflow.Future) { expired = true })
		sel.Select(ctx)
		if expired {
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
		s.view.RecordsToRemove = s.view.RecordsRemoved + p.Remaining
		s.report(ctx)
		if p.Done {
			s.removalDeadline = time.Time{}
			return nil
		}
		if s.shouldContinueAsNew(ctx) {
			return errContinueAsNew
		}
	}
}

// stepOptions are the options of a copy or removal step: bounded by the step
// budget, heartbeating, and waited for when cancelled so that a copy and a
// removal never overlap.
func (s *share) stepOptions(ctx workflow.Context, retry RetrySettings, summary string) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: s.settings.StepBudget + time.Minute,
		HeartbeatTimeout:    heartbeatTimeout,
		RetryPolicy:         retry.policy(),
		WaitForCancellation: true,
		Summary:             summary,
	})
}

// fail puts the share in Error with the reason.
func (s *share) fail(ctx workflow.Context, err error) {
	s.view.Error = rootMessage(err)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == activities.ErrUnknownDataSpace {
		s.view.Error += "; unshare it"
	}
	s.logger.Warn("share failed", "dataSpace", s.in.DataSpace, "error", err)
	s.setStatus(ctx, ShareError)
}

// waitInError waits for a retry (resume the failed phase from its
// checkpoint) or an unshare (remove the data).
func (s *share) waitInError(ctx workflow.Context) {
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(s.retry, func(ch workflow.ReceiveChannel, _ bool) { ch.Receive(ctx, nil) })
	sel.AddReceive(s.unshare, func(ch workflow.ReceiveChannel, _ bool) {
		ch.Receive(ctx, nil)
		s.removing = true
	})
	sel.Select(ctx)
	s.view.Error = ""
}

func (s *share) setStatus(ctx workflow.Context, st InitializationStatus) {
	if s.view.InitializationStatus == st {
		return
	}
	s.view.InitializationStatus = st
	if err := workflow.UpsertTypedSearchAttributes(ctx, AttrInitializationStatus.ValueSet(string(st))); err != nil {
		s.logger.Warn("could not update search attributes", "error", err)
	}
	s.report(ctx)
}

// report tells the connection the share's state and refreshes the UI details.
func (s *share) report(ctx workflow.Context) {
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**%s → %s · %s**: %s — %s",
		s.in.Home, s.in.Companion, s.in.DataSpace, s.view.InitializationStatus, mdCell(shareDetail(s.view))))
	parent := ConnectionWorkflowID(s.in.Home, s.in.Companion)
	if err := workflow.SignalExternalWorkflow(ctx, parent, "", SignalShareReport, s.view).Get(ctx, nil); err != nil {
		s.logger.Warn("could not report to the connection", "connection", parent, "error", err)
	}
}
