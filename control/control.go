// Package control is the typed Go client of companionsync: it starts
// connections and sends them validated operations, reads their status and
// lists them, over one Temporal client. The CLI (starter) is a thin shell
// over it; programs use it directly.
//
// Every operation uses the validated update form of its message, so a
// refusal (unknown data space, duplicate share, nothing to resume …) is
// returned at once as a *RefusedError and changes nothing.
package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/contract"
)

// ErrUnknownConnection is returned for a connection that was never started.
var ErrUnknownConnection = errors.New("unknown connection")

// Sentinel refusals. Every refusal is a *RefusedError; errors.Is matches it
// against the sentinel of its kind, for example
// errors.Is(err, control.ErrAlreadyShared).
var (
	ErrInvalidRequest     = errors.New("invalid request")
	ErrUnknownDataSpace   = errors.New("unknown data space")
	ErrAlreadyShared      = errors.New("data space already shared")
	ErrNotShared          = errors.New("data space not shared")
	ErrAlreadyRemoving    = errors.New("data space already being removed")
	ErrNotInError         = errors.New("share not in Error")
	ErrNotPaused          = errors.New("metadata sync not paused")
	ErrConnectionInactive = errors.New("connection Inactive")
	ErrStillConnecting    = errors.New("connection still Connecting")
	ErrDisconnecting      = errors.New("connection disconnecting")
	ErrIneligible         = errors.New("pair ineligible")
	// ErrConnectionEnded: the connection's workflow has closed (disconnected,
	// refused, terminated); connect again.
	ErrConnectionEnded = errors.New("connection ended")
)

// refusals maps the workflows' refusal types to the sentinels.
var refusals = map[string]error{
	contract.RefusalInvalidRequest:     ErrInvalidRequest,
	contract.RefusalUnknownDataSpace:   ErrUnknownDataSpace,
	contract.RefusalAlreadyShared:      ErrAlreadyShared,
	contract.RefusalNotShared:          ErrNotShared,
	contract.RefusalAlreadyRemoving:    ErrAlreadyRemoving,
	contract.RefusalNotInError:         ErrNotInError,
	contract.RefusalNotPaused:          ErrNotPaused,
	contract.RefusalConnectionInactive: ErrConnectionInactive,
	contract.RefusalStillConnecting:    ErrStillConnecting,
	contract.RefusalDisconnecting:      ErrDisconnecting,
	contract.RefusalIneligible:         ErrIneligible,
}

// RefusedError is an operation the connection refused. Nothing changed.
type RefusedError struct {
	Connection string
	Operation  string
	// Kind is the refusal type (one of the workflows.Refusal* names), or
	// "Ended" when the connection's workflow has closed.
	Kind string
	// Rule is the eligibility rule of a refused connect, empty otherwise.
	Rule   string
	Reason string
}

// kindEnded is the Kind of a refusal by a connection whose workflow closed.
const kindEnded = "Ended"

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s %s refused: %s", e.Operation, e.Connection, e.Reason)
}

// Is matches the sentinel of the refusal's kind.
func (e *RefusedError) Is(target error) bool {
	if e.Kind == kindEnded {
		return target == ErrConnectionEnded
	}
	sentinel, ok := refusals[e.Kind]
	return ok && target == sentinel
}

// Ref names a connection: HOME/COMPANION.
type Ref struct {
	Home      string
	Companion string
}

// ParseRef parses "HOME/COMPANION".
func ParseRef(s string) (Ref, error) {
	home, companion, ok := contract.ParseReference(s)
	if !ok {
		return Ref{}, fmt.Errorf("connection %q: want HOME/COMPANION, e.g. acme/acme-emea", s)
	}
	return Ref{Home: home, Companion: companion}, nil
}

func (r Ref) String() string { return contract.Reference(r.Home, r.Companion) }

func (r Ref) workflowID() string { return contract.ConnectionWorkflowID(r.Home, r.Companion) }

// Client drives companion connections through a Temporal client it does
// not own.
type Client struct {
	temporal     client.Client
	queryTimeout time.Duration
	// failures reads failure messages of histories (WithKeys).
	failures converter.FailureConverter
	// audit reads the audit trail (WithAudit).
	audit AuditReader
}

// DefaultQueryTimeout is how long Status waits for a worker to answer its
// query before it falls back to the last published state.
const DefaultQueryTimeout = 750 * time.Millisecond

