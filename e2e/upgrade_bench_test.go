package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
	"github.com/companionsync/companionsync/workflows"
)

// BenchmarkUpgradeMove measures how fast a fleet moves onto the current
// protocol: COMPANIONSYNC_BENCH_CONNECTIONS (default 100) connections, each
// with an Active share and its metadata sync, run on protocol 3; then one
// Upgrade (what the worker does at start) asks every run to move, and the
// benchmark waits until visibility shows every workflow on the current
// protocol:
//
//	go test ./e2e -run '^$' -bench UpgradeMove -benchtime 1x
func BenchmarkUpgradeMove(b *testing.B) {
	n := benchSize(b, "COMPANIONSYNC_BENCH_CONNECTIONS", 100, 1, 10_000)
	for range b.N {
		env := testenv.Start(b, testenv.Options{SeedRecords: 100})
		ctx := context.Background()
		benchNoError(b, env.Store.Demo().AddOrg(ctx, companionsync.Org{ID: "fleet", Role: companionsync.RoleHome, Kind: companionsync.KindProduction,
			LicenceExpiresAt: time.Now().AddDate(1, 0, 0), MaxCompanions: n}))
		benchNoError(b, env.Store.Demo().AddDataSpace(ctx, "fleet", "default", 10))
		c := control.New(env.Client)
		refs := make([]control.Ref, n)
		for i := range refs {
			refs[i] = control.Ref{Home: "fleet", Companion: fmt.Sprintf("fleet-%04d", i)}
			benchNoError(b, env.Store.Demo().AddOrg(ctx, companionsync.Org{ID: refs[i].Companion, Role: companionsync.RoleCompanion, Kind: companionsync.KindProduction, Active: true}))
			benchNoError(b, startOnProtocol(ctx, env.Client, refs[i], contract.OldestProtocol))
		}
		for _, ref := range refs {
			testenv.WaitStatus(b, c, ref, "Incomplete", func(v contract.StatusView) bool { return v.Status == contract.Incomplete })
			_, err := c.Share(ctx, ref, "default")
			benchNoError(b, err)
		}
		for _, ref := range refs {
			testenv.WaitStatus(b, c, ref, "Active with its metadata sync", func(v contract.StatusView) bool {
				return testenv.ShareIs("default", contract.ShareActive)(v) && v.MetadataSync.Status != ""
			})
		}
		total := 3 * n
		onCurrent := workflows.UpgradeQuery + fmt.Sprintf(" AND %s = '%s'", contract.AttrProtocol.GetName(), contract.CurrentProtocol)
		b.ResetTimer()
		start := time.Now()
		res, err := c.Upgrade(ctx, control.UpgradeOptions{By: "benchmark", Move: true, Converter: codec.NewDataConverter(env.Keys)})
		benchNoError(b, err)
		asked := time.Since(start)
		if len(res.Move) != total {
			b.Fatalf("%d runs to move, want %d", len(res.Move), total)
		}
		deadline := time.Now().Add(10 * time.Minute)
		for {
			cnt, err := env.Client.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: onCurrent})
			benchNoError(b, err)
			if int(cnt.GetCount()) >= total {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d workflows moved in 10 minutes", cnt.GetCount(), total)
			}
			time.Sleep(100 * time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(total), "workflows")
		b.ReportMetric(asked.Seconds(), "s-to-ask")
		b.ReportMetric(elapsed.Seconds(), "s-to-move")
		b.ReportMetric(float64(total)/elapsed.Seconds(), "workflows/s")
		b.ReportMetric(3*10_000/(float64(total)/elapsed.Seconds())/60, "min-for-10000-connections")
	}
}

// startOnProtocol starts a connection workflow that runs protocol p: a new
// connection runs the current protocol whatever its starter says, so the
// run starts as one continued under p would, with state that has not been
// through the handshake yet.
func startOnProtocol(ctx context.Context, tc client.Client, ref control.Ref, p contract.Protocol) error {
	_, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: contract.ConnectionWorkflowID(ref.Home, ref.Companion), TaskQueue: contract.TaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			contract.AttrHomeOrg.ValueSet(ref.Home),
			contract.AttrCompanionOrg.ValueSet(ref.Companion),
			contract.AttrConnectionStatus.ValueSet(string(contract.Connecting)),
		),
	}, contract.ConnectionWorkflowName, contract.ConnectionInput{Home: ref.Home, Companion: ref.Companion, Protocol: p,
		Settings: testenv.FastSettings(), State: &contract.ConnectionState{Status: contract.Connecting}})
	return err
}
