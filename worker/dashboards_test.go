package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
	"github.com/companionsync/companionsync/orgstore"
)

// alertRules is the part of a Prometheus rules file the test reads.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var metricName = regexp.MustCompile(`\bcompanionsync_[a-z0-9_]+`)

// TestFleetGaugesAndAlertRules: a worker exports the fleet's gauges (a
// connection Active, its share Active), the alert rules file parses with
// a severity, summary and expression for every rule, and every metric the
// rules and the Grafana dashboard name is on the worker's /metrics.
func TestFleetGaugesAndAlertRules(t *testing.T) {
	dir := t.TempDir()
	p := startWorker(t, dir, "-fleet-gauges-interval", "1s", "-reconcile-interval", "0")
	c := p.client(t)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	_, err := c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)
	_, err = c.Share(ctx, ref, "marketing")
	require.NoError(t, err)
	testenv.WaitStatus(t, c, ref, "marketing Active", testenv.ShareIs("marketing", contract.ShareActive))

	m := metricsLine.FindStringSubmatch(p.stdout.String())
	require.NotNil(t, m, "metrics address in %q", p.stdout.String())
	var body string
	testenv.Eventually(t, time.Minute, "the fleet gauges on /metrics", func() bool {
		resp, err := http.Get(m[1])
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return strings.Contains(body, `companionsync_connections{status="Active"} 1`) &&
			strings.Contains(body, `companionsync_shares{status="Active"} 1`)
	})
	for _, want := range []string{
		`companionsync_connections{status="Inactive"} 0`, `companionsync_shares{status="Error"} 0`,
		"companionsync_metadata_syncs_paused 0", "companionsync_workflows_old_protocol 0",
		"companionsync_licences_expiring 0", "companionsync_licences_expired 0", "companionsync_removals_overdue 0",
	} {
		assert.Contains(t, body, want)
	}

	raw, err := os.ReadFile(filepath.Join("..", "deploy", "prometheus", "alerts.yml"))
	require.NoError(t, err)
	var rules alertRules
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&rules), "the rules file parses")
	names := map[string]bool{}
	checked := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			assert.NotEmpty(t, r.Alert)
			assert.NotEmpty(t, r.Labels["severity"], r.Alert)
			assert.NotEmpty(t, r.Annotations["summary"], r.Alert)
			assert.Equal(t, strings.Count(r.Expr, "("), strings.Count(r.Expr, ")"), "%s: balanced parentheses", r.Alert)
			if r.For != "" {
				_, err := time.ParseDuration(r.For)
				assert.NoError(t, err, "%s: for", r.Alert)
			}
			found := metricName.FindAllString(r.Expr, -1)
			assert.NotEmpty(t, found, "%s names a companionsync metric", r.Alert)
			for _, n := range found {
				names[n] = true
			}
			checked++
		}
	}
	assert.GreaterOrEqual(t, checked, 7, "an alert per condition")

	raw, err = os.ReadFile(filepath.Join("..", "deploy", "grafana", "dashboards", "companionsync.json"))
	require.NoError(t, err)
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash), "the dashboard parses")
	require.NotEmpty(t, dash.UID)
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			for _, n := range metricName.FindAllString(tg.Expr, -1) {
				names[n] = true
			}
		}
	}
	var missing []string
	for n := range names {
		if !strings.Contains(body, "\n"+n) {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	assert.Empty(t, missing, "metrics named by the rules or the dashboard but not on /metrics")
	assert.GreaterOrEqual(t, len(names), 8)
}

// TestFleetGaugesLease: of two workers on one org store, one holds the
// lease and exports; the other takes it only once the first stops renewing.
func TestFleetGaugesLease(t *testing.T) {
	ctx := context.Background()
	store, err := orgstore.Open(ctx, filepath.Join(t.TempDir(), "orgs.db"))
	require.NoError(t, err)
	defer store.Close()
	now := time.Now()
	ok, err := store.TryLease(ctx, fleetGaugesLease, "a", now, time.Minute)
	require.NoError(t, err)
	assert.True(t, ok, "a takes the free lease")
	ok, err = store.TryLease(ctx, fleetGaugesLease, "b", now.Add(time.Second), time.Minute)
	require.NoError(t, err)
	assert.False(t, ok, "b waits while a holds it")
	ok, err = store.TryLease(ctx, fleetGaugesLease, "a", now.Add(30*time.Second), time.Minute)
	require.NoError(t, err)
	assert.True(t, ok, "a renews")
	ok, err = store.TryLease(ctx, fleetGaugesLease, "b", now.Add(80*time.Second), time.Minute)
	require.NoError(t, err)
	assert.False(t, ok, "renewed: still a's")
	ok, err = store.TryLease(ctx, fleetGaugesLease, "b", now.Add(91*time.Second), time.Minute)
	require.NoError(t, err)
	assert.True(t, ok, "b takes it once a's has expired")
	require.NoError(t, store.ReleaseLease(ctx, fleetGaugesLease, "b"))
	ok, err = store.TryLease(ctx, fleetGaugesLease, "a", now.Add(92*time.Second), time.Minute)
	require.NoError(t, err)
	assert.True(t, ok, "released: free again")
}
