package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
)

// What the upgrade of running workflows reads and does: which protocol each
// running workflow executes, which workers poll the task queue, and the
// signal that asks a run to move. The rules (what moves, what is too old)
// are the workflows package's; these only read and send.

// RunProtocolsInput asks for one page of running workflows and the protocol
// each executes: the number in the search attribute Attr, or, for a run
// started before the attribute existed, the field InputField of its input
// (absent: protocol 0).
type RunProtocolsInput struct {
	ListInput
	Attr       string `json:"attr"`
	InputField string `json:"inputField"`
	// Skip, when set, leaves out the runs whose attribute says they run
	// protocol Skip (the current one): they are counted in Skipped, and the
	// call reads on until it lists PageSize runs or the query's pages end,
	// so a fleet that is all current costs one call.
	Skip int `json:"skip,omitempty"`
}

// RunProtocol is a running workflow and the protocol it executes.
type RunProtocol struct {
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
	Type       string `json:"type"`
	Protocol   int    `json:"protocol"`
	// FromInput says the run has no protocol attribute: Protocol was read
	// from its input.
	FromInput bool `json:"fromInput,omitempty"`
	// Unknown says neither could be read (an input this fleet cannot
	// decode, for example without the payload keys): Protocol means
	// nothing.
	Unknown bool `json:"unknown,omitempty"`
}

// RunProtocolsPage is one page of RunProtocols; NextPageToken is empty on
// the last.
type RunProtocolsPage struct {
	Runs          []RunProtocol `json:"runs"`
	NextPageToken []byte        `json:"nextPageToken,omitempty"`
	// Skipped counts the runs on the input's Skip protocol left out.
	Skipped int `json:"skipped,omitempty"`
}

// RunProtocols lists a page of workflows and the protocol of each; with
// Skip, the runs not on protocol Skip, reading on past pages of runs that
// are (within scanBudget).
func (f *Fleet) RunProtocols(ctx context.Context, in RunProtocolsInput) (RunProtocolsPage, error) {
	if in.Skip == 0 {
		return f.runProtocols(ctx, in)
	}
	start := time.Now()
	out := RunProtocolsPage{Runs: []RunProtocol{}}
	for {
		page, err := f.runProtocols(ctx, in)
		if err != nil {
			return RunProtocolsPage{}, err
		}
		out.Runs = append(out.Runs, page.Runs...)
		out.Skipped += page.Skipped
		out.NextPageToken = page.NextPageToken
		if len(page.NextPageToken) == 0 || len(out.Runs) >= in.PageSize || time.Since(start) >= scanBudget {
			return out, nil
		}
		in.PageToken = page.NextPageToken
	}
}

func (f *Fleet) runProtocols(ctx context.Context, in RunProtocolsInput) (RunProtocolsPage, error) {
	page, err := f.ListExecutions(ctx, in.ListInput)
	if err != nil {
		return RunProtocolsPage{}, err
	}
	out := RunProtocolsPage{Runs: make([]RunProtocol, 0, len(page.Executions)), NextPageToken: page.NextPageToken}
	for _, e := range page.Executions {
		r := RunProtocol{WorkflowID: e.WorkflowID, RunID: e.RunID, Type: e.Type}
		if n, err := strconv.Atoi(e.Attrs[in.Attr]); err == nil && e.Attrs[in.Attr] != "" {
			if in.Skip != 0 && n == in.Skip {
				out.Skipped++
				continue
			}
			r.Protocol = n
		} else {
			r.FromInput = true
			raw, ok, err := f.readInputField(ctx, e, in.InputField)
			if err != nil {
				return RunProtocolsPage{}, err
			}
			r.Unknown = !ok
			if len(raw) > 0 {
				if err := json.Unmarshal(raw, &r.Protocol); err != nil {
					return RunProtocolsPage{}, fmt.Errorf("protocol of %s: %w", e.WorkflowID, err)
				}
			}
		}
		out.Runs = append(out.Runs, r)
	}
	return out, nil
}

// SignalRunsInput sends Signal with Payload to the latest run of each
// workflow ID.
type SignalRunsInput struct {
	WorkflowIDs []string        `json:"workflowIds"`
	Signal      string          `json:"signal"`
	Payload     json.RawMessage `json:"payload,omitempty"`
}

// SignalRunsResult counts the signals the server took, and the workflows
// that had closed meanwhile.
type SignalRunsResult struct {
	Sent int `json:"sent"`
	Gone int `json:"gone"`
}

// SignalRuns sends the signal to every workflow of the input, signalParallel
// at a time. A workflow that closed meanwhile is counted, not an error; any
// other refusal fails the activity, which is retried (the signal is
// idempotent for its receivers).
func (f *Fleet) SignalRuns(ctx context.Context, in SignalRunsInput) (SignalRunsResult, error) {
	var payload any
	if len(in.Payload) > 0 {
		payload = in.Payload
	}
	var (
		mu   sync.Mutex
		res  SignalRunsResult
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, signalParallel)
	)
	for _, id := range in.WorkflowIDs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := f.Client.SignalWorkflow(ctx, id, "", in.Signal, payload)
			var notFound *serviceerror.NotFound
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.As(err, &notFound):
				res.Gone++
			case err != nil:
				errs = append(errs, fmt.Errorf("signal %s to %s: %w", in.Signal, id, err))
			default:
				res.Sent++
			}
		}()
	}
	wg.Wait()
	return res, errors.Join(errs...)
}

// signalParallel bounds the signals SignalRuns has in flight.
const signalParallel = 16

// PollersInput asks for the workers that polled the workflow task queue
// TaskQueue within the last Within.
type PollersInput struct {
	TaskQueue string        `json:"taskQueue"`
	Within    time.Duration `json:"within"`
}

// Poller is a worker polling the task queue.
type Poller struct {
	Identity   string    `json:"identity"`
	LastAccess time.Time `json:"lastAccess"`
}

// Pollers lists the workers that polled the workflow task queue recently.
// The server lists a worker for minutes after its last poll; a poll lasts
// about a minute, so a worker whose last poll began longer ago than Within
// (more than a minute) is taken as stopped.
func (f *Fleet) Pollers(ctx context.Context, in PollersInput) ([]Poller, error) {
	res, err := f.Client.DescribeTaskQueue(ctx, in.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
	if err != nil {
		return nil, fmt.Errorf("describe task queue %s: %w", in.TaskQueue, err)
	}
	return recentPollers(res, time.Now().Add(-in.Within)), nil
}

func recentPollers(res *workflowservice.DescribeTaskQueueResponse, since time.Time) []Poller {
	out := []Poller{}
	for _, p := range res.GetPollers() {
		if at := lastAccess(p); at.After(since) {
			out = append(out, Poller{Identity: p.GetIdentity(), LastAccess: at})
		}
	}
	return out
}

func lastAccess(p *taskqueuepb.PollerInfo) time.Time {
	if t := p.GetLastAccessTime(); t != nil {
		return t.AsTime()
	}
	return time.Time{}
}
