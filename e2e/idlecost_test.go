package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// BenchmarkIdleCost measures what idle connections cost in Temporal: N
// connections, each Active with one small share copied and its metadata
// caught up, run for a simulated day with every period of the design (health
// check and watcher sweep 5m, metadata 15m, resync 24h, reconciler 30m)
// divided by the same scale.
// It reports, per connection per simulated day, the history events of its
// three workflows and the billable actions they stand for (the mapping of
// Temporal Cloud's actions page, docs/testing.md "What an idle connection
// costs"), by event type, and the fleet's shared work per day (the
// reconciler's runs, their schedule actions and the status queries they
// send). Nothing is asserted: the figures are the result.
//
//	COMPANIONSYNC_BENCH_CONNECTIONS=20 COMPANIONSYNC_IDLE_SCALE=288 \
//	  go test ./e2e -run '^$' -bench IdleCost -benchtime 1x -timeout 60m
//
// At scale 288 a simulated day takes 5 minutes. COMPANIONSYNC_IDLE_WINDOW
// (a duration) measures a shorter window than the simulated day, and
// COMPANIONSYNC_IDLE_WARMUP sets the wait before it (one metadata round and
// one reconciler period by default): at scale 1 with a window of 1h, the
// benchmark checks the scaled figures against an hour at the real periods.
// COMPANIONSYNC_IDLE_PER_HOME spreads the connections over home orgs of
// that many companions each.
func BenchmarkIdleCost(b *testing.B) {
	n := envInt(b, "COMPANIONSYNC_BENCH_CONNECTIONS", 20)
	scale := envInt(b, "COMPANIONSYNC_IDLE_SCALE", 288)
	prod := contract.DefaultSettings()
	settings := testenv.FastSettings()
	settings.HealthCheckInterval = prod.HealthCheckInterval / time.Duration(scale)
	settings.MetadataSyncInterval = prod.MetadataSyncInterval / time.Duration(scale)
	settings.ResyncInterval = prod.ResyncInterval / time.Duration(scale)
	reconcileEvery := 30 * time.Minute / time.Duration(scale) // the cluster default
	day := envDuration(b, "COMPANIONSYNC_IDLE_WINDOW", 24*time.Hour/time.Duration(scale))
	warmup := envDuration(b, "COMPANIONSYNC_IDLE_WARMUP", settings.MetadataSyncInterval+reconcileEvery)
	// Companions per home org (default all under one): a connect changes
	// the companion count every sibling's health shows, so the watcher
	// tells each of them; a fleet of 10,000 under one home would spend its
	// bring-up on those signals.
	perHome := envInt(b, "COMPANIONSYNC_IDLE_PER_HOME", n)
	for range b.N {
		env := testenv.Start(b, testenv.Options{Settings: settings, SeedRecords: 100})
		ctx := context.Background()
		demo := env.Store.Demo()
		c := control.New(env.Client)
		refs := make([]control.Ref, n)
		for i := range refs {
			home := "idle"
			if perHome < n {
				home = fmt.Sprintf("idle-home-%04d", i/perHome)
			}
			if i%perHome == 0 {
				if err := demo.AddOrg(ctx, companionsync.Org{ID: home, Role: companionsync.RoleHome, Kind: companionsync.KindProduction,
					LicenceExpiresAt: time.Now().AddDate(1, 0, 0), MaxCompanions: perHome}); err != nil {
					b.Fatal(err)
				}
				if err := demo.AddDataSpace(ctx, home, "default", 10); err != nil {
					b.Fatal(err)
				}
			}
			refs[i] = control.Ref{Home: home, Companion: fmt.Sprintf("idle-%05d", i)}
			if err := demo.AddOrg(ctx, companionsync.Org{ID: refs[i].Companion, Role: companionsync.RoleCompanion, Kind: companionsync.KindProduction, Active: true}); err != nil {
				b.Fatal(err)
			}
		}
		// Brought up 8 at a time: a fleet of 10,000 in minutes.
		errs := make([]error, n)
		sem := make(chan struct{}, 8)
		var wg sync.WaitGroup
		for i, ref := range refs {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if _, err := c.Connect(ctx, ref, contract.Settings{}); err != nil {
					errs[i] = fmt.Errorf("connect %s: %w", ref, err)
				} else if _, err := c.Share(ctx, ref, "default"); err != nil {
					errs[i] = fmt.Errorf("share default on %s: %w", ref, err)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			b.Fatal(err)
		}
		for _, ref := range refs {
			testenv.WaitStatus(b, c, ref, "idle: Active, copied, metadata synced", func(v contract.StatusView) bool {
				return testenv.ShareIs("default", contract.ShareActive)(v) && v.MetadataSync.Status == contract.SyncSucceeded
			})
		}
		in := contract.DefaultReconcilerInput()
		if err := c.ScheduleReconciler(ctx, reconcileEvery, in); err != nil {
			b.Fatal(err)
		}
		// One full round of every period before the window opens.
		time.Sleep(warmup)
		from := time.Now()
		time.Sleep(day)
		to := time.Now()

		perConn := costs{}
		for _, ref := range refs {
			for _, id := range []string{
				contract.ConnectionWorkflowID(ref.Home, ref.Companion),
				contract.ShareWorkflowID(ref.Home, ref.Companion, "default"),
				contract.MetadataSyncWorkflowID(ref.Home, ref.Companion),
			} {
				perConn.add(b, env.Client, fmt.Sprintf("WorkflowId = '%s'", id), from, to)
			}
		}
		fleet := costs{}
		runs := fleet.add(b, env.Client, fmt.Sprintf("WorkflowType = '%s'", contract.ReconcilerWorkflowName), from, to)
		fleet.add(b, env.Client, fmt.Sprintf("WorkflowType = '%s'", contract.WatcherWorkflowName), from, to)
		// Each scheduled run: two schedule actions and the start of the run
		// (counted from its history), and one status query per connection
		// it queried (those not settled by what the server shows).
		fleet.extra("schedule run", 2*runs)
		fleet.extra("status query of the survey", queried(b, env.Client, from, to))

		days := to.Sub(from).Seconds() * float64(scale) / 86400
		b.ReportMetric(float64(perConn.events)/float64(n)/days, "events/conn/day")
		b.ReportMetric(float64(perConn.actions)/float64(n)/days, "actions/conn/day")
		b.ReportMetric(float64(fleet.events)/days, "fleet-events/day")
		b.ReportMetric(float64(fleet.actions)/days, "fleet-actions/day")
		b.Logf("%d idle connections, scale %d (health %s, metadata %s, reconciler %s), window %s = %.2f simulated days",
			n, scale, settings.HealthCheckInterval, settings.MetadataSyncInterval, reconcileEvery, to.Sub(from).Round(time.Second), days)
		// Printed, not logged: the benchmark log truncates long output.
		fmt.Printf("per connection per day, by event type (events / actions):\n%s", perConn.table(float64(n)*days))
		fmt.Printf("fleet per day, by event type (events / actions), %d reconciler runs:\n%s", runs, fleet.table(days))
	}
}

// queried sums the status queries of the reconciler runs that started in
// the window, from their reports.
func queried(b *testing.B, tc client.Client, from, to time.Time) int {
	b.Helper()
	ctx := context.Background()
	res, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Completed'", contract.ReconcilerWorkflowName), PageSize: 1000})
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, e := range res.GetExecutions() {
		if at := e.GetStartTime().AsTime(); at.Before(from) || !at.Before(to) {
			continue
		}
		var report contract.ReconcileReport
		if err := tc.GetWorkflow(ctx, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()).Get(ctx, &report); err != nil {
			b.Fatal(err)
		}
		n += report.Queried
	}
	return n
}

// costs counts history events in a window by type, and the billable
// actions they stand for.
type costs struct {
	events, actions int
	byType          map[string][2]int // event type: events, actions
}

func (c *costs) count(kind string, events, actions int) {
	if c.byType == nil {
		c.byType = map[string][2]int{}
	}
	v := c.byType[kind]
	c.byType[kind] = [2]int{v[0] + events, v[1] + actions}
	c.events += events
	c.actions += actions
}

func (c *costs) extra(kind string, actions int) { c.count(kind, 0, actions) }

// add counts the events between from and to of every run the visibility
// query lists, and returns how many runs started in the window.
func (c *costs) add(b *testing.B, tc client.Client, query string, from, to time.Time) int {
	b.Helper()
	ctx := context.Background()
	started := 0
	var token []byte
	for {
		res, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range res.GetExecutions() {
			var events []*historypb.HistoryEvent
			it := tc.GetWorkflowHistory(ctx, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			for it.HasNext() {
				ev, err := it.Next()
				if err != nil {
					b.Fatal(err)
				}
				events = append(events, ev)
			}
			started += c.window(events, from, to)
		}
		if token = res.GetNextPageToken(); len(token) == 0 {
			return started
		}
	}
}

// window counts one run's events in [from, to). Actions, after Temporal
// Cloud's actions page: a run started (continue-as-new, a child, a
// scheduled start), a timer started, a search-attribute upsert, a signal
// (counted where it is received), an activity scheduled (each retry too,
// which a history does not show), an update accepted, a child started
// (two), and the markers of one workflow task (local activities, version
// markers, side effects) as one. Workflow tasks, completions and
// activity results are free.
func (c *costs) window(events []*historypb.HistoryEvent, from, to time.Time) (started int) {
	markerTask := int64(-1)
	for _, ev := range events {
		at := ev.GetEventTime().AsTime()
		if at.Before(from) || !at.Before(to) {
			continue
		}
		kind := strings.TrimPrefix(ev.GetEventType().String(), "EVENT_TYPE_")
		actions := 0
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			actions, started = 1, started+1
		case enumspb.EVENT_TYPE_TIMER_STARTED, enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
			enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
			actions = 1
		case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
			actions = 2
		case enumspb.EVENT_TYPE_MARKER_RECORDED:
			task := ev.GetMarkerRecordedEventAttributes().GetWorkflowTaskCompletedEventId()
			if task != markerTask {
				actions, markerTask = 1, task
			}
		}
		c.count(kind, 1, actions)
	}
	return started
}

// table renders the counts by type, divided by per.
func (c *costs) table(per float64) string {
	kinds := make([]string, 0, len(c.byType))
	for k := range c.byType {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return c.byType[kinds[i]][0] > c.byType[kinds[j]][0] })
	var b strings.Builder
	for _, k := range kinds {
		v := c.byType[k]
		fmt.Fprintf(&b, "  %-45s %8.1f %8.1f\n", k, float64(v[0])/per, float64(v[1])/per)
	}
	fmt.Fprintf(&b, "  %-45s %8.1f %8.1f\n", "total", float64(c.events)/per, float64(c.actions)/per)
	return b.String()
}

// envDuration reads a duration setting of a benchmark, def when unset.
func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		b.Fatalf("%s=%q: want a duration such as 1h", name, v)
	}
	return d
}

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}
