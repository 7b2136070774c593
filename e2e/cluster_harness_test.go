//go:build linux

// The cluster harness runs the system as it runs in production, each part in
// its own process: a temporal-server built from the pinned server module on
// PostgreSQL, and worker processes built from ./worker in plain-worker mode
// (TEMPORAL_ADDRESS set) on a PostgreSQL org store. Tests kill, stop and
// restart these processes; the harness waits for conditions (a health check,
// a ready line), never for fixed times.
//
// Linux only: child processes get Pdeathsig so that a test binary killed by
// -timeout takes its servers and workers with it.

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	serverconfig "go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/internal/faultproxy"
	"github.com/companionsync/companionsync/internal/testenv"
	"github.com/companionsync/companionsync/orgstore"
)

// Harness environment.
const (
	// envPostgres overrides the PostgreSQL server the harness uses, as an
	// admin URL (a superuser, the maintenance database).
	envPostgres     = "COMPANIONSYNC_E2E_POSTGRES"
	defaultPostgres = "postgres://root@127.0.0.1:5432/postgres?sslmode=disable"
	// envBinDir overrides where the binaries are built (and reused).
	envBinDir = "COMPANIONSYNC_E2E_BIN_DIR"
	// envKeepLogs set keeps the cluster dir (configs, logs) of passing tests.
	envKeepLogs = "COMPANIONSYNC_E2E_KEEP"
)

const (
	// serverModule is the Temporal server module whose binaries the
	// harness builds; its version is the one go.mod pins.
	serverModule = "go.temporal.io/server"
	// workerReadyLine starts the line worker.Main.PrintReady prints once the
	// worker polls its task queue.
	workerReadyLine = "companionsync worker ready on task queue"
	// dbPrefix starts the name of every database the harness creates;
	// leftovers older than staleDatabaseAge are dropped by later runs.
	dbPrefix         = "cse2e_"
	staleDatabaseAge = 3 * time.Hour
	// clusterNamespace is the namespace the harness registers.
	clusterNamespace = "default"
	loopbackIP       = "127.0.0.1"
)

// ClusterOptions configure StartCluster. The zero value is a server with no
// worker processes.
type ClusterOptions struct {
	// Workers is the number of worker processes StartCluster starts, all at
	// once, like a deployment scaling up. More can be added with StartWorkers.
	Workers int
	// SeedRecords is COMPANIONSYNC_SEED_RECORDS of every worker: the size of
	// the demo seed a worker writes into a new org store; 0 seeds nothing.
	SeedRecords int
	// WorkerEnv is added to every worker's environment (KEY=VALUE), e.g.
	// COMPANIONSYNC_HEALTH_CHECK_INTERVAL=2s or COMPANIONSYNC_LOG_LEVEL=debug.
	WorkerEnv []string
	// Plaintext runs the workers without payload encryption
	// (COMPANIONSYNC_KEYS=none); by default they and Client encrypt with the
	// public test key ring testenv.KeySpec.
	Plaintext bool
	// WorkerMetrics gives every worker start a free loopback metrics port
	// (WorkerProcess.MetricsURL); otherwise workers serve no metrics.
	WorkerMetrics bool
	// HistoryShards is numHistoryShards of the server; 0 means 4.
	HistoryShards int
	// DynamicConfig is added to (and overrides) the harness's dynamic config
	// of the server: key -> value.
	DynamicConfig map[string]any
	// ServerLogLevel is the server's log level; "" means info.
	ServerLogLevel string
	// ReadyTimeout bounds each wait for the server to become healthy and for
	// a worker's ready line; 0 means 2 minutes.
	ReadyTimeout time.Duration
	// Postgres is the admin URL of the PostgreSQL server to use (a
	// superuser, the maintenance database); "" means COMPANIONSYNC_E2E_POSTGRES
	// or the machine's server. A test that restarts PostgreSQL brings its own.
	Postgres string
	// FrontendProxy puts a fault proxy (Cluster.Frontend) between the
	// workers and the server's frontend; StoreProxy one (Cluster.StoreProxy)
	// between the workers and the org store's PostgreSQL. The server, Client
	// and the test's own store connections go direct.
	FrontendProxy, StoreProxy bool
}

// ClusterDatabases are the PostgreSQL databases of one cluster.
type ClusterDatabases struct {
	Temporal, Visibility, Orgs string
}

// ClusterTimings are how long the steps of StartCluster took.
type ClusterTimings struct {
	Build, Schema, ServerStart, Namespace, Workers time.Duration
}

// Cluster is a Temporal server process on PostgreSQL with worker processes.
// Everything is killed, the databases dropped and the logs removed (kept on
// failure) when the test ends.
type Cluster struct {
	// Server is the temporal-server process.
	Server *ServerProcess
	// Workers are the worker processes started so far, in start order.
	Workers []*WorkerProcess
	// Client is connected to the server's frontend in Namespace; it
	// reconnects by itself after server restarts.
	Client    client.Client
	Namespace string
	// Keys is the payload key ring of the workers and Client; nil with
	// ClusterOptions.Plaintext.
	Keys *codec.KeyRing
	// OrgStoreURL is the org store's database, direct.
	OrgStoreURL string
	// Frontend and StoreProxy are the fault proxies of
	// ClusterOptions.FrontendProxy and StoreProxy; nil without them.
	Frontend, StoreProxy *faultproxy.Proxy
	Databases            ClusterDatabases
	// Dir holds the config files and the logs of every process.
	Dir     string
	Timings ClusterTimings

	t    testing.TB
	opts ClusterOptions
	bins *clusterBinaries
	pg   pgTarget
	mu   sync.Mutex
}

