// Package e2e proves the system's promises on a real in-process Temporal
// server with the real worker registration and a real SQLite org store:
// the full lifecycle, worker crashes, server restarts, continue-as-new under
// traffic, bad input, and replay of recorded histories.
package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
	"github.com/companionsync/companionsync/orgstore"
	"github.com/companionsync/companionsync/workflows"
)

// Environment of a worker child process (see TestMain).
const (
	envWorkerProcess = "COMPANIONSYNC_E2E_WORKER"
	envFrontend      = "COMPANIONSYNC_E2E_FRONTEND"
	envStore         = "COMPANIONSYNC_E2E_STORE"
	envSettings      = "COMPANIONSYNC_E2E_SETTINGS"
	// envWorkflowCache bounds the worker's sticky workflow cache.
	envWorkflowCache = "COMPANIONSYNC_E2E_WORKFLOW_CACHE"
	// envWorkerProfile is a file the worker writes its CPU profile to as
	// it stops on SIGTERM.
	envWorkerProfile = "COMPANIONSYNC_E2E_WORKER_PROFILE"
	// envFloorWorker, set to 1, makes the worker process serve the
	// benchmark's floor workflows too, on their own task queue.
	envFloorWorker = "COMPANIONSYNC_E2E_FLOOR_WORKER"
	// envSettleAck is a file: on SIGUSR1 the worker process collects its
	// garbage, returns the freed memory to the system, and appends a line
	// to the file.
	envSettleAck = "COMPANIONSYNC_E2E_SETTLE_ACK"
	// envWorkerHeapProfile is a file the worker writes its heap profile to
	// each time it settles its memory (the last one stays).
	envWorkerHeapProfile = "COMPANIONSYNC_E2E_WORKER_HEAP_PROFILE"
)

// TestMain doubles as a worker process: a test re-runs its own binary with
// envWorkerProcess set to get a worker it can kill with SIGKILL, a crash no
// in-process worker can imitate.
func TestMain(m *testing.M) {
	if os.Getenv(envWorkerProcess) == "1" {
		os.Exit(runWorkerProcess())
	}
	os.Exit(m.Run())
}

func runWorkerProcess() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	var settings contract.Settings
	if err := json.Unmarshal([]byte(os.Getenv(envSettings)), &settings); err != nil {
		return 3
	}
	store, err := orgstore.Open(ctx, os.Getenv(envStore))
	if err != nil {
		return 4
	}
	defer store.Close()
	// The options the worker dials with.
	dial := control.DialOptions{Address: os.Getenv(envFrontend)}
	if spec := os.Getenv(codec.KeysEnv); spec != "" {
		ring, err := codec.ParseKeys(spec)
		if err != nil {
			return 7
		}
		dial.Keys = ring
	}
	opts, err := dial.ClientOptions()
	if err != nil {
		return 7
	}
	c, err := client.Dial(opts)
	if err != nil {
		return 5
	}
	defer c.Close()
	if path := os.Getenv(envSettleAck); path != "" {
		settle := make(chan os.Signal, 1)
		signal.Notify(settle, syscall.SIGUSR1)
		go func() {
			for range settle {
				debug.FreeOSMemory()
				if heap := os.Getenv(envWorkerHeapProfile); heap != "" {
					if f, err := os.Create(heap); err == nil {
						_ = pprof.WriteHeapProfile(f)
						_ = f.Close()
					}
				}
				if f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
					_, _ = f.WriteString("settled\n")
					_ = f.Close()
				}
			}
		}()
	}
	if path := os.Getenv(envWorkerProfile); path != "" {
		f, err := os.Create(path)
		if err != nil || pprof.StartCPUProfile(f) != nil {
			return 8
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if n, err := strconv.Atoi(os.Getenv(envWorkflowCache)); err == nil && n > 0 {
		worker.SetStickyWorkflowCacheSize(n)
	}
	w := worker.New(c, contract.TaskQueue, worker.Options{})
	workflows.Register(w, &activities.Activities{Orgs: store}, settings)
	if err := w.Start(); err != nil {
		return 6
	}
	defer w.Stop()
	if os.Getenv(envFloorWorker) == "1" {
		floor := newFloorWorker(c)
		if err := floor.Start(); err != nil {
			return 6
		}
		defer floor.Stop()
	}
	<-ctx.Done()
	return 0
}

// workerProcess is a worker in a child process.
type workerProcess struct {
	cmd  *exec.Cmd
	once sync.Once
}

// startWorkerProcess starts a worker process against env's server and store.
func startWorkerProcess(t testing.TB, env *testenv.Env, extraEnv ...string) *workerProcess {
	t.Helper()
	settings, err := json.Marshal(env.Settings)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		envWorkerProcess+"=1",
		envFrontend+"="+env.Server.FrontendAddr(),
		envStore+"="+filepath.Join(env.Dir, "orgs.db"),
		envSettings+"="+string(settings),
	)
	if env.Keys != nil {
		cmd.Env = append(cmd.Env, codec.KeysEnv+"="+testenv.KeySpec)
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	p := &workerProcess{cmd: cmd}
	t.Cleanup(p.kill)
	return p
}

// terminate stops the process with SIGTERM and waits for it to exit 0.
func (p *workerProcess) terminate() error {
	var err error
	p.once.Do(func() {
		if err = p.cmd.Process.Signal(syscall.SIGTERM); err == nil {
			err = p.cmd.Wait()
		}
	})
	return err
}

// kill ends the process with SIGKILL: no graceful stop, no final heartbeat.
func (p *workerProcess) kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
}

