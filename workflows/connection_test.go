package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
)

const (
	home      = "acme"
	companion = "acme-emea"
)

// harness runs a ConnectionWorkflow with its real children in the SDK's test
// environment, activities served by a fakeOrgs, time skipped.
type harness struct {
	t    *testing.T
	env  *testsuite.TestWorkflowEnvironment
	orgs *fakeOrgs
	// start is the workflow clock when the harness was made; scheduled and
	// ran count the callbacks of at, so a check that never runs fails the test.
	start          time.Time
	scheduled, ran int
	// uncounted leaves the count of callbacks to the test itself.
	uncounted bool
	// protocol is the connection's (CurrentProtocol unless a test sets it).
	protocol Protocol
	// relayed lists the children's reports delivered to the connection.
	relayed *reportLog
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(testLogger())
	env := suite.NewTestWorkflowEnvironment()
	relayed := register(env)
	f := newFakeOrgs()
	env.OnActivity(acts.Handshake, mock.Anything, mock.Anything).Return(f.Handshake)
	env.OnActivity(acts.CheckHealth, mock.Anything, mock.Anything).Return(f.CheckHealth)
	env.OnActivity(acts.CopyRecords, mock.Anything, mock.Anything).Return(f.CopyRecords)
	env.OnActivity(acts.RemoveRecords, mock.Anything, mock.Anything).Return(f.RemoveRecords)
	env.OnActivity(acts.CountPendingMetadata, mock.Anything, mock.Anything).Return(f.CountPendingMetadata)
	env.OnActivity(acts.ApplyMetadata, mock.Anything, mock.Anything).Return(f.ApplyMetadata)
	env.OnActivity(acts.RecordSyncFailure, mock.Anything, mock.Anything).Return(f.RecordSyncFailure)
	env.OnActivity(acts.Disconnect, mock.Anything, mock.Anything).Return(f.Disconnect)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: ConnectionWorkflowID(home, companion), TaskQueue: TaskQueue})
	env.SetOnActivityCanceledListener(func(info *activity.Info) { f.cancel(*info) })
	env.SetTestTimeout(time.Minute)
	h := &harness{t: t, env: env, orgs: f, start: env.Now(), protocol: CurrentProtocol, relayed: relayed}
	t.Cleanup(func() {
		if !t.Failed() && !h.uncounted {
			assert.Equal(t, h.scheduled, h.ran, "callbacks scheduled by at that never ran")
		}
	})
	return h
}

// register registers the three workflows and the activities under their
// contract names. The children's reports are relayed, and logged.
func register(env *testsuite.TestWorkflowEnvironment) *reportLog {
	env.RegisterWorkflowWithOptions(ConnectionWorkflow, workflow.RegisterOptions{Name: ConnectionWorkflowName})
	env.RegisterWorkflowWithOptions(DataSpaceShareWorkflow, workflow.RegisterOptions{Name: ShareWorkflowName})
	env.RegisterWorkflowWithOptions(MetadataSyncWorkflow, workflow.RegisterOptions{Name: MetadataSyncWorkflowName})
	env.RegisterActivity(&activities.Activities{})
	return relayReports(env)
}

// reportLog lists the reports relayReports delivered, in order. A report
// refuse returns true for fails, as when the server does not take the
// signal; refused lists every such attempt.
type reportLog struct {
	mu      sync.Mutex
	reports []activities.ReportInput
	refuse  func(activities.ReportInput) bool
	refused []refusedReport
}

// refusedReport is one attempt of a report that failed.
type refusedReport struct {
	in      activities.ReportInput
	attempt int32
}

// shares returns the share reports delivered, decoded.
func (l *reportLog) shares(t *testing.T) []ShareView {
	l.mu.Lock()
	defer l.mu.Unlock()
	var views []ShareView
	for _, in := range l.reports {
		if in.Signal == SignalShareReport {
			var r ShareReport
			require.NoError(t, json.Unmarshal(in.Report, &r))
			views = append(views, r.View)
		}
	}
	return views
}