// New returns a Client over c.
func New(c client.Client) *Client { return &Client{temporal: c, queryTimeout: DefaultQueryTimeout} }

// WithQueryTimeout returns a copy of the client whose Status waits d for a
// worker's answer (DefaultQueryTimeout when d <= 0).
func (c *Client) WithQueryTimeout(d time.Duration) *Client {
	if d <= 0 {
		d = DefaultQueryTimeout
	}
	cp := *c
	cp.queryTimeout = d
	return &cp
}

// Connect starts the connection HOME/COMPANION and waits for the handshake.
// A refused pair returns a *RefusedError naming the rule, and leaves nothing
// running. settings may be zero for production defaults.
func (c *Client) Connect(ctx context.Context, ref Ref, settings contract.Settings) (contract.StatusView, error) {
	if ref.Home == "" || ref.Companion == "" {
		return contract.StatusView{}, errors.New("connect: home and companion are required")
	}
	opts := client.StartWorkflowOptions{
		ID:                                       ref.workflowID(),
		TaskQueue:                                contract.TaskQueue,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		StaticSummary:                            fmt.Sprintf("%s → %s", ref.Home, ref.Companion),
		TypedSearchAttributes: temporal.NewSearchAttributes(
			contract.AttrHomeOrg.ValueSet(ref.Home),
			contract.AttrCompanionOrg.ValueSet(ref.Companion),
			contract.AttrConnectionStatus.ValueSet(string(contract.Connecting)),
		),
	}
	run, err := c.temporal.ExecuteWorkflow(ctx, opts, contract.ConnectionWorkflowName,
		contract.ConnectionInput{Home: ref.Home, Companion: ref.Companion, Settings: settings, Protocol: contract.StarterProtocol})
	if err != nil {
		if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			st, serr := c.Status(ctx, ref)
			reason := "it already exists"
			if serr == nil {
				reason = fmt.Sprintf("it already exists (status %s); disconnect it first", st.Status)
			}
			return contract.StatusView{}, &RefusedError{Connection: ref.String(), Operation: "connect",
				Kind: contract.RefusalIneligible, Rule: contract.RuleCompanionUnconnected, Reason: reason}
		}
		return contract.StatusView{}, fmt.Errorf("connect %s: %w", ref, err)
	}
	// The handshake is a local activity in the run's first workflow task,
	// and a query is answered once that task is done: one status read
	// usually has the outcome, and costs no history event. A handshake that
	// takes longer (retries, a busy store), or a refusal, is awaited with
	// the await-connected update.
	if v, err := c.Status(ctx, ref); err == nil && !v.Stale && v.Workflow == contract.RunRunning &&
		v.Status != contract.Connecting {
		return v, nil
	}
	var view contract.StatusView
	err = c.update(ctx, ref, run.GetRunID(), contract.UpdateAwaitConnected, &view)
	var refused *RefusedError
	if err == nil || !errors.As(err, &refused) {
		return view, err
	}
	// A refused handshake fails the workflow, possibly before the update
	// could even be delivered: the workflow's failure carries the rule.
	if werr := run.Get(ctx, nil); werr != nil {
		return contract.StatusView{}, refusal(ref, "connect", werr)
	}
	return contract.StatusView{}, err
}

// Share shares a data space of the home org with the companion.
func (c *Client) Share(ctx context.Context, ref Ref, dataSpace string) (contract.StatusView, error) {
	return c.operate(ctx, ref, contract.MessageShare, contract.DataSpaceRequest{DataSpace: dataSpace})
}

// Unshare removes a shared data space from the companion.
func (c *Client) Unshare(ctx context.Context, ref Ref, dataSpace string) (contract.StatusView, error) {
	return c.operate(ctx, ref, contract.MessageUnshare, contract.DataSpaceRequest{DataSpace: dataSpace})
}

// Retry retries a share in Error from its last checkpoint.
func (c *Client) Retry(ctx context.Context, ref Ref, dataSpace string) (contract.StatusView, error) {
	return c.operate(ctx, ref, contract.MessageRetry, contract.DataSpaceRequest{DataSpace: dataSpace})
}

// Resume resumes a metadata sync paused by a failed round; the next round
// starts at once.
func (c *Client) Resume(ctx context.Context, ref Ref) (contract.StatusView, error) {
	return c.operate(ctx, ref, contract.MessageResume)
}

