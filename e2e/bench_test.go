package e2e

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// Sizes of BenchmarkLifecycle, from the environment.
const (
	envBenchLifecycles = "COMPANIONSYNC_BENCH_LIFECYCLES" // lifecycles measured (default 200)
	envBenchIdle       = "COMPANIONSYNC_BENCH_IDLE"       // idle connections for the memory figure (default 200)
	envBenchPlaintext  = "COMPANIONSYNC_BENCH_PLAINTEXT"  // 1: no payload encryption
	envBenchCache      = "COMPANIONSYNC_BENCH_CACHE"      // sticky workflow cache of the worker process (default 100)
	envBenchProfile    = "COMPANIONSYNC_BENCH_PROFILE"    // a directory: CPU profiles of the lifecycles, server side and worker side
	envBenchPollers    = "COMPANIONSYNC_BENCH_POLLERS"    // clients reading the status of lifecycles in flight at 10 Hz each (default 0)
	envBenchConcurrent = "COMPANIONSYNC_BENCH_CONCURRENT" // lifecycles (and floor workflows) at once (default 50)
)

// Targets the benchmark shows against.
const (
	targetEventsPerLifecycle = 100
	targetKiBPerConnection   = 64
)

// BenchmarkLifecycle measures, on one in-process server, the engine floor
// (bare workflows of three no-op activities) and connection lifecycles
// (connect → share a 10-record data space → Active → disconnect →
// Disconnected) driven through the typed client against a worker running
// as its own process, then the worker's memory per idle connection with one
// Active share. Run it with
//
//	go test ./e2e -run '^$' -bench Lifecycle -benchtime 1x
//
// It reports lifecycles/s (taken in the steady part of the phase, see
// phaseTimes.steady), events/lifecycle, cpu-floor-units/lifecycle (the CPU
// of a lifecycle in all processes over a floor workflow's), p99-ms-to-status (from an
// accepted operation until a status read shows it) and
// worker-KiB/connection.
func BenchmarkLifecycle(b *testing.B) {
	lifecycles := benchSize(b, envBenchLifecycles, 200, 10, 5000)
	pollers := benchSize(b, envBenchPollers, 0, 0, 1000)
	idle := benchSize(b, envBenchIdle, 200, 0, 5000)
	cache := benchSize(b, envBenchCache, 100, 10, 100_000)
	plaintext := os.Getenv(envBenchPlaintext) == "1"
	shape := newBenchShape(benchSize(b, envBenchConcurrent, 50, 1, 1000))

	settings := contract.DefaultSettings() // production intervals: idle means idle
	env := testenv.Start(b, testenv.Options{NoWorker: true, SeedRecords: 100, Settings: settings, Plaintext: plaintext})
	ctx := context.Background()
	homes := lifecycles + idle
	for i := range homes {
		home := fmt.Sprintf("bench-h%04d", i)
		benchNoError(b, env.Store.Demo().AddOrg(ctx, companionsync.Org{ID: home, Role: companionsync.RoleHome,
			Kind: companionsync.KindProduction, LicenceExpiresAt: time.Now().AddDate(1, 0, 0), MaxCompanions: 1}))
		benchNoError(b, env.Store.Demo().AddOrg(ctx, companionsync.Org{ID: home + "-c", Role: companionsync.RoleCompanion,
			Kind: companionsync.KindProduction, Active: true}))
		benchNoError(b, env.Store.Demo().AddDataSpace(ctx, home, "small", 10))
	}

	profiles := os.Getenv(envBenchProfile)
	for b.Loop() {
		// One worker process serves the lifecycles and the floor, each on
		// its own task queue: both cross the same process boundary.
		settleAck := filepath.Join(b.TempDir(), "settled")
		extra := []string{fmt.Sprintf("%s=%d", envWorkflowCache, cache), envFloorWorker + "=1", envSettleAck + "=" + settleAck}
		if profiles != "" {
			extra = append(extra, envWorkerProfile+"="+filepath.Join(profiles, "worker.pprof"),
				envWorkerHeapProfile+"="+filepath.Join(profiles, "worker-heap.pprof"))
		}
		proc := startWorkerProcess(b, env, extra...)
		pid := proc.cmd.Process.Pid
		c := control.New(env.Client).WithQueryTimeout(time.Minute)
		benchNoError(b, awaitPoller(ctx, env.Client, contract.TaskQueue))
		benchNoError(b, awaitPoller(ctx, env.Client, floorTaskQueue))
		rssBefore := procRSSKiB(b, pid)

		// The floor runs before and after the lifecycles, on a server
		// warmed up first, and the ratio is taken against the mean of the
		// two: a single measure of it varied by a factor of two here. Each
		// phase starts once the one before has settled.
		progress("floor: %d workflows of 3 no-op activities to warm up, then %d, %d at once", shape.floorWorkflows/4, shape.floorWorkflows, shape.concurrency)
		runFloor(b, env.Client, shape, "warm", shape.floorWorkflows/4)
		awaitQuiet(b, env.Client)
		stopProfile := startProfile(b, profiles, "floor.pprof")
		floorBefore := measureFloor(b, env.Client, shape, pid, "before")
		stopProfile()
		awaitQuiet(b, env.Client)

		progress("lifecycles: %d, %d at once", lifecycles, shape.concurrency)
		stopProfile = startProfile(b, profiles, "server.pprof")
		serverCPU, workerCPU := cpuTime(b, os.Getpid()), cpuTime(b, pid)
		run := runLifecycles(b, c, env.Client, shape, 0, lifecycles, pollers)
		serverCPU, workerCPU = cpuTime(b, os.Getpid())-serverCPU, cpuTime(b, pid)-workerCPU
		stopProfile()
		awaitQuiet(b, env.Client)
		events, mix := eventMix(b, env.Client, lifecycles)
		perLifecycle := float64(events) / float64(lifecycles)
		b.Logf("events per lifecycle by type: %s", mix)
		stopProfile = startProfile(b, profiles, "floor-after.pprof")
		floorAfter := measureFloor(b, env.Client, shape, pid, "after")
		stopProfile()
		floorRate := (floorBefore.eventsPerSec() + floorAfter.eventsPerSec()) / 2
		// Rates are taken in the steady part of each phase (see steady).
		lifecycleRate := run.phase.steadyRate()
		ratio := lifecycleRate * perLifecycle / floorRate
		steadyUnits, steadyWindow := run.phase.steady()
		b.Logf("lifecycles: %d in %s, %.2f/s over the whole phase; steady part: %d ended in %s, %.2f/s",
			lifecycles, run.phase.whole().Round(time.Millisecond), float64(lifecycles)/run.phase.whole().Seconds(),
			steadyUnits, steadyWindow.Round(time.Millisecond), lifecycleRate)
		p99 := percentile(run.toStatus, 0.99)
		b.Logf("lifecycles: %.0f µs CPU/event in the server and client, %.0f µs in the worker process (%.1f and %.1f CPU-s of %.1f s)",
			perEvent(serverCPU, events), perEvent(workerCPU, events), serverCPU.Seconds(), workerCPU.Seconds(), run.phase.whole().Seconds())
		// What a lifecycle costs in units of the floor's work, beside
		// floor-ratio, which compares events of different weights.
		floorCPU := (floorBefore.cpu + floorAfter.cpu) / time.Duration(floorBefore.workflows+floorAfter.workflows)
		floorUnits := (floorBefore.phase.steadyRate() + floorAfter.phase.steadyRate()) / 2
		floorCPUUnits := float64(serverCPU+workerCPU) / float64(lifecycles) / float64(floorCPU)
		b.Logf("one lifecycle: %.1f ms CPU in all processes, a floor workflow %.1f ms (%.1f floor units); %.2f floor workflows/s per lifecycle/s",
			ms((serverCPU+workerCPU)/time.Duration(lifecycles)), ms(floorCPU), floorCPUUnits, floorUnits/lifecycleRate)

		var kib float64
		if idle > 0 {
			progress("idle: %d connections with one Active share", idle)
			base := settledRSSKiB(b, proc, settleAck)
			openIdle(b, c, shape, lifecycles, idle)
			awaitIdle(b, pid)
			after := settledRSSKiB(b, proc, settleAck)
			kib = float64(after-base) / float64(idle)
			b.Logf("worker process RSS: %d KiB at start, %d KiB after the lifecycles, %d KiB with %d idle connections (cache %d workflows)",
				rssBefore, base, after, idle, cache)
		}

		b.ReportMetric(lifecycleRate, "lifecycles/s")
		b.ReportMetric(perLifecycle, "events/lifecycle")
		b.ReportMetric(floorCPUUnits, "cpu-floor-units/lifecycle")
		b.ReportMetric(float64(p99.Milliseconds()), "p99-ms-to-status")
		b.ReportMetric(kib, "worker-KiB/connection")
		b.Logf("%d lifecycles in %s (encryption %t)", lifecycles, run.phase.whole().Round(time.Millisecond), !plaintext)
		b.Logf("target events/lifecycle <= %d: %.1f %s", targetEventsPerLifecycle, perLifecycle, verdict(perLifecycle <= targetEventsPerLifecycle))
		b.Logf("events/s against the floor's (reported before as floor-ratio, retired: it punishes removing cheap events): %.2f", ratio)
		if idle > 0 {
			b.Logf("target worker-KiB/connection <= %d: %.1f %s", targetKiBPerConnection, kib, verdict(kib <= targetKiBPerConnection))
		}
		if profiles != "" {
			// The worker writes its CPU profile (its whole life, floors included: set
			// COMPANIONSYNC_BENCH_IDLE=0 for the lifecycles alone) as it stops.
			benchNoError(b, proc.terminate())
			b.Logf("profiles in %s: floor.pprof, server.pprof (lifecycles), worker.pprof and worker-heap.pprof", profiles)
		}
	}
}