// relayReports delivers the reports children send with ReportToConnection.
// The test environment's workflows may be touched on its own goroutine
// only, and a local activity runs on another: the activity only records
// the report, and the signal goes out when the environment hands over the
// activity's completion.
func relayReports(env *testsuite.TestWorkflowEnvironment) *reportLog {
	log := &reportLog{}
	var mu sync.Mutex
	pending := map[string]activities.ReportInput{}
	key := func(info activity.Info) string { return info.WorkflowExecution.ID + "/" + info.ActivityID }
	env.OnActivity(acts.ReportToConnection, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.ReportInput) error {
		log.mu.Lock()
		refused := log.refuse != nil && log.refuse(in)
		if refused {
			log.refused = append(log.refused, refusedReport{in, activity.GetInfo(ctx).Attempt})
		}
		log.mu.Unlock()
		if refused {
			return errors.New("injected: the server did not take the signal")
		}
		mu.Lock()
		defer mu.Unlock()
		pending[key(activity.GetInfo(ctx))] = in
		return nil
	})
	env.SetOnLocalActivityCompletedListener(func(info *activity.Info, _ converter.EncodedValue, err error) {
		mu.Lock()
		in, ok := pending[key(*info)]
		delete(pending, key(*info))
		mu.Unlock()
		if ok && err == nil && env.SignalWorkflowByID(in.WorkflowID, in.Signal, in.Report) == nil {
			log.mu.Lock()
			log.reports = append(log.reports, in)
			log.mu.Unlock()
		}
	})
	return log
}

func testSettings() Settings {
	s := DefaultSettings()
	s.InitialSyncRetry = RetrySettings{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second, MaximumAttempts: 3}
	s.ActivityRetry = RetrySettings{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Second, MaximumAttempts: 3}
	return s
}

// at runs fn when the workflow clock reaches d after the start, also when
// called from another callback. Every callback is counted: the test fails
// if one scheduled never ran (for example because the workflow ended first).
func (h *harness) at(d time.Duration, fn func()) {
	h.scheduled++
	delay := d - h.env.Now().Sub(h.start)
	require.Positive(h.t, delay, "callback at %s scheduled too late", d)
	h.env.RegisterDelayedCallback(func() { h.ran++; fn() }, delay)
}

func (h *harness) run(s Settings) {
	h.runInput(ConnectionInput{Home: home, Companion: companion, Settings: s, Protocol: h.protocol})
}

func (h *harness) runInput(in ConnectionInput) {
	if in.State == nil && h.protocol < ProtocolPublished {
		// A connection started before the workflow chose the protocol: its
		// history has no marker, and it runs the starter's.
		h.env.OnGetVersion(versionProtocolChosenByWorkflow, workflow.DefaultVersion, chosenProtocolVersion).Return(workflow.DefaultVersion)
	}
	if in.State == nil && h.protocol >= ProtocolPublished && h.protocol < CurrentProtocol {
		// A connection started by an earlier release: its marker names
		// the version that chose its protocol.
		for v, p := range chosenProtocols {
			if p == h.protocol {
				h.env.OnGetVersion(versionProtocolChosenByWorkflow, workflow.DefaultVersion, chosenProtocolVersion).Return(v)
			}
		}
	}
	h.env.ExecuteWorkflow(ConnectionWorkflow, in)
	require.True(h.t, h.env.IsWorkflowCompleted(), "workflow did not complete")
}

// watch does what the fleet watcher does when a connection's health
// changed: it tells the connection (SignalWatch).
func (h *harness) watch() {
	h.t.Helper()
	res, err := h.orgs.CheckHealth(context.Background(), activities.HealthInput{Home: home, Companion: companion})
	require.NoError(h.t, err)
	h.env.SignalWorkflow(SignalWatch, WatchReport{Health: res, At: h.env.Now()})
}

// wakeMetadata does what the fleet watcher does when changes arrive for a
// metadata sync that waits for them (SignalMetadataWake).
func (h *harness) wakeMetadata(pending int) {
	h.t.Helper()
	require.NoError(h.t, h.env.SignalWorkflowByID(MetadataSyncWorkflowID(home, companion), SignalMetadataWake,
		MetadataWake{Pending: pending, At: h.env.Now()}))
}

func (h *harness) status() StatusView {
	h.t.Helper()
	v, err := h.env.QueryWorkflow(QueryStatus)
	require.NoError(h.t, err)
	var sv StatusView
	require.NoError(h.t, v.Get(&sv))
	return sv
}

func (h *harness) share(name string, ds string) {
	h.env.SignalWorkflow(name, DataSpaceRequest{DataSpace: ds})
}

// updateOutcome is filled in when the workflow has processed an update.
type updateOutcome struct {
	done     bool
	rejected error
	failed   error
	// view is the update's answer.
	view StatusView
	// validated, if set, is called right after the validator ran, with the
	// state it saw: rejected is nil when the update was accepted.
	validated func(rejected error)
}

// update sends an update; its outcome is known once the workflow has run,
// so tests check it in a later callback or at the end.
func (h *harness) update(name string, args ...any) *updateOutcome {
	return h.updateWith(&updateOutcome{}, name, args...)
}

