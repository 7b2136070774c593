package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// receiver is a webhook that refuses its first failFirst deliveries with
// 503 and keeps the rest.
type receiver struct {
	mu        sync.Mutex
	failFirst int
	failed    int
	notices   []contract.Notice
	seen      map[string]int
	bad       []string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed < r.failFirst {
		r.failed++
		http.Error(w, "not yet", http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(req.Body)
	var n contract.Notice
	if req.Header.Get("Content-Type") != "application/cloudevents+json" || json.Unmarshal(body, &n) != nil {
		r.bad = append(r.bad, string(body))
		http.Error(w, "bad notice", http.StatusBadRequest)
		return
	}
	r.seen[n.ID]++
	r.notices = append(r.notices, n)
	w.WriteHeader(http.StatusAccepted)
}

// find returns the notices of the connection conn of kind in state.
func (r *receiver) find(conn, kind, state string) []contract.Notice {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []contract.Notice
	for _, n := range r.notices {
		if n.Data.Connection == conn && n.Data.Kind == kind && n.Data.State == state {
			out = append(out, n)
		}
	}
	return out
}

// TestNotifications drives a connection into each condition an operator
// must hear of, and out of it again, with a webhook that fails its first
// deliveries: each condition is notified once when it begins and once when
// it clears, as a CloudEvents notice whose ID the pair shares up to its
// state, and nothing is delivered twice.
func TestNotifications(t *testing.T) {
	rcv := &receiver{failFirst: 2, seen: map[string]int{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	env := testenv.Start(t, testenv.Options{NoWorker: true, SeedRecords: 100})
	env.NotifyURL = srv.URL
	env.Worker = env.NewWorker(t)
	ctx := context.Background()
	demo := env.Store.Demo()
	c := control.New(env.Client)
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	conn := ref.String()
	wait := func(what string, cond func(contract.StatusView) bool) { testenv.WaitStatus(t, c, ref, what, cond) }
	notified := func(kind, state string) contract.Notice {
		t.Helper()
		var got []contract.Notice
		testenv.Eventually(t, 60*time.Second, kind+" "+state+" notified", func() bool {
			got = rcv.find(conn, kind, state)
			return len(got) > 0
		})
		require.Len(t, got, 1, "%s %s: once", kind, state)
		n := got[0]
		assert.Equal(t, "1.0", n.SpecVersion)
		assert.Equal(t, conn, n.Data.Connection)
		assert.Equal(t, 1, n.Data.Version)
		assert.NotEmpty(t, n.Data.Summary)
		assert.False(t, n.Data.Since.IsZero())
		return n
	}
	pair := func(kind string, clear func()) {
		t.Helper()
		firing := notified(kind, contract.AlertStateFiring)
		if raw, err := json.MarshalIndent(firing, "", "  "); err == nil {
			t.Logf("%s:\n%s", kind, raw)
		}
		assert.Equal(t, contract.NoticeFiring, firing.Type)
		assert.NotEmpty(t, firing.Data.Advice, "%s: what to do", kind)
		clear()
		resolved := notified(kind, contract.AlertStateResolved)
		assert.Equal(t, contract.NoticeResolved, resolved.Type)
		incident := func(id string) string { return id[:strings.LastIndex(id, "#")] }
		assert.Equal(t, incident(firing.ID), incident(resolved.ID), "%s: one incident", kind)
		assert.True(t, firing.Data.Since.Equal(resolved.Data.Since), "%s: the incident's start", kind)
	}
	kinds := 0

	_, err := c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)

	// A share in Error.
	require.NoError(t, demo.InjectCopyFailures(ctx, "acme", "acme-emea", "marketing", int(env.Settings.InitialSyncRetry.MaximumAttempts)))
	_, err = c.Share(ctx, ref, "marketing")
	require.NoError(t, err)
	wait("marketing in Error", testenv.ShareIs("marketing", contract.ShareError))
	pair(contract.AlertShareError, func() {
		_, err := c.Retry(ctx, ref, "marketing")
		require.NoError(t, err)
		wait("marketing Active", testenv.ShareIs("marketing", contract.ShareActive))
	})
	kinds++

	// A metadata sync paused on a conflict.
	_, err = c.Share(ctx, ref, "default")
	require.NoError(t, err)
	wait("default Active", testenv.ShareIs("default", contract.ShareActive))
	_, err = demo.MakeConflict(ctx, "acme", "acme-emea", "default")
	require.NoError(t, err)
	wait("metadata paused", func(v contract.StatusView) bool { return v.MetadataSync.Paused })
	pair(contract.AlertMetadataPaused, func() {
		_, err := demo.ResolveConflicts(ctx, "acme", "acme-emea")
		require.NoError(t, err)
		_, err = c.Resume(ctx, ref)
		require.NoError(t, err)
		wait("metadata running", func(v contract.StatusView) bool { return !v.MetadataSync.Paused })
	})
	kinds++

	// A licence about to expire.
	require.NoError(t, demo.SetLicenceExpiry(ctx, "acme", time.Now().Add(72*time.Hour)))
	_, err = c.Recheck(ctx, ref)
	require.NoError(t, err)
	pair(contract.AlertLicenceExpiring, func() {
		require.NoError(t, demo.RenewLicence(ctx, "acme"))
		_, err := c.Recheck(ctx, ref)
		require.NoError(t, err)
	})
	kinds++

	// The connection Inactive.
	require.NoError(t, demo.Deactivate(ctx, "acme-emea"))
	_, err = c.Recheck(ctx, ref)
	require.NoError(t, err)
	wait("Inactive", func(v contract.StatusView) bool { return v.Status == contract.Inactive })
	pair(contract.AlertInactive, func() {
		require.NoError(t, demo.Reactivate(ctx, "acme-emea"))
		_, err := c.Recheck(ctx, ref)
		require.NoError(t, err)
		wait("Active again", func(v contract.StatusView) bool { return v.Status == contract.Active })
	})
	kinds++

	// A workflow vanished: the reconciler finds the share's workflow gone
	// and restarts it; its next run no longer finds it.
	err = env.Client.TerminateWorkflow(ctx, contract.ShareWorkflowID("acme", "acme-emea", "default"), "", "test: a vanished workflow")
	require.NoError(t, err)
	// (The demo seed's globex/globex-emea is registered without a
	// workflow: the reconciler notifies it too.)
	in := contract.DefaultReconcilerInput()
	_, err = c.Doctor(ctx, in)
	require.NoError(t, err)
	firing := notified(contract.AlertWorkflowVanished, contract.AlertStateFiring)
	assert.Equal(t, "companionsync/fleet", firing.Source)
	assert.Equal(t, "default", firing.Data.Subject)
	testenv.Eventually(t, 60*time.Second, "the share's workflow running again", func() bool {
		d, err := env.Client.DescribeWorkflowExecution(ctx, contract.ShareWorkflowID("acme", "acme-emea", "default"), "")
		return err == nil && d.WorkflowExecutionInfo.GetStatus().String() == "Running"
	})
	_, err = c.Doctor(ctx, in)
	require.NoError(t, err)
	notified(contract.AlertWorkflowVanished, contract.AlertStateResolved)
	kinds++

	require.Equal(t, 5, kinds)
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	assert.Equal(t, 2, rcv.failed, "the first deliveries failed and were retried")
	assert.Empty(t, rcv.bad)
	for id, n := range rcv.seen {
		assert.Equal(t, 1, n, "notice %s delivered once", id)
	}
	ours := 0
	for _, n := range rcv.notices {
		if n.Data.Connection == conn {
			ours++
		}
	}
	assert.Equal(t, 2*kinds, ours, "a firing and a resolved notice per condition of the connection, and nothing else")
}
