//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/refmodel"
	"github.com/companionsync/companionsync/internal/testenv"
	"github.com/companionsync/companionsync/orgstore"
)

// The soak's size. The default suite runs the short version; the long one
// is COMPANIONSYNC_SOAK=30m COMPANIONSYNC_SOAK_CONNECTIONS=300 (see
// docs/testing.md).
const (
	envSoak            = "COMPANIONSYNC_SOAK"
	envSoakConnections = "COMPANIONSYNC_SOAK_CONNECTIONS"
	// envSoakInterval is the workers' health-check and metadata-sync
	// interval; by default one second per 10 connections and at least 3 s,
	// so that the checks' load stays near 20 workflow tasks a second.
	envSoakInterval = "COMPANIONSYNC_SOAK_INTERVAL"
	soakClients     = 4
	soakRecords     = 1500
)

// soakDataSpaces are the data spaces of every soak home.
var soakDataSpaces = []string{"default", "orders"}

// The soak's faults.
const (
	faultKillWorker    = "kill -9 a worker"
	faultRestartServer = "restart the server"
	faultRestartPG     = "restart PostgreSQL"
	faultCutFrontend   = "cut the frontend"
	faultSlowStore     = "slow the store"
)

var soakFaults = []string{faultKillWorker, faultRestartServer, faultRestartPG, faultCutFrontend, faultSlowStore}

// rotationKey is the key the soak rotates to, in COMPANIONSYNC_KEYS form.
const (
	rotationKeyID = "test-k2"
	rotationKey   = rotationKeyID + ":c29hay1yb3RhdGlvbi1rZXktMDAwMDAwMDAwMDAwMDA="
)

// TestSoakWithFaults runs the deployment's processes (a server on a
// PostgreSQL of the test's own, three workers, the org store on the same
// PostgreSQL behind a proxy, the frontend behind another) while several
// clients send random operations to many connections and a fault injector
// picks, in a random order, among killing a worker with SIGKILL, restarting
// the server, restarting PostgreSQL, cutting the workers off the frontend
// and slowing every statement of the store. Halfway through, the payload
// key is rotated in its two documented steps. At the end every connection
// must settle where the reference model says, with exact record counts and
// nothing left of what was unshared; a disconnect must remove everything;
// no workflow task may have failed in any history (task timeouts of killed
// workers are counted); every run stays under the event budget, and every
// payload written after the rotation is under the new key.
func TestSoakWithFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a temporal-server, PostgreSQL and three worker processes for minutes")
	}
	length, conns := 150*time.Second, 12
	if v := os.Getenv(envSoak); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, envSoak)
		length = d
	}
	if v := os.Getenv(envSoakConnections); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, envSoakConnections)
		conns = n
	}
	require.GreaterOrEqual(t, conns, soakClients, "at least one connection per client")

	interval := max(3*time.Second, time.Duration(conns/10)*time.Second)
	if v := os.Getenv(envSoakInterval); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, envSoakInterval)
		interval = d
	}

	s := newSoak(t, length, conns, interval)
	s.run()
	s.settle()
	s.checkHistories()
	s.report()
}

// soakConn is one connection of the soak and its reference model; only
// its client goroutine touches it while operations run.
type soakConn struct {
	ref   control.Ref
	model *refmodel.Model
	// uncertain is set when a request failed without a refusal (the server
	// went away under it): the model may not know whether it was accepted,
	// so the settled state is checked against the model-free invariants.
	uncertain bool
	conflict  bool
}

type soak struct {
	t      *testing.T
	ctx    context.Context
	length time.Duration
	cl     *Cluster
	pg     *privatePostgres // nil: the machine's server, restarts become store outages
	store  *orgstore.Store
	conns  []*soakConn

	// gate: faults that take Temporal's persistence away hold it, so that
	// the clients' requests are not lost under them (the workers' work is
	// what the soak puts under faults).
	gate   sync.RWMutex
	client atomic.Pointer[control.Client]

	ops        sync.Map // "op outcome" -> *atomic.Int64
	faults     map[string]int
	uncertain  atomic.Int64
	rotatedAt  time.Time
	checks     atomic.Int64
	violations []string
	figures    []string
	mu         sync.Mutex
}