// updateWith sends an update whose outcome fills out.
func (h *harness) updateWith(out *updateOutcome, name string, args ...any) *updateOutcome {
	h.env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
		OnReject: func(err error) {
			out.rejected, out.done = err, true
			if out.validated != nil {
				out.validated(err)
			}
		},
		OnAccept: func() {
			if out.validated != nil {
				out.validated(nil)
			}
		},
		OnComplete: func(v any, err error) {
			out.failed, out.done = err, true
			if view, ok := v.(StatusView); ok {
				out.view = view
			}
		},
	}, args...)
	return out
}

// accepted asserts that the update was validated and completed.
func (o *updateOutcome) accepted(t *testing.T) {
	t.Helper()
	require.True(t, o.done, "update not processed")
	assert.NoError(t, o.rejected)
	assert.NoError(t, o.failed)
}

func (h *harness) final() StatusView {
	h.t.Helper()
	require.NoError(h.t, h.env.GetWorkflowError())
	var v StatusView
	require.NoError(h.t, h.env.GetWorkflowResult(&v))
	return v
}

func shareOf(t *testing.T, v StatusView, ds string) ShareView {
	t.Helper()
	for _, s := range v.DataSpaces {
		if s.DataSpace == ds {
			return s
		}
	}
	t.Fatalf("data space %s not in status %+v", ds, v.DataSpaces)
	return ShareView{}
}

func TestIneligibleCompanionEndsTheWorkflow(t *testing.T) {
	h := newHarness(t)
	h.orgs.ineligible = &activities.Ineligibility{Rule: activities.RuleSameKind, Message: "same-kind: acme is production and acme-sbx is sandbox"}
	h.run(testSettings())

	err := h.env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "want an application error, got %v", err)
	assert.Equal(t, activities.ErrIneligible, appErr.Type())
	assert.Contains(t, appErr.Error(), "same-kind")
	assert.False(t, h.orgs.registered)
}

// TestHandshakeWaitsForTheStore: a handshake that finds the org store
// unreachable keeps the connection Connecting, says why, and is tried again
// until the store answers; past the outage limit the connection ends with
// the store's error.
func TestHandshakeWaitsForTheStore(t *testing.T) {
	h := newHarness(t)
	h.orgs.storeDown = 3
	h.at(5*time.Second, func() {
		v := h.status()
		assert.Equal(t, Connecting, v.Status)
		assert.Contains(t, v.Reason, "waiting for the org store")
	})
	h.at(time.Minute, func() {
		v := h.status()
		assert.Equal(t, Incomplete, v.Status, "the handshake passed once the store answered")
		assert.Empty(t, v.Reason)
		h.env.SignalWorkflow(MessageDisconnect, nil)
	})
	h.run(testSettings())
	require.NoError(t, h.env.GetWorkflowError())
	assert.Equal(t, 1, h.orgs.deregistrations, "registered once, deregistered by the disconnect")
	assert.Zero(t, h.orgs.storeDown, "every failing handshake was tried")
	assert.Equal(t, Disconnected, h.final().Status)

	long := newHarness(t)
	long.orgs.storeDown = 1000
	long.env.SetTestTimeout(time.Minute)
	long.run(testSettings())
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, long.env.GetWorkflowError(), &appErr)
	assert.Equal(t, activities.ErrStoreUnavailable, appErr.Type(), "past the limit the connection ends with the store's error")
	assert.False(t, long.orgs.registered)
	assert.InDelta(t, int(handshakeOutageLimit/handshakeRetry)+1, 1000-long.orgs.storeDown, 1, "tried every %s for %s", handshakeRetry, handshakeOutageLimit)
}

func TestShareBecomesActiveAndDisconnectRemovesIt(t *testing.T) {
	h := newHarness(t)
	h.at(time.Second, func() {
		v := h.status()
		assert.Equal(t, Incomplete, v.Status)
		h.share(MessageShare, "default")
	})
	h.at(time.Minute, func() {
		v := h.status()
		assert.Equal(t, Active, v.Status)
		s := shareOf(t, v, "default")
		assert.Equal(t, ShareActive, s.InitializationStatus)
		assert.Equal(t, 25, s.RecordsCopied)
		assert.Equal(t, 25, s.RecordsTotal)
		assert.Equal(t, SyncSucceeded, v.MetadataSync.Status)
		h.env.SignalWorkflow(MessageDisconnect, nil)
	})
	h.run(testSettings())

	v := h.final()
	assert.Equal(t, Disconnected, v.Status)
	assert.Empty(t, v.DataSpaces)
	assert.Empty(t, h.orgs.copied, "companion data left behind")
	assert.Equal(t, 1, h.orgs.deregistrations)
}