// cpuTime is the CPU time (user and system) a process has used so far.
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	benchNoError(b, err)
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th of them, in clock ticks of 1/100 s.
	_, rest, ok := strings.Cut(string(data), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		b.Fatalf("unexpected /proc/%d/stat: %q", pid, data)
	}
	utime, err1 := strconv.Atoi(fields[11])
	stime, err2 := strconv.Atoi(fields[12])
	benchNoError(b, errors.Join(err1, err2))
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func perEvent(d time.Duration, events int) float64 {
	return float64(d.Microseconds()) / float64(max(events, 1))
}

// startProfile writes a CPU profile of this process to dir/name until the
// returned function is called; with dir "" it does nothing.
func startProfile(b *testing.B, dir, name string) func() {
	b.Helper()
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, name))
	benchNoError(b, err)
	benchNoError(b, pprof.StartCPUProfile(f))
	return func() {
		pprof.StopCPUProfile()
		benchNoError(b, f.Close())
	}
}

func verdict(ok bool) string {
	if ok {
		return "(met)"
	}
	return "(NOT met)"
}

// benchSize reads a size from the environment, refusing one out of range.
func benchSize(b *testing.B, name string, def, lo, hi int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		b.Fatalf("%s=%q: want a whole number from %d to %d", name, v, lo, hi)
	}
	return n
}