func newSoak(t *testing.T, length time.Duration, n int, interval time.Duration) *soak {
	s := &soak{t: t, ctx: context.Background(), length: length, faults: map[string]int{}}
	pg, err := startPrivatePostgres(t)
	admin := ""
	if err != nil {
		t.Logf("no PostgreSQL of the test's own (%v): the machine's server is used, and a restart of PostgreSQL is played as an outage of the store's connections", err)
	} else {
		s.pg, admin = pg, pg.Admin
	}
	s.cl = StartCluster(t, ClusterOptions{
		Workers:       3,
		Postgres:      admin,
		FrontendProxy: true,
		StoreProxy:    true,
		WorkerEnv: []string{
			"COMPANIONSYNC_HEALTH_CHECK_INTERVAL=" + interval.String(),
			"COMPANIONSYNC_METADATA_SYNC_INTERVAL=" + interval.String(),
			"COMPANIONSYNC_RECONCILE_INTERVAL=1m",
		},
	})
	s.store, err = orgstore.Open(s.ctx, s.cl.OrgStoreURL)
	require.NoError(t, err)
	t.Cleanup(func() { s.store.Close() })
	s.client.Store(control.New(s.cl.Client).WithQueryTimeout(time.Minute))

	for i := range n {
		home := fmt.Sprintf("soak-h%03d", i)
		ref := control.Ref{Home: home, Companion: home + "-c"}
		require.NoError(t, s.store.Demo().AddOrg(s.ctx, companionsync.Org{ID: home, Role: companionsync.RoleHome,
			Kind: companionsync.KindProduction, LicenceExpiresAt: time.Now().AddDate(1, 0, 0), MaxCompanions: 1}))
		require.NoError(t, s.store.Demo().AddOrg(s.ctx, companionsync.Org{ID: ref.Companion, Role: companionsync.RoleCompanion,
			Kind: companionsync.KindProduction, Active: true}))
		for _, ds := range soakDataSpaces {
			require.NoError(t, s.store.Demo().AddDataSpace(s.ctx, home, ds, soakRecords))
		}
		s.conns = append(s.conns, &soakConn{ref: ref, model: refmodel.New(soakDataSpaces)})
	}
	start := time.Now()
	errs := s.parallel(func(sc *soakConn) error {
		_, err := s.c().Connect(s.ctx, sc.ref, contract.Settings{})
		return err
	})
	require.NoError(t, errors.Join(errs...))
	t.Logf("soak: %d connections up in %s; %s of operations and faults; checks and metadata rounds every %s",
		n, time.Since(start).Round(time.Millisecond), length, interval)
	return s
}

func (s *soak) c() *control.Client { return s.client.Load() }

// parallel runs fn on every connection, at most 16 at once.
func (s *soak) parallel(fn func(*soakConn) error) []error {
	errs := make([]error, len(s.conns))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, sc := range s.conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(sc); err != nil {
				errs[i] = fmt.Errorf("%s: %w", sc.ref, err)
			}
		}()
	}
	wg.Wait()
	return errs
}

