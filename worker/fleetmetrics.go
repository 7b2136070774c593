package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/orgstore"
	"github.com/companionsync/companionsync/workflows"
)

// The fleet's business state as Prometheus gauges: connections by status,
// shares by initialization status, paused metadata syncs, overdue
// removals, licences expired and expiring, and workflows on an older
// protocol. Every worker runs fleetGauges, but only the one holding the
// org store's "fleet-gauges" lease exports them, so a dashboard's sum is
// the fleet's whatever the number of workers; when it stops, another takes
// the lease once it expires (3 intervals). The counts come from visibility
// (CountWorkflowExecutions on the search attributes the workflows keep)
// and the org store: no query reaches a workflow, so they cost no billable
// action and wake nothing.

// Fleet gauge names (the _total-less names Prometheus shows).
const (
	MetricConnections        = "companionsync_connections"
	MetricShares             = "companionsync_shares"
	MetricSyncsPaused        = "companionsync_metadata_syncs_paused"
	MetricRemovalsOverdue    = "companionsync_removals_overdue"
	MetricLicencesExpiring   = "companionsync_licences_expiring"
	MetricLicencesExpired    = "companionsync_licences_expired"
	MetricOldProtocol        = "companionsync_workflows_old_protocol"
	MetricFleetGaugesUpdated = "companionsync_fleet_gauges_updated_timestamp_seconds"
)

const fleetGaugesLease = "fleet-gauges"

type fleetSnapshot struct {
	connections                                     map[string]float64
	shares                                          map[string]float64
	paused, overdue, expiring, expired, oldProtocol float64
	at                                              time.Time
}

type fleetGauges struct {
	store     *orgstore.Store
	client    client.Client
	namespace string
	owner     string
	interval  time.Duration
	warning   time.Duration
	logger    *slog.Logger

	mu     sync.Mutex
	holder bool
	snap   *fleetSnapshot

	stop chan struct{}
	done chan struct{}
}

func newFleetGauges(store *orgstore.Store, c client.Client, namespace, owner string, interval, warning time.Duration, logger *slog.Logger) *fleetGauges {
	return &fleetGauges{store: store, client: c, namespace: namespace, owner: owner, interval: interval, warning: warning,
		logger: logger, stop: make(chan struct{}), done: make(chan struct{})}
}

// run refreshes the gauges every interval while it holds the lease.
func (g *fleetGauges) run() {
	defer close(g.done)
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		g.refresh()
		select {
		case <-g.stop:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = g.store.ReleaseLease(ctx, fleetGaugesLease, g.owner)
			cancel()
			return
		case <-t.C:
		}
	}
}

func (g *fleetGauges) close() {
	close(g.stop)
	<-g.done
}

func (g *fleetGauges) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), g.interval)
	defer cancel()
	holder, err := g.store.TryLease(ctx, fleetGaugesLease, g.owner, time.Now(), 3*g.interval)
	if err != nil {
		g.logger.Warn("fleet gauges: lease not read; not exporting", "error", err)
		holder = false
	}
	if !holder {
		g.mu.Lock()
		g.holder, g.snap = false, nil
		g.mu.Unlock()
		return
	}
	snap, err := g.read(ctx)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holder = true
	if err != nil {
		// Keep the last snapshot; its timestamp says how old it is.
		g.logger.Warn("fleet gauges not refreshed", "error", err)
		return
	}
	g.snap = snap
}

func (g *fleetGauges) count(ctx context.Context, query string) (float64, error) {
	res, err := g.client.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: g.namespace, Query: query})
	if err != nil {
		return 0, fmt.Errorf("count %q: %w", query, err)
	}
	return float64(res.GetCount()), nil
}