func benchNoError(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// floorResult is the engine floor: bare workflows on their own task queue.
type floorResult struct {
	workflows, events int
	phase             *phaseTimes
	cpu               time.Duration // of the server (with its clients) and the worker process
}

// eventsPerSec is the floor's event rate in its steady part.
func (f floorResult) eventsPerSec() float64 {
	return f.phase.steadyRate() * float64(f.events) / float64(f.workflows)
}

// phaseTimes are the start and end times of the units of a phase (floor
// workflows or lifecycles), run benchShape.concurrency at once.
type phaseTimes struct {
	mu           sync.Mutex
	starts, ends []time.Time
}

func (p *phaseTimes) started() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts = append(p.starts, time.Now())
}

func (p *phaseTimes) ended() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ends = append(p.ends, time.Now())
}

// steady is the part of the phase in which every slot is busy: from the
// first unit's end to the last unit's start. Before it, the first units
// start together; after it, fewer and fewer units run and the engine idles,
// for about as long as one unit takes. A lifecycle takes seconds where a
// floor workflow takes a fraction of one, so rates over the whole phase
// would charge the lifecycles a longer drain. steady returns the units that
// ended inside that part and its length, or, when that part holds less than
// a third of the units (a phase of few more units than slots, where a
// handful of ends would make the rate), all units and the whole phase.
func (p *phaseTimes) steady() (units int, window time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	first, last := slices.MinFunc(p.ends, time.Time.Compare), slices.MaxFunc(p.starts, time.Time.Compare)
	for _, e := range p.ends {
		if e.After(first) && !e.After(last) {
			units++
		}
	}
	if units*3 < len(p.ends) {
		return len(p.ends), p.wholeLocked()
	}
	return units, last.Sub(first)
}

