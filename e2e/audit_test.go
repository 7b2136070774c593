package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	updatepb "go.temporal.io/api/update/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
	"github.com/companionsync/companionsync/workflows"
)

// auditScene is a connection acme/acme-emea that alice connected and
// shared "default" on, driven by a client that reads the audit trail.
type auditScene struct {
	env *testenv.Env
	c   *control.Client
	ref control.Ref
	wid string
}

func newAuditScene(t *testing.T) *auditScene {
	t.Helper()
	env := testenv.Start(t, testenv.Options{SeedRecords: 100})
	s := &auditScene{env: env, c: control.New(env.Client).WithAudit(env.Store), ref: control.Ref{Home: "acme", Companion: "acme-emea"}}
	s.wid = contract.ConnectionWorkflowID(s.ref.Home, s.ref.Companion)
	_, err := s.c.Connect(as("alice"), s.ref, contract.Settings{})
	require.NoError(t, err)
	_, err = s.c.Share(as("alice"), s.ref, "default")
	require.NoError(t, err)
	return s
}

// as is a context whose requests name actor.
func as(actor string) context.Context { return control.WithActor(context.Background(), actor) }

// TestAuditTrail drives a connection with updates and signals from named
// actors, a default one and none, with requests accepted and refused (by
// the validator, which the worker records, and by the workflow), then
// disconnects it, and reads the trail from the org store: every request, in
// order, with its actor, channel and outcome.
func TestAuditTrail(t *testing.T) {
	s := newAuditScene(t)
	env, c, ref, wid := s.env, s.c, s.ref, s.wid
	ctx := context.Background()
	_, err := c.Share(as("bob"), ref, "default")
	require.ErrorIs(t, err, control.ErrAlreadyShared)
	_, err = c.Share(as("bob"), ref, "nope")
	require.ErrorIs(t, err, control.ErrUnknownDataSpace)
	// A signal: resume when nothing is paused is refused by the workflow.
	require.NoError(t, env.Client.SignalWorkflow(as("carol"), wid, "", contract.MessageResume, nil))
	// A signal from a client without the actor propagator (as the Web UI
	// and the temporal CLI send them).
	bare := bareClient(t, env)
	require.NoError(t, bare.SignalWorkflow(ctx, wid, "", contract.MessageRecheck, nil))
	// An update with the client's default actor (its identity).
	_, err = c.Recheck(ctx, ref)
	require.NoError(t, err)
	_, err = c.Disconnect(as("alice"), ref, true)
	require.NoError(t, err)

	type row struct{ actor, request, subject, via, outcome string }
	want := []row{
		{"alice", contract.RequestConnect, "", contract.ViaStart, contract.AuditAccepted},
		{"alice", contract.MessageShare, "default", contract.ViaUpdate, contract.AuditAccepted},
		{"bob", contract.MessageShare, "default", contract.ViaUpdate, contract.AuditRefused},
		{"bob", contract.MessageShare, "nope", contract.ViaUpdate, contract.AuditRefused},
		{"carol", contract.MessageResume, "", contract.ViaSignal, contract.AuditRefused},
		{contract.ActorUnattributed, contract.MessageRecheck, "", contract.ViaSignal, contract.AuditAccepted},
		{"*", contract.MessageRecheck, "", contract.ViaUpdate, contract.AuditAccepted},
		{"alice", contract.MessageDisconnect, "", contract.ViaUpdate, contract.AuditAccepted},
	}
	// Refusals by the validator are written by the worker beside the
	// workflow: wait until every entry is in.
	var got []contract.AuditEntry
	testenv.Eventually(t, 30*time.Second, "the whole audit trail", func() bool {
		got, err = c.Audit(ctx, ref, time.Time{})
		require.NoError(t, err)
		return len(got) >= len(want)
	})
	require.Len(t, got, len(want), "entries: %v", got)
	checked := 0
	for i, w := range want {
		e := got[i]
		if w.actor == "*" {
			assert.Contains(t, e.Actor, "@", "entry %d: the client identity PID@HOST", i)
		} else {
			assert.Equal(t, w.actor, e.Actor, "entry %d", i)
		}
		assert.Equal(t, w.request, e.Request, "entry %d", i)
		assert.Equal(t, w.subject, e.Subject, "entry %d", i)
		assert.Equal(t, w.via, e.Via, "entry %d", i)
		assert.Equal(t, w.outcome, e.Outcome, "entry %d", i)
		assert.Equal(t, "acme/acme-emea", e.Connection)
		assert.False(t, e.At.IsZero())
		if w.outcome == contract.AuditRefused {
			assert.NotEmpty(t, e.Reason, "entry %d: a refusal says why", i)
		}
		checked++
	}
	require.Equal(t, len(want), checked)
	assert.Contains(t, got[2].Reason, "already shared")
	assert.Contains(t, got[3].Reason, "unknown data space")
	assert.Contains(t, got[4].Reason, "not paused")

	// --since keeps the later entries only.
	since := got[5].At
	want5 := 0
	for _, e := range got {
		if !e.At.Before(since) {
			want5++
		}
	}
	later, err := c.Audit(ctx, ref, since)
	require.NoError(t, err)
	assert.Len(t, later, want5)
	assert.Less(t, want5, len(got))

}