// TestChildrenReportProgress: from ProtocolProgressReport on, a share
// reports its progress after each copy or removal step that did not finish,
// and the metadata sync each round, so the connection's own answer holds
// every count its status shows. Before, children report status changes only.
func TestChildrenReportProgress(t *testing.T) {
	for _, tc := range []struct {
		protocol Protocol
		// shares are the share reports delivered: status, copied/total, removed/to remove.
		shares []string
		// rounds is the connection's count of metadata rounds after the third round.
		rounds int
	}{
		{ProtocolPublished, []string{
			"Activating 10/25 0/0", "Activating 20/25 0/0", "Active 25/25 0/0",
			"Removing Sharing 25/25 10/25", "Removing Sharing 25/25 20/25",
		}, 3},
	} {
		t.Run(fmt.Sprintf("protocol %d", tc.protocol), func(t *testing.T) {
			h := newHarness(t)
			h.protocol = tc.protocol
			h.at(time.Second, func() { h.share(MessageShare, "default") })
			h.at(time.Minute, func() { h.orgs.addChanges("default", 3) })
			// Rounds run 15, 30 and 45 minutes after the sync started: the
			// first counts the changes, the second applies them, the third
			// changes no status.
			h.at(50*time.Minute, func() {
				v := h.status()
				assert.Equal(t, tc.protocol, v.Protocol)
				assert.Equal(t, SyncSucceeded, v.MetadataSync.Status)
				assert.Equal(t, tc.rounds, v.MetadataSync.Rounds)
				require.NotNil(t, v.MetadataSync.LastSucceededAt)
				assert.WithinDuration(t, h.start.Add(time.Duration(tc.rounds)*15*time.Minute), *v.MetadataSync.LastSucceededAt, 10*time.Second)
				var syncStatuses []string
				for _, tr := range v.Transitions {
					if tr.Subject == subjectMetadataSync {
						syncStatuses = append(syncStatuses, tr.Status)
					}
				}
				want := []string{"Succeeded", "Pending", "Succeeded"}
				if tc.protocol >= ProtocolProgressReport {
					want = []string{"Succeeded", "Pending", "In Progress", "Succeeded"}
				}
				assert.Equal(t, want, syncStatuses)
				h.env.SignalWorkflow(MessageDisconnect, nil)
			})
			h.run(testSettings())

			assert.Equal(t, Disconnected, h.final().Status)
			var got []string
			for _, v := range h.relayed.shares(t) {
				got = append(got, shareLine(v))
			}
			assert.Equal(t, tc.shares, got)
			assert.Equal(t, 3, len(h.orgs.applied), "each change applied")
		})
	}
}

// TestProgressReportsAreTriedOnce: a progress report the server does not
// take is not retried, so it holds up no copy or removal step; the next
// report carries newer counts, and a change of status is still delivered.
func TestProgressReportsAreTriedOnce(t *testing.T) {
	h := newHarness(t)
	h.relayed.refuse = func(in activities.ReportInput) bool {
		var r ShareReport
		return in.Signal == SignalShareReport && json.Unmarshal(in.Report, &r) == nil &&
			r.View.InitializationStatus == Activating && r.View.RecordsCopied < r.View.RecordsTotal
	}
	shareActiveThenDisconnect(t, h)

	var refused, delivered []string
	for _, f := range h.relayed.refused {
		var r ShareReport
		require.NoError(t, json.Unmarshal(f.in.Report, &r))
		refused = append(refused, fmt.Sprintf("%s %d/%d attempt %d", r.View.InitializationStatus, r.View.RecordsCopied, r.View.RecordsTotal, f.attempt))
	}
	for _, v := range h.relayed.shares(t) {
		delivered = append(delivered, shareLine(v))
	}
	// A report not delivered is sent again at the share's next report, here
	// when the next step ends, each time in one attempt.
	assert.Equal(t, []string{"Activating 10/25 attempt 1", "Activating 10/25 attempt 1", "Activating 20/25 attempt 1", "Activating 20/25 attempt 1"}, refused)
	assert.Equal(t, []string{"Active 25/25 0/0", "Removing Sharing 25/25 10/25", "Removing Sharing 25/25 20/25"}, delivered)
}

// shareActiveThenDisconnect shares the default data space, expects it
// Active and copied 10 minutes later, and disconnects.
func shareActiveThenDisconnect(t *testing.T, h *harness) {
	t.Helper()
	h.at(time.Second, func() { h.share(MessageShare, "default") })
	h.at(10*time.Minute, func() {
		s := shareOf(t, h.status(), "default")
		assert.Equal(t, ShareActive, s.InitializationStatus)
		assert.Equal(t, 25, s.RecordsCopied)
		h.env.SignalWorkflow(MessageDisconnect, nil)
	})
	h.run(testSettings())
	assert.Equal(t, Disconnected, h.final().Status)
}

// shareLine is a share report in one line: status, copied/total, removed/to remove.
func shareLine(v ShareView) string {
	return fmt.Sprintf("%s %d/%d %d/%d", v.InitializationStatus, v.RecordsCopied, v.RecordsTotal, v.RecordsRemoved, v.RecordsToRemove)
}

