package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
	"github.com/companionsync/companionsync/orgstore"
	"github.com/companionsync/companionsync/workflows"
)

// previousRelease names the commit of the release before this one, which
// the upgrade test builds; each release records its own here.
const previousReleaseFile = "testdata/previous-release"

// upgradeRecords is the size of the copy and the removal in flight while
// the previous release stops.
const upgradeRecords = 1_000_000

// TestUpgradeFromThePreviousRelease builds the previous release's worker,
// drives it into every kind of work in flight on the embedded default (a
// copy of a million records, a removal of as many, a metadata sync paused on
// a conflict, an idle Active pair, an Inactive connection), stops it, starts
// this release's worker on the same data directory, and checks that every
// workflow moves onto the current protocol by continue-as-new, that every
// piece of work finishes with exact counts, that the connections take new
// requests, and that no history holds a failed workflow task.
func TestUpgradeFromThePreviousRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the previous release and copies a million records")
	}
	bins := buildUpgradeWorkers(t, "")
	findings := runUpgrade(t, bins, false)
	assert.Empty(t, findings, "the upgrade went wrong")
}

// TestUpgradeTestCanFail runs the upgrade with a worker built with the
// upgradebreak tag, whose connection workflow makes a change without a
// guard: the upgrade must be found broken (failed workflow tasks).
func TestUpgradeTestCanFail(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the previous release")
	}
	bins := buildUpgradeWorkers(t, "upgradebreak")
	findings := runUpgrade(t, bins, true)
	require.NotEmpty(t, findings, "an unguarded change went unnoticed")
	assert.Contains(t, strings.Join(findings, "\n"), "WorkflowTaskFailed")
}

type upgradeBinaries struct{ old, current string }

// buildUpgradeWorkers builds the previous release's worker from its commit
// and this tree's worker (with tags, if any), once per test binary.
func buildUpgradeWorkers(t *testing.T, tags string) upgradeBinaries {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	spec, err := os.ReadFile(previousReleaseFile)
	require.NoError(t, err)
	commit := strings.TrimSpace(string(spec))
	dir := t.TempDir()
	src := filepath.Join(dir, "previous")
	require.NoError(t, os.MkdirAll(src, 0o755))
	archive := exec.Command("sh", "-c", fmt.Sprintf("git -C %q archive %s | tar -x -C %q", root, commit, src))
	out, err := archive.CombinedOutput()
	require.NoError(t, err, "extract release %s (a clone needs its history: git fetch --unshallow): %s", commit, out)
	bins := upgradeBinaries{old: filepath.Join(dir, "worker-previous"), current: filepath.Join(dir, "worker-current")}
	goBuild(t, src, bins.old, "")
	goBuild(t, root, bins.current, tags)
	return bins
}

func goBuild(t *testing.T, dir, out, tags string) {
	t.Helper()
	args := []string{"build", "-o", out}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command("go", append(args, "./worker")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build in %s: %s", dir, b)
}

// workerBinary is a worker process on the embedded default.
type workerBinary struct {
	cmd      *exec.Cmd
	frontend string
	log      *syncLines
	done     chan struct{}
}

type syncLines struct {
	mu    sync.Mutex
	lines []string
}

func (s *syncLines) add(l string) { s.mu.Lock(); s.lines = append(s.lines, l); s.mu.Unlock() }
func (s *syncLines) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

var readyFrontend = regexp.MustCompile(`Temporal frontend\s+(\S+)`)

func startWorkerBinary(t *testing.T, bin, dataDir string) *workerBinary {
	t.Helper()
	cmd := exec.Command(bin, "-data-dir", dataDir, "-dev-frontend", "127.0.0.1:0", "-dev-ui", "", "-metrics-addr", "off",
		"-codec-addr", "127.0.0.1:0", "-seed-records", fmt.Sprint(upgradeRecords), "-health-check-interval", "2s",
		"-metadata-sync-interval", "2s", "-reconcile-interval", "0", "-log-level", "warn")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	w := &workerBinary{cmd: cmd, log: &syncLines{}, done: make(chan struct{})}
	require.NoError(t, cmd.Start())
	ready := make(chan string, 1)
	scan := func(r io.Reader) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			w.log.add(sc.Text())
			if m := readyFrontend.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
			}
		}
	}
	go scan(stderr)
	go func() { scan(stdout); _ = cmd.Wait(); close(w.done) }()
	t.Cleanup(func() { w.stop(t) })
	select {
	case w.frontend = <-ready:
	case <-w.done:
		t.Fatalf("worker %s exited before ready:\n%s", bin, w.log.text())
	case <-time.After(5 * time.Minute):
		t.Fatalf("worker %s not ready in 5 minutes:\n%s", bin, w.log.text())
	}
	return w
}

