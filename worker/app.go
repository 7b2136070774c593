package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/converter"
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

// Main is a running worker and what it started: the dev server (local
// default only), the org store, the Temporal client, the metrics endpoint.
type Main struct {
	cfg     Config
	logger  *slog.Logger
	dev     *devserver.Server
	store   *orgstore.Store
	client  client.Client
	worker  worker.Worker
	metrics *http.Server
	keys    *codec.KeyRing
	codec   *codecServer
	// registry is the Prometheus registry of /metrics (nil: metrics off);
	// fleet exports the fleet's gauges from it while it holds the lease.
	registry *prometheus.Registry
	fleet    *fleetGauges
	// identity is the worker's client identity.
	identity string
	// refusals writes the updates refused by validators to the audit trail.
	refusals *activities.RefusalWriter
	// moving is closed when the move of older runs at start is over.
	moving     chan struct{}
	stopMoving context.CancelFunc
	// Refused is set when the worker runs no workflows because some run
	// on a protocol this release does not run (see checkProtocols).
	Refused error

	// FrontendAddr, UIURL, MetricsURL and CodecURL are where the parts
	// listen; KeysFrom says where the payload keys came from.
	FrontendAddr string
	UIURL        string
	MetricsURL   string
	CodecURL     string
	KeysFrom     string
}

// Start brings the worker up. On error everything started so far is closed.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (_ *Main, err error) {
	m := &Main{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			_ = m.Close()
		}
	}()
	if err := m.loadKeys(); err != nil {
		return nil, err
	}
	if err := m.listenCodec(); err != nil {
		return nil, err
	}
	if cfg.TemporalAddress == "" {
		if err := m.startDevServer(ctx); err != nil {
			return nil, err
		}
	} else {
		m.FrontendAddr = cfg.TemporalAddress
	}
	if err := m.serveCodec(); err != nil {
		return nil, err
	}
	if err := m.openStore(ctx); err != nil {
		return nil, err
	}
	handler, err := m.startMetrics()
	if err != nil {
		return nil, err
	}
	if err := m.dial(ctx, handler); err != nil {
		return nil, err
	}
	if cfg.TemporalAddress != "" {
		if err := ensureSearchAttributes(ctx, m.client, cfg.Namespace); err != nil {
			return nil, err
		}
	}
	// A running workflow on a protocol this release cannot run (a newer
	// release's, or one retired) would only fail its tasks here: run none,
	// and leave the server and the Web UI up for the operator to look.
	plan, err := m.checkProtocols(ctx)
	if err != nil {
		var unsupported *control.UnsupportedError
		if !errors.As(err, &unsupported) {
			// A read that failed proves nothing: run, and let the
			// reconciler and doctor check again.
			logger.Warn("could not check the protocols of running workflows; running them", "error", err)
		} else {
			m.Refused = err
			logger.Error("this worker runs no workflows", "reason", err)
			return m, nil
		}
	}
	// Process-wide, and only before the first worker is created.
	worker.SetStickyWorkflowCacheSize(cfg.WorkflowCache)
	m.refusals = activities.NewRefusalWriter(m.store, logger)
	m.worker = worker.New(m.client, contract.TaskQueue, worker.Options{
		WorkerStopTimeout: 10 * time.Second,
		Interceptors:      []interceptor.WorkerInterceptor{workflows.Interceptor(m.refusals.Record)},
	})
	notifier := &activities.Notifier{URL: cfg.NotifyURL, Log: m.store, Logger: logger.With("component", "notifier")}
	// The demo commands of the CLI inject copy failures into the store;
	// DemoFaults makes them fail this worker's initial-sync steps.
	workflows.Register(m.worker, &activities.Activities{
		Orgs: orgstore.WithDemoFaults(m.store), Unavailable: orgstore.Unavailable,
		Audit: m.store, Notifier: notifier,
	}, cfg.Defaults)
	fleet := &activities.Fleet{Orgs: m.store, Client: m.client, Converter: m.converter(), Notifier: notifier}
	workflows.RegisterFleet(m.worker, fleet)
	if err := m.worker.Start(); err != nil {
		return nil, fmt.Errorf("start worker on task queue %s: %w", contract.TaskQueue, err)
	}
	if m.registry != nil && cfg.FleetGaugesInterval > 0 {
		m.fleet = newFleetGauges(m.store, m.client, cfg.Namespace, m.identity, cfg.FleetGaugesInterval,
			cfg.Defaults.LicenceWarning, logger.With("component", "fleet-gauges"))
		if err := m.registry.Register(m.fleet); err != nil {
			return nil, fmt.Errorf("fleet gauges: %w", err)
		}
		go m.fleet.run()
	}
	moveCtx, stopMoving := context.WithCancel(context.Background())
	m.moving, m.stopMoving = make(chan struct{}), stopMoving
	go m.moveRuns(moveCtx, plan)
	watch := contract.WatcherInput{HealthInterval: cfg.Defaults.HealthCheckInterval, MetadataInterval: cfg.Defaults.MetadataSyncInterval}
	if err := control.New(m.client).StartWatcher(ctx, watch); err != nil {
		return nil, err
	}
	if cfg.ReconcileInterval > 0 {
		in := contract.DefaultReconcilerInput()
		in.RemovalAfter = cfg.Defaults.RemovalDeadline
		if err := control.New(m.client).ScheduleReconciler(ctx, cfg.ReconcileInterval, in); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Main) startDevServer(ctx context.Context) error {
	if err := os.MkdirAll(m.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir %s: %w", m.cfg.DataDir, err)
	}
	attrs := map[string]enumspb.IndexedValueType{}
	for _, a := range contract.SearchAttributes() {
		attrs[a.GetName()] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	dev, err := devserver.Start(ctx, devserver.Options{
		DataDir:          m.cfg.DataDir,
		FrontendAddr:     m.cfg.DevFrontend,
		UIAddr:           m.cfg.DevUI,
		CodecEndpoint:    m.CodecURL,
		Namespace:        m.cfg.Namespace,
		SearchAttributes: attrs,
		Logger:           m.logger.With("component", "temporal-server"),
	})
	if err != nil {
		return err
	}
	m.dev = dev
	m.FrontendAddr, m.UIURL = dev.FrontendAddr(), dev.UIURL()
	return nil
}

func (m *Main) openStore(ctx context.Context) error {
	if !orgstore.IsURL(m.cfg.OrgStore) {
		if err := os.MkdirAll(filepath.Dir(m.cfg.OrgStore), 0o755); err != nil {
			return fmt.Errorf("org store dir: %w", err)
		}
	}
	store, err := orgstore.Open(ctx, m.cfg.OrgStore)
	if err != nil {
		return err
	}
	m.store = store
	if m.cfg.SeedRecords > 0 {
		start := time.Now()
		if err := store.Demo().Seed(ctx, orgstore.SeedOptions{RecordsPerDataSpace: m.cfg.SeedRecords}); err != nil {
			return fmt.Errorf("seed the demo org store: %w", err)
		}
		m.logger.Debug("org store ready", "store", store.String(), "took", time.Since(start))
	}
	return nil
}

// startMetrics serves the SDK's worker metrics for Prometheus and returns
// the handler the client reports them to.
func (m *Main) startMetrics() (client.MetricsHandler, error) {
	if m.cfg.MetricsAddr == "" {
		return nil, nil
	}
	reg := prometheus.NewRegistry()
	m.registry = reg
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("metrics exporter: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	ln, err := net.Listen("tcp", m.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("metrics-addr %s: %w (free the port or choose another with -metrics-addr)", m.cfg.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	m.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := m.metrics.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.logger.Error("metrics endpoint stopped", "error", err)
		}
	}()
	m.MetricsURL = "http://" + ln.Addr().String() + "/metrics"
	return temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{Meter: provider.Meter("companionsync")}), nil
}