func TestInitialSyncFailingTwiceThenSucceeding(t *testing.T) {
	h := newHarness(t)
	h.orgs.copyFailures["default"] = 2
	shareActiveThenDisconnect(t, h)
}

func TestExhaustedRetriesGoToErrorThenRetryActivates(t *testing.T) {
	h := newHarness(t)
	h.orgs.copyFailures["default"] = 3 // the attempt limit
	var retry *updateOutcome
	h.at(time.Second, func() { h.share(MessageShare, "default") })
	h.at(10*time.Minute, func() {
		v := h.status()
		s := shareOf(t, v, "default")
		assert.Equal(t, ShareError, s.InitializationStatus)
		assert.Contains(t, s.Error, "injected transient failure")
		assert.Equal(t, Active, v.Status, "a share in Error keeps the connection Active")
		retry = h.update(MessageRetry, DataSpaceRequest{DataSpace: "default"})
	})
	h.at(20*time.Minute, func() {
		retry.accepted(t)
		s := shareOf(t, h.status(), "default")
		assert.Equal(t, ShareActive, s.InitializationStatus)
		assert.Empty(t, s.Error)
		h.env.SignalWorkflow(MessageDisconnect, nil)
	})
	h.run(testSettings())
	assert.Equal(t, Disconnected, h.final().Status)
}

// TestDeliveryAcknowledgesRequests: under ProtocolDeliveryAck the start of a
// share's workflow, and the delivery of a signal to it, acknowledge the
// request. An update answers with the state the share entered, at once,
// although the share reports nothing until it changes state itself (and no
// health check runs to ask it).
func TestDeliveryAcknowledgesRequests(t *testing.T) {
	h := newHarness(t)
	s := testSettings()
	s.HealthCheckInterval = 24 * time.Hour
	h.orgs.copyDelay = time.Second
	var share, unshare *updateOutcome
	h.at(time.Second, func() { share = h.update(MessageShare, DataSpaceRequest{DataSpace: "default"}) })
	h.at(1500*time.Millisecond, func() {
		share.accepted(t)
		v := shareOf(t, share.view, "default")
		assert.Equal(t, Activating, v.InitializationStatus, "the answer to share")
		assert.Empty(t, v.Requested, "the start acknowledged the share")
		h.orgs.set(func(f *fakeOrgs) { f.copyDelay = 0 })
		unshare = h.update(MessageUnshare, DataSpaceRequest{DataSpace: "default"})
	})
	h.at(1600*time.Millisecond, func() {
		unshare.accepted(t)
		v := shareOf(t, unshare.view, "default")
		assert.Equal(t, RemovingSharing, v.InitializationStatus, "the answer to unshare")
		assert.Empty(t, v.Requested, "the delivery acknowledged the unshare")
	})
	h.at(time.Minute, func() {
		assert.Empty(t, h.status().DataSpaces)
		h.env.SignalWorkflow(MessageDisconnect, nil)
	})
	h.run(s)
	assert.Equal(t, Disconnected, h.final().Status)
}

func TestUnshareDuringActivating(t *testing.T) {
	h := newHarness(t)
	h.orgs.copyDelay = time.Second
	h.at(time.Second, func() { h.share(MessageShare, "default") })
	h.at(1500*time.Millisecond, func() {
		assert.Equal(t, Activating, shareOf(t, h.status(), "default").InitializationStatus)
		h.orgs.set(func(f *fakeOrgs) { f.copyDelay = 0 })
		h.share(MessageUnshare, "default")
	})
	h.at(time.Minute, func() {
		v := h.status()
		assert.Empty(t, v.DataSpaces)
		assert.Equal(t, Incomplete, v.Status, "the last share gone leaves the connection Incomplete")
		h.env.SignalWorkflow(MessageDisconnect, nil)
	})
	h.run(testSettings())
	assert.Equal(t, Disconnected, h.final().Status)
	assert.Positive(t, h.orgs.removeCalls)
}

func TestRemovalDeadlineGoesToError(t *testing.T) {
	h := newHarness(t)
	s := testSettings()
	s.RemovalDeadline = 200 * time.Millisecond
	var retry *updateOutcome
	h.at(time.Second, func() { h.share(MessageShare, "default") })
	h.at(time.Minute, func() {
		h.orgs.set(func(f *fakeOrgs) { f.removeDelay = time.Second })
		h.share(MessageUnshare, "default")
	})
	h.at(2*time.Minute, func() {
		sh := shareOf(t, h.status(), "default")
		assert.Equal(t, ShareError, sh.InitializationStatus)
		assert.Contains(t, sh.Error, "removal did not finish within 200ms")
		h.orgs.set(func(f *fakeOrgs) { f.removeDelay = 0 })
		// Retry resumes the removal.
		retry = h.update(MessageRetry, DataSpaceRequest{DataSpace: "default"})
	})
	h.at(3*time.Minute, func() {
		retry.accepted(t)
		v := h.status()
		assert.Empty(t, v.DataSpaces)
		assert.Equal(t, Incomplete, v.Status)
		h.env.SignalWorkflow(MessageDisconnect, nil)
	})
	h.run(s)
	assert.Equal(t, Disconnected, h.final().Status)
}