func (s *soak) count(key string) {
	v, _ := s.ops.LoadOrStore(key, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (s *soak) violate(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

// run sends operations from the clients while the fault injector, on the
// test's goroutine, injects faults and rotates the key.
func (s *soak) run() {
	deadline := time.Now().Add(s.length)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range soakClients {
		var mine []*soakConn
		for j := i; j < len(s.conns); j += soakClients {
			mine = append(mine, s.conns[j])
		}
		wg.Go(func() { s.clientLoop(uint64(i+1), mine, stop) })
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x50a4))
	// Faults come one at a time, at random from a shuffled round of every
	// kind, so that even the short run injects each kind.
	gap := min(max(s.length/40, 5*time.Second), 45*time.Second)
	rotate := []time.Time{time.Now().Add(s.length / 3), time.Now().Add(2 * s.length / 3)}
	var round []string
	for time.Now().Add(gap).Before(deadline) {
		sleepUntil(time.Now().Add(gap/2 + rand.N(gap)))
		if len(rotate) > 0 && time.Now().After(rotate[0]) {
			s.rotateKey(3 - len(rotate)) // step 1, then step 2
			rotate = rotate[1:]
			continue
		}
		if len(round) == 0 {
			round = slices.Clone(soakFaults)
			rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		}
		fault := round[0]
		round = round[1:]
		s.inject(fault, rng)
	}
	for len(rotate) > 0 {
		s.rotateKey(3 - len(rotate)) // step 1, then step 2
		rotate = rotate[1:]
	}
	sleepUntil(deadline)
	close(stop)
	wg.Wait()
}

func sleepUntil(at time.Time) {
	if d := time.Until(at); d > 0 {
		time.Sleep(d) // the fault schedule: nothing to await
	}
}

// inject injects one fault and heals it.
func (s *soak) inject(fault string, rng *rand.Rand) {
	t := s.t
	began := time.Now()
	detail := ""
	switch fault {
	case faultKillWorker:
		var running []*WorkerProcess
		for _, w := range s.cl.Workers {
			if w.Running() {
				running = append(running, w)
			}
		}
		w := running[rng.IntN(len(running))]
		w.Kill()
		sleepUntil(time.Now().Add(time.Duration(1+rng.IntN(5)) * time.Second))
		w.Start(t)
		detail = w.Name()
	case faultRestartServer:
		s.gate.Lock()
		s.cl.Server.Restart(t)
		s.gate.Unlock()
	case faultRestartPG:
		down := time.Duration(2+rng.IntN(8)) * time.Second
		if s.pg == nil {
			s.cl.StoreProxy.Down()
			sleepUntil(time.Now().Add(down))
			s.cl.StoreProxy.Up()
			detail = "as a store outage of " + down.String()
			break
		}
		s.gate.Lock()
		require.NoError(t, s.pg.Restart(down))
		ctx, cancel := context.WithTimeout(s.ctx, 3*time.Minute)
		require.NoError(t, s.cl.Server.WaitHealthy(ctx), "the server after PostgreSQL's restart")
		cancel()
		s.gate.Unlock()
		detail = "down " + down.String()
	case faultCutFrontend:
		d := min(max(s.length/30, 10*time.Second), 60*time.Second)
		s.cl.Frontend.Down()
		sleepUntil(time.Now().Add(d))
		s.cl.Frontend.Up()
		detail = d.String()
	case faultSlowStore:
		delay := time.Duration(200+rng.IntN(1800)) * time.Millisecond
		d := min(max(s.length/30, 10*time.Second), 60*time.Second)
		s.cl.StoreProxy.Delay(delay)
		sleepUntil(time.Now().Add(d))
		s.cl.StoreProxy.Delay(0)
		detail = fmt.Sprintf("%s per chunk for %s", delay, d)
	}
	s.faults[fault]++
	t.Logf("soak: fault %q %s (%s)", fault, detail, time.Since(began).Round(time.Millisecond))
}

// rotateKey runs step 1 (the new key added after the current one) or step
// 2 (moved to the front) of the documented rotation: the client first,
// then a rolling restart of the workers.
func (s *soak) rotateKey(step int) {
	spec := testenv.KeySpec + "," + rotationKey
	if step == 2 {
		spec = rotationKey + "," + testenv.KeySpec
	}
	ring, err := codec.ParseKeys(spec)
	require.NoError(s.t, err)
	dc, fc := codec.NewConverters(ring)
	cl, err := client.NewClientFromExisting(s.cl.Client, client.Options{DataConverter: dc, FailureConverter: fc})
	require.NoError(s.t, err)
	s.t.Cleanup(cl.Close)
	s.client.Store(control.New(cl).WithQueryTimeout(time.Minute))
	for _, w := range s.cl.Workers {
		w.SetEnv(codec.KeysEnv, spec)
	}
	began := time.Now()
	s.cl.RollingRestart(s.t)
	if step == 2 {
		s.rotatedAt = time.Now()
	}
	s.faults[fmt.Sprintf("key rotation step %d", step)]++
	s.t.Logf("soak: key rotation step %d: rolling restart took %s", step, time.Since(began).Round(time.Millisecond))
}

// clientLoop sends random operations to its connections until stop.
func (s *soak) clientLoop(seed uint64, conns []*soakConn, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(seed, 0x50a4))
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(20+rng.IntN(200)) * time.Millisecond):
		}
		sc := conns[rng.IntN(len(conns))]
		s.gate.RLock()
		s.operate(rng, sc)
		s.gate.RUnlock()
	}
}