// whole is the phase's length, from the first unit's start to the last
// unit's end.
func (p *phaseTimes) whole() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.wholeLocked()
}

func (p *phaseTimes) wholeLocked() time.Duration {
	return slices.MaxFunc(p.ends, time.Time.Compare).Sub(slices.MinFunc(p.starts, time.Time.Compare))
}

// steadyRate is units per second in the steady part of the phase.
func (p *phaseTimes) steadyRate() float64 {
	units, window := p.steady()
	return float64(units) / window.Seconds()
}

const floorTaskQueue = "bench-floor"

// benchShape is how the benchmark loads the server: how many lifecycles
// (and floor workflows) run at once, and how many workflows a floor
// measure runs, enough for a steady part several times the concurrency.
type benchShape struct {
	concurrency, floorWorkflows int
}

func newBenchShape(concurrency int) benchShape {
	return benchShape{concurrency: concurrency, floorWorkflows: max(400, 8*concurrency)}
}

// progress shows the benchmark's phases as they start (b.Logf shows only
// at the end).
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchmark %s: "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// newFloorWorker is a worker of the floor's workflows. It runs in the
// worker process, beside the lifecycles' worker, so that the floor and the
// lifecycles are measured across the same process boundary.
func newFloorWorker(c client.Client) worker.Worker {
	w := worker.New(c, floorTaskQueue, worker.Options{})
	w.RegisterWorkflow(floorWorkflow)
	w.RegisterActivity(floorActivity)
	return w
}

func floorWorkflow(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	for range 3 {
		if err := workflow.ExecuteActivity(ctx, floorActivity).Get(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

func floorActivity(context.Context) error { return nil }

// awaitQuiet waits until visibility shows no running workflow but the
// fleet watcher: the phase before has closed everything, and the server has
// recorded it, so its trailing work is not counted in the next phase.
func awaitQuiet(b *testing.B, c client.Client) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	query := fmt.Sprintf("ExecutionStatus = 'Running' AND WorkflowType != '%s'", contract.WatcherWorkflowName)
	for {
		resp, err := c.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{Query: query})
		benchNoError(b, err)
		if resp.GetCount() == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d workflows still running after a minute", resp.GetCount())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// measureFloor runs the floor and logs it.
func measureFloor(b *testing.B, c client.Client, shape benchShape, workerPID int, name string) floorResult {
	b.Helper()
	serverCPU, workerCPU := cpuTime(b, os.Getpid()), cpuTime(b, workerPID)
	floor := runFloor(b, c, shape, name, shape.floorWorkflows)
	serverCPU, workerCPU = cpuTime(b, os.Getpid())-serverCPU, cpuTime(b, workerPID)-workerCPU
	units, window := floor.phase.steady()
	b.Logf("floor %s: %d workflows in %s (%.0f events/s); steady part: %d ended in %s, %.0f events/s; %.0f µs CPU/event in the server and client, %.0f µs in the worker process",
		name, floor.workflows, floor.phase.whole().Round(time.Millisecond), float64(floor.events)/floor.phase.whole().Seconds(),
		units, window.Round(time.Millisecond), floor.eventsPerSec(), perEvent(serverCPU, floor.events), perEvent(workerCPU, floor.events))
	floor.cpu = serverCPU + workerCPU
	return floor
}

// runFloor runs n bare workflows, as many at once as the lifecycles run,
// and counts their events.
func runFloor(b *testing.B, c client.Client, shape benchShape, name string, n int) floorResult {
	b.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	phase := &phaseTimes{}
	errs := make(chan error, n)
	sem := make(chan struct{}, shape.concurrency)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			phase.started()
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("bench-floor-%s-%d", name, i), TaskQueue: floorTaskQueue}, floorWorkflow)
			if err == nil {
				err = run.Get(ctx, nil)
			}
			phase.ended()
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		benchNoError(b, err)
	}
	events := 0
	for i := range n {
		events += historyLength(b, c, fmt.Sprintf("bench-floor-%s-%d", name, i))
	}
	return floorResult{workflows: n, events: events, phase: phase}
}