func TestLastUnshareReturnsToIncomplete(t *testing.T) {
	h := newHarness(t)
	h.at(time.Second, func() {
		h.share(MessageShare, "default")
		h.share(MessageShare, "marketing")
	})
	h.at(time.Minute, func() { h.share(MessageUnshare, "default") })
	h.at(2*time.Minute, func() {
		v := h.status()
		assert.Equal(t, Active, v.Status, "one share left")
		assert.Len(t, v.DataSpaces, 1)
		h.share(MessageUnshare, "marketing")
	})
	h.at(3*time.Minute, func() {
		v := h.status()
		assert.Equal(t, Incomplete, v.Status)
		assert.Empty(t, v.DataSpaces)
		h.env.SignalWorkflow(MessageDisconnect, nil)
	})
	h.run(testSettings())
	assert.Equal(t, Disconnected, h.final().Status)
}

func TestLicenceExpiryMakesInactiveAndRenewalRestores(t *testing.T) {
	h := newHarness(t)
	h.orgs.addChanges("default", 2)
	var share, recheck *updateOutcome
	h.at(time.Second, func() { h.share(MessageShare, "default") })
	h.at(time.Minute, func() { h.orgs.set(func(f *fakeOrgs) { f.licenceExpired = true }) })
	// The fleet watcher's next sweep finds the expiry and tells the
	// connection, which waits without a health-check timer.
	h.at(5*time.Minute, h.watch)
	h.at(6*time.Minute, func() {
		v := h.status()
		assert.Equal(t, Inactive, v.Status, "the watcher's sweep finds the expiry")
		assert.Contains(t, v.Reason, "licence")
		assert.Equal(t, ShareActive, shareOf(t, v, "default").InitializationStatus)
		share = h.update(MessageShare, DataSpaceRequest{DataSpace: "marketing"})
		h.orgs.set(func(f *fakeOrgs) { f.licenceExpired = false })
	})
	h.at(7*time.Minute, func() {
		assert.ErrorContains(t, share.rejected, "Inactive")
		assert.Equal(t, RefusalConnectionInactive, refusalKind(share.rejected))
		assert.Equal(t, Inactive, h.status().Status, "nothing changes before a check")
		recheck = h.update(MessageRecheck)
	})
	h.at(8*time.Minute, func() {
		recheck.accepted(t)
		v := h.status()
		assert.Equal(t, Active, v.Status)
		assert.Empty(t, v.Reason)
		assert.Equal(t, ShareActive, shareOf(t, v, "default").InitializationStatus)
	})
	h.at(40*time.Minute, func() {
		v := h.status()
		assert.Equal(t, SyncSucceeded, v.MetadataSync.Status, "metadata sync resumed after recovery")
		h.env.SignalWorkflow(MessageDisconnect, nil)
	})
	h.run(testSettings())
	assert.Equal(t, Disconnected, h.final().Status)
	for seq, n := range h.orgs.applied {
		assert.Equal(t, 1, n, "change %d applied %d times", seq, n)
	}
	assert.Len(t, h.orgs.applied, 2)
}