// bareClient dials the environment's server without the actor propagator.
func bareClient(t *testing.T, env *testenv.Env) client.Client {
	t.Helper()
	opts := client.Options{HostPort: env.Server.FrontendAddr(), Namespace: env.Server.Namespace()}
	if env.Keys != nil {
		opts.DataConverter, opts.FailureConverter = codec.NewConverters(env.Keys)
	}
	c, err := client.Dial(opts)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// TestRequestsInOneTaskKeepTheirOrder sends two signals and then an update
// while no worker runs, so that all three reach the connection in one
// workflow task: the main loop's selector takes the first signal as the
// task is applied, and the update's handler runs before the main loop. The
// update must still come after both signals, and the trail must keep the
// order they arrived in.
func TestRequestsInOneTaskKeepTheirOrder(t *testing.T) {
	s := newAuditScene(t)
	env, c, ref, wid := s.env, s.c, s.ref, s.wid
	ctx := context.Background()
	testenv.WaitStatus(t, c, ref, "the share Active", testenv.ShareIs("default", contract.ShareActive))

	env.Worker.Stop()
	require.NoError(t, env.Client.SignalWorkflow(as("carol"), wid, "", contract.MessageResume, nil))
	require.NoError(t, env.Client.SignalWorkflow(as("erin"), wid, "", contract.MessageRecheck, nil))
	const updateID = "recheck-after-two-signals"
	updated := make(chan error, 1)
	go func() {
		h, err := env.Client.UpdateWorkflow(as("dave"), client.UpdateWorkflowOptions{
			WorkflowID: wid, UpdateID: updateID, UpdateName: contract.MessageRecheck,
			WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		if err == nil {
			err = h.Get(ctx, nil)
		}
		updated <- err
	}()
	// The worker starts once the server holds the update beside the two
	// signals.
	testenv.Eventually(t, 30*time.Second, "the update admitted", func() bool {
		_, err := env.Client.WorkflowService().PollWorkflowExecutionUpdate(ctx, &workflowservice.PollWorkflowExecutionUpdateRequest{
			Namespace:  env.Server.Namespace(),
			UpdateRef:  &updatepb.UpdateRef{WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: wid}, UpdateId: updateID},
			WaitPolicy: &updatepb.WaitPolicy{LifecycleStage: enumspb.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ADMITTED},
		})
		return err == nil
	})
	env.Worker = env.NewWorker(t)
	select {
	case err := <-updated:
		require.NoError(t, err)
	case <-time.After(60 * time.Second):
		t.Fatal("the update did not complete")
	}

	type row struct{ actor, request, via, outcome string }
	want := []row{
		{"carol", contract.MessageResume, contract.ViaSignal, contract.AuditRefused},
		{"erin", contract.MessageRecheck, contract.ViaSignal, contract.AuditAccepted},
		{"dave", contract.MessageRecheck, contract.ViaUpdate, contract.AuditAccepted},
	}
	var got []contract.AuditEntry
	testenv.Eventually(t, 30*time.Second, "the three requests in the trail", func() bool {
		all, err := c.Audit(ctx, ref, time.Time{})
		require.NoError(t, err)
		got = got[:0]
		for _, e := range all {
			if e.Actor != "alice" { // alice connected and shared
				got = append(got, e)
			}
		}
		return len(got) >= len(want)
	})
	require.Len(t, got, len(want), "entries: %v", got)
	checked := 0
	for i, w := range want {
		assert.Equal(t, w, row{got[i].Actor, got[i].Request, got[i].Via, got[i].Outcome}, "entry %d", i)
		checked++
	}
	require.Equal(t, len(want), checked)

	// The run replays: waiting for the claimed signal adds no command.
	hist := historyOf(t, env.Client, wid, "")
	opts := worker.WorkflowReplayerOptions{Interceptors: []interceptor.WorkerInterceptor{workflows.Interceptor(nil)}}
	if env.Keys != nil {
		opts.DataConverter, opts.FailureConverter = codec.NewConverters(env.Keys)
	}
	replayer, err := worker.NewWorkflowReplayerWithOptions(opts)
	require.NoError(t, err)
	workflows.RegisterWorkflows(replayer, workflows.Settings{})
	require.NoError(t, replayer.ReplayWorkflowHistory(nil, hist))
	if label := os.Getenv("COMPANIONSYNC_RECORD_HISTORIES"); label != "" {
		writeHistories(t, env.Client, label+"-one-task", wid)
	}
}