type lifecycleRun struct {
	toStatus []time.Duration
	phase    *phaseTimes
}

// runLifecycles runs the lifecycles of pairs [first, first+n) at once,
// while pollers clients read the status of a lifecycle in flight, each ten
// times a second.
func runLifecycles(b *testing.B, c *control.Client, tc client.Client, shape benchShape, first, n, pollers int) lifecycleRun {
	b.Helper()
	var (
		mu       sync.Mutex
		out      = lifecycleRun{phase: &phaseTimes{}}
		wg       sync.WaitGroup
		inFlight = map[int]bool{}
	)
	errs := make(chan error, n)
	sem := make(chan struct{}, shape.concurrency)
	ctx, stopPolling := context.WithCancel(context.Background())
	var polls sync.WaitGroup
	var reads, failed atomic.Int64
	for range pollers {
		polls.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				mu.Lock()
				refs := slices.Collect(maps.Keys(inFlight))
				mu.Unlock()
				if len(refs) == 0 {
					continue
				}
				if _, err := c.Status(ctx, benchRef(refs[rand.IntN(len(refs))])); err != nil && ctx.Err() == nil {
					failed.Add(1)
				}
				reads.Add(1)
			}
		})
	}
	for i := first; i < first+n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			mu.Lock()
			inFlight[i] = true
			mu.Unlock()
			out.phase.started()
			lat, err := lifecycle(c, tc, benchRef(i))
			out.phase.ended()
			mu.Lock()
			delete(inFlight, i)
			out.toStatus = append(out.toStatus, lat...)
			mu.Unlock()
			errs <- err
		}()
	}
	wg.Wait()
	stopPolling()
	polls.Wait()
	close(errs)
	for err := range errs {
		benchNoError(b, err)
	}
	if pollers > 0 {
		b.Logf("%d pollers read the status %d times (%.0f/s), %d of them failed", pollers, reads.Load(),
			float64(reads.Load())/out.phase.whole().Seconds(), failed.Load())
	}
	return out
}

func benchRef(i int) control.Ref {
	home := fmt.Sprintf("bench-h%04d", i)
	return control.Ref{Home: home, Companion: home + "-c"}
}

