package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
	"github.com/companionsync/companionsync/workflows"
)

// secrets are what history must not show outside search attributes: org
// names, data-space names, metadata object names, and words of the error
// messages this scenario produces.
var secrets = []string{
	"acme", "emea", "marketing", "Account", "Contact", "LifetimeValue", "HighValueCustomers",
	"injected", "conflict", "already shared",
}

// TestHistoryHoldsNoPlaintext drives a connection through copy failures, a
// refused request, a metadata conflict and a disconnect with the default
// encrypting client and workers, then reads every history through a client
// that has no codec, as anyone with access to the cluster could. Outside
// search attributes, no payload and no failure message holds an org,
// data-space or object name or error text, and every payload is encrypted.
func TestHistoryHoldsNoPlaintext(t *testing.T) {
	settings := testenv.FastSettings()
	env := testenv.Start(t, testenv.Options{Settings: settings})
	require.NotNil(t, env.Keys, "the test environment encrypts by default")
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}

	require.NoError(t, env.Store.Demo().InjectCopyFailures(ctx, "acme", "acme-emea", "marketing", int(settings.InitialSyncRetry.MaximumAttempts)))
	connectAndShare(t, c, ref, "default", "marketing")
	testenv.WaitStatus(t, c, ref, "marketing in Error", testenv.ShareIs("marketing", contract.ShareError))
	testenv.WaitStatus(t, c, ref, "default Active", testenv.ShareIs("default", contract.ShareActive))
	_, err := c.Share(ctx, ref, "default")
	require.ErrorIs(t, err, control.ErrAlreadyShared, "a refusal's message crosses the client decoded")
	assert.Contains(t, err.Error(), "default", "the refusal reads in full through the codec")
	testenv.WaitStatus(t, c, ref, "metadata sync running", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncSucceeded })
	_, err = env.Store.Demo().MakeConflict(ctx, "acme", "acme-emea", "default")
	require.NoError(t, err)
	v := testenv.WaitStatus(t, c, ref, "metadata Error", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncError })
	assert.Contains(t, v.MetadataSync.Error, "Account", "the conflict reads in full through the codec")
	_, err = c.Disconnect(ctx, ref, true)
	require.NoError(t, err)

	raw, err := client.Dial(client.Options{HostPort: env.Server.FrontendAddr(), Namespace: env.Server.Namespace()})
	require.NoError(t, err)
	defer raw.Close()
	resp, err := raw.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(resp.GetExecutions()), 4, "connection, two shares and the metadata sync")

	var payloads, failures, events, actors int
	for _, e := range resp.GetExecutions() {
		it := raw.GetWorkflowHistory(ctx, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId(), false, 0)
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(t, err)
			events++
			where := e.GetExecution().GetWorkflowId() + " event " + ev.GetEventType().String()
			walk(ev.ProtoReflect(), func(m protoreflect.Message) bool {
				switch x := m.Interface().(type) {
				case *commonpb.SearchAttributes:
					return false // readable by design: they are what the UI filters on
				case *commonpb.Header:
					// The actor of a request is readable by design, like the
					// client identity the server records beside it; any
					// other header is a payload like the rest.
					for k, p := range x.GetFields() {
						if k == contract.ActorHeader {
							actors++
							assertNoSecret(t, where+" actor header", string(p.GetData()))
							continue
						}
						payloads++
						assert.Equal(t, codec.MetadataEncodingEncrypted, string(p.GetMetadata()[codec.MetadataEncoding]), "%s: header %s not encrypted", where, k)
					}
					return false
				case *commonpb.Payload:
					payloads++
					assert.Equal(t, codec.MetadataEncodingEncrypted, string(x.GetMetadata()[codec.MetadataEncoding]), "%s: payload not encrypted", where)
					assertNoSecret(t, where+" payload", string(x.GetData()))
					for k, v := range x.GetMetadata() {
						assertNoSecret(t, where+" payload metadata "+k, string(v))
					}
				case *failurepb.Failure:
					failures++
					assertNoSecret(t, where+" failure message", x.GetMessage())
					assertNoSecret(t, where+" failure stack", x.GetStackTrace())
				}
				return true
			})
		}
	}
	t.Logf("checked %d payloads and %d failures in %d events of %d runs", payloads, failures, events, len(resp.GetExecutions()))
	assert.Greater(t, payloads, 50, "payloads checked")
	assert.Greater(t, failures, 3, "failures checked: copy failures, the refusal, the conflict")
	assert.Positive(t, actors, "actor headers seen")

	// A client without the keys cannot read them: it fails, it never sees
	// empty values.
	_, err = control.New(raw).Status(ctx, ref)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "binary/encrypted")
}

