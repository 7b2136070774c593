package control_test

import (
	"context"
	"errors"
	"maps"
	"path"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc"

	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// shareStatus is the initialization status of a data space, "" if not shared.
func shareStatus(v contract.StatusView, ds string) contract.InitializationStatus {
	sh, _ := testenv.Share(v, ds)
	return sh.InitializationStatus
}

// countStatusCalls reads a connection's status with a client that counts
// the calls it makes to the server.
func countStatusCalls(t *testing.T, env *testenv.Env, ref control.Ref) (contract.StatusView, map[string]int) {
	t.Helper()
	var mu sync.Mutex
	calls := map[string]int{}
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		mu.Lock()
		calls[path.Base(method)]++
		mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	opts := client.Options{HostPort: env.Server.FrontendAddr(), Namespace: env.Server.Namespace(),
		ConnectionOptions: client.ConnectionOptions{DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(count)}}}
	if env.Keys != nil {
		opts.DataConverter, opts.FailureConverter = codec.NewConverters(env.Keys)
	}
	tc, err := client.Dial(opts)
	require.NoError(t, err)
	defer tc.Close()
	mu.Lock()
	clear(calls) // the dial's own calls
	mu.Unlock()
	v, err := control.New(tc).Status(context.Background(), ref)
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	return v, maps.Clone(calls)
}