// Recheck runs a health check now.
func (c *Client) Recheck(ctx context.Context, ref Ref) (contract.StatusView, error) {
	return c.operate(ctx, ref, contract.MessageRecheck)
}

// Disconnect removes every share and ends the connection. With wait, it
// returns the final view once the connection reads Disconnected.
func (c *Client) Disconnect(ctx context.Context, ref Ref, wait bool) (contract.StatusView, error) {
	view, err := c.operate(ctx, ref, contract.MessageDisconnect)
	if err != nil || !wait {
		return view, err
	}
	var final contract.StatusView
	if err := c.temporal.GetWorkflow(ctx, ref.workflowID(), "").Get(ctx, &final); err != nil {
		return contract.StatusView{}, fmt.Errorf("wait for %s to disconnect: %w", ref, err)
	}
	return final, nil
}

// Status returns the connection's whole status, also after it ended, from
// one query of the connection's workflow. Each status, count and round is
// what the responsible workflow last reported. (For a connection started
// before ProtocolProgressReport, the progress of running copies and
// removals and the metadata sync's own view are read from those workflows.)
// When the connection's workflow closed other than by a disconnect
// (terminated, failed, timed out), Status reads how it closed and
// LastStatus the last status it reported.
func (c *Client) Status(ctx context.Context, ref Ref) (contract.StatusView, error) {
	var view contract.StatusView
	run, v, err := c.queryStatus(ctx, ref)
	if err != nil {
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			return view, c.unknown(ref)
		}
		if ctx.Err() == nil && unanswered(err) {
			// No worker answered in time (none polls, or all are busy):
			// read what the workflows last published, from the server.
			run, desc, err := c.describe(ctx, ref)
			if err != nil {
				return view, err
			}
			return c.published(ctx, ref, run, desc)
		}
		return view, c.explain(ctx, ref, "status", err)
	}
	if err := v.Get(&view); err != nil {
		return view, fmt.Errorf("status %s: decode: %w", ref, err)
	}
	view.Workflow = run
	if closed(&view, run) {
		return view, nil
	}
	if run != contract.RunRunning || view.Protocol >= contract.ProtocolProgressReport {
		// Children report their progress to the connection: its answer
		// is the whole status.
		return view, nil
	}
	// Connections started before ProtocolProgressReport hear of progress
	// only on status changes: the share and metadata sync workflows know
	// it. Their queries run in parallel, in one more round trip. Workers
	// of this release run no such connection; workers of an earlier
	// release, which this client may talk to, do.
	var wg sync.WaitGroup
	for i, sh := range view.DataSpaces {
		if sh.InitializationStatus != contract.Activating && sh.InitializationStatus != contract.RemovingSharing {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var live contract.ShareView
			if c.queryChild(ctx, contract.ShareWorkflowID(ref.Home, ref.Companion, sh.DataSpace), &live) &&
				live.InitializationStatus == sh.InitializationStatus {
				view.DataSpaces[i].RecordsCopied, view.DataSpaces[i].RecordsTotal = live.RecordsCopied, live.RecordsTotal
				view.DataSpaces[i].RecordsRemoved, view.DataSpaces[i].RecordsToRemove = live.RecordsRemoved, live.RecordsToRemove
			}
		}()
	}
	if view.MetadataSync.Status != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The connection hears from its metadata sync on settled
			// changes only; the sync itself knows its pending count and
			// last round.
			var fresh contract.MetadataSyncView
			if c.queryChild(ctx, contract.MetadataSyncWorkflowID(ref.Home, ref.Companion), &fresh) && fresh.Status != "" {
				fresh.Requested = view.MetadataSync.Requested
				view.MetadataSync = fresh
			}
		}()
	}
	wg.Wait()
	return view, nil
}

