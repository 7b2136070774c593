package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/companionsync/companionsync/codec"
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

	require.NoError(t, env.Store.InjectCopyFailures(ctx, "acme", "acme-emea", "marketing", int(settings.InitialSyncRetry.MaximumAttempts)))
	connectAndShare(t, c, ref, "default", "marketing")
	testenv.WaitStatus(t, c, ref, "marketing in Error", testenv.ShareIs("marketing", workflows.ShareError))
	testenv.WaitStatus(t, c, ref, "default Active", testenv.ShareIs("default", workflows.ShareActive))
	_, err := c.Share(ctx, ref, "default")
	require.ErrorIs(t, err, control.ErrAlreadyShared, "a refusal's message crosses the client decoded")
	assert.Contains(t, err.Error(), "default", "the refusal reads in full through the codec")
	testenv.WaitStatus(t, c, ref, "metadata sync running", func(v workflows.StatusView) bool { return v.MetadataSync.Status == workflows.SyncSucceeded })
	_, err = env.Store.MakeConflict(ctx, "acme", "acme-emea", "default")
	require.NoError(t, err)
	v := testenv.WaitStatus(t, c, ref, "metadata Error", func(v workflows.StatusView) bool { return v.MetadataSync.Status == workflows.SyncError })
	assert.Contains(t, v.MetadataSync.Error, "Account", "the conflict reads in full through the codec")
	_, err = c.Disconnect(ctx, ref, true)
	require.NoError(t, err)

	raw, err := client.Dial(client.Options{HostPort: env.Server.FrontendAddr(), Namespace: env.Server.Namespace()})
	require.NoError(t, err)
	defer raw.Close()
	resp, err := raw.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(resp.GetExecutions()), 4, "connection, two shares and the metadata sync")

	var payloads, failures, events int
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