// lifecycle runs one lifecycle and returns, for each operation, the time
// from its acceptance until a status read shows it.
func lifecycle(c *control.Client, tc client.Client, ref control.Ref) ([]time.Duration, error) {
	ctx := context.Background()
	var lat []time.Duration
	// shows waits until a status read satisfies cond; record keeps the
	// time since accepted, for an operation's own effect (not for work
	// that follows it, such as a copy).
	shows := func(accepted time.Time, record bool, cond func(contract.StatusView) bool) error {
		for {
			v, err := c.Status(ctx, ref)
			if err == nil && cond(v) {
				if record {
					lat = append(lat, time.Since(accepted))
				}
				return nil
			}
			if time.Since(accepted) > 2*time.Minute {
				return fmt.Errorf("%s: status never showed the operation; last %+v, %v", ref, v, err)
			}
			// Gentle polling: every read is a query the worker answers.
			time.Sleep(250 * time.Millisecond)
		}
	}
	if _, err := c.Connect(ctx, ref, contract.Settings{}); err != nil {
		return nil, err
	}
	if err := shows(time.Now(), true, func(v contract.StatusView) bool { return v.Status == contract.Incomplete }); err != nil {
		return nil, err
	}
	if _, err := c.Share(ctx, ref, "small"); err != nil {
		return nil, err
	}
	if err := shows(time.Now(), true, func(v contract.StatusView) bool { _, ok := testenv.Share(v, "small"); return ok }); err != nil {
		return nil, err
	}
	// The share's Active starts the metadata sync, and the connection
	// publishes the sync's first status: waiting for that follows the
	// connection's history by long poll, so the harness adds no reads of
	// its own while it waits, as the floor's wait for its result. The
	// final status shows that the share was Active.
	if err := awaitPublished(ctx, tc, contract.ConnectionWorkflowID(ref.Home, ref.Companion), func(sa map[string]string) bool {
		return sa[contract.AttrMetadataSyncStatus.GetName()] != ""
	}); err != nil {
		return nil, err
	}
	if _, err := c.Disconnect(ctx, ref, false); err != nil {
		return nil, err
	}
	if err := shows(time.Now(), true, func(v contract.StatusView) bool { return v.Disconnecting || v.Status == contract.Disconnected }); err != nil {
		return nil, err
	}
	// The end is the connection's result: a long poll, no reads meanwhile.
	var final contract.StatusView
	if err := tc.GetWorkflow(ctx, contract.ConnectionWorkflowID(ref.Home, ref.Companion), "").Get(ctx, &final); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	if final.Status != contract.Disconnected {
		return nil, fmt.Errorf("%s ended %s, not %s", ref, final.Status, contract.Disconnected)
	}
	if !slices.ContainsFunc(final.Transitions, func(tr contract.Transition) bool {
		return tr.Subject == "data space small" && tr.Status == string(contract.ShareActive)
	}) {
		return nil, fmt.Errorf("%s: the share was never Active (transitions %+v)", ref, final.Transitions)
	}
	return lat, nil
}

// awaitPublished follows the history of a workflow's current run by long
// poll until the search attributes it has published (at its start and by
// its upserts) satisfy cond.
func awaitPublished(ctx context.Context, tc client.Client, workflowID string, cond func(sa map[string]string) bool) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	sa := map[string]string{}
	it := tc.GetWorkflowHistory(ctx, workflowID, "", true, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return fmt.Errorf("%s: %w", workflowID, err)
		}
		if a := e.GetWorkflowExecutionStartedEventAttributes(); a != nil {
			maps.Copy(sa, activities.Keywords(a.GetSearchAttributes()))
		}
		if a := e.GetUpsertWorkflowSearchAttributesEventAttributes(); a != nil {
			maps.Copy(sa, activities.Keywords(a.GetSearchAttributes()))
		}
		if cond(sa) {
			return nil
		}
	}
	return fmt.Errorf("%s closed without reaching the awaited state (published %v)", workflowID, sa)
}

// openIdle connects pairs [first, first+n) and shares one data space each,
// then waits until every share is Active and every metadata sync has counted.
func openIdle(b *testing.B, c *control.Client, shape benchShape, first, n int) {
	b.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, shape.concurrency)
	for i := first; i < first+n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ref := benchRef(i)
			_, err := c.Connect(ctx, ref, contract.Settings{})
			if err == nil {
				_, err = c.Share(ctx, ref, "small")
			}
			for err == nil {
				var v contract.StatusView
				v, err = c.Status(ctx, ref)
				if err == nil && testenv.ShareIs("small", contract.ShareActive)(v) && v.MetadataSync.Status == contract.SyncSucceeded {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		benchNoError(b, err)
	}
}