func (m *Main) dial(ctx context.Context, metrics client.MetricsHandler) error {
	opts, err := control.DialOptions{
		Address: m.FrontendAddr, Namespace: m.cfg.Namespace, APIKey: m.cfg.APIKey,
		TLSCert: m.cfg.TLSCert, TLSKey: m.cfg.TLSKey, TLSCA: m.cfg.TLSCA, Logger: m.logger, Keys: m.keys,
		// What the worker's client asks (a restart, a probe, a move) is a
		// repair of the reconciler's.
		Actor: contract.ActorReconciler,
	}.ClientOptions()
	if err != nil {
		return err
	}
	opts.MetricsHandler = metrics
	host, _ := os.Hostname()
	opts.Identity = workflows.WorkerIdentity(fmt.Sprintf("%d@%s", os.Getpid(), host))
	m.identity = opts.Identity
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s (namespace %s): %w", m.FrontendAddr, m.cfg.Namespace, err)
	}
	m.client = c
	return nil
}

// checkProtocols reads the protocols of the running workflows, and fails
// when one is on a protocol this release cannot run. The plan it returns
// (nil when the read failed) spares the first move a second read.
func (m *Main) checkProtocols(ctx context.Context) (*workflows.UpgradePlan, error) {
	res, err := control.New(m.client).Upgrade(ctx, control.UpgradeOptions{Converter: m.converter()})
	if err != nil {
		return nil, fmt.Errorf("read the protocols of running workflows: %w", err)
	}
	if len(res.Unsupported) > 0 {
		return nil, &control.UnsupportedError{Runs: res.Unsupported}
	}
	return &res.UpgradePlan, nil
}