// stop stops the worker as SIGTERM does and waits for it to exit.
func (w *workerBinary) stop(t *testing.T) {
	select {
	case <-w.done:
		return
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		_ = w.cmd.Process.Kill()
		<-w.done
		t.Errorf("worker did not stop within a minute")
	}
}

func dialWorker(t *testing.T, w *workerBinary, dataDir string) (client.Client, *control.Client) {
	t.Helper()
	ring, _, err := codec.Source{DevKeyFile: filepath.Join(dataDir, "codec.keys")}.Load()
	require.NoError(t, err)
	c, err := control.Dial(context.Background(), control.DialOptions{Address: w.frontend, Keys: ring})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c, control.New(c)
}

// The scenarios' connections.
var (
	upCopy     = control.Ref{Home: "acme", Companion: "acme-emea"}  // copy of default in flight
	upRemoval  = control.Ref{Home: "acme", Companion: "acme-apac"}  // removal of default in flight
	upIdle     = control.Ref{Home: "acme", Companion: "acme-latam"} // idle, Active
	upPaused   = control.Ref{Home: "globex", Companion: "globex-apac"}
	upInactive = control.Ref{Home: "initech", Companion: "initech-emea"}
)

// runUpgrade drives the scenarios and returns what went wrong after the
// upgrade (empty when nothing did). Failures before the upgrade stop the
// test. With broken, the new worker is expected to fail: it returns as soon
// as a failed workflow task is found, rather than wait out every check.
func runUpgrade(t *testing.T, bins upgradeBinaries, broken bool) []string {
	ctx := context.Background()
	dataDir := t.TempDir()
	old := startWorkerBinary(t, bins.old, dataDir)
	tc, c := dialWorker(t, old, dataDir)
	store, err := orgstore.Open(ctx, filepath.Join(dataDir, "orgs.db"))
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	for _, o := range []companionsync.Org{
		{ID: "acme-latam", Role: companionsync.RoleCompanion, Kind: companionsync.KindProduction, Active: true},
		{ID: "globex-apac", Role: companionsync.RoleCompanion, Kind: companionsync.KindProduction, Active: true},
		{ID: "initech", Role: companionsync.RoleHome, Kind: companionsync.KindProduction, Active: true, MaxCompanions: 2,
			LicenceExpiresAt: time.Now().Add(365 * 24 * time.Hour)},
		{ID: "initech-emea", Role: companionsync.RoleCompanion, Kind: companionsync.KindProduction, Active: true},
	} {
		require.NoError(t, store.Demo().AddOrg(ctx, o))
	}
	require.NoError(t, store.Demo().AddDataSpace(ctx, "initech", "default", 100))

	// Before the stop: every scenario in place on the previous release.
	for _, ref := range []control.Ref{upRemoval, upIdle, upPaused, upInactive} {
		var s contract.Settings
		if ref == upRemoval {
			// Small steps: a removal of a million records at full speed
			// takes a few seconds, less than the old worker takes to stop,
			// and would be over before the upgrade. (The previous release
			// keeps every batch at BatchSize; this one grows them.)
			s.BatchSize, s.StepBudget = 100, 250*time.Millisecond
		}
		_, err := c.Connect(ctx, ref, s)
		require.NoError(t, err, "connect %s", ref)
	}
	share := func(ref control.Ref, ds string) {
		_, err := c.Share(ctx, ref, ds)
		require.NoError(t, err, "share %s on %s", ds, ref)
	}
	share(upRemoval, "default")
	share(upIdle, "marketing")
	share(upPaused, "default")
	share(upInactive, "default")
	waitUpgrade(t, c, upRemoval, "the first copy of a million records", 5*time.Minute, testenv.ShareIs("default", contract.ShareActive))
	waitUpgrade(t, c, upPaused, "globex default Active", time.Minute, testenv.ShareIs("default", contract.ShareActive))
	_, err = store.Demo().MakeConflict(ctx, upPaused.Home, upPaused.Companion, "default")
	require.NoError(t, err)
	require.NoError(t, store.Demo().Deactivate(ctx, upInactive.Companion))
	// The copy takes small steps too: at the default batch size the
	// previous release copies a million records before it has stopped.
	_, err = c.Connect(ctx, upCopy, contract.Settings{BatchSize: 100, StepBudget: 250 * time.Millisecond})
	require.NoError(t, err)
	_, err = c.Unshare(ctx, upRemoval, "default")
	require.NoError(t, err)
	share(upCopy, "default")
	waitUpgrade(t, c, upPaused, "the metadata sync paused", time.Minute, func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncError })
	waitUpgrade(t, c, upInactive, "Inactive", time.Minute, func(v contract.StatusView) bool { return v.Status == contract.Inactive })
	waitUpgrade(t, c, upIdle, "idle Active", time.Minute, testenv.ShareIs("marketing", contract.ShareActive))
	waitUpgrade(t, c, upCopy, "a copy in flight", 2*time.Minute, func(v contract.StatusView) bool {
		s, ok := testenv.Share(v, "default")
		return ok && s.InitializationStatus == contract.Activating && s.RecordsCopied > 0
	})
	waitUpgrade(t, c, upRemoval, "a removal in flight", 2*time.Minute, func(v contract.StatusView) bool {
		s, ok := testenv.Share(v, "default")
		return ok && s.InitializationStatus == contract.RemovingSharing && s.RecordsRemoved > 0
	})
	before := protocols(t, tc)
	old.stop(t)
	copied, err := store.Demo().CompanionRecordCount(ctx, upCopy.Home, upCopy.Companion, "default")
	require.NoError(t, err)
	left, err := store.Demo().CompanionRecordCount(ctx, upRemoval.Home, upRemoval.Companion, "default")
	require.NoError(t, err)
	t.Logf("stopped the previous release with %d of %d records copied and %d left to remove; %d running workflows", copied, upgradeRecords, left, len(before))
	require.Less(t, copied, upgradeRecords, "the copy was still in flight")
	require.Positive(t, left, "the removal was still in flight")
	for id, p := range before {
		require.NotEqual(t, contract.CurrentProtocol.String(), p, "%s started on the current protocol", id)
	}

	// The upgrade.
	started := time.Now()
	cur := startWorkerBinary(t, bins.current, dataDir)
	tc, c = dialWorker(t, cur, dataDir)
	var findings []string
	fail := func(format string, args ...any) {
		findings = append(findings, fmt.Sprintf(format, args...))
		t.Logf(format, args...)
	}
	if broken {
		var failed []string
		testenv.Eventually(t, 2*time.Minute, "a failed workflow task", func() bool {
			failed, _ = taskFailures(ctx, t, tc)
			return len(failed) > 0
		})
		for _, f := range failed {
			fail("WorkflowTaskFailed in %s", f)
		}
		return findings
	}
	moved := waitMoved(tc, before, 3*time.Minute)
	if len(moved) < len(before) {
		fail("%d of %d running workflows moved to protocol %d within 3 minutes", len(moved), len(before), contract.CurrentProtocol)
	} else {
		var last time.Duration
		for _, at := range moved {
			last = max(last, at.Sub(started))
		}
		t.Logf("all %d running workflows on protocol %d %s after the new worker started (%.1f workflows/s)",
			len(moved), contract.CurrentProtocol, last.Round(100*time.Millisecond), float64(len(moved))/last.Seconds())
	}
	moveCost := 0
	for id := range before {
		switch movedOrDone(ctx, tc, id) {
		case "":
			fail("%s has no run that continued as new", id)
		case "done":
			// Its work ended in the new release's first step (a removal
			// with little left), before a safe point to move at.
			t.Logf("%s finished its work on the new release without moving", id)
			continue
		}
		moveCost += moveEvents(ctx, t, tc, id)
	}
	t.Logf("the move cost %d history events over %d workflows of %d connections (from each upgrade signal to its run's continue-as-new)",
		moveCost, len(before), 5)

	// Every piece of work finishes, and the connections take new requests.
	check := func(what string, within time.Duration, f func() error) {
		deadline := time.Now().Add(within)
		for {
			err := f()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				fail("%s: %v", what, err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	status := func(ref control.Ref, cond func(contract.StatusView) bool) func() error {
		return func() error {
			v, err := c.Status(ctx, ref)
			if err != nil {
				return err
			}
			if v.Stale || !cond(v) {
				return fmt.Errorf("status %+v", v)
			}
			if v.Protocol != contract.CurrentProtocol {
				return fmt.Errorf("protocol %d", v.Protocol)
			}
			return nil
		}
	}
	check("the copy finishes with every record", 5*time.Minute, status(upCopy, func(v contract.StatusView) bool {
		s, ok := testenv.Share(v, "default")
		return ok && s.InitializationStatus == contract.ShareActive && s.RecordsCopied == upgradeRecords
	}))
	check("the companion holds the home org's records exactly", 10*time.Second, func() error {
		home, err := store.Demo().RecordChecksum(ctx, upCopy.Home, "default")
		if err != nil {
			return err
		}
		comp, err := store.Demo().CompanionChecksum(ctx, upCopy.Home, upCopy.Companion, "default")
		if err != nil {
			return err
		}
		n, err := store.Demo().CompanionRecordCount(ctx, upCopy.Home, upCopy.Companion, "default")
		if err != nil || n != upgradeRecords || home != comp {
			return fmt.Errorf("%d records, checksum %x, want %d and %x (error %v)", n, comp, upgradeRecords, home, err)
		}
		return nil
	})
	check("the removal finishes", 5*time.Minute, status(upRemoval, testenv.ShareGone("default")))
	check("the removal left nothing", 10*time.Second, func() error {
		n, err := store.Demo().CompanionRecordCount(ctx, upRemoval.Home, upRemoval.Companion, "default")
		if err != nil || n != 0 {
			return fmt.Errorf("%d records left (error %v)", n, err)
		}
		return nil
	})
	if _, err := store.Demo().ResolveConflicts(ctx, upPaused.Home, upPaused.Companion); err != nil {
		fail("resolve conflicts: %v", err)
	}
	check("resume the paused sync", time.Minute, func() error { _, err := c.Resume(ctx, upPaused); return err })
	check("the resumed sync succeeds", time.Minute, status(upPaused, func(v contract.StatusView) bool {
		return v.MetadataSync.Status == contract.SyncSucceeded && !v.MetadataSync.Paused
	}))
	if err := store.Demo().Reactivate(ctx, upInactive.Companion); err != nil {
		fail("reactivate: %v", err)
	}
	check("the Inactive connection comes back", time.Minute, status(upInactive, func(v contract.StatusView) bool { return v.Status == contract.Active }))
	check("unshare on the idle pair", time.Minute, func() error { _, err := c.Unshare(ctx, upIdle, "marketing"); return err })
	check("the idle pair's share is removed", time.Minute, status(upIdle, testenv.ShareGone("marketing")))
	check("disconnect", 2*time.Minute, func() error { _, err := c.Disconnect(ctx, upRemoval, true); return err })
	check("connect again", time.Minute, func() error { _, err := c.Connect(ctx, upRemoval, contract.Settings{}); return err })
	check("the new connection runs the current protocol", time.Minute, status(upRemoval, func(v contract.StatusView) bool { return v.Status == contract.Incomplete }))

	// No history holds a failed workflow task.
	failed, timedOut := taskFailures(ctx, t, tc)
	for _, f := range failed {
		fail("WorkflowTaskFailed in %s", f)
	}
	t.Logf("workflow task timeouts (a stopped worker's sticky tasks) and completions refused for new events: %d", timedOut)
	return findings
}

func waitUpgrade(t *testing.T, c *control.Client, ref control.Ref, what string, within time.Duration, cond func(contract.StatusView) bool) {
	t.Helper()
	testenv.Eventually(t, within, what, func() bool {
		v, err := c.Status(context.Background(), ref)
		return err == nil && !v.Stale && cond(v)
	})
}

// protocols returns the CompanionProtocol attribute of every running
// workflow of the three kinds ("" when it has none), by workflow ID.
func protocols(t *testing.T, tc client.Client) map[string]string {
	t.Helper()
	out := map[string]string{}
	var token []byte
	for {
		res, err := tc.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: workflows.UpgradeQuery, NextPageToken: token})
		require.NoError(t, err)
		for _, e := range res.GetExecutions() {
			out[e.GetExecution().GetWorkflowId()] = activities.Keywords(e.GetSearchAttributes())[contract.AttrProtocol.GetName()]
		}
		if token = res.GetNextPageToken(); len(token) == 0 {
			return out
		}
	}
}