// queryStatus queries the connection's latest run, in one round trip while
// it runs: the query names the condition that it be open, and a closed run
// the server refuses with its execution status is queried once more, for
// its last state.
func (c *Client) queryStatus(ctx context.Context, ref Ref) (contract.RunState, converter.EncodedValue, error) {
	ctx, cancel := context.WithTimeout(ctx, c.queryTimeout)
	defer cancel()
	resp, err := c.temporal.QueryWorkflowWithOptions(ctx, &client.QueryWorkflowWithOptionsRequest{
		WorkflowID: ref.workflowID(), QueryType: contract.QueryStatus,
		QueryRejectCondition: enumspb.QUERY_REJECT_CONDITION_NOT_OPEN,
	})
	if err != nil {
		return "", nil, err
	}
	if rejected := resp.QueryRejected; rejected != nil {
		v, err := c.temporal.QueryWorkflow(ctx, ref.workflowID(), "", contract.QueryStatus)
		return contract.RunStateOf(rejected.GetStatus()), v, err
	}
	return contract.RunRunning, resp.QueryResult, nil
}

// closed makes a view of a run that closed other than by a disconnect read
// how it closed (Terminated, …, or Refused for a failed handshake), keeping
// the status it last reported in LastStatus; it reports whether it did.
func closed(view *contract.StatusView, run contract.RunState) bool {
	if run == contract.RunRunning || run == contract.RunCompleted {
		return false
	}
	view.LastStatus, view.Status = view.Status, contract.ConnectionStatus(run)
	if run == contract.RunFailed && view.LastStatus == contract.Connecting {
		view.Status = contract.Refused
	}
	return true
}

// unanswered reports whether a query failed for want of a worker's answer
// within its deadline.
func unanswered(err error) bool {
	var deadline *serviceerror.DeadlineExceeded
	var canceled *serviceerror.Canceled
	// The server refuses a query it could not answer in time while a new
	// run's first workflow task is still to come (continue-as-new).
	var notReady *serviceerror.WorkflowNotReady
	// The server refuses at once a query of a task queue no worker has
	// polled for a while.
	var precondition *serviceerror.FailedPrecondition
	noPoller := errors.As(err, &precondition) && strings.Contains(precondition.Error(), "no poller seen")
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &deadline) || errors.As(err, &canceled) ||
		errors.As(err, &notReady) || noPoller || status.Code(err) == codes.DeadlineExceeded
}

// published is the connection's last published state: its search
// attributes, and those of its running share workflows, read from
// visibility. No worker is involved, so it answers when none polls.
func (c *Client) published(ctx context.Context, ref Ref, run contract.RunState, desc *workflowservice.DescribeWorkflowExecutionResponse) (contract.StatusView, error) {
	sa := activities.Keywords(desc.GetWorkflowExecutionInfo().GetSearchAttributes())
	view := contract.StatusView{
		Connection:   ref.String(),
		Status:       contract.ConnectionStatus(sa[contract.AttrConnectionStatus.GetName()]),
		MetadataSync: contract.MetadataSyncView{Status: contract.MetadataSyncStatus(sa[contract.AttrMetadataSyncStatus.GetName()])},
		DataSpaces:   []contract.ShareView{},
		Transitions:  []contract.Transition{},
		Workflow:     run,
		Stale:        true,
	}
	closed(&view, run)
	q := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running' AND %s = '%s' AND %s = '%s'",
		contract.ShareWorkflowName, contract.AttrHomeOrg.GetName(), quote(ref.Home),
		contract.AttrCompanionOrg.GetName(), quote(ref.Companion))
	var token []byte
	for {
		resp, err := c.temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, NextPageToken: token})
		if err != nil {
			return view, fmt.Errorf("status %s: no worker answered, and the published state cannot be read: %w", ref, err)
		}
		for _, e := range resp.GetExecutions() {
			fields := activities.Keywords(e.GetSearchAttributes())
			view.DataSpaces = append(view.DataSpaces, contract.ShareView{
				DataSpace:            fields[contract.AttrDataSpace.GetName()],
				InitializationStatus: contract.InitializationStatus(fields[contract.AttrInitializationStatus.GetName()]),
			})
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	slices.SortFunc(view.DataSpaces, func(a, b contract.ShareView) int { return strings.Compare(a.DataSpace, b.DataSpace) })
	return view, nil
}

// childQueryTimeout bounds a progress query to a share or the metadata sync.
// A child that has just started answers only once its first workflow task
// is done, which under load can take seconds: the status does not wait for
// it, and shows what the connection knows.
const childQueryTimeout = 300 * time.Millisecond