// StartCluster builds the binaries (reused across runs when unchanged),
// creates fresh databases with the server's schemas, starts the server,
// registers the namespace and starts opts.Workers worker processes. It skips
// the test when PostgreSQL is unreachable, except under CI=true where it
// fails.
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.HistoryShards == 0 {
		opts.HistoryShards = 4
	}
	if opts.ServerLogLevel == "" {
		opts.ServerLogLevel = "info"
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	pg := requirePostgresAt(t, opts.Postgres)

	dir, err := os.MkdirTemp("", "companionsync-e2e-")
	if err != nil {
		t.Fatalf("cluster dir: %v", err)
	}
	c := &Cluster{Namespace: clusterNamespace, Dir: dir, t: t, opts: opts, pg: pg}
	if !opts.Plaintext {
		c.Keys = testenv.Keys()
	}
	// Cleanups run last-registered first: processes die before their
	// databases are dropped, and the logs are reported last.
	t.Cleanup(func() { c.reportLogs(t) })

	start := time.Now()
	c.bins = buildClusterBinaries(t)
	c.Timings.Build = time.Since(start)

	start = time.Now()
	c.Databases = createClusterDatabases(t, pg, c.bins)
	c.OrgStoreURL = pg.url(c.Databases.Orgs)
	c.Timings.Schema = time.Since(start)

	start = time.Now()
	c.Server = newServerProcess(t, c)
	t.Cleanup(c.stopAll)
	c.Server.Start(t)
	c.Timings.ServerStart = time.Since(start)
	if opts.FrontendProxy {
		c.Frontend = startProxy(t, c.Server.Address())
	}
	if opts.StoreProxy {
		c.StoreProxy = startProxy(t, pg.addr())
	}

	start = time.Now()
	c.registerNamespace(t)
	c.Timings.Namespace = time.Since(start)

	if opts.Workers > 0 {
		start = time.Now()
		c.StartWorkers(t, opts.Workers)
		c.Timings.Workers = time.Since(start)
	}
	t.Logf("cluster %s: build %s, schema %s, server start %s, namespace %s, %d workers %s; frontend %s; logs in %s",
		c.Databases.Temporal, c.Timings.Build.Round(time.Millisecond), c.Timings.Schema.Round(time.Millisecond),
		c.Timings.ServerStart.Round(time.Millisecond), c.Timings.Namespace.Round(time.Millisecond),
		opts.Workers, c.Timings.Workers.Round(time.Millisecond), c.Server.Address(), dir)
	return c
}

// registerNamespace registers the namespace (idempotently), connects Client
// and waits until the namespace is usable on every history shard.
func (c *Cluster) registerNamespace(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.ReadyTimeout)
	defer cancel()
	_, err := c.Server.workflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace:                        c.Namespace,
		WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour),
	})
	err = serviceError(err)
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		t.Fatalf("register namespace %s: %v", c.Namespace, err)
	}
	if err := c.Server.waitNamespace(ctx); err != nil {
		t.Fatalf("namespace %s: %v (server log %s)", c.Namespace, err, c.Server.LogPath())
	}
	sdkLog, err := os.OpenFile(filepath.Join(c.Dir, "sdk-client.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("sdk client log: %v", err)
	}
	opts := client.Options{
		HostPort:  c.Server.Address(),
		Namespace: c.Namespace,
		// The client's and its workers' complaints while the server is
		// down go to a file, not the test output.
		Logger: sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(sdkLog, nil))),
	}
	if c.Keys != nil {
		opts.DataConverter, opts.FailureConverter = codec.NewConverters(c.Keys)
	}
	cl, err := client.DialContext(ctx, opts)
	if err != nil {
		_ = sdkLog.Close()
		t.Fatalf("connect to %s: %v", c.Server.Address(), err)
	}
	c.Client = cl
	t.Cleanup(func() {
		cl.Close()
		_ = sdkLog.Close()
	})
}

// NewWorker prepares a worker process (not started; call Start or Launch)
// and adds it to Workers.
func (c *Cluster) NewWorker() *WorkerProcess { return c.NewWorkerFrom(c.bins.Worker) }

// NewWorkerFrom is NewWorker with another worker binary (an earlier
// release's, for the rolling upgrade).
func (c *Cluster) NewWorkerFrom(binary string) *WorkerProcess {
	c.mu.Lock()
	defer c.mu.Unlock()
	name := fmt.Sprintf("worker-%d", len(c.Workers)+1)
	keys := codec.Off
	if c.Keys != nil {
		keys = testenv.KeySpec
	}
	wdir := filepath.Join(c.Dir, name)
	if err := os.MkdirAll(wdir, 0o755); err != nil {
		c.t.Fatalf("%s dir: %v", name, err)
	}
	frontend, store := c.Server.Address(), c.OrgStoreURL
	if c.Frontend != nil {
		frontend = c.Frontend.Addr()
	}
	if c.StoreProxy != nil {
		store = strings.Replace(store, c.pg.addr(), c.StoreProxy.Addr(), 1)
	}
	env := append(cleanEnv("TEMPORAL_", "COMPANIONSYNC_"),
		"TEMPORAL_ADDRESS="+frontend,
		"TEMPORAL_NAMESPACE="+c.Namespace,
		"COMPANIONSYNC_ORG_STORE="+store,
		"COMPANIONSYNC_SEED_RECORDS="+strconv.Itoa(c.opts.SeedRecords),
		codec.KeysEnv+"="+keys,
		// Not used with TEMPORAL_ADDRESS and COMPANIONSYNC_ORG_STORE; set
		// so that nothing lands in the repository.
		"COMPANIONSYNC_DATA_DIR="+filepath.Join(wdir, "data"),
	)
	env = append(env, c.opts.WorkerEnv...)
	w := &WorkerProcess{name: name, metrics: c.opts.WorkerMetrics, timeout: c.opts.ReadyTimeout}
	w.proc = &process{
		name:    name,
		path:    binary,
		env:     env,
		dir:     wdir,
		logPath: filepath.Join(c.Dir, name+".log"),
		onLine:  w.onLine,
	}
	c.Workers = append(c.Workers, w)
	return w
}