func TestConflictPausesAndResumeAppliesEachChangeOnce(t *testing.T) {
	h := newHarness(t)
	var resume *updateOutcome
	h.at(time.Second, func() { h.share(MessageShare, "default") })
	h.at(time.Minute, func() {
		h.orgs.addChanges("default", 5)
		h.orgs.set(func(f *fakeOrgs) { f.conflicts[3] = true })
	})
	// The watcher's sweep at 15m wakes the waiting sync, which counts 5;
	// the round at 30m applies 1-2 and stops at 3.
	h.at(15*time.Minute, func() { h.wakeMetadata(5) })
	h.at(20*time.Minute, func() {
		v := h.status()
		assert.Equal(t, SyncPending, v.MetadataSync.Status)
		assert.Equal(t, 5, v.MetadataSync.PendingChanges)
	})
	h.at(35*time.Minute, func() {
		m := h.status().MetadataSync
		assert.Equal(t, SyncError, m.Status)
		assert.True(t, m.Paused)
		assert.Equal(t, 1, m.ErrorCount)
		assert.Contains(t, m.Error, "conflicts")
		log, err := h.env.QueryWorkflowByID(MetadataSyncWorkflowID(home, companion), QueryErrorLog)
		require.NoError(t, err)
		var entries []activities.ErrorLogEntry
		require.NoError(t, log.Get(&entries))
		require.Len(t, entries, 1)
		assert.Equal(t, int64(3), entries[0].Sequence)
		assert.Equal(t, activities.KindConflict, entries[0].Kind)
		// Nothing past the conflict was applied.
		h.orgs.set(func(f *fakeOrgs) {
			assert.Equal(t, map[int64]int{1: 1, 2: 1}, f.applied)
			f.conflicts[3] = false // the operator resolves it
		})
		resume = h.update(MessageResume)
	})
	h.at(36*time.Minute, func() {
		resume.accepted(t)
		m := h.status().MetadataSync
		assert.Equal(t, SyncSucceeded, m.Status, "resume runs the next round at once")
		assert.False(t, m.Paused)
		assert.NotNil(t, m.LastSucceededAt)
		h.env.SignalWorkflow(MessageDisconnect, nil)
	})
	h.run(testSettings())
	assert.Equal(t, Disconnected, h.final().Status)
	assert.Equal(t, map[int64]int{1: 1, 2: 1, 3: 1, 4: 1, 5: 1}, h.orgs.applied)
}

func TestDisconnectWhileInactive(t *testing.T) {
	h := newHarness(t)
	var disconnect *updateOutcome
	h.at(time.Second, func() { h.share(MessageShare, "default") })
	h.at(time.Minute, func() { h.orgs.set(func(f *fakeOrgs) { f.companionInactive = true }) })
	h.at(5*time.Minute, h.watch)
	h.at(6*time.Minute, func() {
		assert.Equal(t, Inactive, h.status().Status)
		disconnect = h.update(MessageDisconnect)
	})
	h.run(testSettings())
	disconnect.accepted(t)
	v := h.final()
	assert.Equal(t, Disconnected, v.Status)
	assert.Empty(t, h.orgs.copied)
}

func TestRejectedMessagesLeaveStateUnchanged(t *testing.T) {
	h := newHarness(t)
	h.at(time.Second, func() { h.share(MessageShare, "default") })
	h.at(time.Minute, func() {
		before := h.status()
		cases := []struct {
			name   string
			update string
			args   []any
			kind   string
			want   string
		}{
			{"unknown data space", MessageShare, []any{DataSpaceRequest{DataSpace: "nope"}}, RefusalUnknownDataSpace, "unknown data space"},
			{"duplicate share", MessageShare, []any{DataSpaceRequest{DataSpace: "default"}}, RefusalAlreadyShared, "already shared"},
			{"empty name", MessageShare, []any{DataSpaceRequest{}}, RefusalInvalidRequest, "empty"},
			{"bad characters", MessageShare, []any{DataSpaceRequest{DataSpace: "a b"}}, RefusalInvalidRequest, "character"},
			{"unshare not shared", MessageUnshare, []any{DataSpaceRequest{DataSpace: "sales"}}, RefusalNotShared, "not shared"},
			{"retry when not in Error", MessageRetry, []any{DataSpaceRequest{DataSpace: "default"}}, RefusalNotInError, "not Error"},
			{"resume when not paused", MessageResume, nil, RefusalNotPaused, "not paused"},
		}
		for _, tc := range cases {
			out := h.update(tc.update, tc.args...)
			h.at(time.Minute+time.Second, func() {
				require.True(t, out.done, tc.name)
				assert.ErrorContains(t, out.rejected, tc.want, tc.name)
				assert.Equal(t, tc.kind, refusalKind(out.rejected), tc.name)
				assert.Equal(t, before.DataSpaces, h.status().DataSpaces, tc.name)
			})
		}
		signals := []struct {
			name    string
			payload any
			want    string
		}{
			{MessageShare, map[string]any{"dataSpace": 42}, "malformed"},
			{MessageShare, map[string]any{"dataSpace": "x", "extra": 1}, "unknown field"},
			{MessageShare, nil, "missing payload"},
			{MessageUnshare, "just a string", "malformed"},
			{MessageRetry, DataSpaceRequest{DataSpace: "default"}, "not Error"},
			{MessageResume, nil, "not paused"},
		}
		for i, s := range signals {
			sendAt := time.Minute + time.Duration(i+2)*time.Second
			h.at(sendAt, func() { h.env.SignalWorkflow(s.name, s.payload) })
			h.at(sendAt+500*time.Millisecond, func() {
				after := h.status()
				assert.Contains(t, after.LastRejected, s.want, "signal %s %v", s.name, s.payload)
				assert.Equal(t, before.Status, after.Status)
				assert.Equal(t, before.DataSpaces, after.DataSpaces)
				assert.Equal(t, before.MetadataSync, after.MetadataSync)
			})
		}
	})
	h.at(time.Minute+10*time.Second, func() {
		h.orgs.set(func(f *fakeOrgs) { f.removeDelay = 2 * time.Second })
		h.env.SignalWorkflow(MessageDisconnect, nil)
	})
	var late *updateOutcome
	h.at(time.Minute+10500*time.Millisecond, func() {
		assert.True(t, h.status().Disconnecting)
		late = h.update(MessageShare, DataSpaceRequest{DataSpace: "sales"})
		h.orgs.set(func(f *fakeOrgs) { f.removeDelay = 0 })
	})
	h.run(testSettings())
	require.True(t, late.done)
	assert.ErrorContains(t, late.rejected, "disconnect", "nothing is accepted after a disconnect")
	assert.Equal(t, RefusalDisconnecting, refusalKind(late.rejected))
	assert.Equal(t, Disconnected, h.final().Status)
	assert.Equal(t, 4+7+2*6, h.scheduled, "every check of the test was scheduled")
}

