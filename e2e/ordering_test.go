package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	updatepb "go.temporal.io/api/update/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
	"github.com/companionsync/companionsync/orgstore"
)

// gate holds calls until it is opened; entered is closed once a call waits.
type gate struct {
	entered, open chan struct{}
	once          sync.Once
}

func newGate() *gate { return &gate{entered: make(chan struct{}), open: make(chan struct{})} }

func (g *gate) pass(ctx context.Context) error {
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gatedOrgs is the org store with the removal of records and the listing of
// data spaces (the health check's last read) held at gates while set.
type gatedOrgs struct {
	*orgstore.Store
	mu             sync.Mutex
	remove, health *gate
}

func (g *gatedOrgs) hold(which **gate) *gate {
	g.mu.Lock()
	defer g.mu.Unlock()
	*which = newGate()
	return *which
}

func (g *gatedOrgs) gateOf(which **gate) *gate {
	g.mu.Lock()
	defer g.mu.Unlock()
	return *which
}

func (g *gatedOrgs) RemoveBatch(ctx context.Context, s companionsync.Share, limit int) (int, bool, error) {
	if gt := g.gateOf(&g.remove); gt != nil {
		if err := gt.pass(ctx); err != nil {
			return 0, true, err
		}
	}
	return g.Store.RemoveBatch(ctx, s, limit)
}

func (g *gatedOrgs) DataSpaces(ctx context.Context, home string) ([]string, error) {
	if gt := g.gateOf(&g.health); gt != nil {
		if err := gt.pass(ctx); err != nil {
			return nil, err
		}
	}
	return g.Store.DataSpaces(ctx, home)
}

// TestShareRequestAfterARemovalEndedInTheSameTask: a share's removal ends
// while the connection's workflow task is busy (a health check held in its
// store read), and a share request for the same data space arrives after
// the end. The next workflow task holds both; the connection takes the
// child's end first, so the request meets a data space no longer shared
// and is accepted, as a status read after the end would have promised.
// (Taken the other way round, the request was refused as "being removed",
// after a status read, answered from a task the server then rejected for
// its unhandled events, had already shown the data space gone.) As a
// signal the request is applied after the end; as an update its validator,
// which cannot apply the end, lets it through to its handler, which does.
func TestShareRequestAfterARemovalEndedInTheSameTask(t *testing.T) {
	t.Run("signal", func(t *testing.T) {
		shareAfterRemovalEnded(t, func(ctx context.Context, env *testenv.Env, id string) func() error {
			require.NoError(t, env.Client.SignalWorkflow(ctx, id, "", contract.MessageShare, contract.DataSpaceRequest{DataSpace: "marketing"}))
			return func() error { return nil }
		})
	})
	t.Run("update", func(t *testing.T) {
		shareAfterRemovalEnded(t, func(ctx context.Context, env *testenv.Env, id string) func() error {
			const updateID = "share-after-removal"
			answered := make(chan error, 1)
			go func() {
				h, err := env.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
					UpdateID: updateID, WorkflowID: id, UpdateName: contract.MessageShare,
					Args: []any{contract.DataSpaceRequest{DataSpace: "marketing"}}, WaitForStage: client.WorkflowUpdateStageCompleted,
				})
				if err == nil {
					err = h.Get(ctx, nil)
				}
				answered <- err
			}()
			// The server holds the update for the connection's next workflow
			// task, the one that also carries the share's end.
			testenv.Eventually(t, 30*time.Second, "the server admitted the update", func() bool {
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				_, err := env.Client.WorkflowService().PollWorkflowExecutionUpdate(pctx, &workflowservice.PollWorkflowExecutionUpdateRequest{
					Namespace:  env.Server.Namespace(),
					UpdateRef:  &updatepb.UpdateRef{WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id}, UpdateId: updateID},
					WaitPolicy: &updatepb.WaitPolicy{LifecycleStage: enumspb.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ADMITTED},
				})
				return err == nil
			})
			return func() error { return <-answered }
		})
	})
}

// shareAfterRemovalEnded runs the scenario above; send sends the share
// request and returns a wait for its answer.
func shareAfterRemovalEnded(t *testing.T, send func(ctx context.Context, env *testenv.Env, id string) func() error) {
	settings := testenv.FastSettings()
	settings.HealthCheckInterval = time.Hour // only the recheck below checks health
	settings.MetadataSyncInterval = time.Hour
	env := testenv.Start(t, testenv.Options{NoWorker: true, Settings: settings})
	orgs := &gatedOrgs{Store: env.Store.Store}
	newWorkerOn(t, env, orgs)

	c := control.New(env.Client)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	id := contract.ConnectionWorkflowID(ref.Home, ref.Companion)
	shareID := contract.ShareWorkflowID(ref.Home, ref.Companion, "marketing")
	connectAndShare(t, c, ref, "marketing")
	testenv.WaitStatus(t, c, ref, "marketing Active", testenv.ShareIs("marketing", contract.ShareActive))

	removal := orgs.hold(&orgs.remove)
	_, err := c.Unshare(ctx, ref, "marketing")
	require.NoError(t, err)
	<-removal.entered

	health := orgs.hold(&orgs.health)
	require.NoError(t, env.Client.SignalWorkflow(ctx, id, "", contract.MessageRecheck, nil))
	<-health.entered // the connection's workflow task now waits on its health check

	close(removal.open)
	testenv.Eventually(t, 30*time.Second, "the share's workflow ended", func() bool {
		d, err := env.Client.DescribeWorkflowExecution(ctx, shareID, "")
		return err == nil && d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
	})
	testenv.Eventually(t, 30*time.Second, "the connection's record of the share's end", func() bool {
		d, err := env.Client.DescribeWorkflowExecution(ctx, id, "")
		require.NoError(t, err)
		for _, ch := range d.GetPendingChildren() {
			if ch.GetWorkflowId() == shareID {
				return false
			}
		}
		return true
	})
	answered := send(ctx, env, id)
	close(health.open)
	require.NoError(t, answered(), "the request met the state after the removal")

	v := testenv.WaitStatus(t, c, ref, "marketing shared again", testenv.ShareIs("marketing", contract.ShareActive))
	assert.Empty(t, v.LastRejected, "the request met the state after the removal")
	requireCopied(t, env, ref.Home, ref.Companion, "marketing")
	_, err = c.Disconnect(ctx, ref, true)
	require.NoError(t, err)
}