func assertNoSecret(t *testing.T, where, s string) {
	t.Helper()
	for _, secret := range secrets {
		if strings.Contains(s, secret) {
			t.Errorf("%s holds %q in plaintext: %.200q", where, secret, s)
		}
	}
}

// walk visits m and every message inside it, depth first; visit returns
// false to skip a message's contents.
func walk(m protoreflect.Message, visit func(protoreflect.Message) bool) {
	if !visit(m) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message(), visit)
					return true
				})
			}
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				for i := range v.List().Len() {
					walk(v.List().Get(i).Message(), visit)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			walk(v.Message(), visit)
		}
		return true
	})
}

// TestUndecryptablePayloadFailsTheTaskVisibly starts a connection under the
// test key ring, then gives the task queue only a worker whose ring lacks
// that key: its workflow tasks fail, visibly and with the missing key's ID,
// instead of running on empty inputs. Once a worker with the key returns
// (here, the first ring with a new active key added: a rotation), the
// connection carries on.
func TestUndecryptablePayloadFailsTheTaskVisibly(t *testing.T) {
	env := testenv.Start(t, testenv.Options{NoWorker: true})
	first := newWorker(t, env)
	c := control.New(env.Client).WithQueryTimeout(30 * time.Second)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	_, err := c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)
	first.stop()

	other, err := codec.GenerateKey("other")
	require.NoError(t, err)
	wrong, err := codec.NewKeyRing(other)
	require.NoError(t, err)
	wrongWorker := workerWithKeys(t, env, wrong)
	// A signal makes a workflow task; the worker without the key fails it.
	require.NoError(t, env.Client.SignalWorkflow(ctx, contract.ConnectionWorkflowID(ref.Home, ref.Companion), "", contract.MessageRecheck, nil))
	id := contract.ConnectionWorkflowID(ref.Home, ref.Companion)
	// The task fails and is retried: the server shows its attempts (a
	// failure the workflow records carries the missing key's ID, encoded
	// under the failing worker's key).
	both, err := testenv.Keys().Add(other)
	require.NoError(t, err)
	_, fc := codec.NewConverters(both)
	var named, failed bool
	testenv.Eventually(t, time.Minute, "the workflow task failing and retried", func() bool {
		d, err := env.Client.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			return false
		}
		it := env.Client.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return false
			}
			if f := ev.GetWorkflowTaskFailedEventAttributes().GetFailure(); f != nil {
				failed = true
				named = named || strings.Contains(fc.FailureToError(f).Error(), `key "test-k1" is not in the key ring`)
			}
		}
		return failed || d.GetPendingWorkflowTask().GetAttempt() >= 2
	})
	t.Logf("a recorded task failure names the missing key: %t", named)
	// Nothing ran on an empty input: the connection's status is unchanged.
	wrongWorker.stop()

	rotated, err := testenv.Keys().WithActive(other)
	require.NoError(t, err)
	workerWithKeys(t, env, rotated)
	// Clients rotate too: the worker's answers are now under the new key.
	opts := client.Options{HostPort: env.Server.FrontendAddr(), Namespace: env.Server.Namespace()}
	opts.DataConverter, opts.FailureConverter = codec.NewConverters(rotated)
	rc, err := client.Dial(opts)
	require.NoError(t, err)
	defer rc.Close()
	c = control.New(rc).WithQueryTimeout(30 * time.Second)
	v := testenv.WaitStatus(t, c, ref, "the connection answers again", func(v contract.StatusView) bool { return v.Status == contract.Incomplete })
	assert.Equal(t, contract.Incomplete, v.Status)
}

// workerWithKeys starts a worker whose client encrypts with ring.
func workerWithKeys(t *testing.T, env *testenv.Env, ring *codec.KeyRing) *stoppable {
	t.Helper()
	opts := client.Options{HostPort: env.Server.FrontendAddr(), Namespace: env.Server.Namespace()}
	opts.DataConverter, opts.FailureConverter = codec.NewConverters(ring)
	cl, err := client.Dial(opts)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	w := worker.New(cl, contract.TaskQueue, worker.Options{})
	workflows.Register(w, &activities.Activities{Orgs: env.Store}, env.Settings)
	require.NoError(t, w.Start())
	s := &stoppable{w: w}
	t.Cleanup(s.stop)
	return s
}