// StartWorkers starts n new worker processes at once and waits until every
// one is ready.
func (c *Cluster) StartWorkers(t testing.TB, n int) []*WorkerProcess {
	t.Helper()
	ws := make([]*WorkerProcess, n)
	for i := range ws {
		ws[i] = c.NewWorker()
		if err := ws[i].Launch(); err != nil {
			t.Fatalf("%s: %v", ws[i].Name(), err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.ReadyTimeout)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() { errs[i] = w.WaitReady(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("start %d workers: %v", n, err)
	}
	return ws
}

// RollingRestart stops each running worker in turn (SIGTERM; it must exit
// with status 0) and starts it again, waiting for it to be ready before
// moving to the next.
func (c *Cluster) RollingRestart(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	ws := slices.Clone(c.Workers)
	c.mu.Unlock()
	for _, w := range ws {
		if !w.Running() {
			continue
		}
		code, err := w.Stop()
		if err != nil || code != 0 {
			t.Fatalf("rolling restart: stop %s: exit status %d, %v (log %s)", w.Name(), code, err, w.LogPath())
		}
		w.Start(t)
	}
}

// stopAll kills every process. Worker processes that exited on their own
// with a failure fail the test.
func (c *Cluster) stopAll() {
	c.mu.Lock()
	ws := slices.Clone(c.Workers)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(w.Kill)
	}
	wg.Go(c.Server.Kill)
	wg.Wait()
	for _, p := range append([]*process{c.Server.proc}, workerProcs(ws)...) {
		if e := p.unexpectedExit(); e != "" {
			c.t.Errorf("%s exited by itself: %s (log %s)", p.name, e, p.logPath)
		}
	}
}

func workerProcs(ws []*WorkerProcess) []*process {
	out := make([]*process, len(ws))
	for i, w := range ws {
		out[i] = w.proc
	}
	return out
}

// reportLogs removes the cluster dir after a passing test; after a failure
// it keeps it and prints the end of every log.
func (c *Cluster) reportLogs(t testing.TB) {
	if os.Getenv(envKeepLogs) != "" {
		t.Logf("cluster logs and configs kept in %s (%s set)", c.Dir, envKeepLogs)
		return
	}
	if !t.Failed() {
		_ = os.RemoveAll(c.Dir)
		return
	}
	logs, _ := filepath.Glob(filepath.Join(c.Dir, "*.log"))
	for _, l := range logs {
		t.Logf("--- last lines of %s ---\n%s", l, tailFile(l, 25))
	}
	t.Logf("cluster logs and configs kept in %s", c.Dir)
}

// ServerProcess is the temporal-server process of a Cluster. Restarts reuse
// its ports, config and databases.
type ServerProcess struct {
	proc    *process
	address string
	timeout time.Duration

	// conn is a gRPC connection to the frontend for health checks and
	// namespace calls; it reconnects quickly after restarts.
	conn *grpc.ClientConn
	// namespace is probed by waitNamespace once registered.
	namespace string
	probes    []string
}

func newServerProcess(t testing.TB, c *Cluster) *ServerProcess {
	t.Helper()
	sdir := filepath.Join(c.Dir, "server")
	if err := os.MkdirAll(sdir, 0o755); err != nil {
		t.Fatalf("server dir: %v", err)
	}
	ports, err := freePorts(9)
	if err != nil {
		t.Fatalf("free ports: %v", err)
	}
	sc := serverConfigData{
		LogLevel:         c.opts.ServerLogLevel,
		Shards:           c.opts.HistoryShards,
		PGAddr:           c.pg.addr(),
		PGUser:           c.pg.user,
		PGPassword:       c.pg.password,
		TemporalDB:       c.Databases.Temporal,
		VisibilityDB:     c.Databases.Visibility,
		IP:               loopbackIP,
		FrontendGRPC:     ports[0],
		FrontendHTTP:     ports[1],
		FrontendMember:   ports[2],
		HistoryGRPC:      ports[3],
		HistoryMember:    ports[4],
		MatchingGRPC:     ports[5],
		MatchingMember:   ports[6],
		WorkerGRPC:       ports[7],
		WorkerMember:     ports[8],
		DynamicConfigPth: filepath.Join(sdir, "dynamicconfig.yaml"),
	}
	if err := writeDynamicConfig(sc.DynamicConfigPth, c.opts.DynamicConfig); err != nil {
		t.Fatalf("server dynamic config: %v", err)
	}
	cfgPath := filepath.Join(sdir, "config.yaml")
	if err := writeServerConfig(cfgPath, sc); err != nil {
		t.Fatalf("server config: %v", err)
	}
	s := &ServerProcess{
		address:   net.JoinHostPort(loopbackIP, strconv.Itoa(sc.FrontendGRPC)),
		timeout:   c.opts.ReadyTimeout,
		namespace: c.Namespace,
	}
	// Nonexistent workflow IDs spread over the shards: describing all of
	// them proves every shard is owned and the namespace is cached.
	for i := range 8 * c.opts.HistoryShards {
		s.probes = append(s.probes, fmt.Sprintf("harness-probe-%d", i))
	}
	s.proc = &process{
		name:    "temporal-server",
		path:    c.bins.Server,
		args:    []string{"--config-file", cfgPath, "--allow-no-auth", "start"},
		env:     cleanEnv("TEMPORAL_"),
		dir:     sdir,
		logPath: filepath.Join(c.Dir, "temporal-server.log"),
	}
	conn, err := grpc.NewClient(s.address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: 2 * time.Second,
		}))
	if err != nil {
		t.Fatalf("frontend connection: %v", err)
	}
	s.conn = conn
	t.Cleanup(func() { _ = conn.Close() })
	return s
}

// Address is the frontend's gRPC host:port.
func (s *ServerProcess) Address() string { return s.address }