// operate sends one random operation to sc and records it in its model.
func (s *soak) operate(rng *rand.Rand, sc *soakConn) {
	ctx, cancel := context.WithTimeout(s.ctx, 90*time.Second)
	defer cancel()
	c, ref, m := s.c(), sc.ref, sc.model
	ds := soakDataSpaces[rng.IntN(len(soakDataSpaces))]
	demo := s.store.Demo()
	var op string
	var call func() error
	switch roll := rng.IntN(100); {
	case roll < 35:
		op, call = contract.MessageShare, func() error { _, err := c.Share(ctx, ref, ds); return err }
	case roll < 55:
		op, call = contract.MessageUnshare, func() error { _, err := c.Unshare(ctx, ref, ds); return err }
	case roll < 62:
		op, call = contract.MessageRetry, func() error { _, err := c.Retry(ctx, ref, ds); return err }
	case roll < 68:
		op, call = contract.MessageResume, func() error {
			if sc.conflict {
				if _, err := demo.ResolveConflicts(ctx, ref.Home, ref.Companion); err != nil {
					return err
				}
				sc.conflict = false
			}
			_, err := c.Resume(ctx, ref)
			return err
		}
	case roll < 74:
		op, call = contract.MessageRecheck, func() error { _, err := c.Recheck(ctx, ref); return err }
	case roll < 78:
		if err := demo.InjectCopyFailures(ctx, ref.Home, ref.Companion, ds, 1+rng.IntN(3)); err != nil {
			s.violate("%s: inject copy failures: %v", ref, err)
		}
		m.CopyFailed[ds] = true
		s.count("inject-copy-failures")
		return
	case roll < 81:
		// The seed's metadata objects are in "default" only.
		if _, err := demo.MakeConflict(ctx, ref.Home, ref.Companion, "default"); err == nil {
			sc.conflict = true
			s.count("conflict")
		}
		return
	case roll < 84:
		var err error
		if m.LicenceExpired {
			err = demo.RenewLicence(ctx, ref.Home)
		} else {
			err = demo.ExpireLicence(ctx, ref.Home)
		}
		if err != nil {
			s.violate("%s: licence: %v", ref, err)
		}
		m.LicenceExpired = !m.LicenceExpired
		s.count("licence")
		return
	default:
		if _, err := demo.ChangeMetadata(ctx, ref.Home, "default", 1+rng.IntN(3)); err != nil {
			s.violate("%s: change metadata: %v", ref, err)
		}
		s.count("metadata-change")
		return
	}
	err := call()
	var refused *control.RefusedError
	switch {
	case err == nil:
		m.Accept(op, ds)
		s.count(op + " accepted")
	case errors.As(err, &refused):
		if refused.Kind == "" {
			s.violate("%s: %s %s: a refusal without a type: %v", ref, op, ds, err)
		}
		s.count(op + " refused")
	default:
		// The request may or may not have been carried out.
		sc.uncertain = true
		s.uncertain.Add(1)
		s.count(op + " failed")
		s.t.Logf("soak: %s: %s %s failed without a refusal: %v", ref, op, ds, err)
	}
}