// queryChild reads a child workflow's status query into v; false when it
// cannot be read within the query timeout (the child may have just finished,
// or not have run its first workflow task yet): the status then shows what
// the connection knows, without live progress.
func (c *Client) queryChild(ctx context.Context, workflowID string, v any) bool {
	ctx, cancel := context.WithTimeout(ctx, min(c.queryTimeout, childQueryTimeout))
	defer cancel()
	q, err := c.temporal.QueryWorkflow(ctx, workflowID, "", contract.QueryStatus)
	return err == nil && q.Get(v) == nil
}

// runState is the execution status of the connection's latest run.
func (c *Client) runState(ctx context.Context, ref Ref) (contract.RunState, error) {
	run, _, err := c.describe(ctx, ref)
	return run, err
}

// describe reads the connection's latest run from the server: its execution
// status and its search attributes.
func (c *Client) describe(ctx context.Context, ref Ref) (contract.RunState, *workflowservice.DescribeWorkflowExecutionResponse, error) {
	d, err := c.temporal.DescribeWorkflowExecution(ctx, ref.workflowID(), "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return "", nil, c.unknown(ref)
	}
	if err != nil {
		return "", nil, fmt.Errorf("status %s: %w", ref, err)
	}
	return contract.RunStateOf(d.GetWorkflowExecutionInfo().GetStatus()), d, nil
}

// unknown is the error for a connection that was never started.
func (c *Client) unknown(ref Ref) error {
	return fmt.Errorf("%w %s: connect it first (starter connect --home %s --companion %s)", ErrUnknownConnection, ref, ref.Home, ref.Companion)
}

// ErrorLog returns the error-log entries of the connection's last failed
// metadata round (empty when the last round succeeded).
func (c *Client) ErrorLog(ctx context.Context, ref Ref) ([]contract.ErrorLogEntry, error) {
	if _, err := c.Status(ctx, ref); err != nil {
		return nil, err
	}
	v, err := c.temporal.QueryWorkflow(ctx, contract.MetadataSyncWorkflowID(ref.Home, ref.Companion), "", contract.QueryErrorLog)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return []contract.ErrorLogEntry{}, nil // metadata sync never started
	}
	if err != nil {
		return nil, fmt.Errorf("error log of %s: %w", ref, err)
	}
	var entries []contract.ErrorLogEntry
	if err := v.Get(&entries); err != nil {
		return nil, fmt.Errorf("error log of %s: decode: %w", ref, err)
	}
	if entries == nil {
		entries = []contract.ErrorLogEntry{} // an empty log, never null in JSON
	}
	return entries, nil
}

// Summary is one connection in a listing.
type Summary struct {
	Connection         string `json:"connection"`
	Status             string `json:"status"`
	MetadataSyncStatus string `json:"metadataSyncStatus"`
	// Protocol is the protocol the connection's latest run executes (the
	// CompanionProtocol search attribute); empty for a run started before
	// protocol 4, which runs an earlier one.
	Protocol string `json:"protocol,omitempty"`
}

// StatusRefused is how List shows, and filters, a connection whose
// handshake refused the pair: its workflow failed while Connecting. A
// connection whose workflow was terminated, timed out or canceled is listed
// with that state (contract.RunTerminated …) instead of its last status.
const StatusRefused = contract.Refused

// Filter narrows List. Zero fields match everything. Status is a
// Connection Status or StatusRefused.
type Filter struct {
	Status string
	Home   string
	// Protocol matches the CompanionProtocol search attribute; runs
	// started before protocol 4 have none and never match.
	Protocol string
}

// List returns the connections known to visibility (search attributes),
// newest first: one entry per connection, its latest run.
func (c *Client) List(ctx context.Context, f Filter) ([]Summary, error) {
	q := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus != 'ContinuedAsNew'", contract.ConnectionWorkflowName)
	switch f.Status {
	case "":
	case StatusRefused:
		q += " AND ExecutionStatus = 'Failed'"
	default:
		q += fmt.Sprintf(" AND %s = '%s' AND ExecutionStatus != 'Failed'", contract.AttrConnectionStatus.GetName(), quote(f.Status))
	}
	if f.Home != "" {
		q += fmt.Sprintf(" AND %s = '%s'", contract.AttrHomeOrg.GetName(), quote(f.Home))
	}
	if f.Protocol != "" {
		q += fmt.Sprintf(" AND %s = '%s'", contract.AttrProtocol.GetName(), quote(f.Protocol))
	}
	out := []Summary{}
	seen := map[string]bool{}
	var token []byte
	for {
		resp, err := c.temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list connections: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			id := e.GetExecution().GetWorkflowId()
			if seen[id] {
				continue
			}
			seen[id] = true
			sa := activities.Keywords(e.GetSearchAttributes())
			s := Summary{
				Connection:         sa[contract.AttrHomeOrg.GetName()] + "/" + sa[contract.AttrCompanionOrg.GetName()],
				Status:             sa[contract.AttrConnectionStatus.GetName()],
				MetadataSyncStatus: sa[contract.AttrMetadataSyncStatus.GetName()],
				Protocol:           sa[contract.AttrProtocol.GetName()],
			}
			switch run := contract.RunStateOf(e.GetStatus()); run {
			case contract.RunFailed:
				s.Status = StatusRefused
			case contract.RunTerminated, contract.RunTimedOut, contract.RunCanceled:
				s.Status = string(run)
			}
			out = append(out, s)
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return out, nil
		}
	}
}

