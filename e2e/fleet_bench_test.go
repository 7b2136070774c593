package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// BenchmarkFleet brings up a fleet of connections, each Active with one
// 10-record share, on the embedded default (in-process server on SQLite,
// the worker in its own process), in steps, and at each step reports: the
// time to bring the step's connections up, the worker's RSS per connection
// (settled, at the workflow cache size it states), the server process's
// RSS, the idle CPU of both processes, the history events per connection
// per day while idle, and the p99 time from a licence expiry to Inactive
// showing in the status. Health checks and the fleet watcher's sweep run
// every 30 seconds (the embedded default's), metadata rounds likewise.
//
//	COMPANIONSYNC_BENCH_FLEET=1000,5000,10000 COMPANIONSYNC_BENCH_CACHE=1000 \
//	  go test ./e2e -run '^$' -bench Fleet -benchtime 1x -timeout 120m
func BenchmarkFleet(b *testing.B) {
	steps := fleetSteps(b)
	total := steps[len(steps)-1]
	cache := benchSize(b, envBenchCache, 1000, 10, 100_000)
	const interval = 30 * time.Second
	settings := contract.DefaultSettings()
	settings.HealthCheckInterval, settings.MetadataSyncInterval = interval, interval
	env := testenv.Start(b, testenv.Options{NoWorker: true, SeedRecords: 100, Settings: settings})
	ctx := context.Background()
	demo := env.Store.Demo()
	for i := range total {
		ref := benchRef(i)
		benchNoError(b, demo.AddOrg(ctx, companionsync.Org{ID: ref.Home, Role: companionsync.RoleHome,
			Kind: companionsync.KindProduction, LicenceExpiresAt: time.Now().AddDate(1, 0, 0), MaxCompanions: 1}))
		benchNoError(b, demo.AddOrg(ctx, companionsync.Org{ID: ref.Companion, Role: companionsync.RoleCompanion,
			Kind: companionsync.KindProduction, Active: true}))
		benchNoError(b, demo.AddDataSpace(ctx, ref.Home, "small", 10))
	}
	for b.Loop() {
		settleAck := filepath.Join(b.TempDir(), "settled")
		proc := startWorkerProcess(b, env, fmt.Sprintf("%s=%d", envWorkflowCache, cache), envSettleAck+"="+settleAck)
		pid := proc.cmd.Process.Pid
		benchNoError(b, awaitPoller(ctx, env.Client, contract.TaskQueue))
		c := control.New(env.Client).WithQueryTimeout(time.Minute)
		shape := newBenchShape(50)
		awaitIdle(b, pid)
		base := settledRSSKiB(b, proc, settleAck)
		fmt.Printf("fleet: worker cache %d workflows, health and metadata every %s; worker RSS %d KiB before\n", cache, interval, base)
		fmt.Printf("%8s %10s %12s %12s %12s %12s %12s %14s\n", "fleet", "bring-up", "worker KiB", "KiB/conn", "server KiB", "worker CPU", "server CPU", "p99 to Inactive")
		up := 0
		for _, n := range steps {
			progress("fleet: bringing up connections %d to %d", up, n)
			start := time.Now()
			openIdle(b, c, shape, up, n-up)
			bringUp := time.Since(start)
			up = n
			awaitIdle(b, pid)
			rss := settledRSSKiB(b, proc, settleAck)
			serverRSS := procRSSKiB(b, os.Getpid())
			// Idle: two sweeps' worth of quiet, CPU of both processes.
			window := 2 * interval
			w0, s0 := cpuTime(b, pid), cpuTime(b, os.Getpid())
			time.Sleep(window)
			workerIdle := float64(cpuTime(b, pid)-w0) / float64(window)
			serverIdle := float64(cpuTime(b, os.Getpid())-s0) / float64(window)
			p99 := expiryToInactive(b, c, env, n)
			fmt.Printf("%8d %10s %12d %12.1f %12d %11.1f%% %11.1f%% %14s\n", n, bringUp.Round(time.Second), rss, float64(rss-base)/float64(n),
				serverRSS, 100*workerIdle, 100*serverIdle, p99.Round(100*time.Millisecond))
			b.ReportMetric(float64(rss-base)/float64(n), fmt.Sprintf("worker-KiB/conn@%d", n))
			b.ReportMetric(p99.Seconds(), fmt.Sprintf("p99-s-to-Inactive@%d", n))
			b.ReportMetric(bringUp.Seconds(), fmt.Sprintf("bring-up-s@%d", n))
		}
	}
}

// expiryToInactive expires the licence of up to 50 homes of the fleet's
// first n, spread over it, and returns the p99 time until their status
// shows Inactive; then it renews them and waits until they are Active
// again. Nobody asks for a re-check: the fleet watcher's sweep finds it.
func expiryToInactive(b *testing.B, c *control.Client, env *testenv.Env, n int) time.Duration {
	b.Helper()
	ctx := context.Background()
	demo := env.Store.Demo()
	sample := min(50, n)
	refs := make([]control.Ref, sample)
	for i := range refs {
		refs[i] = benchRef(i * n / sample)
	}
	var mu sync.Mutex
	var took []time.Duration
	var wg sync.WaitGroup
	for _, ref := range refs {
		benchNoError(b, demo.ExpireLicence(ctx, ref.Home))
	}
	expired := time.Now()
	for _, ref := range refs {
		wg.Go(func() {
			for {
				v, err := c.Status(ctx, ref)
				if err == nil && v.Status == contract.Inactive {
					mu.Lock()
					took = append(took, time.Since(expired))
					mu.Unlock()
					return
				}
				if time.Since(expired) > 10*time.Minute {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if len(took) < sample {
		b.Fatalf("%d of %d connections showed Inactive within 10 minutes of their licence's expiry", len(took), sample)
	}
	for _, ref := range refs {
		benchNoError(b, demo.RenewLicence(ctx, ref.Home))
	}
	for _, ref := range refs {
		testenv.WaitStatus(b, c, ref, "Active again", func(v contract.StatusView) bool { return v.Status == contract.Active })
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	return percentile(took, 0.99)
}

// fleetSteps reads COMPANIONSYNC_BENCH_FLEET: the fleet sizes to measure,
// increasing (default 200,1000).
func fleetSteps(b *testing.B) []int {
	b.Helper()
	spec := os.Getenv("COMPANIONSYNC_BENCH_FLEET")
	if spec == "" {
		spec = "200,1000"
	}
	var steps []int
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || (len(steps) > 0 && n <= steps[len(steps)-1]) {
			b.Fatalf("COMPANIONSYNC_BENCH_FLEET=%q: want increasing positive sizes, e.g. 1000,5000,10000", spec)
		}
		steps = append(steps, n)
	}
	return steps
}
