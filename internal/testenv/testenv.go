// Package testenv starts, for tests, the real system on loopback: an
// in-process Temporal server (devserver) with a SQLite database in a temp
// dir, a seeded org store, and a worker with the real registration.
package testenv

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/devserver"
	"github.com/companionsync/companionsync/orgstore"
	"github.com/companionsync/companionsync/workflows"
)

// Options size the environment. Zero values give a small, fast system.
type Options struct {
	// Dir keeps the server's and the store's files; "" uses t.TempDir().
	Dir string
	// SeedRecords is the size of acme/default (others get a tenth); 0 means 2000.
	SeedRecords int
	// Settings are the worker's defaults for new connections; zero fields
	// get fast test values (1s health checks and metadata rounds).
	Settings contract.Settings
	// NoWorker starts no worker (tests that run their own).
	NoWorker bool
	// Plaintext runs without payload encryption; by default the client and
	// the workers encrypt with Keys(), as the worker binary does.
	Plaintext bool
	// OrgStore is the org store's target (a postgres:// URL or a SQLite
	// file); "" is a SQLite file in Dir.
	OrgStore string
	// OutageLimit is how long copies and removals wait for an unreachable
	// org store; zero is the activities' default.
	OutageLimit time.Duration
}

// KeySpec is the key ring of test environments, in COMPANIONSYNC_KEYS form.
// It is a test key, public by design: recorded histories are encrypted
// with it, and workflows/testdata/histories/codec.keys holds it for their
// replay.
const KeySpec = "test-k1:Y29tcGFuaW9uc3luYy10ZXN0LWtleS0wMDAwMDAwMDA="

// Keys is the key ring of KeySpec.
func Keys() *codec.KeyRing {
	ring, err := codec.ParseKeys(KeySpec)
	if err != nil {
		panic(err)
	}
	return ring
}

// Env is a running system.
type Env struct {
	Dir    string
	Server *devserver.Server
	// Store is the seeded org store wrapped as the worker wires it
	// (orgstore.WithDemoFaults), so copy failures injected with
	// Store.InjectCopyFailures fail the initial syncs of any worker built on
	// it. Store.Store is the bare store.
	Store    *orgstore.DemoFaults
	Client   client.Client
	Worker   worker.Worker
	Settings contract.Settings
	// OutageLimit is the workers' (Options.OutageLimit).
	OutageLimit time.Duration
	// NotifyURL is the workers' webhook for alerts; "" logs them only.
	NotifyURL string
	// Keys encrypt the payloads of Client and its workers; nil with
	// Options.Plaintext.
	Keys *codec.KeyRing
}

// FastSettings are settings for tests: short intervals and retries.
func FastSettings() contract.Settings {
	s := contract.DefaultSettings()
	s.HealthCheckInterval = time.Second
	s.MetadataSyncInterval = time.Second
	s.RemovalDeadline = time.Minute
	s.InitialSyncRetry = contract.RetrySettings{InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: time.Second, MaximumAttempts: 3}
	s.ActivityRetry = contract.RetrySettings{InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: time.Second}
	s.StepBudget = 200 * time.Millisecond
	// Batches keep their size: tests that act on a copy or removal in
	// flight need it to take its time (production batches grow).
	s.MaxBatchSize = -1
	return s
}