// operate sends one validated operation and returns the status after it.
func (c *Client) operate(ctx context.Context, ref Ref, name string, args ...any) (contract.StatusView, error) {
	var view contract.StatusView
	if err := c.update(ctx, ref, "", name, &view, args...); err != nil {
		return contract.StatusView{}, err
	}
	return view, nil
}

func (c *Client) update(ctx context.Context, ref Ref, runID, name string, result any, args ...any) error {
	opts := client.UpdateWorkflowOptions{
		// One ID for every attempt: an update the workflow did accept is not
		// applied twice.
		UpdateID:     newUpdateID(),
		WorkflowID:   ref.workflowID(),
		RunID:        runID,
		UpdateName:   name,
		Args:         args,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	}
	for attempt := 1; ; attempt++ {
		h, err := c.temporal.UpdateWorkflow(ctx, opts)
		if err == nil {
			err = h.Get(ctx, result)
		}
		if err == nil {
			return nil
		}
		if attempt == updateAttempts || !c.updateAborted(ctx, ref, runID, err) {
			return c.explain(ctx, ref, name, err)
		}
		select {
		case <-ctx.Done():
			return c.explain(ctx, ref, name, err)
		case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
		}
	}
}

// updateAttempts bounds the attempts of one update the server aborted.
const updateAttempts = 10

// updateAborted reports whether the server aborted an update before the
// workflow saw it, so sending it again is safe: the workflow task that
// carried it failed (for example because a signal arrived as the run
// continued as new), or the run it reached continued as new.
func (c *Client) updateAborted(ctx context.Context, ref Ref, runID string, err error) bool {
	var notReady *serviceerror.WorkflowNotReady
	if errors.As(err, &notReady) {
		return true
	}
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) && runID == "" {
		run, derr := c.runState(ctx, ref)
		return derr == nil && run == contract.RunRunning
	}
	return false
}

// newUpdateID is a random update ID.
func newUpdateID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// explain turns a Temporal error into one an operator can act on.
func (c *Client) explain(ctx context.Context, ref Ref, op string, err error) error {
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		// Updates and queries find no running workflow: either none was
		// ever started, or it has closed.
		if run, derr := c.runState(ctx, ref); derr == nil && run != contract.RunRunning {
			return &RefusedError{Connection: ref.String(), Operation: op, Kind: kindEnded,
				Reason: fmt.Sprintf("the connection has ended (workflow %s); connect it again", run)}
		}
		return fmt.Errorf("%w %s: connect it first (starter connect --home %s --companion %s)", ErrUnknownConnection, ref, ref.Home, ref.Companion)
	}
	return refusal(ref, op, err)
}

// refusal builds a RefusedError from an application error of a refusal
// type, with the eligibility rule when there is one; any other error is
// returned wrapped.
func refusal(ref Ref, op string, err error) error {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return fmt.Errorf("%s %s: %w", op, ref, err)
	}
	if _, ok := refusals[appErr.Type()]; !ok {
		return fmt.Errorf("%s %s: %w", op, ref, err)
	}
	r := &RefusedError{Connection: ref.String(), Operation: op, Kind: appErr.Type(), Reason: appErr.Message()}
	var in contract.Ineligibility
	if appErr.Type() == contract.ErrIneligible && appErr.HasDetails() && appErr.Details(&in) == nil {
		r.Rule = in.Rule
	}
	return r
}

func quote(s string) string { return strings.ReplaceAll(s, "'", "''") }