// LogPath is the server's log file; every start appends to it.
func (s *ServerProcess) LogPath() string { return s.proc.logPath }

// Running reports whether the process is running.
func (s *ServerProcess) Running() bool { return s.proc.running() }

// Start starts the server process and waits until it is healthy: the
// frontend serves, and once the namespace is registered, every history
// shard answers for it.
func (s *ServerProcess) Start(t testing.TB) {
	t.Helper()
	if err := s.proc.launch(); err != nil {
		t.Fatalf("start temporal-server: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if err := s.WaitHealthy(ctx); err != nil {
		t.Fatalf("temporal-server: %v (log %s)", err, s.LogPath())
	}
}

// Stop sends SIGTERM and waits for the server to exit; an exit status other
// than 0, or no exit within a minute (it is then killed), is an error.
func (s *ServerProcess) Stop() error {
	code, err := s.proc.stop(time.Minute)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("temporal-server exited with status %d (log %s)", code, s.LogPath())
	}
	return nil
}

// Kill kills the server with SIGKILL and waits for it to be gone.
func (s *ServerProcess) Kill() { s.proc.kill() }

// Restart stops the server (SIGTERM) and starts it again on the same ports
// and databases, returning once it is healthy.
func (s *ServerProcess) Restart(t testing.TB) {
	t.Helper()
	if err := s.Stop(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	s.Start(t)
}

// WaitHealthy waits until the frontend reports SERVING and, once the
// namespace exists, the namespace is usable on every shard.
func (s *ServerProcess) WaitHealthy(ctx context.Context) error {
	health := healthpb.NewHealthClient(s.conn)
	var last error
	for {
		if reason := s.proc.exitReason(); reason != "" {
			return fmt.Errorf("exited while starting: %s", reason)
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{Service: workflowservice.WorkflowService_ServiceDesc.ServiceName})
		cancel()
		switch {
		case err != nil:
			last = err
		case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
			last = fmt.Errorf("health %s", resp.GetStatus())
		default:
			return s.waitNamespace(ctx)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("frontend %s not healthy: %w (last: %v)", s.address, err, last)
		}
	}
}

// waitNamespace waits until the namespace is in the frontend's cache and
// every probe workflow ID (spread over all shards) is answered "not found".
// A namespace not registered yet counts as ready: there is nothing to probe.
func (s *ServerProcess) waitNamespace(ctx context.Context) error {
	ws := s.workflowService()
	pending := slices.Clone(s.probes)
	var last error
	registered := false
	for {
		if reason := s.proc.exitReason(); reason != "" {
			return fmt.Errorf("exited while starting: %s", reason)
		}
		if !registered {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := ws.DescribeNamespace(cctx, &workflowservice.DescribeNamespaceRequest{Namespace: s.namespace})
			cancel()
			err = serviceError(err)
			var missing *serviceerror.NamespaceNotFound
			switch {
			case errors.As(err, &missing):
				return nil
			case err != nil:
				last = err
			default:
				registered = true
			}
		}
		if registered {
			var still []string
			for _, id := range pending {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := ws.DescribeWorkflowExecution(cctx, &workflowservice.DescribeWorkflowExecutionRequest{
					Namespace: s.namespace,
					Execution: &commonpb.WorkflowExecution{WorkflowId: id},
				})
				cancel()
				var notFound *serviceerror.NotFound
				if err = serviceError(err); !errors.As(err, &notFound) {
					still = append(still, id)
					last = err
				}
			}
			if len(still) == 0 {
				return nil
			}
			pending = still
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("namespace %s not usable on all shards: %w (last: %v)", s.namespace, err, last)
		}
	}
}

// serviceError turns the status error of a raw gRPC call into the
// serviceerror type it stands for.
func serviceError(err error) error {
	if err == nil {
		return nil
	}
	return serviceerror.FromStatus(status.Convert(err))
}

func (s *ServerProcess) workflowService() workflowservice.WorkflowServiceClient {
	return workflowservice.NewWorkflowServiceClient(s.conn)
}

// WorkerProcess is a worker process of a Cluster. It can be killed, stopped
// and started again any number of times; every start appends to its log.
type WorkerProcess struct {
	name    string
	proc    *process
	metrics bool
	timeout time.Duration

	mu         sync.Mutex
	ready      chan struct{} // closed when the current start printed its ready line
	metricsURL string
}

// Name is worker-1, worker-2, ... in creation order.
func (w *WorkerProcess) Name() string { return w.name }

// LogPath is the worker's log file (stdout and stderr of every start).
func (w *WorkerProcess) LogPath() string { return w.proc.logPath }

// Pid is the process ID of the current (or last) start; 0 before the first.
func (w *WorkerProcess) Pid() int { return w.proc.pid() }

// Running reports whether the process is running.
func (w *WorkerProcess) Running() bool { return w.proc.running() }

// MetricsURL is the /metrics URL of the current start ("" without
// ClusterOptions.WorkerMetrics or before the ready line).
func (w *WorkerProcess) MetricsURL() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.metricsURL
}