// Start starts the system and stops it when the test ends.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	e := &Env{Dir: opts.Dir}
	if !opts.Plaintext {
		e.Keys = Keys()
	}
	if e.Dir == "" {
		e.Dir = t.TempDir()
	}
	if opts.SeedRecords == 0 {
		opts.SeedRecords = 2000
	}
	e.Settings = opts.Settings
	if e.Settings == (contract.Settings{}) {
		e.Settings = FastSettings()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	e.StartServer(t)
	e.OutageLimit = opts.OutageLimit
	target := opts.OrgStore
	if target == "" {
		target = filepath.Join(e.Dir, "orgs.db")
	}
	store, err := orgstore.Open(ctx, target)
	if err != nil {
		t.Fatalf("open org store: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	if err := store.Demo().Seed(ctx, orgstore.SeedOptions{RecordsPerDataSpace: opts.SeedRecords}); err != nil {
		t.Fatalf("seed: %v", err)
	}
	e.Store = orgstore.WithDemoFaults(store)
	e.Dial(t)
	e.StartWatcher(t)
	if !opts.NoWorker {
		e.Worker = e.NewWorker(t)
	}
	return e
}

// StartWatcher starts the fleet watcher with the periods of e.Settings, as
// the worker binary does at start; its runs wait for a worker.
func (e *Env) StartWatcher(t testing.TB) {
	t.Helper()
	s := e.Settings.WithDefaults()
	in := contract.WatcherInput{HealthInterval: s.HealthCheckInterval, MetadataInterval: s.MetadataSyncInterval}
	if err := control.New(e.Client).StartWatcher(context.Background(), in); err != nil {
		t.Fatalf("start the fleet watcher: %v", err)
	}
}

// StartServer starts the Temporal server on e.Dir; it stops with the test or
// with StopServer.
func (e *Env) StartServer(t testing.TB) {
	t.Helper()
	attrs := map[string]enumspb.IndexedValueType{}
	for _, a := range contract.SearchAttributes() {
		attrs[a.GetName()] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := devserver.Start(ctx, devserver.Options{
		DataDir: e.Dir, FrontendAddr: "127.0.0.1:0", SearchAttributes: attrs, Logger: logger(),
	})
	if err != nil {
		t.Fatalf("start dev server: %v", err)
	}
	e.Server = srv
	t.Cleanup(func() { _ = srv.Stop() })
}

// Dial connects e.Client to the server; it closes with the test.
func (e *Env) Dial(t testing.TB) {
	t.Helper()
	e.Client = e.DialAt(t, e.Server.FrontendAddr())
}

// DialAt dials the server's namespace at addr (the frontend, or a proxy in
// front of it) with the options the worker and the CLI use; the client
// closes with the test.
func (e *Env) DialAt(t testing.TB, addr string) client.Client {
	t.Helper()
	opts, err := control.DialOptions{
		Address: addr, Namespace: e.Server.Namespace(), Logger: logger(), Keys: e.Keys,
	}.ClientOptions()
	if err != nil {
		t.Fatalf("dial options: %v", err)
	}
	c, err := client.Dial(opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// NewWorker starts a worker with the real registration over e.Store (with
// demo faults, like the worker binary); it stops with the test.
func (e *Env) NewWorker(t testing.TB) worker.Worker {
	t.Helper()
	return e.NewWorkerWith(t, e.Client)
}

// NewWorkerWith is NewWorker on a client of the caller's, for example one
// dialed through a proxy.
func (e *Env) NewWorkerWith(t testing.TB, c client.Client) worker.Worker {
	t.Helper()
	refusals := activities.NewRefusalWriter(e.Store, logger())
	w := worker.New(c, contract.TaskQueue, worker.Options{
		Interceptors: []interceptor.WorkerInterceptor{workflows.Interceptor(refusals.Record)},
	})
	notifier := &activities.Notifier{URL: e.NotifyURL, Log: e.Store, Logger: logger()}
	workflows.Register(w, &activities.Activities{
		Orgs: e.Store, Unavailable: orgstore.Unavailable, OutageLimit: e.OutageLimit, Notifier: notifier,
	}, e.Settings)
	fleet := &activities.Fleet{Orgs: e.Store, Client: c, Notifier: notifier}
	if e.Keys != nil {
		fleet.Converter = codec.NewDataConverter(e.Keys)
	}
	workflows.RegisterFleet(w, fleet)
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(func() { w.Stop(); refusals.Close() })
	return w
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		<-tick.C
	}
}

// logger shows server and SDK warnings when COMPANIONSYNC_TEST_LOGS is set.
func logger() *slog.Logger {
	if os.Getenv("COMPANIONSYNC_TEST_LOGS") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// WaitStatus polls a connection's status until cond holds and returns it.
func WaitStatus(t testing.TB, c *control.Client, ref control.Ref, what string, cond func(contract.StatusView) bool) contract.StatusView {
	t.Helper()
	var last contract.StatusView
	var lastErr error
	deadline := time.Now().Add(2 * time.Minute)
	for {
		v, err := c.Status(context.Background(), ref)
		// A stale view (no worker answered in time, as under heavy load)
		// holds published statuses only: wait for a worker's answer.
		if err == nil && !v.Stale && cond(v) {
			return v
		}
		last, lastErr = v, err
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last status %+v, error %v", what, last, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Share finds a data space in a status view.
func Share(v contract.StatusView, ds string) (contract.ShareView, bool) {
	for _, s := range v.DataSpaces {
		if s.DataSpace == ds {
			return s, true
		}
	}
	return contract.ShareView{}, false
}

// ShareIs holds when the data space's share has the initialization status.
func ShareIs(ds string, st contract.InitializationStatus) func(contract.StatusView) bool {
	return func(v contract.StatusView) bool {
		s, ok := Share(v, ds)
		return ok && s.InitializationStatus == st
	}
}

// ShareGone holds when the data space is no longer shared.
func ShareGone(ds string) func(contract.StatusView) bool {
	return func(v contract.StatusView) bool {
		_, ok := Share(v, ds)
		return !ok
	}
}