// awaitIdle waits until a process has used less than 20 ms of CPU in half a
// second: the tasks that followed the last operations have run.
func awaitIdle(b *testing.B, pid int) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for last := cpuTime(b, pid); ; {
		time.Sleep(500 * time.Millisecond)
		now := cpuTime(b, pid)
		if now-last < 20*time.Millisecond {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("worker process %d still busy after a minute", pid)
		}
		last = now
	}
}

// settledRSSKiB is the worker process's resident memory once it has
// collected its garbage and returned the freed memory to the system, so
// that the figure is its live memory, not where its heap happens to stand
// between collections.
func settledRSSKiB(b *testing.B, proc *workerProcess, ack string) int {
	b.Helper()
	lines := func() int {
		data, err := os.ReadFile(ack)
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		benchNoError(b, err)
		return strings.Count(string(data), "\n")
	}
	before := lines()
	benchNoError(b, proc.cmd.Process.Signal(syscall.SIGUSR1))
	deadline := time.Now().Add(30 * time.Second)
	for lines() == before {
		if time.Now().After(deadline) {
			b.Fatal("the worker process did not settle its memory within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return procRSSKiB(b, proc.cmd.Process.Pid)
}

// pairQuery lists every workflow and run of a benchmark pair.
func pairQuery(home string) string {
	return fmt.Sprintf("%s = '%s'", contract.AttrHomeOrg.GetName(), home)
}

// eventMix reads every run of every workflow of the lifecycles of pairs
// [0, n), once all have closed, and returns their events in all and the
// mean count of each event type, most frequent first, then the mean
// history length of each workflow type.
func eventMix(b *testing.B, c client.Client, n int) (int, string) {
	b.Helper()
	ctx := context.Background()
	counts, perType := map[string]int{}, map[string]int{}
	for i := range n {
		q := pairQuery(benchRef(i).Home)
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q})
		benchNoError(b, err)
		if len(resp.GetExecutions()) < 3 {
			b.Fatalf("%s: %d workflow runs, want the connection, its share and its metadata sync", q, len(resp.GetExecutions()))
		}
		for _, e := range resp.GetExecutions() {
			it := c.GetWorkflowHistory(ctx, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			for it.HasNext() {
				ev, err := it.Next()
				benchNoError(b, err)
				counts[strings.TrimPrefix(ev.GetEventType().String(), "EVENT_TYPE_")]++
				perType[e.GetType().GetName()]++
			}
		}
	}
	types := slices.Collect(maps.Keys(counts))
	slices.SortFunc(types, func(x, y string) int { return cmp.Or(counts[y]-counts[x], strings.Compare(x, y)) })
	parts := make([]string, len(types))
	for i, t := range types {
		parts[i] = fmt.Sprintf("%s %.2f", t, float64(counts[t])/float64(n))
	}
	total := 0
	for _, t := range slices.Sorted(maps.Keys(perType)) {
		parts = append(parts, fmt.Sprintf("%s %.2f", t, float64(perType[t])/float64(n)))
		total += perType[t]
	}
	return total, strings.Join(parts, ", ")
}

func historyLength(b *testing.B, c client.Client, id string) int {
	b.Helper()
	d, err := c.DescribeWorkflowExecution(context.Background(), id, "")
	benchNoError(b, err)
	return int(d.GetWorkflowExecutionInfo().GetHistoryLength())
}

// awaitPoller waits until a worker polls the task queue.
func awaitPoller(ctx context.Context, c client.Client, taskQueue string) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		resp, err := c.DescribeTaskQueue(ctx, taskQueue, 1) // workflow task queue
		if err == nil && len(resp.GetPollers()) > 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no worker polls %s", taskQueue)
}

// procRSSKiB reads another process's resident set size.
func procRSSKiB(b *testing.B, pid int) int {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	benchNoError(b, err)
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			benchNoError(b, err)
			return n
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}
