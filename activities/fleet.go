package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/contract"
)

// Fleet holds the activities of the reconciler: it reads the registry of
// connections (the Orgs port) and the workflows that carry them out (the
// Temporal client), and restarts a connection workflow that is gone. It
// makes no decision: the reconciler workflow compares what Fleet reads and
// decides what to report and what to repair.
//
// Fleet names workflows only through the contract package (TargetOf); types,
// query and search attribute names come in the inputs.
type Fleet struct {
	// Orgs is the system of record. Required.
	Orgs companionsync.Orgs
	// Client reaches the workflows' namespace. Required.
	Client client.Client
	// Converter decodes payloads read from histories: the workers' data
	// converter (with their codec). Nil means the SDK's default.
	Converter converter.DataConverter
	// Notifier delivers the reconciler's notifications (vanished and stuck
	// workflows); nil sends none.
	Notifier *Notifier
}

// statusQueryTimeout bounds the wait for a connection's status; a closed
// run answers by replaying its history on a worker.
const statusQueryTimeout = 10 * time.Second

// Names of the activities whose history a checkpoint is read from: the
// method names under which Register registers them.
const (
	copyActivityName   = "CopyRecords"
	removeActivityName = "RemoveRecords"
)

// RegistryPageInput asks for one page of the registry: up to Limit
// connections whose companion sorts after After.
type RegistryPageInput struct {
	After string `json:"after"`
	Limit int    `json:"limit"`
}

// RegistryPage is one page of the registry, in companion order. A page
// shorter than the limit is the last.
type RegistryPage struct {
	Connections []companionsync.Connection `json:"connections"`
}

// RegisteredConnections returns a page of the registry.
func (f *Fleet) RegisteredConnections(ctx context.Context, in RegistryPageInput) (RegistryPage, error) {
	page, err := f.Orgs.Connections(ctx, in.After, in.Limit)
	if err != nil {
		return RegistryPage{}, err
	}
	return RegistryPage{Connections: page}, nil
}

// SurveyTarget names a registered connection and the workflows that should
// carry it out.
type SurveyTarget struct {
	Connection companionsync.Connection `json:"connection"`
	// ConnectionID and MetadataID are the workflow IDs of the connection and
	// of its metadata sync; a share's ID is ShareIDPrefix + data space.
	ConnectionID  string `json:"connectionId"`
	MetadataID    string `json:"metadataId"`
	ShareIDPrefix string `json:"shareIdPrefix"`
	// StatusQuery is asked of a running connection workflow.
	StatusQuery string `json:"statusQuery"`
	// InitializationStatusAttr is the search attribute holding a share's
	// Initialization Status.
	InitializationStatusAttr string `json:"initializationStatusAttr"`
	// QueryUnsettledOnly skips the status query of a connection whose
	// published state and children's executions show it settled (see
	// ConnectionSurvey.Settled): a query is a billable action, and a fleet
	// of settled connections then costs the survey none.
	QueryUnsettledOnly bool `json:"queryUnsettledOnly,omitempty"`
}

// SurveyInput lists the connections to survey.
type SurveyInput struct {
	Targets []SurveyTarget `json:"targets"`
}

// Execution is what the server says of the latest run of a workflow ID.
// Status is the execution status as the Web UI names it ("Running",
// "Terminated", ...), empty when no run of the ID exists.
type Execution struct {
	WorkflowID string            `json:"workflowId"`
	RunID      string            `json:"runId,omitempty"`
	Type       string            `json:"type,omitempty"`
	Status     string            `json:"status,omitempty"`
	StartTime  time.Time         `json:"startTime"`
	CloseTime  time.Time         `json:"closeTime"`
	Attrs      map[string]string `json:"attrs,omitempty"`
}

// Running reports whether the workflow has a running execution.
func (e Execution) Running() bool { return e.Status == string(contract.RunRunning) }