func (g *fleetGauges) read(ctx context.Context) (*fleetSnapshot, error) {
	s := &fleetSnapshot{connections: map[string]float64{}, shares: map[string]float64{}, at: time.Now()}
	running := func(workflowType string) string {
		return fmt.Sprintf("ExecutionStatus = 'Running' AND WorkflowType = '%s'", workflowType)
	}
	for _, st := range []contract.ConnectionStatus{contract.Connecting, contract.Incomplete, contract.Active, contract.Inactive} {
		n, err := g.count(ctx, fmt.Sprintf("%s AND %s = '%s'", running(contract.ConnectionWorkflowName), contract.AttrConnectionStatus.GetName(), st))
		if err != nil {
			return nil, err
		}
		s.connections[string(st)] = n
	}
	for _, st := range []contract.InitializationStatus{contract.Activating, contract.ShareActive, contract.ShareError, contract.RemovingSharing} {
		n, err := g.count(ctx, fmt.Sprintf("%s AND %s = '%s'", running(contract.ShareWorkflowName), contract.AttrInitializationStatus.GetName(), st))
		if err != nil {
			return nil, err
		}
		s.shares[string(st)] = n
	}
	var err error
	if s.paused, err = g.count(ctx, fmt.Sprintf("%s AND %s = '%s'", running(contract.MetadataSyncWorkflowName),
		contract.AttrMetadataSyncStatus.GetName(), contract.SyncError)); err != nil {
		return nil, err
	}
	all, err := g.count(ctx, workflows.UpgradeQuery)
	if err != nil {
		return nil, err
	}
	current, err := g.count(ctx, fmt.Sprintf("%s AND %s = '%s'", workflows.UpgradeQuery, contract.AttrProtocol.GetName(), contract.CurrentProtocol))
	if err != nil {
		return nil, err
	}
	s.oldProtocol = all - current
	incidents, err := g.store.OpenIncidents(ctx)
	if err != nil {
		return nil, err
	}
	for key := range incidents {
		if strings.HasPrefix(key, contract.AlertWorkflowStuck+"/") {
			s.overdue++
		}
	}
	expired, expiring, err := g.store.LicenceCounts(ctx, time.Now(), g.warning)
	if err != nil {
		return nil, err
	}
	s.expired, s.expiring = float64(expired), float64(expiring)
	return s, nil
}

var (
	descConnections = prometheus.NewDesc(MetricConnections, "Running connections by Connection Status (fleet-wide, exported by one worker).", []string{"status"}, nil)
	descShares      = prometheus.NewDesc(MetricShares, "Running shares by Initialization Status (fleet-wide).", []string{"status"}, nil)
	descPaused      = prometheus.NewDesc(MetricSyncsPaused, "Metadata syncs paused on a failed round (fleet-wide).", nil, nil)
	descOverdue     = prometheus.NewDesc(MetricRemovalsOverdue, "Removals the reconciler found running past their deadline (fleet-wide).", nil, nil)
	descExpiring    = prometheus.NewDesc(MetricLicencesExpiring, "Home orgs with a connection whose licence expires within the licence warning.", nil, nil)
	descExpired     = prometheus.NewDesc(MetricLicencesExpired, "Home orgs with a connection whose licence has expired.", nil, nil)
	descOld         = prometheus.NewDesc(MetricOldProtocol, "Running workflows on a protocol older than this release's current one.", nil, nil)
	descUpdated     = prometheus.NewDesc(MetricFleetGaugesUpdated, "When the fleet gauges were last read (Unix seconds).", nil, nil)
)

// Describe sends the gauges' descriptions.
func (g *fleetGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descShares, descPaused, descOverdue, descExpiring, descExpired, descOld, descUpdated} {
		ch <- d
	}
}

// Collect sends the last snapshot, when this worker holds the lease.
func (g *fleetGauges) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	s := g.snap
	holder := g.holder
	g.mu.Unlock()
	if !holder || s == nil {
		return
	}
	for st, n := range s.connections {
		ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, n, st)
	}
	for st, n := range s.shares {
		ch <- prometheus.MustNewConstMetric(descShares, prometheus.GaugeValue, n, st)
	}
	ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, s.paused)
	ch <- prometheus.MustNewConstMetric(descOverdue, prometheus.GaugeValue, s.overdue)
	ch <- prometheus.MustNewConstMetric(descExpiring, prometheus.GaugeValue, s.expiring)
	ch <- prometheus.MustNewConstMetric(descExpired, prometheus.GaugeValue, s.expired)
	ch <- prometheus.MustNewConstMetric(descOld, prometheus.GaugeValue, s.oldProtocol)
	ch <- prometheus.MustNewConstMetric(descUpdated, prometheus.GaugeValue, float64(s.at.UnixNano())/1e9)
}