// Start starts the worker process and waits for its ready line.
func (w *WorkerProcess) Start(t testing.TB) {
	t.Helper()
	if err := w.Launch(); err != nil {
		t.Fatalf("%s: %v", w.name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	if err := w.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// SetEnv sets KEY=value in the worker's environment from its next start
// on (a new key ring for a rotation, say).
func (w *WorkerProcess) SetEnv(key, value string) {
	env := slices.DeleteFunc(slices.Clone(w.proc.env), func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
	w.proc.env = append(env, key+"="+value)
}

// Launch starts the worker process without waiting; see WaitReady.
func (w *WorkerProcess) Launch() error {
	if w.proc.running() {
		return fmt.Errorf("%s is already running (pid %d)", w.name, w.proc.pid())
	}
	metricsAddr := "" // -metrics-addr= disables the endpoint
	if w.metrics {
		ports, err := freePorts(1)
		if err != nil {
			return err
		}
		metricsAddr = net.JoinHostPort(loopbackIP, strconv.Itoa(ports[0]))
	}
	w.mu.Lock()
	w.ready = make(chan struct{})
	w.metricsURL = ""
	w.mu.Unlock()
	// COMPANIONSYNC_METRICS_ADDR="" would leave the default 127.0.0.1:9464,
	// which the second worker could not bind; the flag can be empty.
	w.proc.args = []string{"-metrics-addr=" + metricsAddr}
	return w.proc.launch()
}

// WaitReady waits until the current start printed its ready line, failing
// at once if the process exits first.
func (w *WorkerProcess) WaitReady(ctx context.Context) error {
	w.mu.Lock()
	ready := w.ready
	w.mu.Unlock()
	if ready == nil {
		return fmt.Errorf("%s was never launched", w.name)
	}
	select {
	case <-ready:
		return nil
	case <-w.proc.exited():
		return fmt.Errorf("%s exited before it was ready: %s; log %s:\n%s", w.name, w.proc.exitReason(), w.LogPath(), tailFile(w.LogPath(), 15))
	case <-ctx.Done():
		return fmt.Errorf("%s not ready: %w; log %s:\n%s", w.name, ctx.Err(), w.LogPath(), tailFile(w.LogPath(), 15))
	}
}

// Stop sends SIGTERM and waits for the worker to exit (it is killed after a
// minute, which is an error), returning its exit status (-1 if a signal
// ended it).
func (w *WorkerProcess) Stop() (exitCode int, err error) { return w.proc.stop(time.Minute) }

// Kill kills the worker with SIGKILL (no graceful stop, no last heartbeat)
// and waits for it to be gone.
func (w *WorkerProcess) Kill() { w.proc.kill() }

func (w *WorkerProcess) onLine(line string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case strings.HasPrefix(line, workerReadyLine):
		if w.ready != nil {
			select {
			case <-w.ready:
			default:
				close(w.ready)
			}
		}
	case strings.HasPrefix(strings.TrimSpace(line), "metrics "):
		w.metricsURL = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "metrics"))
	}
}

// process is a child process that can be started again after it exits.
type process struct {
	name    string
	path    string
	args    []string
	env     []string
	dir     string
	logPath string
	// onLine, if set, sees every line of stdout (which also goes to the log).
	onLine func(string)

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current start exited
	state    *os.ProcessState
	waitErr  error
	starts   int
	stopping bool // the harness signalled the current start
}

func (p *process) launch() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.state == nil {
		return fmt.Errorf("%s is already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(logf, "=== harness: start #%d of %s at %s: %s %s\n", p.starts, p.name, time.Now().Format(time.RFC3339Nano), p.path, strings.Join(p.args, " "))
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	cmd.Stderr = logf
	cmd.Stdout = logf
	if p.onLine != nil {
		cmd.Stdout = &lineWriter{w: logf, onLine: p.onLine}
	}
	// Its own process group (a ^C to the test does not reach it first), and
	// SIGKILL when the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.state, p.waitErr, p.stopping = cmd, done, nil, nil, false
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(logf, "=== harness: %s (pid %d) exited: %v\n", p.name, cmd.Process.Pid, cmd.ProcessState)
		_ = logf.Close()
		p.mu.Lock()
		p.state, p.waitErr = cmd.ProcessState, err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && p.state == nil
}

func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// exited is closed when the current start exits (closed already if never
// started).
func (p *process) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

// exitReason describes how the current start ended; "" while it runs.
func (p *process) exitReason() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.cmd == nil:
		return "never started"
	case p.state == nil:
		return ""
	default:
		return p.state.String()
	}
}

// unexpectedExit describes a failed exit the harness did not cause.
func (p *process) unexpectedExit() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.state == nil || p.stopping || p.state.Success() {
		return ""
	}
	return p.state.String()
}

// signal sends sig to the current start and returns its done channel (nil
// if it is not running).
func (p *process) signal(sig syscall.Signal) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.state != nil {
		return nil
	}
	p.stopping = true
	_ = p.cmd.Process.Signal(sig)
	return p.done
}

func (p *process) kill() {
	if done := p.signal(syscall.SIGKILL); done != nil {
		<-done
	}
}