// moveRuns asks every running workflow on an earlier protocol to move onto
// the current one. On a cluster it waits, checking every upgradeRecheck,
// until no worker of an earlier release polls (a rolling deploy); the
// scheduled reconciler does the same check on each run.
func (m *Main) moveRuns(ctx context.Context, plan *workflows.UpgradePlan) {
	defer close(m.moving)
	opts := control.UpgradeOptions{By: "worker at start", Move: true, CheckWorkers: m.dev == nil, Converter: m.converter(), Plan: plan}
	for {
		res, err := control.New(m.client).Upgrade(ctx, opts)
		opts.Plan = nil // a later round reads again: runs change while moves wait
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			m.logger.Warn("could not ask older runs to move; the reconciler tries again", "error", err)
			return
		case res.Held():
			m.logger.Info("older runs wait: workers of an earlier release still poll", "runs", len(res.Move), "workers", strings.Join(res.OlderWorkers, ", "))
		default:
			if res.Signalled+res.Gone > 0 {
				m.logger.Info("asked older runs to move to the current protocol", "protocol", int(contract.CurrentProtocol),
					"asked", res.Signalled, "closed", res.Gone, "current", res.Current)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(upgradeRecheck):
		}
	}
}

// upgradeRecheck is how often a worker whose moves are held checks again.
const upgradeRecheck = 15 * time.Second

func (m *Main) converter() converter.DataConverter {
	if m.keys == nil {
		return nil
	}
	return codec.NewDataConverter(m.keys)
}

// ensureSearchAttributes registers the contract's search attributes in a
// cluster's namespace when missing. Clusters that refuse the operator API
// (Temporal Cloud) need them added once by an administrator.
func ensureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	op := c.OperatorService()
	have, err := op.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes of %s: %w", namespace, err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for _, a := range contract.SearchAttributes() {
		if _, ok := have.GetCustomAttributes()[a.GetName()]; !ok {
			missing[a.GetName()] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if _, err := op.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: namespace, SearchAttributes: missing,
	}); err != nil {
		return fmt.Errorf("add search attributes %v to %s: %w (add them as Keyword with `temporal operator search-attribute create`)", keys(missing), namespace, err)
	}
	return nil
}

func keys(m map[string]enumspb.IndexedValueType) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// PrintReady tells the operator where everything is and what to try next,
// in one write: a reader that sees "ready" sees the addresses too.
func (m *Main) PrintReady(out io.Writer) {
	w := &strings.Builder{}
	fmt.Fprintf(w, "companionsync worker ready on task queue %s\n", contract.TaskQueue)
	fmt.Fprintf(w, "  Temporal frontend  %s (namespace %s)\n", m.FrontendAddr, m.cfg.Namespace)
	if m.UIURL != "" {
		fmt.Fprintf(w, "  Web UI             %s\n", m.UIURL)
	}
	if m.MetricsURL != "" {
		fmt.Fprintf(w, "  metrics            %s\n", m.MetricsURL)
	}
	fmt.Fprintf(w, "  payloads           %s\n", m.KeysFrom)
	if m.CodecURL != "" {
		fmt.Fprintf(w, "  codec server       %s\n", m.CodecURL)
	}
	fmt.Fprintf(w, "  org store          %s\n", m.store)
	if m.Refused != nil {
		fmt.Fprintf(w, "This worker runs NO workflows: %v\n", m.Refused)
	}
	fmt.Fprintf(w, "Next, in another terminal:\n")
	fmt.Fprintf(w, "  go run ./starter connect --home acme --companion acme-emea\n")
	fmt.Fprintf(w, "  go run ./starter share --connection acme/acme-emea --data-space default\n")
	fmt.Fprintf(w, "  go run ./starter watch --connection acme/acme-emea\n")
	_, _ = io.WriteString(out, w.String())
}

// Close stops the worker (in-flight activities have heartbeated their
// checkpoints), then closes the client, the store, the metrics endpoint and
// the dev server. It is safe on a partly started Main.
func (m *Main) Close() error {
	var errs []error
	if m.stopMoving != nil {
		m.stopMoving()
		<-m.moving
		m.stopMoving = nil
	}
	if m.fleet != nil {
		m.fleet.close()
		m.fleet = nil
	}
	if m.worker != nil {
		m.worker.Stop()
		m.worker = nil
	}
	if m.refusals != nil {
		m.refusals.Close()
		m.refusals = nil
	}
	if m.client != nil {
		m.client.Close()
		m.client = nil
	}
	if m.store != nil {
		errs = append(errs, m.store.Close())
		m.store = nil
	}
	if m.codec != nil {
		errs = append(errs, m.codec.close())
		m.codec = nil
	}
	if m.metrics != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, m.metrics.Shutdown(ctx))
		cancel()
		m.metrics = nil
	}
	if m.dev != nil {
		errs = append(errs, m.dev.Stop())
		m.dev = nil
	}
	return errors.Join(errs...)
}