// settle heals everything, lets every connection settle, checks it against
// its model, then disconnects every other connection and checks that
// nothing of it is left.
func (s *soak) settle() {
	t := s.t
	for _, w := range s.cl.Workers {
		if !w.Running() {
			w.Start(t)
		}
	}
	c := s.c()
	began := time.Now()
	errs := s.parallel(func(sc *soakConn) error {
		ctx := s.ctx
		if sc.model.LicenceExpired {
			if err := s.store.Demo().RenewLicence(ctx, sc.ref.Home); err != nil {
				return err
			}
			sc.model.LicenceExpired = false
		}
		if _, err := s.store.Demo().ResolveConflicts(ctx, sc.ref.Home, sc.ref.Companion); err != nil {
			return err
		}
		var diffs []string
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			v, err := c.Status(ctx, sc.ref)
			if err != nil {
				diffs = []string{err.Error()}
				time.Sleep(time.Second)
				continue
			}
			s.nudge(sc, v)
			diffs = s.differences(sc, v)
			if len(diffs) == 0 {
				return nil
			}
			time.Sleep(500 * time.Millisecond)
		}
		return fmt.Errorf("not settled in 5 minutes: %v", diffs)
	})
	for _, err := range errs {
		if err != nil {
			s.violate("settle: %v", err)
		}
	}
	s.checks.Add(int64(len(s.conns)))
	t.Logf("soak: every connection checked against its model in %s", time.Since(began).Round(time.Millisecond))

	began = time.Now()
	var dropped []*soakConn
	for i, sc := range s.conns {
		if i%2 == 1 {
			dropped = append(dropped, sc)
		}
	}
	errs = make([]error, len(dropped))
	var wg sync.WaitGroup
	for i, sc := range dropped {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(s.ctx, 5*time.Minute)
			defer cancel()
			v, err := c.Disconnect(ctx, sc.ref, true)
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("%s: disconnect: %w", sc.ref, err)
			case v.Status != contract.Disconnected:
				errs[i] = fmt.Errorf("%s: disconnect ended %s", sc.ref, v.Status)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			s.violate("%v", err)
		}
	}
	for _, sc := range dropped {
		for _, ds := range soakDataSpaces {
			if n := s.copied(sc.ref, ds); n != 0 {
				s.violate("%s: %d records of %s left after the disconnect", sc.ref, n, ds)
			}
		}
		if _, err := s.store.ConnectionOf(s.ctx, sc.ref.Companion); !errors.Is(err, companionsync.ErrNotFound) {
			s.violate("%s: still registered after the disconnect (%v)", sc.ref, err)
		}
		s.checks.Add(1)
	}
	s.figures = append(s.figures, fmt.Sprintf("%d connections disconnected in %s", len(dropped), time.Since(began).Round(time.Millisecond)))
	s.checkNoOrphans()
}

// nudge does what an operator would for a settling connection: a recheck,
// and a retry of a share left in Error once its injected failures are
// spent.
func (s *soak) nudge(sc *soakConn, v contract.StatusView) {
	c := s.c()
	_, _ = c.Recheck(s.ctx, sc.ref)
	for _, sh := range v.DataSpaces {
		if sh.InitializationStatus == contract.ShareError && sh.Requested == "" {
			_, _ = c.Retry(s.ctx, sc.ref, sh.DataSpace)
		}
	}
	if v.MetadataSync.Paused && v.MetadataSync.Requested == "" {
		_, _ = c.Resume(s.ctx, sc.ref)
	}
}