func TestClientAgainstRealServer(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}

	t.Run("refused pairs name their rule and leave nothing running", func(t *testing.T) {
		cases := []struct {
			companion, rule string
		}{
			{"acme-sbx", contract.RuleSameKind},
			{"acme-old", contract.RuleCompanionActive},
			{"globex-emea", contract.RuleCompanionUnconnected},
			{"nobody", contract.RuleCompanionExists},
			{"globex", contract.RuleCompanionNotHome},
		}
		for _, tc := range cases {
			t.Run(tc.companion, func(t *testing.T) {
				r := control.Ref{Home: "acme", Companion: tc.companion}
				_, err := c.Connect(ctx, r, contract.Settings{})
				var refused *control.RefusedError
				require.ErrorAs(t, err, &refused)
				assert.ErrorIs(t, err, control.ErrIneligible)
				assert.Equal(t, tc.rule, refused.Rule)
				assert.Contains(t, err.Error(), tc.rule)
				_, err = c.Share(ctx, r, "default")
				assert.Error(t, err, "a refused connection accepts nothing")
			})
		}
		_, err := c.Connect(ctx, control.Ref{Home: "nohome", Companion: "acme-apac"}, contract.Settings{})
		var refused *control.RefusedError
		require.ErrorAs(t, err, &refused)
		assert.Equal(t, contract.RuleHomeExists, refused.Rule)
	})

	t.Run("unknown connection", func(t *testing.T) {
		_, err := c.Status(ctx, control.Ref{Home: "acme", Companion: "acme-apac"})
		assert.ErrorIs(t, err, control.ErrUnknownConnection)
		_, err = c.Share(ctx, control.Ref{Home: "acme", Companion: "acme-apac"}, "default")
		assert.ErrorIs(t, err, control.ErrUnknownConnection)
	})

	v, err := c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)
	assert.Equal(t, contract.Incomplete, v.Status)

	t.Run("a status read of a running connection is one query", func(t *testing.T) {
		v, calls := countStatusCalls(t, env, ref)
		assert.Equal(t, contract.Incomplete, v.Status)
		assert.Equal(t, contract.RunRunning, v.Workflow)
		assert.Equal(t, contract.CurrentProtocol, v.Protocol)
		assert.Equal(t, map[string]int{"QueryWorkflow": 1}, calls)
	})

	_, err = c.Connect(ctx, ref, contract.Settings{})
	var refused *control.RefusedError
	require.ErrorAs(t, err, &refused, "a second connect of the same pair")

	v, err = c.Share(ctx, ref, "default")
	require.NoError(t, err)
	assert.Equal(t, contract.Active, v.Status, "Active as soon as a share is requested")
	v = testenv.WaitStatus(t, c, ref, "default Active", func(v contract.StatusView) bool { return shareStatus(v, "default") == contract.ShareActive })
	assert.Equal(t, v.DataSpaces[0].RecordsTotal, v.DataSpaces[0].RecordsCopied)
	home, err := env.Store.Demo().RecordChecksum(ctx, "acme", "default")
	require.NoError(t, err)
	companion, err := env.Store.Demo().CompanionChecksum(ctx, "acme", "acme-emea", "default")
	require.NoError(t, err)
	assert.Equal(t, home, companion, "companion holds exactly the home's records")

	t.Run("a status read with a share and a metadata sync is one query", func(t *testing.T) {
		testenv.WaitStatus(t, c, ref, "metadata sync counted", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncSucceeded })
		v, calls := countStatusCalls(t, env, ref)
		assert.Equal(t, contract.ShareActive, shareStatus(v, "default"))
		assert.Equal(t, contract.SyncSucceeded, v.MetadataSync.Status)
		assert.Equal(t, map[string]int{"QueryWorkflow": 1}, calls, "the children's progress comes with the connection's answer")
	})

	t.Run("refusals change nothing", func(t *testing.T) {
		before, err := c.Status(ctx, ref)
		require.NoError(t, err)
		for _, tc := range []struct {
			name     string
			op       func() error
			want     string
			sentinel error
		}{
			{"unknown data space", func() error { _, err := c.Share(ctx, ref, "nope"); return err }, "unknown data space", control.ErrUnknownDataSpace},
			{"duplicate share", func() error { _, err := c.Share(ctx, ref, "default"); return err }, "already shared", control.ErrAlreadyShared},
			{"retry when not in Error", func() error { _, err := c.Retry(ctx, ref, "default"); return err }, "not Error", control.ErrNotInError},
			{"resume when not paused", func() error { _, err := c.Resume(ctx, ref); return err }, "not paused", control.ErrNotPaused},
			{"unshare not shared", func() error { _, err := c.Unshare(ctx, ref, "sales"); return err }, "not shared", control.ErrNotShared},
			{"bad name", func() error { _, err := c.Share(ctx, ref, "../etc"); return err }, "character", control.ErrInvalidRequest},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := tc.op()
				var refused *control.RefusedError
				require.ErrorAs(t, err, &refused)
				assert.Contains(t, err.Error(), tc.want)
				assert.ErrorIs(t, err, tc.sentinel)
				for _, other := range []error{control.ErrAlreadyShared, control.ErrUnknownDataSpace, control.ErrNotShared,
					control.ErrNotInError, control.ErrNotPaused, control.ErrInvalidRequest, control.ErrConnectionEnded} {
					if other != tc.sentinel {
						assert.NotErrorIs(t, err, other)
					}
				}
			})
		}
		after, err := c.Status(ctx, ref)
		require.NoError(t, err)
		assert.Equal(t, before.Status, after.Status)
		assert.Equal(t, before.DataSpaces, after.DataSpaces)
	})

	t.Run("share while Inactive is refused", func(t *testing.T) {
		require.NoError(t, env.Store.Demo().ExpireLicence(ctx, "acme"))
		_, err := c.Recheck(ctx, ref)
		require.NoError(t, err)
		testenv.WaitStatus(t, c, ref, "Inactive", func(v contract.StatusView) bool { return v.Status == contract.Inactive })
		_, err = c.Share(ctx, ref, "marketing")
		var refused *control.RefusedError
		require.ErrorAs(t, err, &refused)
		assert.ErrorIs(t, err, control.ErrConnectionInactive)
		assert.Contains(t, err.Error(), "Inactive")
		require.NoError(t, env.Store.Demo().RenewLicence(ctx, "acme"))
		_, err = c.Recheck(ctx, ref)
		require.NoError(t, err)
		v := testenv.WaitStatus(t, c, ref, "Active again", func(v contract.StatusView) bool { return v.Status == contract.Active })
		assert.Equal(t, contract.ShareActive, shareStatus(v, "default"), "shares intact")
	})

	t.Run("conflict, error log, resume", func(t *testing.T) {
		testenv.WaitStatus(t, c, ref, "metadata sync running", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncSucceeded })
		_, err := env.Store.Demo().MakeConflict(ctx, "acme", "acme-emea", "default")
		require.NoError(t, err)
		v := testenv.WaitStatus(t, c, ref, "metadata Error", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncError })
		assert.Positive(t, v.MetadataSync.ErrorCount)
		entries, err := c.ErrorLog(ctx, ref)
		require.NoError(t, err)
		require.NotEmpty(t, entries)
		assert.Equal(t, contract.KindConflict, entries[0].Kind)
		_, err = env.Store.Demo().ResolveConflicts(ctx, "acme", "acme-emea")
		require.NoError(t, err)
		_, err = c.Resume(ctx, ref)
		require.NoError(t, err)
		testenv.WaitStatus(t, c, ref, "metadata Succeeded", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncSucceeded })
		entries, err = c.ErrorLog(ctx, ref)
		require.NoError(t, err)
		assert.Empty(t, entries)
	})

	t.Run("list from visibility", func(t *testing.T) {
		testenv.Eventually(t, 30*time.Second, "listed as Active", func() bool {
			list, err := c.List(ctx, control.Filter{Status: "Active", Home: "acme"})
			return err == nil && len(list) == 1 && list[0].Connection == "acme/acme-emea"
		})
		testenv.Eventually(t, 30*time.Second, "refused pairs listed as Refused", func() bool {
			list, err := c.List(ctx, control.Filter{Status: control.StatusRefused, Home: "acme"})
			if err != nil || len(list) != 5 {
				return false
			}
			for _, s := range list {
				if s.Status != control.StatusRefused {
					return false
				}
			}
			return true
		})
		list, err := c.List(ctx, control.Filter{Status: string(contract.Connecting)})
		require.NoError(t, err)
		assert.Empty(t, list, "a refused connection is not listed as Connecting")
	})

	v, err = c.Disconnect(ctx, ref, true)
	require.NoError(t, err)
	assert.Equal(t, contract.Disconnected, v.Status)
	n, err := env.Store.Demo().CompanionRecordCount(ctx, "acme", "acme-emea", "default")
	require.NoError(t, err)
	assert.Zero(t, n, "nothing left in the companion")
	v, err = c.Status(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, contract.Disconnected, v.Status, "status still answers after the end")
	_, err = c.Share(ctx, ref, "default")
	require.True(t, errors.As(err, &refused), "operations after the end are refused: %v", err)
}