// TestTamperedPayloadFailsOnlyItsWorkflow sends one connection a signal
// whose encrypted payload was altered after encryption. Its workflow task
// fails, visibly, with the reason (the payload does not authenticate),
// and is retried rather than read as empty; the worker stays up and
// another connection on it shares and copies meanwhile. Resetting the
// connection to the task before the signal, without reapplying it, brings
// it back.
func TestTamperedPayloadFailsOnlyItsWorkflow(t *testing.T) {
	env := testenv.Start(t, testenv.Options{SeedRecords: 500})
	c := control.New(env.Client).WithQueryTimeout(30 * time.Second)
	ctx := context.Background()
	victim := control.Ref{Home: "acme", Companion: "acme-emea"}
	other := control.Ref{Home: "acme", Companion: "acme-apac"}
	for _, ref := range []control.Ref{victim, other} {
		_, err := c.Connect(ctx, ref, contract.Settings{})
		require.NoError(t, err)
	}
	id := contract.ConnectionWorkflowID(victim.Home, victim.Companion)
	// The last completed workflow task before the signal: where the reset
	// goes back to.
	resetTo := lastEventOf(t, env.Client, id, enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)

	dc, fc := codec.NewConverters(env.Keys)
	payload, err := dc.ToPayload(nil)
	require.NoError(t, err)
	payload.Data[len(payload.Data)-1] ^= 0xff // the authentication tag
	_, err = env.Client.WorkflowService().SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{
		Namespace:         env.Server.Namespace(),
		WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id},
		SignalName:        contract.MessageRecheck,
		Input:             &commonpb.Payloads{Payloads: []*commonpb.Payload{payload}},
		Identity:          "tamperer",
	})
	require.NoError(t, err)

	var reason string
	testenv.Eventually(t, time.Minute, "the victim's workflow task failing with the reason", func() bool {
		it := env.Client.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				return false
			}
			if f := ev.GetWorkflowTaskFailedEventAttributes().GetFailure(); f != nil {
				reason = fc.FailureToError(f).Error()
			}
		}
		d, err := env.Client.DescribeWorkflowExecution(ctx, id, "")
		return reason != "" && err == nil && d.GetPendingWorkflowTask().GetAttempt() >= 2
	})
	assert.Contains(t, reason, "authentication failed", "the failure says why")
	t.Logf("the victim's workflow task fails with: %s", reason)

	// Meanwhile the same worker serves the other connection.
	_, err = c.Share(ctx, other, "default")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, other, "the other connection's share Active", testenv.ShareIs("default", contract.ShareActive))
	requireCopied(t, env, other.Home, other.Companion, "default")

	// The way back: reset the victim to before the signal, dropping it.
	_, err = env.Client.ResetWorkflowExecution(ctx, &workflowservice.ResetWorkflowExecutionRequest{
		Namespace:                 env.Server.Namespace(),
		WorkflowExecution:         &commonpb.WorkflowExecution{WorkflowId: id},
		Reason:                    "drop a tampered signal",
		WorkflowTaskFinishEventId: resetTo,
		RequestId:                 "reset-tampered",
		ResetReapplyExcludeTypes:  []enumspb.ResetReapplyExcludeType{enumspb.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL, enumspb.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE},
	})
	require.NoError(t, err)
	// The reset runs the workflow task it went back to again: the
	// connection is back once that task is done.
	testenv.WaitStatus(t, c, victim, "the victim answering again", func(v contract.StatusView) bool { return v.Status == contract.Incomplete })
	_, err = c.Share(ctx, victim, "marketing")
	require.NoError(t, err, "the reset connection takes requests again")
	testenv.WaitStatus(t, c, victim, "the victim's share Active", testenv.ShareIs("marketing", contract.ShareActive))
}

// lastEventOf is the ID of the last event of type typ in the workflow's
// current run.
func lastEventOf(t *testing.T, c client.Client, id string, typ enumspb.EventType) int64 {
	t.Helper()
	var last int64
	it := c.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		if ev.GetEventType() == typ {
			last = ev.GetEventId()
		}
	}
	require.NotZero(t, last, "no %s event in %s", typ, id)
	return last
}