// differences is how the settled status v differs from sc's model, or,
// when a request's outcome is unknown, from the invariants that hold
// whatever was accepted.
func (s *soak) differences(sc *soakConn, v contract.StatusView) []string {
	total := func(ds string) int { return soakRecords }
	copied := func(ds string) int { return s.copied(sc.ref, ds) }
	if !sc.uncertain {
		diffs := sc.model.Settled(v, copied, total)
		// Injected copy failures settle in Error, retried by nudge; a model
		// share is satisfied once Active.
		return diffs
	}
	var diffs []string
	listed := map[string]bool{}
	for _, sh := range v.DataSpaces {
		listed[sh.DataSpace] = true
		switch {
		case sh.Requested != "":
			diffs = append(diffs, sh.DataSpace+": a request not acknowledged")
		case sh.InitializationStatus == contract.ShareActive && copied(sh.DataSpace) != soakRecords:
			diffs = append(diffs, fmt.Sprintf("%s: Active with %d of %d records", sh.DataSpace, copied(sh.DataSpace), soakRecords))
		case sh.InitializationStatus != contract.ShareActive:
			diffs = append(diffs, sh.DataSpace+" settled in "+string(sh.InitializationStatus))
		}
	}
	for _, ds := range soakDataSpaces {
		if !listed[ds] && copied(ds) != 0 {
			diffs = append(diffs, fmt.Sprintf("%s not shared, yet %d records in the companion", ds, copied(ds)))
		}
	}
	if v.Status != contract.Active && v.Status != contract.Incomplete {
		diffs = append(diffs, "connection "+string(v.Status))
	}
	return diffs
}

func (s *soak) copied(ref control.Ref, ds string) int {
	n, err := s.store.CopiedCount(s.ctx, companionsync.Share{Home: ref.Home, Companion: ref.Companion, DataSpace: ds})
	if err != nil {
		s.violate("%s: count %s: %v", ref, ds, err)
	}
	return n
}

// checkNoOrphans: no workflow runs for a disconnected connection, and
// every kept connection's workflow runs.
func (s *soak) checkNoOrphans() {
	gone := map[string]bool{}
	for i, sc := range s.conns {
		ids := []string{contract.ConnectionWorkflowID(sc.ref.Home, sc.ref.Companion),
			contract.MetadataSyncWorkflowID(sc.ref.Home, sc.ref.Companion)}
		for _, ds := range soakDataSpaces {
			ids = append(ids, contract.ShareWorkflowID(sc.ref.Home, sc.ref.Companion, ds))
		}
		for _, id := range ids {
			gone[id] = i%2 == 1
		}
	}
	open := s.executions(`ExecutionStatus = "Running"`)
	running := map[string]bool{}
	for _, e := range open {
		id := e.GetExecution().GetWorkflowId()
		running[id] = true
		if gone[id] {
			s.violate("workflow %s runs for a disconnected connection", id)
		}
	}
	for i, sc := range s.conns {
		if id := contract.ConnectionWorkflowID(sc.ref.Home, sc.ref.Companion); i%2 == 0 && !running[id] {
			s.violate("%s: the connection's workflow is not running", sc.ref)
		}
	}
	s.checks.Add(int64(len(open)))
	s.figures = append(s.figures, fmt.Sprintf("%d workflows running at the end", len(open)))
}

// executions lists the namespace's executions that match query.
func (s *soak) executions(query string) []*workflowpb.WorkflowExecutionInfo {
	var out []*workflowpb.WorkflowExecutionInfo
	var token []byte
	for {
		resp, err := s.cl.Client.ListWorkflow(s.ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: s.cl.Namespace, PageSize: 1000, NextPageToken: token, Query: query})
		require.NoError(s.t, err, "list workflows %q", query)
		out = append(out, resp.GetExecutions()...)
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out
		}
	}
}

// payloadKeys lists the key id of every encrypted payload that ev's writer
// encoded: a run's start carries its schedule's or predecessor's last
// result and failure as they were written, and is left out of those.
func payloadKeys(ev *historypb.HistoryEvent) []string {
	var keys []string
	if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
		ev = proto.Clone(ev).(*historypb.HistoryEvent)
		a = ev.GetWorkflowExecutionStartedEventAttributes()
		a.LastCompletionResult, a.ContinuedFailure = nil, nil
	}
	walk(ev.ProtoReflect(), func(m protoreflect.Message) bool {
		if p, ok := m.Interface().(*commonpb.Payload); ok {
			if id := p.GetMetadata()[codec.MetadataEncryptionKeyID]; len(id) > 0 {
				keys = append(keys, string(id))
			}
		}
		return true
	})
	return keys
}