// waitMoved waits until each workflow of ids runs the current protocol, or
// has closed, and returns when each was first seen so.
func waitMoved(tc client.Client, ids map[string]string, within time.Duration) map[string]time.Time {
	moved := map[string]time.Time{}
	deadline := time.Now().Add(within)
	for len(moved) < len(ids) && time.Now().Before(deadline) {
		for id := range ids {
			if _, ok := moved[id]; ok {
				continue
			}
			d, err := tc.DescribeWorkflowExecution(context.Background(), id, "")
			if err != nil {
				continue
			}
			info := d.GetWorkflowExecutionInfo()
			if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING ||
				activities.Keywords(info.GetSearchAttributes())[contract.AttrProtocol.GetName()] == contract.CurrentProtocol.String() {
				moved[id] = time.Now()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return moved
}

// movedOrDone says, within 15 seconds (visibility lags), how a workflow
// that ran at the upgrade went on: "moved" when a run of it continued as
// new, "done" when its latest run completed its work without one, "" when
// neither.
func movedOrDone(ctx context.Context, tc client.Client, id string) string {
	deadline := time.Now().Add(15 * time.Second)
	for {
		if continuedAsNew(ctx, tc, id) {
			return "moved"
		}
		if d, err := tc.DescribeWorkflowExecution(ctx, id, ""); err == nil &&
			d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED &&
			d.GetWorkflowExecutionInfo().GetExecution().GetRunId() == d.GetWorkflowExecutionInfo().GetFirstRunId() {
			return "done"
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// continuedAsNew reports whether a run of the workflow ID continued as new.
func continuedAsNew(ctx context.Context, tc client.Client, id string) bool {
	res, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowId = '%s' AND ExecutionStatus = 'ContinuedAsNew'", id),
	})
	return err == nil && len(res.GetExecutions()) > 0
}

// taskFailures lists the runs whose history holds a WorkflowTaskFailed
// event, and counts WorkflowTaskTimedOut events. A task the server refused
// to complete because new events (a signal) arrived while it ran (cause
// UnhandledCommand: the SDK runs it again with them) is no failure of the
// code; it is logged and counted with the timeouts.
func taskFailures(ctx context.Context, t *testing.T, tc client.Client, fc ...converter.FailureConverter) (failed []string, timedOut int) {
	t.Helper()
	var token []byte
	for {
		res, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{NextPageToken: token})
		require.NoError(t, err)
		for _, e := range res.GetExecutions() {
			id, run := e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()
			iter := tc.GetWorkflowHistory(ctx, id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			for iter.HasNext() {
				ev, err := iter.Next()
				require.NoError(t, err)
				switch ev.GetEventType() {
				case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED:
					if ev.GetWorkflowTaskFailedEventAttributes().GetCause() == enumspb.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND {
						t.Logf("%s run %s: a completion the server refused as new events had arrived (UnhandledCommand), run again", id, run)
						timedOut++
						continue
					}
					msg := ev.GetWorkflowTaskFailedEventAttributes().GetFailure().GetMessage()
					if len(fc) > 0 {
						// Failure messages are encrypted: read them with the keys.
						msg = fc[0].FailureToError(ev.GetWorkflowTaskFailedEventAttributes().GetFailure()).Error()
					}
					failed = append(failed, fmt.Sprintf("%s run %s: %s", id, run, msg))
				case enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
					timedOut++
				}
			}
		}
		if token = res.GetNextPageToken(); len(token) == 0 {
			return failed, timedOut
		}
	}
}

// moveEvents counts, in the run of id that received SignalUpgrade, the
// events from the signal to the end of the run.
func moveEvents(ctx context.Context, t *testing.T, tc client.Client, id string) int {
	t.Helper()
	res, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowId = '%s' AND ExecutionStatus = 'ContinuedAsNew'", id),
	})
	require.NoError(t, err)
	for _, e := range res.GetExecutions() {
		iter := tc.GetWorkflowHistory(ctx, id, e.GetExecution().GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		n := 0
		for iter.HasNext() {
			ev, err := iter.Next()
			require.NoError(t, err)
			if n > 0 || ev.GetWorkflowExecutionSignaledEventAttributes().GetSignalName() == contract.SignalUpgrade {
				n++
			}
		}
		if n > 0 {
			return n
		}
	}
	return 0
}