// stoppable is an in-process worker that can be stopped before the test ends.
type stoppable struct {
	w    worker.Worker
	once sync.Once
}

func newWorker(t *testing.T, env *testenv.Env) *stoppable {
	t.Helper()
	return newWorkerOn(t, env, env.Store)
}

// newWorkerOn is newWorker whose activities use orgs: a wrapper of the
// environment's store that the test controls.
func newWorkerOn(t *testing.T, env *testenv.Env, orgs companionsync.Orgs) *stoppable {
	t.Helper()
	w := worker.New(env.Client, contract.TaskQueue, worker.Options{})
	workflows.Register(w, &activities.Activities{Orgs: orgs}, env.Settings)
	require.NoError(t, w.Start())
	s := &stoppable{w: w}
	t.Cleanup(s.stop)
	return s
}

func (s *stoppable) stop() { s.once.Do(s.w.Stop) }

// requireCopied asserts that the companion holds exactly the home's records
// of a data space: same count, same checksum.
func requireCopied(t *testing.T, env *testenv.Env, home, companion, ds string) {
	t.Helper()
	ctx := context.Background()
	want, err := env.Store.Demo().CountRecords(ctx, home, ds)
	require.NoError(t, err)
	got, err := env.Store.Demo().CompanionRecordCount(ctx, home, companion, ds)
	require.NoError(t, err)
	require.Equal(t, want, got, "records of %s in %s", ds, companion)
	hs, err := env.Store.Demo().RecordChecksum(ctx, home, ds)
	require.NoError(t, err)
	cs, err := env.Store.Demo().CompanionChecksum(ctx, home, companion, ds)
	require.NoError(t, err)
	require.Equal(t, hs, cs, "checksum of %s in %s", ds, companion)
}

func companionCount(t *testing.T, env *testenv.Env, home, companion, ds string) int {
	t.Helper()
	n, err := env.Store.Demo().CompanionRecordCount(context.Background(), home, companion, ds)
	require.NoError(t, err)
	return n
}

// connectAndShare connects ref and requests a share of each data space,
// without waiting for the initial syncs.
func connectAndShare(t *testing.T, c *control.Client, ref control.Ref, dataSpaces ...string) {
	t.Helper()
	ctx := context.Background()
	_, err := c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)
	for _, ds := range dataSpaces {
		_, err := c.Share(ctx, ref, ds)
		require.NoError(t, err)
	}
}