// ShareSurvey is one data space of a surveyed connection: its share
// workflow's latest run and how many of its records the companion holds.
type ShareSurvey struct {
	DataSpace string    `json:"dataSpace"`
	Execution Execution `json:"execution"`
	Copied    int       `json:"copied"`
	// Checkpoint is, for a share workflow that stopped without finishing
	// (terminated, failed, timed out, cancelled), the last record id its
	// initial sync had copied up to, read from its history; empty when it
	// copied nothing or a removal was scheduled since.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// ConnectionSurvey is what the server and the store say of one registered
// connection. Shares lists the home's data spaces that have a share
// workflow (in any state) or data in the companion.
type ConnectionSurvey struct {
	Connection     companionsync.Connection `json:"connection"`
	HomeKnown      bool                     `json:"homeKnown"`
	CompanionKnown bool                     `json:"companionKnown"`
	Workflow       Execution                `json:"workflow"`
	// Settings are the settings in the input of the connection workflow's
	// latest run, as JSON, when that run is closed: a restart keeps them.
	Settings json.RawMessage `json:"settings,omitempty"`
	// Status is the connection workflow's answer to the status query, as
	// JSON (a closed run answers with its last state); empty when there is
	// no run or it did not answer.
	Status      json.RawMessage `json:"status,omitempty"`
	StatusError string          `json:"statusError,omitempty"`
	Metadata    Execution       `json:"metadata"`
	// DataSpaces are the home org's data spaces.
	DataSpaces []string      `json:"dataSpaces"`
	Shares     []ShareSurvey `json:"shares"`
	// Settled is set, instead of Status, when the survey did not query the
	// connection because everything the server and the store show of it is
	// settled: its run is running on ProtocolPublished or later and
	// publishes Active or Incomplete, its metadata sync runs (or it has
	// none) without an error, and every share workflow runs Active or
	// completed with no data left in the companion. Nothing of what the
	// reconciler looks for can then be found.
	Settled bool `json:"settled,omitempty"`
}

// SurveyConnections reads, for each target, the orgs, the latest run of the
// connection, metadata-sync and share workflows (strongly consistent
// descriptions, not visibility), the connection's status and the records
// the companion holds per data space.
func (f *Fleet) SurveyConnections(ctx context.Context, in SurveyInput) ([]ConnectionSurvey, error) {
	out := make([]ConnectionSurvey, 0, len(in.Targets))
	for _, t := range in.Targets {
		s, err := f.survey(ctx, t)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (f *Fleet) survey(ctx context.Context, t SurveyTarget) (ConnectionSurvey, error) {
	c := t.Connection
	s := ConnectionSurvey{Connection: c, Shares: []ShareSurvey{}}
	var err error
	if s.HomeKnown, err = f.known(ctx, c.Home); err != nil {
		return s, err
	}
	if s.CompanionKnown, err = f.known(ctx, c.Companion); err != nil {
		return s, err
	}
	if s.Workflow, err = f.describe(ctx, t.ConnectionID); err != nil {
		return s, err
	}
	if s.Workflow.Status != "" && !s.Workflow.Running() {
		if s.Settings, err = f.inputField(ctx, s.Workflow, "settings"); err != nil {
			return s, err
		}
	}
	if s.Metadata, err = f.describe(ctx, t.MetadataID); err != nil {
		return s, err
	}
	if s.HomeKnown {
		if err := f.surveyShares(ctx, t, &s); err != nil {
			return s, err
		}
	}
	if s.Workflow.Status == "" {
		return s, nil
	}
	if t.QueryUnsettledOnly && settled(s) {
		s.Settled = true
		return s, nil
	}
	qctx, cancel := context.WithTimeout(ctx, statusQueryTimeout)
	defer cancel()
	if v, qerr := f.Client.QueryWorkflow(qctx, t.ConnectionID, s.Workflow.RunID, t.StatusQuery); qerr != nil {
		s.StatusError = qerr.Error()
	} else if gerr := v.Get(&s.Status); gerr != nil {
		s.StatusError = gerr.Error()
	}
	if s.HomeKnown && t.QueryUnsettledOnly {
		// The children are read after the status, as the planner expects:
		// a share the status lists started before it was read.
		s.Shares = []ShareSurvey{}
		if err := f.surveyShares(ctx, t, &s); err != nil {
			return s, err
		}
	}
	return s, nil
}

// settled reports whether a surveyed connection is settled by what the
// server and the store show (see ConnectionSurvey.Settled).
func settled(s ConnectionSurvey) bool {
	w := s.Workflow
	if !w.Running() || !s.HomeKnown || !s.CompanionKnown {
		return false
	}
	if p, ok := contract.ProtocolOf(w.Attrs[contract.AttrProtocol.GetName()]); !ok || p < contract.ProtocolPublished {
		return false
	}
	switch contract.ConnectionStatus(w.Attrs[contract.AttrConnectionStatus.GetName()]) {
	case contract.Active, contract.Incomplete:
	default:
		return false
	}
	switch contract.MetadataSyncStatus(w.Attrs[contract.AttrMetadataSyncStatus.GetName()]) {
	case "":
		if s.Metadata.Running() {
			return false
		}
	case contract.SyncSucceeded, contract.SyncPending:
		if !s.Metadata.Running() {
			return false
		}
	default:
		return false
	}
	for _, sh := range s.Shares {
		switch {
		case sh.Execution.Running() && sh.Execution.Attrs[contract.AttrInitializationStatus.GetName()] == string(contract.ShareActive):
		case sh.Execution.Status == string(contract.RunCompleted) && sh.Copied == 0:
		default:
			return false
		}
	}
	return true
}

// surveyShares adds the home's data spaces and, for each with a share
// workflow or data in the companion, its latest run and record count.
func (f *Fleet) surveyShares(ctx context.Context, t SurveyTarget, s *ConnectionSurvey) error {
	c := t.Connection
	spaces, err := f.Orgs.DataSpaces(ctx, c.Home)
	if err != nil {
		return fmt.Errorf("survey %s/%s: list data spaces: %w", c.Home, c.Companion, err)
	}
	s.DataSpaces = spaces
	for _, ds := range spaces {
		exec, err := f.describe(ctx, t.ShareIDPrefix+ds)
		if err != nil {
			return err
		}
		copied := 0
		if s.CompanionKnown {
			copied, err = f.Orgs.CopiedCount(ctx, companionsync.Share{Home: c.Home, Companion: c.Companion, DataSpace: ds})
			if err != nil {
				return fmt.Errorf("survey %s/%s: records of %s in the companion: %w", c.Home, c.Companion, ds, err)
			}
		}
		if exec.Status == "" && copied == 0 {
			continue
		}
		sh := ShareSurvey{DataSpace: ds, Execution: exec, Copied: copied}
		switch exec.Status {
		case string(contract.RunTerminated), string(contract.RunFailed), string(contract.RunTimedOut), string(contract.RunCanceled):
			if sh.Checkpoint, err = f.copyCheckpoint(ctx, exec); err != nil {
				return err
			}
		}
		s.Shares = append(s.Shares, sh)
	}
	return nil
}

// inputField returns one top-level field of the JSON input of run e.
func (f *Fleet) inputField(ctx context.Context, e Execution, field string) (json.RawMessage, error) {
	raw, _, err := f.readInputField(ctx, e, field)
	return raw, err
}

// readInputField is inputField that also says whether the input could be
// read at all: ok is false when the run has no input or it does not decode
// (another shape, or payloads encrypted with keys this fleet lacks), and
// true with a nil field when the input has no such field.
func (f *Fleet) readInputField(ctx context.Context, e Execution, field string) (raw json.RawMessage, ok bool, err error) {
	iter := f.Client.GetWorkflowHistory(ctx, e.WorkflowID, e.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !iter.HasNext() {
		return nil, false, nil
	}
	ev, err := iter.Next()
	if err != nil {
		return nil, false, fmt.Errorf("read the input of %s: %w", e.WorkflowID, err)
	}
	p := ev.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()
	var in map[string]json.RawMessage
	if len(p) == 0 || f.converter().FromPayload(p[0], &in) != nil {
		return nil, false, nil // an input of another shape: nothing to keep
	}
	return in[field], true, nil
}

func (f *Fleet) converter() converter.DataConverter {
	if f.Converter == nil {
		return converter.GetDefaultDataConverter()
	}
	return f.Converter
}

// copyCheckpoint reads the checkpoint of a stopped share run from its
// history: the checkpoint the run started with (when it started copying),
// moved by each completed copy step, and cleared by any removal step.
func (f *Fleet) copyCheckpoint(ctx context.Context, e Execution) (string, error) {
	dc := f.converter()
	checkpoint := ""
	types := map[int64]string{}
	iter := f.Client.GetWorkflowHistory(ctx, e.WorkflowID, e.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return "", fmt.Errorf("read the history of %s: %w", e.WorkflowID, err)
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			var in contract.ShareInput
			p := ev.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()
			if len(p) > 0 && dc.FromPayload(p[0], &in) == nil && in.State != nil && in.State.View.InitializationStatus == contract.Activating {
				checkpoint = in.State.Checkpoint
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			name := ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
			types[ev.GetEventId()] = name
			if name == removeActivityName {
				checkpoint = ""
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			a := ev.GetActivityTaskCompletedEventAttributes()
			if types[a.GetScheduledEventId()] != copyActivityName {
				continue
			}
			var p CopyProgress
			if r := a.GetResult().GetPayloads(); len(r) > 0 && dc.FromPayload(r[0], &p) == nil && p.After > checkpoint {
				checkpoint = p.After
			}
		}
	}
	return checkpoint, nil
}

// known reports whether the org exists.
func (f *Fleet) known(ctx context.Context, id string) (bool, error) {
	_, err := f.Orgs.Org(ctx, id)
	switch {
	case errors.Is(err, companionsync.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read org %q: %w", id, err)
	}
	return true, nil
}

// describe returns the latest run of workflowID; an ID never used gives an
// Execution with an empty Status.
func (f *Fleet) describe(ctx context.Context, workflowID string) (Execution, error) {
	res, err := f.Client.DescribeWorkflowExecution(ctx, workflowID, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return Execution{WorkflowID: workflowID}, nil
	}
	if err != nil {
		return Execution{}, fmt.Errorf("describe workflow %s: %w", workflowID, err)
	}
	info := res.GetWorkflowExecutionInfo()
	e := Execution{
		WorkflowID: workflowID,
		RunID:      info.GetExecution().GetRunId(),
		Type:       info.GetType().GetName(),
		Status:     executionStatus(info.GetStatus()),
		Attrs:      Keywords(info.GetSearchAttributes()),
	}
	if t := info.GetStartTime(); t != nil {
		e.StartTime = t.AsTime()
	}
	if t := info.GetCloseTime(); t != nil {
		e.CloseTime = t.AsTime()
	}
	return e, nil
}

// ListInput asks for one page of workflow executions matching a visibility
// query.
type ListInput struct {
	Query     string `json:"query"`
	PageSize  int    `json:"pageSize"`
	PageToken []byte `json:"pageToken,omitempty"`
}

// ListPage is one page of executions; NextPageToken is empty on the last.
type ListPage struct {
	Executions    []Execution `json:"executions"`
	NextPageToken []byte      `json:"nextPageToken,omitempty"`
}

// ListExecutions returns a page of the executions matching the visibility
// query, with their keyword search attributes. Visibility lags the workflows
// by a moment; callers confirm what they act on.
func (f *Fleet) ListExecutions(ctx context.Context, in ListInput) (ListPage, error) {
	res, err := f.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: in.Query, PageSize: int32(in.PageSize), NextPageToken: in.PageToken,
	})
	if err != nil {
		return ListPage{}, fmt.Errorf("list workflows where %s: %w", in.Query, err)
	}
	page := ListPage{Executions: []Execution{}, NextPageToken: res.GetNextPageToken()}
	for _, info := range res.GetExecutions() {
		e := Execution{
			WorkflowID: info.GetExecution().GetWorkflowId(),
			RunID:      info.GetExecution().GetRunId(),
			Type:       info.GetType().GetName(),
			Status:     executionStatus(info.GetStatus()),
			Attrs:      Keywords(info.GetSearchAttributes()),
		}
		if t := info.GetStartTime(); t != nil {
			e.StartTime = t.AsTime()
		}
		page.Executions = append(page.Executions, e)
	}
	return page, nil
}

// RegistryRows returns the registry row of each companion, in order; a
// companion registered in no connection gets a zero Connection.
func (f *Fleet) RegistryRows(ctx context.Context, companions []string) ([]companionsync.Connection, error) {
	out := make([]companionsync.Connection, 0, len(companions))
	for _, id := range companions {
		c, err := f.connectionOf(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// DescribeExecutions returns the latest run of each workflow ID, in order,
// read from the server rather than from visibility.
func (f *Fleet) DescribeExecutions(ctx context.Context, ids []string) ([]Execution, error) {
	out := make([]Execution, 0, len(ids))
	for _, id := range ids {
		e, err := f.describe(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func (f *Fleet) connectionOf(ctx context.Context, companion string) (companionsync.Connection, error) {
	c, err := f.Orgs.ConnectionOf(ctx, companion)
	if errors.Is(err, companionsync.ErrNotFound) {
		return companionsync.Connection{}, nil
	}
	if err != nil {
		return companionsync.Connection{}, fmt.Errorf("read the registry row of %q: %w", companion, err)
	}
	return c, nil
}

// LastResult returns, as JSON, the result of the latest completed workflow
// matching the visibility query, or nothing when there is none.
func (f *Fleet) LastResult(ctx context.Context, query string) (json.RawMessage, error) {
	res, err := f.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, PageSize: 1})
	if err != nil {
		return nil, fmt.Errorf("list workflows where %s: %w", query, err)
	}
	if len(res.GetExecutions()) == 0 {
		return nil, nil
	}
	e := res.GetExecutions()[0].GetExecution()
	var raw json.RawMessage
	if err := f.Client.GetWorkflow(ctx, e.GetWorkflowId(), e.GetRunId()).Get(ctx, &raw); err != nil {
		return nil, fmt.Errorf("result of %s: %w", e.GetWorkflowId(), err)
	}
	return raw, nil
}

// RestartInput restarts a connection workflow that is gone.
type RestartInput struct {
	// Registered is the registry row the restart is for; the restart is
	// skipped unless the registry still holds exactly this row.
	Registered   companionsync.Connection `json:"registered"`
	WorkflowID   string                   `json:"workflowId"`
	WorkflowType string                   `json:"workflowType"`
	TaskQueue    string                   `json:"taskQueue"`
	Summary      string                   `json:"summary"`
	// SearchAttributes are keyword search attributes set at start.
	SearchAttributes map[string]string `json:"searchAttributes"`
	// Input is the workflow's input, as JSON.
	Input json.RawMessage `json:"input"`
}

// RestartResult says whether the workflow was started; Skipped says why not.
type RestartResult struct {
	Started bool   `json:"started"`
	RunID   string `json:"runId,omitempty"`
	Skipped string `json:"skipped,omitempty"`
}

// RestartConnection starts the connection workflow again under its own
// workflow ID, unless the registry no longer holds the row (a disconnect
// finished meanwhile) or a run of the ID is running (another reconciler or
// an operator was first): the server refuses a second running workflow of
// one ID, so a pair never gets two. A retried attempt after a start that
// succeeded finds it running and changes nothing.
func (f *Fleet) RestartConnection(ctx context.Context, in RestartInput) (RestartResult, error) {
	now, err := f.connectionOf(ctx, in.Registered.Companion)
	if err != nil {
		return RestartResult{}, fmt.Errorf("restart %s: read registry: %w", in.WorkflowID, err)
	}
	if now != in.Registered {
		return RestartResult{Skipped: "the registry no longer holds the connection"}, nil
	}
	var attrs []temporal.SearchAttributeUpdate
	for _, k := range slices.Sorted(maps.Keys(in.SearchAttributes)) {
		attrs = append(attrs, temporal.NewSearchAttributeKeyKeyword(k).ValueSet(in.SearchAttributes[k]))
	}
	run, err := f.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       in.WorkflowID,
		TaskQueue:                                in.TaskQueue,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            in.Summary,
		TypedSearchAttributes:                    temporal.NewSearchAttributes(attrs...),
	}, in.WorkflowType, in.Input)
	if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
		return RestartResult{Skipped: "a run of " + in.WorkflowID + " is running already"}, nil
	}
	if err != nil {
		return RestartResult{}, fmt.Errorf("restart %s: %w", in.WorkflowID, err)
	}
	return RestartResult{Started: true, RunID: run.GetRunID()}, nil
}

// executionStatus names an execution status as the Web UI does.
func executionStatus(s enumspb.WorkflowExecutionStatus) string { return string(contract.RunStateOf(s)) }

// Keywords decodes the string-valued (Keyword) search attributes of sa, as
// visibility or a history event carries them; an attribute that is not a
// string is left out, and a missing one reads "".
func Keywords(sa *commonpb.SearchAttributes) map[string]string {
	out := map[string]string{}
	for name, p := range sa.GetIndexedFields() {
		var v string
		if err := converter.GetDefaultDataConverter().FromPayload(p, &v); err == nil {
			out[name] = v
		}
	}
	return out
}