// stop sends SIGTERM and waits up to timeout for the exit, then kills.
func (p *process) stop(timeout time.Duration) (int, error) {
	done := p.signal(syscall.SIGTERM)
	if done == nil {
		return 0, fmt.Errorf("%s is not running", p.name)
	}
	select {
	case <-done:
	case <-time.After(timeout):
		p.kill()
		return -1, fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.name, timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.ExitCode(), nil
}

// lineWriter passes writes to w and complete lines to onLine.
type lineWriter struct {
	w      io.Writer
	onLine func(string)
	buf    []byte
}

func (l *lineWriter) Write(b []byte) (int, error) {
	n, err := l.w.Write(b)
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.onLine(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return n, err
}

// clusterBinaries are the executables the harness runs.
type clusterBinaries struct {
	Server, SQLTool, Worker string
	// ServerModuleDir is the pinned server module in the module cache; its
	// schema/ directory has the versioned SQL schemas.
	ServerModuleDir string
}

var (
	binariesOnce sync.Once
	binaries     *clusterBinaries
	binariesErr  error
)

// buildClusterBinaries builds temporal-server and temporal-sql-tool from the
// pinned server module and the project's worker, once per test binary, into
// a directory kept across runs (os.UserCacheDir()/companionsync-e2e/...):
// go build leaves an executable whose build ID is still current untouched,
// so unchanged binaries cost a staleness check and no link.
func buildClusterBinaries(t testing.TB) *clusterBinaries {
	t.Helper()
	binariesOnce.Do(func() { binaries, binariesErr = buildBinaries(t) })
	if binariesErr != nil {
		t.Fatalf("build binaries: %v", binariesErr)
	}
	return binaries
}

func buildBinaries(t testing.TB) (*clusterBinaries, error) {
	modRoot, err := goOutput("", "env", "GOMOD")
	if err != nil {
		return nil, err
	}
	if modRoot == "" || modRoot == os.DevNull {
		return nil, errors.New("not in a module")
	}
	modRoot = filepath.Dir(modRoot)
	serverDir, err := goOutput(modRoot, "list", "-m", "-f", "{{.Dir}}", serverModule)
	if err != nil {
		return nil, err
	}
	if serverDir == "" {
		if _, err := goOutput(modRoot, "mod", "download", serverModule); err != nil {
			return nil, err
		}
		if serverDir, err = goOutput(modRoot, "list", "-m", "-f", "{{.Dir}}", serverModule); err != nil {
			return nil, err
		}
	}
	binDir := os.Getenv(envBinDir)
	if binDir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, err
		}
		// One directory per checkout and platform: two checkouts would
		// otherwise relink each other's binaries on every run.
		sum := sha256.Sum256([]byte(modRoot))
		binDir = filepath.Join(cache, "companionsync-e2e", hex.EncodeToString(sum[:6])+"-"+runtime.GOOS+"-"+runtime.GOARCH)
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	// Concurrent test binaries build one at a time into the shared dir.
	lock, err := os.OpenFile(filepath.Join(binDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck

	b := &clusterBinaries{
		Server:          filepath.Join(binDir, "temporal-server"),
		SQLTool:         filepath.Join(binDir, "temporal-sql-tool"),
		Worker:          filepath.Join(binDir, "worker"),
		ServerModuleDir: serverDir,
	}
	builds := []struct{ out, pkg string }{
		{b.Server, serverModule + "/cmd/server"},
		{b.SQLTool, serverModule + "/cmd/tools/sql"},
		{b.Worker, "./worker"},
	}
	took := make([]time.Duration, len(builds))
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, bd := range builds {
		wg.Go(func() {
			start := time.Now()
			_, errs[i] = goOutput(modRoot, "build", "-o", bd.out, bd.pkg)
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	t.Logf("built into %s: temporal-server %s, temporal-sql-tool %s, worker %s (in parallel)",
		binDir, took[0].Round(time.Millisecond), took[1].Round(time.Millisecond), took[2].Round(time.Millisecond))
	return b, nil
}

// goOutput runs the go command in dir and returns its trimmed stdout.
func goOutput(dir string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// pgTarget is the PostgreSQL server the harness uses.
type pgTarget struct {
	host           string
	port           int
	user, password string
	admin          string // URL of the maintenance database
}

func (p pgTarget) addr() string { return net.JoinHostPort(p.host, strconv.Itoa(p.port)) }

// url is a connection URL for database db.
func (p pgTarget) url(db string) string {
	u := url.URL{Scheme: "postgres", Host: p.addr(), Path: "/" + db, RawQuery: "sslmode=disable"}
	if p.password != "" {
		u.User = url.UserPassword(p.user, p.password)
	} else {
		u.User = url.User(p.user)
	}
	return u.String()
}

// requirePostgresAt checks that the PostgreSQL server of the admin URL
// ("": COMPANIONSYNC_E2E_POSTGRES or the machine's) answers, skipping the test when it
// does not (failing it under CI=true), and drops databases that earlier runs
// killed before their cleanup left behind.
func requirePostgresAt(t testing.TB, admin string) pgTarget {
	t.Helper()
	if admin == "" {
		admin = os.Getenv(envPostgres)
	}
	if admin == "" {
		admin = defaultPostgres
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s=%q: %v", envPostgres, admin, err)
	}
	port := 5432
	if u.Port() != "" {
		if port, err = strconv.Atoi(u.Port()); err != nil {
			t.Fatalf("%s=%q: port: %v", envPostgres, admin, err)
		}
	}
	pg := pgTarget{host: u.Hostname(), port: port, user: u.User.Username(), admin: admin}
	pg.password, _ = u.User.Password()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err == nil {
		err = conn.Ping(ctx)
	}
	if err != nil {
		// pgx lists every address it tried on a line of its own.
		reason := strings.Join(strings.Fields(err.Error()), " ")
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL at %s unreachable (CI=true): %s", pg.addr(), reason)
		}
		t.Skipf("PostgreSQL at %s unreachable (%s selects another): %s", pg.addr(), envPostgres, reason)
	}
	defer conn.Close(context.Background())
	dropStaleDatabases(t, ctx, conn)
	return pg
}

// dropStaleDatabases drops harness databases older than staleDatabaseAge.
func dropStaleDatabases(t testing.TB, ctx context.Context, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE $1`, dbPrefix+"%")
	if err != nil {
		t.Logf("list stale databases: %v", err)
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Logf("list stale databases: %v", err)
		return
	}
	for _, name := range names {
		// cse2e_<unix seconds>_...
		f := strings.SplitN(strings.TrimPrefix(name, dbPrefix), "_", 2)
		sec, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || time.Since(time.Unix(sec, 0)) < staleDatabaseAge {
			continue
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop stale database %s: %v", name, err)
		} else {
			t.Logf("dropped stale database %s", name)
		}
	}
}

// createClusterDatabases creates the Temporal, visibility and org store
// databases with temporal-sql-tool, sets up the server's schemas in the
// first two from the server module's own versioned schema directories, and
// drops all three when the test ends.
func createClusterDatabases(t testing.TB, pg pgTarget, bins *clusterBinaries) ClusterDatabases {
	t.Helper()
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	prefix := fmt.Sprintf("%s%d_%d_%s", dbPrefix, time.Now().Unix(), os.Getpid(), hex.EncodeToString(rnd[:]))
	dbs := ClusterDatabases{Temporal: prefix + "_temporal", Visibility: prefix + "_visibility", Orgs: prefix + "_orgs"}
	t.Cleanup(func() { dropDatabases(t, pg, dbs.Temporal, dbs.Visibility, dbs.Orgs) })

	schemaRoot := filepath.Join(bins.ServerModuleDir, "schema", "postgresql", "v12")
	steps := []struct {
		db, schemaDir string
	}{
		{dbs.Temporal, filepath.Join(schemaRoot, "temporal", "versioned")},
		{dbs.Visibility, filepath.Join(schemaRoot, "visibility", "versioned")},
		{dbs.Orgs, ""},
	}
	errs := make([]error, len(steps))
	var wg sync.WaitGroup
	for i, s := range steps {
		wg.Go(func() {
			cmds := [][]string{{"create-database"}}
			if s.schemaDir != "" {
				cmds = append(cmds, []string{"setup-schema", "-v", "0.0"}, []string{"update-schema", "-d", s.schemaDir})
			}
			for _, c := range cmds {
				if err := runSQLTool(bins.SQLTool, pg, s.db, c...); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("databases: %v", err)
	}
	return dbs
}

func runSQLTool(tool string, pg pgTarget, db string, command ...string) error {
	args := []string{
		"--plugin", "postgres12", "--ep", pg.host, "-p", strconv.Itoa(pg.port),
		"-u", pg.user, "--db", db,
	}
	if pg.password != "" {
		args = append(args, "--pw", pg.password)
	}
	cmd := exec.Command(tool, append(args, command...)...)
	cmd.Env = cleanEnv("SQL_", "TEMPORAL_")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("temporal-sql-tool %s on %s: %w\n%s", strings.Join(command, " "), db, err, out)
	}
	return nil
}

// dropDatabases drops the databases, closing any connections still open.
func dropDatabases(t testing.TB, pg pgTarget, names ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.admin)
	if err != nil {
		t.Errorf("drop databases %v: %v", names, err)
		return
	}
	defer conn.Close(context.Background())
	for _, name := range names {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	}
}

// serverConfigData fills serverConfigTemplate.
type serverConfigData struct {
	LogLevel                     string
	Shards                       int
	PGAddr, PGUser, PGPassword   string
	TemporalDB, VisibilityDB     string
	IP                           string
	FrontendGRPC, FrontendHTTP   int
	FrontendMember               int
	HistoryGRPC, HistoryMember   int
	MatchingGRPC, MatchingMember int
	WorkerGRPC, WorkerMember     int
	DynamicConfigPth             string
}

// serverConfigTemplate follows the server's config/development-postgres12.yaml:
// postgres12 for the default and the visibility store, one cluster, every
// service on loopback ports chosen at runtime; no archival, no metrics, no
// pprof.
var serverConfigTemplate = template.Must(template.New("config").Funcs(template.FuncMap{"q": strconv.Quote}).Parse(`log:
  stdout: true
  level: {{q .LogLevel}}

persistence:
  defaultStore: postgres-default
  visibilityStore: postgres-visibility
  numHistoryShards: {{.Shards}}
  datastores:
    postgres-default:
      sql:
        pluginName: postgres12
        databaseName: {{q .TemporalDB}}
        connectAddr: {{q .PGAddr}}
        connectProtocol: tcp
        user: {{q .PGUser}}
        password: {{q .PGPassword}}
        maxConns: 20
        maxIdleConns: 20
        maxConnLifetime: 1h
    postgres-visibility:
      sql:
        pluginName: postgres12
        databaseName: {{q .VisibilityDB}}
        connectAddr: {{q .PGAddr}}
        connectProtocol: tcp
        user: {{q .PGUser}}
        password: {{q .PGPassword}}
        maxConns: 10
        maxIdleConns: 10
        maxConnLifetime: 1h

global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: {{q .IP}}

services:
  frontend:
    rpc:
      grpcPort: {{.FrontendGRPC}}
      membershipPort: {{.FrontendMember}}
      bindOnIP: {{q .IP}}
      httpPort: {{.FrontendHTTP}}
  history:
    rpc:
      grpcPort: {{.HistoryGRPC}}
      membershipPort: {{.HistoryMember}}
      bindOnIP: {{q .IP}}
  matching:
    rpc:
      grpcPort: {{.MatchingGRPC}}
      membershipPort: {{.MatchingMember}}
      bindOnIP: {{q .IP}}
  worker:
    rpc:
      grpcPort: {{.WorkerGRPC}}
      membershipPort: {{.WorkerMember}}
      bindOnIP: {{q .IP}}

clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "{{.IP}}:{{.FrontendGRPC}}"
      httpAddress: "{{.IP}}:{{.FrontendHTTP}}"

dcRedirectionPolicy:
  policy: noop

archival:
  history:
    state: disabled
  visibility:
    state: disabled

namespaceDefaults:
  archival:
    history:
      state: disabled
    visibility:
      state: disabled

publicClient:
  hostPort: "{{.IP}}:{{.FrontendGRPC}}"

dynamicConfigClient:
  filepath: {{q .DynamicConfigPth}}
  pollInterval: 10s
`))

// writeServerConfig writes the config and loads it with the server's own
// loader, so that a mistake shows here rather than in the server's log.
func writeServerConfig(path string, d serverConfigData) error {
	var b bytes.Buffer
	if err := serverConfigTemplate.Execute(&b, d); err != nil {
		return err
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return err
	}
	if _, err := serverconfig.Load(serverconfig.WithConfigFile(path)); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// harnessDynamicConfig is the server's dynamic config; keys come from the
// server's typed settings, so a key an upgrade removes fails to compile.
func harnessDynamicConfig() map[string]any {
	return map[string]any{
		// Search attributes a worker adds are usable at once.
		dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key().String(): true,
		// A registered namespace is usable sooner (default 2s).
		dynamicconfig.NamespaceCacheRefreshInterval.Key().String(): "500ms",
		// Bypassing the search attribute cache costs reads.
		dynamicconfig.FrontendPersistenceMaxQPS.Key().String(): 10000,
		dynamicconfig.HistoryPersistenceMaxQPS.Key().String():  45000,
		// The typed client changes workflows with updates.
		dynamicconfig.FrontendEnableUpdateWorkflowExecution.Key().String():              true,
		dynamicconfig.FrontendEnableUpdateWorkflowExecutionAsyncAccepted.Key().String(): true,
	}
}

// writeDynamicConfig writes the harness's dynamic config plus extra and
// checks the file with the server's own parser.
func writeDynamicConfig(path string, extra map[string]any) error {
	values := harnessDynamicConfig()
	for k, v := range extra {
		values[k] = v
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b bytes.Buffer
	for _, k := range keys {
		v, err := json.Marshal(values[k]) // JSON is YAML
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		fmt.Fprintf(&b, "%s:\n  - value: %s\n", k, v)
	}
	res := dynamicconfig.LoadYamlFile(b.Bytes())
	if len(res.Errors) > 0 {
		return fmt.Errorf("%s: %v", path, errors.Join(res.Errors...))
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// freePorts returns n distinct loopback ports, free at the time of the
// call, below 32768: the server stores membership ports in a SMALLINT
// column (cluster_membership.rpc_port), and ports under Linux's ephemeral
// range are not handed out to other processes' outgoing connections.
// startProxy starts a fault proxy to target, closed when the test ends.
func startProxy(t testing.TB, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(target)
	if err != nil {
		t.Fatalf("proxy to %s: %v", target, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func freePorts(n int) ([]int, error) {
	const lo, hi = 10000, 32767
	ports := make([]int, 0, n)
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			_ = ln.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			return nil, fmt.Errorf("no free loopback port in %d-%d after %d tries", lo, hi, tries)
		}
		var b [2]byte
		_, _ = rand.Read(b[:])
		port := lo + (int(b[0])<<8|int(b[1]))%(hi-lo+1)
		// Held open until all are chosen, so no two are the same.
		ln, err := net.Listen("tcp", net.JoinHostPort(loopbackIP, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		held = append(held, ln)
		ports = append(ports, port)
	}
	return ports, nil
}

// cleanEnv is this process's environment without the variables starting
// with one of the prefixes: a developer's TEMPORAL_ADDRESS or SQL_HOST must
// not leak into the children.
func cleanEnv(prefixes ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(kv, p) }) {
			out = append(out, kv)
		}
	}
	return out
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// TestClusterHarness boots the server process on PostgreSQL, runs a
// workflow across a server restart with an in-test worker on a throwaway
// task queue, and, when the org store opens PostgreSQL URLs, starts a worker
// process and stops it gracefully.
func TestClusterHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a temporal-server process on PostgreSQL")
	}
	c := StartCluster(t, ClusterOptions{SeedRecords: 100})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	tq := "harness-smoke-" + hex.EncodeToString(rnd[:])
	w := worker.New(c.Client, tq, worker.Options{})
	w.RegisterWorkflowWithOptions(harnessSmokeWorkflow, workflow.RegisterOptions{Name: "HarnessSmoke"})
	w.RegisterActivityWithOptions(func(_ context.Context, s string) (string, error) { return "echo: " + s, nil },
		activity.RegisterOptions{Name: "HarnessSmokeEcho"})
	require.NoError(t, w.Start())
	defer w.Stop()

	run, err := c.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: tq, TaskQueue: tq}, "HarnessSmoke")
	require.NoError(t, err)
	// The worker has run the first workflow task once the query answers.
	require.Eventually(t, func() bool {
		v, err := c.Client.QueryWorkflow(ctx, run.GetID(), run.GetRunID(), "state")
		var state string
		return err == nil && v.Get(&state) == nil && state == "waiting"
	}, time.Minute, 50*time.Millisecond, "workflow never waited for its signal")

	start := time.Now()
	c.Server.Restart(t)
	t.Logf("server restart (SIGTERM, start, healthy): %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	require.NoError(t, c.Client.SignalWorkflow(ctx, run.GetID(), run.GetRunID(), "go", "after restart"))
	var got string
	require.NoError(t, run.Get(ctx, &got))
	require.Equal(t, "echo: after restart", got)
	t.Logf("workflow completed %s after the restart", time.Since(start).Round(time.Millisecond))

	// A worker process needs an org store on PostgreSQL.
	store, err := orgstore.Open(ctx, c.OrgStoreURL)
	if err != nil {
		t.Logf("no worker process: the org store does not open %s yet: %v", c.OrgStoreURL, err)
		return
	}
	require.NoError(t, store.Close())
	start = time.Now()
	wp := c.StartWorkers(t, 1)[0]
	t.Logf("worker process ready in %s", time.Since(start).Round(time.Millisecond))
	sas, err := c.Client.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: c.Namespace})
	require.NoError(t, err)
	for _, a := range contract.SearchAttributes() {
		require.Contains(t, sas.GetCustomAttributes(), a.GetName(), "search attribute the worker adds")
	}
	code, err := wp.Stop()
	require.NoError(t, err)
	require.Equal(t, 0, code, "exit status of a stopped worker (log %s)", wp.LogPath())
}

// harnessSmokeWorkflow waits for a "go" signal, then echoes its value
// through an activity.
func harnessSmokeWorkflow(ctx workflow.Context) (string, error) {
	state := "waiting"
	if err := workflow.SetQueryHandler(ctx, "state", func() (string, error) { return state, nil }); err != nil {
		return "", err
	}
	var msg string
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &msg)
	state = "running"
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second})
	var out string
	err := workflow.ExecuteActivity(ctx, "HarnessSmokeEcho", msg).Get(ctx, &out)
	return out, err
}