// TestStatusOfARetiredProtocol: a connection whose run is on a protocol
// this release no longer runs (its worker fails every task of it) still
// answers a status read, from what it last published, running or closed.
func TestStatusOfARetiredProtocol(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	c := control.New(env.Client).WithQueryTimeout(5 * time.Second)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	_, err := env.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: contract.ConnectionWorkflowID(ref.Home, ref.Companion), TaskQueue: contract.TaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			contract.AttrHomeOrg.ValueSet(ref.Home),
			contract.AttrCompanionOrg.ValueSet(ref.Companion),
			contract.AttrConnectionStatus.ValueSet(string(contract.Active)),
		),
	}, contract.ConnectionWorkflowName, contract.ConnectionInput{Home: ref.Home, Companion: ref.Companion,
		Protocol: contract.ProtocolLocalReport, State: &contract.ConnectionState{Status: contract.Active, Handshaken: true}})
	require.NoError(t, err)
	v, err := c.Status(ctx, ref)
	require.NoError(t, err, "a running connection of a retired protocol")
	assert.True(t, v.Stale)
	assert.Equal(t, contract.Active, v.Status)

	require.NoError(t, env.Client.TerminateWorkflow(ctx, contract.ConnectionWorkflowID(ref.Home, ref.Companion), "", "test: a retired protocol"))
	v, err = c.Status(ctx, ref)
	require.NoError(t, err, "a closed connection of a retired protocol")
	assert.Equal(t, contract.RunTerminated, v.Workflow)
	assert.Equal(t, contract.Active, v.LastStatus)
}
