package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
	"github.com/companionsync/companionsync/workflows"
)

// TestAdoptionOfEachChildProtocol: a connection restarted by the
// reconciler runs the current protocol and adopts running children of every
// protocol that moves (1 to the current one): the adopted share's progress
// shows in the status, an unshare sent to it is acknowledged, and its end
// (the removal) is applied, leaving nothing in the companion.
func TestAdoptionOfEachChildProtocol(t *testing.T) {
	for p := contract.OldestProtocol; p <= contract.CurrentProtocol; p++ {
		t.Run(fmt.Sprintf("protocol %d", p), func(t *testing.T) {
			env, c := startFleet(t)
			ctx := context.Background()
			ref := control.Ref{Home: "acme", Companion: "acme-emea"}
			shareOnProtocol(t, env, c, ref, p)
			shareID := contract.ShareWorkflowID(ref.Home, ref.Companion, "default")
			require.Equal(t, int(p), runProtocol(t, env, shareID), "the share runs its connection's protocol")
			shareRun := describeRun(t, env, shareID)

			require.NoError(t, env.Client.TerminateWorkflow(ctx, contract.ConnectionWorkflowID(ref.Home, ref.Companion), "", "test: lost connection workflow"))
			report, err := c.Doctor(ctx, contract.ReconcilerInput{Repair: true})
			require.NoError(t, err)
			missing := findings(report, contract.FindingConnectionWorkflowMissing, ref.String())
			require.Len(t, missing, 1, "report %+v", report)
			assert.Equal(t, contract.OutcomeRepaired, missing[0].Outcome, "repair: %s", missing[0].Repair)

			total, err := env.Store.Demo().CountRecords(ctx, ref.Home, "default")
			require.NoError(t, err)
			v := testenv.WaitStatus(t, c, ref, "adopted, with the share's progress", func(v contract.StatusView) bool {
				sh, _ := testenv.Share(v, "default")
				return v.Workflow == contract.RunRunning && v.Status == contract.Active &&
					sh.InitializationStatus == contract.ShareActive && sh.RecordsCopied == total && sh.RecordsTotal == total
			})
			assert.Equal(t, contract.CurrentProtocol, v.Protocol, "the restarted connection runs the current protocol")
			assert.Equal(t, shareRun, describeRun(t, env, shareID), "the running share was adopted, not started again")

			_, err = c.Unshare(ctx, ref, "default")
			require.NoError(t, err, "the adopted share acknowledges the unshare")
			testenv.WaitStatus(t, c, ref, "the removal's end applied", testenv.ShareGone("default"))
			n, err := env.Store.Demo().CompanionRecordCount(ctx, ref.Home, ref.Companion, "default")
			require.NoError(t, err)
			assert.Zero(t, n, "records left in the companion")
			_, err = c.Disconnect(ctx, ref, true)
			require.NoError(t, err)
		})
	}
}

// runProtocol reads the protocol of a workflow's latest run as the upgrade
// does: its search attribute, or its input.
func runProtocol(t *testing.T, env *testenv.Env, workflowID string) int {
	t.Helper()
	fleet := &activities.Fleet{Client: env.Client}
	if env.Keys != nil {
		fleet.Converter = codec.NewDataConverter(env.Keys)
	}
	var page activities.RunProtocolsPage
	testenv.Eventually(t, time.Minute, workflowID+" in visibility", func() bool {
		var err error
		page, err = fleet.RunProtocols(context.Background(), workflows.RunProtocolsInput(100, nil))
		require.NoError(t, err)
		return slices.ContainsFunc(page.Runs, func(r activities.RunProtocol) bool { return r.WorkflowID == workflowID })
	})
	for _, r := range page.Runs {
		if r.WorkflowID == workflowID {
			return r.Protocol
		}
	}
	t.Fatalf("%s is not running", workflowID)
	return -1
}