func TestShareRefusedWhileConnecting(t *testing.T) {
	c := &connection{ConnectionState: ConnectionState{Status: Connecting, DataSpaces: []string{"default"}}}
	for _, err := range []error{c.validateShare("default"), c.validateRetry("default"), c.validateResume()} {
		assert.ErrorContains(t, err, "Connecting")
		assert.Equal(t, RefusalStillConnecting, refusalKind(err))
	}
}

// testLogger keeps test output to warnings and errors.
func testLogger() sdklog.Logger {
	return sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// TestQuietConnectionChecksOnlyAtItsResync: a settled connection runs no
// health check between its resyncs (the fleet watcher covers them); a
// resync that fails is tried again an interval later, not at once and not
// a day later.
// TestRequestToAQuietConnectionChecksAnIntervalLater: an unshare requested
// hours into a quiet spell (a removal: in flight for a while) starts the
// health-check interval afresh; the watcher kept the connection's health
// fresh meanwhile, so no check (and no re-send) runs at once.
func TestRequestToAQuietConnectionChecksAnIntervalLater(t *testing.T) {
	h := newHarness(t)
	settings := testSettings()
	interval := settings.HealthCheckInterval
	var quietAt int
	h.at(time.Second, func() { h.share(MessageShare, "default") })
	h.at(10*time.Minute, func() {
		assert.True(t, h.status().Watched, "settled: Active, copied, nothing in flight")
		h.orgs.set(func(f *fakeOrgs) { quietAt = f.healthChecks })
	})
	h.at(5*time.Hour, func() { h.share(MessageUnshare, "default") })
	h.at(5*time.Hour+interval/2, func() {
		h.orgs.set(func(f *fakeOrgs) { assert.Equal(t, quietAt, f.healthChecks, "no check at once after the quiet spell") })
		assert.Empty(t, h.status().DataSpaces, "the request was carried out")
	})
	h.at(6*time.Hour, func() { h.env.SignalWorkflow(MessageDisconnect, nil) })
	h.run(settings)
	assert.Equal(t, Disconnected, h.final().Status)
}

func TestQuietConnectionChecksOnlyAtItsResync(t *testing.T) {
	h := newHarness(t)
	settings := testSettings()
	var quietAt int
	h.at(time.Second, func() { h.share(MessageShare, "default") })
	h.at(10*time.Minute, func() {
		v := h.status()
		assert.True(t, v.Watched, "settled: Active, copied, nothing in flight")
		h.orgs.set(func(f *fakeOrgs) { quietAt = f.healthChecks })
	})
	h.at(20*time.Hour, func() {
		h.orgs.set(func(f *fakeOrgs) {
			assert.Equal(t, quietAt, f.healthChecks, "no check between resyncs")
			f.healthDown = true
		})
	})
	// The resync falls about 24h after the last check; it fails, and is
	// tried again every interval until the store answers.
	h.at(24*time.Hour+30*time.Minute, func() {
		h.orgs.set(func(f *fakeOrgs) {
			// Each check makes its step's attempts (3) against the store.
			n := (f.healthChecks - quietAt) / int(settings.ActivityRetry.MaximumAttempts)
			assert.GreaterOrEqual(t, n, 5, "retried every interval")
			assert.LessOrEqual(t, n, 8, "not at once, over and over")
			f.healthDown = false
		})
	})
	h.at(25*time.Hour, func() {
		assert.Equal(t, Active, h.status().Status)
		h.env.SignalWorkflow(MessageDisconnect, nil)
	})
	h.run(settings)
	assert.Equal(t, Disconnected, h.final().Status)
}