// checkHistories reads the history of every run: no workflow task failed,
// task timeouts are counted, every run is under the event budget, and the
// payloads written after the rotation are under the new key.
func (s *soak) checkHistories() {
	t := s.t
	budget := contract.Settings{}.WithDefaults().EventBudget
	var runs, events, timedOut, longest, lostHeartbeats int
	// Failure messages are encrypted: read them with both keys.
	ring, err := codec.ParseKeys(rotationKey + "," + testenv.KeySpec)
	require.NoError(t, err)
	_, fc := codec.NewConverters(ring)
	keys := map[string]int{}
	oldAfter := 0
	for _, e := range s.executions("") {
		runs++
		id, run := e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId()
		n := 0
		it := s.cl.Client.GetWorkflowHistory(s.ctx, id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(t, err, "history of %s/%s", id, run)
			n++
			switch ev.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED:
				a := ev.GetWorkflowTaskFailedEventAttributes()
				msg := fc.FailureToError(a.GetFailure()).Error()
				// A workflow task that outlives its heartbeat interval (a
				// local activity held by a fault) fails when the server
				// refuses the heartbeat, as a just-restarted server does
				// until its namespaces are loaded ("Namespace default is
				// not found"): the SDK then fails the task rather than drop
				// it, and the server retries it. A fault of the soak's
				// making, not of the code under test.
				if a.GetCause() == enumspb.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE &&
					strings.HasPrefix(msg, "error sending workflow task heartbeat") {
					lostHeartbeats++
					t.Logf("soak: %s/%s: workflow task failed on a heartbeat the server refused: %s", id, run, msg)
					continue
				}
				s.violate("%s/%s: workflow task failed (%s): %s", id, run, a.GetCause(), msg)
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
				timedOut++
			}
			for _, key := range payloadKeys(ev) {
				keys[key]++
				// An activity's start and timeout carry details (the last
				// failure, the last heartbeat) written before the event.
				carried := ev.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED ||
					ev.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT
				if !s.rotatedAt.IsZero() && ev.GetEventTime().AsTime().After(s.rotatedAt) && key != rotationKeyID && !carried {
					oldAfter++
					if oldAfter <= 5 {
						t.Logf("soak: %s/%s event %d %s written after the rotation under %s", id, run, ev.GetEventId(), ev.GetEventType(), key)
					}
				}
			}
		}
		events += n
		longest = max(longest, n)
		if n > budget+budget/10 {
			s.violate("%s/%s: %d events, over the budget of %d", id, run, n, budget)
		}
	}
	s.checks.Add(int64(runs))
	if oldAfter > 0 {
		s.violate("%d payloads written after the rotation are under the old key", oldAfter)
	}
	if keys[rotationKeyID] == 0 {
		s.violate("no payload under the new key after the rotation")
	}
	s.figures = append(s.figures,
		fmt.Sprintf("%d runs, %d events (longest run %d, budget %d), %d workflow task timeouts, %d task failures on a heartbeat the restarted server refused, none other",
			runs, events, longest, budget, timedOut, lostHeartbeats),
		fmt.Sprintf("payloads by key: %v", keys))
}

// report logs the soak's figures and fails on any violation.
func (s *soak) report() {
	t := s.t
	var ops []string
	s.ops.Range(func(k, v any) bool {
		ops = append(ops, fmt.Sprintf("%s: %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(ops)
	var faults []string
	total := 0
	for k, n := range s.faults {
		faults = append(faults, fmt.Sprintf("%s: %d", k, n))
		total += n
	}
	sort.Strings(faults)
	t.Logf("soak figures: %d connections, %s\n  operations: %s\n  faults (%d): %s\n  requests without an answer: %d\n  %s\n  invariants checked: %d; violations: %d",
		len(s.conns), s.length, strings.Join(ops, ", "), total, strings.Join(faults, ", "), s.uncertain.Load(),
		strings.Join(s.figures, "\n  "), s.checks.Load(), len(s.violations))
	for _, kind := range soakFaults {
		assert.Positive(t, s.faults[kind], "fault %q never injected", kind)
	}
	for _, v := range s.violations {
		t.Error(v)
	}
}
