package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/orgstore"
)

// Config is everything the worker reads from its environment and flags.
// Precedence: defaults, then environment, then flags.
type Config struct {
	// TemporalAddress is the frontend of an existing cluster. Empty starts
	// the in-process dev server instead.
	TemporalAddress string
	Namespace       string
	APIKey          string
	TLSCert         string
	TLSKey          string
	TLSCA           string

	// DataDir holds the dev server's database and the org store.
	DataDir string
	// OrgStore is the org store: a postgres:// URL, or the path of a SQLite
	// file; default DataDir/orgs.db.
	OrgStore string
	// SeedRecords sizes the demo seed of a new org store; 0 seeds nothing.
	SeedRecords int

	// DevFrontend and DevUI are the dev server's addresses; DevUI "" runs no UI.
	DevFrontend string
	DevUI       string

	// Keys is the payload key ring (COMPANIONSYNC_KEYS; from the
	// environment only, never a flag that ps would show), KeyFile the path
	// of a key file (COMPANIONSYNC_KEY_FILE). With neither, the embedded
	// default generates DataDir/codec.keys and a worker of a cluster
	// refuses to start; Keys "none" runs without encryption.
	Keys    string
	KeyFile string
	// CodecAddr serves the codec server for the Web UI; "" disables it.
	// CodecToken is the bearer token it requires (environment only),
	// CodecOrigins the Web UI origins it grants CORS to.
	CodecAddr    string
	CodecToken   string
	CodecOrigins []string

	// WorkflowCache bounds how many workflows the worker keeps in memory
	// between their tasks (the SDK's sticky cache). An evicted workflow
	// replays its history on its next task.
	WorkflowCache int

	// MetricsAddr serves Prometheus metrics at /metrics; "" disables them
	// (off in the flag or the environment).
	MetricsAddr string
	LogLevel    string

	// Defaults are the settings of connections started without their own.
	Defaults contract.Settings

	// ReconcileInterval is the period of the reconciler's schedule; 0
	// leaves the schedule alone (neither created nor updated).
	ReconcileInterval time.Duration

	// FleetGaugesInterval is how often the worker holding the fleet-gauges
	// lease reads the fleet's gauges for /metrics; 0 exports none.
	FleetGaugesInterval time.Duration

	// NotifyURL is the webhook alerts are posted to (CloudEvents JSON);
	// "" sends them to the log only.
	NotifyURL string
}

// defaultWorkflowCache is the sticky cache size: about three workflows per
// connection, so a worker keeps some 330 busy connections in memory, and
// idle ones (a health check every few minutes) cost a replay of a history
// that continue-as-new keeps short, instead of memory.
const defaultWorkflowCache = 1000

// defaultDevCodecAddr is where the embedded default serves its codec
// server, beside the dev UI's 8233.
const defaultDevCodecAddr = "127.0.0.1:8234"

// devUIOrigins are the origins a browser gives the dev UI at addr.
func devUIOrigins(addr string) []string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	out := []string{"http://" + net.JoinHostPort(host, port)}
	if host == "127.0.0.1" || host == "localhost" || host == "" || host == "0.0.0.0" {
		out = append(out, "http://localhost:"+port, "http://127.0.0.1:"+port)
	}
	return slices.Compact(out)
}

// devInterval is the health-check and metadata-sync period on the dev
// server: short enough to watch.
const devInterval = 30 * time.Second

// devReconcileInterval is the reconciler's period on the dev server: short
// enough to watch a repair happen.
const devReconcileInterval = time.Minute

// parseConfig builds the configuration from env (a getenv function) and
// command-line args. Bad values are refused with the name of the setting.
// It reads in three steps: the environment over the defaults, the flags over
// the environment, then the values that depend on others (the codec
// server's address and origins, the connections' default settings, the org
// store's path) once both are read.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	var in inputs
	if err := cfg.readEnv(getenv, &in); err != nil {
		return Config{}, err
	}
	if err := cfg.readFlags(args, stderr, &in); err != nil {
		return Config{}, err
	}
	cfg.resolveCodec(in)
	cfg.resolveSettings(in)
	if cfg.MetricsAddr == "off" {
		// An empty variable reads as unset, so the variable disables with off.
		cfg.MetricsAddr = ""
	}
	if cfg.OrgStore == "" {
		cfg.OrgStore = filepath.Join(cfg.DataDir, "orgs.db")
	}
	return cfg, cfg.validate()
}

// inputs are the settings read from the environment and the flags whose
// value in Config depends on other settings.
type inputs struct {
	codecAddr    string
	codecAddrSet bool
	origins      string
	health       durationFlag
	metadata     durationFlag
	removal      durationFlag
	reconcile    durationFlag
	// licenceWarning is -licence-warning; fleetGauges -fleet-gauges-interval.
	licenceWarning durationFlag
	fleetGauges    durationFlag
	// resync is -resync-interval.
	resync durationFlag
}

// defaultConfig is the configuration before the environment and flags.
func defaultConfig() Config {
	return Config{
		Namespace:     "default",
		DataDir:       ".data",
		SeedRecords:   orgstore.DefaultSeedRecords,
		DevFrontend:   "127.0.0.1:7233",
		DevUI:         "127.0.0.1:8233",
		MetricsAddr:   "127.0.0.1:9464",
		LogLevel:      "info",
		WorkflowCache: defaultWorkflowCache,
	}
}

// readEnv reads the environment over the defaults; an empty variable is
// unset.
func (cfg *Config) readEnv(getenv func(string) string, in *inputs) error {
	for name, dst := range map[string]*string{
		"TEMPORAL_ADDRESS":           &cfg.TemporalAddress,
		"TEMPORAL_NAMESPACE":         &cfg.Namespace,
		"TEMPORAL_API_KEY":           &cfg.APIKey,
		"TEMPORAL_TLS_CERT":          &cfg.TLSCert,
		"TEMPORAL_TLS_KEY":           &cfg.TLSKey,
		"TEMPORAL_TLS_CA":            &cfg.TLSCA,
		"COMPANIONSYNC_DATA_DIR":     &cfg.DataDir,
		"COMPANIONSYNC_ORG_STORE":    &cfg.OrgStore,
		"COMPANIONSYNC_METRICS_ADDR": &cfg.MetricsAddr,
		"COMPANIONSYNC_LOG_LEVEL":    &cfg.LogLevel,
		codec.KeysEnv:                &cfg.Keys,
		codec.KeyFileEnv:             &cfg.KeyFile,
		"COMPANIONSYNC_CODEC_TOKEN":  &cfg.CodecToken,
		"COMPANIONSYNC_NOTIFY_URL":   &cfg.NotifyURL,
	} {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	in.codecAddr, in.origins = getenv("COMPANIONSYNC_CODEC_ADDR"), getenv("COMPANIONSYNC_CODEC_ORIGINS")
	in.codecAddrSet = in.codecAddr != ""
	if in.codecAddr == "off" {
		in.codecAddr = ""
	}
	for _, d := range []struct {
		env string
		dst *durationFlag
	}{
		{"COMPANIONSYNC_HEALTH_CHECK_INTERVAL", &in.health},
		{"COMPANIONSYNC_METADATA_SYNC_INTERVAL", &in.metadata},
		{"COMPANIONSYNC_REMOVAL_DEADLINE", &in.removal},
		{"COMPANIONSYNC_RECONCILE_INTERVAL", &in.reconcile},
		{"COMPANIONSYNC_LICENCE_WARNING", &in.licenceWarning},
		{"COMPANIONSYNC_RESYNC_INTERVAL", &in.resync},
		{"COMPANIONSYNC_FLEET_GAUGES_INTERVAL", &in.fleetGauges},
	} {
		if v := getenv(d.env); v != "" {
			if err := d.dst.Set(v); err != nil {
				return fmt.Errorf("%s=%q: %w", d.env, v, err)
			}
		}
	}
	for _, n := range []struct {
		env string
		dst *int
	}{
		{"COMPANIONSYNC_WORKFLOW_CACHE", &cfg.WorkflowCache},
		{"COMPANIONSYNC_SEED_RECORDS", &cfg.SeedRecords},
	} {
		if v := getenv(n.env); v != "" {
			i, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s=%q: want a whole number", n.env, v)
			}
			*n.dst = i
		}
	}
	return nil
}

// readFlags reads the command line over the environment.
func (cfg *Config) readFlags(args []string, stderr io.Writer, in *inputs) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.TemporalAddress, "temporal-address", cfg.TemporalAddress, "Temporal frontend host:port (env TEMPORAL_ADDRESS); empty runs the in-process dev server")
	fs.StringVar(&cfg.Namespace, "namespace", cfg.Namespace, "Temporal namespace (env TEMPORAL_NAMESPACE)")
	fs.StringVar(&cfg.APIKey, "api-key", cfg.APIKey, "API key, e.g. for Temporal Cloud (env TEMPORAL_API_KEY)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "client certificate file for mTLS (env TEMPORAL_TLS_CERT)")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "client key file for mTLS (env TEMPORAL_TLS_KEY)")
	fs.StringVar(&cfg.TLSCA, "tls-ca", cfg.TLSCA, "CA certificate file of the server (env TEMPORAL_TLS_CA)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory of the dev server's database and the org store (env COMPANIONSYNC_DATA_DIR)")
	fs.StringVar(&cfg.OrgStore, "org-store", cfg.OrgStore, "org store: a postgres:// URL or a SQLite file; default DATA_DIR/orgs.db (env COMPANIONSYNC_ORG_STORE)")
	fs.IntVar(&cfg.SeedRecords, "seed-records", cfg.SeedRecords, "records of acme/default in the demo seed of a new org store; 0 seeds nothing (env COMPANIONSYNC_SEED_RECORDS)")
	fs.IntVar(&cfg.WorkflowCache, "workflow-cache", cfg.WorkflowCache, "workflows kept in memory between their tasks; evicted ones replay their history on the next task (env COMPANIONSYNC_WORKFLOW_CACHE)")
	fs.StringVar(&cfg.DevFrontend, "dev-frontend", cfg.DevFrontend, "dev server frontend host:port")
	fs.StringVar(&cfg.DevUI, "dev-ui", cfg.DevUI, "dev server Web UI host:port; empty disables the UI")
	fs.StringVar(&cfg.KeyFile, "key-file", cfg.KeyFile, "payload key file, mode 0600: lines of id:base64key, the first active (env COMPANIONSYNC_KEY_FILE; keys inline: env COMPANIONSYNC_KEYS)")
	fs.Func("codec-addr", "codec server host:port for the Web UI; empty disables (default 127.0.0.1:8234 on the dev server; env COMPANIONSYNC_CODEC_ADDR, off disables)", func(v string) error {
		in.codecAddr, in.codecAddrSet = v, true
		return nil
	})
	fs.StringVar(&in.origins, "codec-origins", in.origins, "comma-separated Web UI origins the codec server allows (default the dev UI's; env COMPANIONSYNC_CODEC_ORIGINS)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "Prometheus /metrics host:port; empty or off disables (env COMPANIONSYNC_METRICS_ADDR, off disables)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error (env COMPANIONSYNC_LOG_LEVEL)")
	fs.Var(&in.health, "health-check-interval", "health check period of new connections (default 30s on the dev server, 5m otherwise; env COMPANIONSYNC_HEALTH_CHECK_INTERVAL)")
	fs.Var(&in.metadata, "metadata-sync-interval", "metadata sync period of new connections (default 30s on the dev server, 15m otherwise; env COMPANIONSYNC_METADATA_SYNC_INTERVAL)")
	fs.Var(&in.removal, "removal-deadline", "deadline of a data space removal (default 30m; env COMPANIONSYNC_REMOVAL_DEADLINE)")
	fs.StringVar(&cfg.NotifyURL, "notify-url", cfg.NotifyURL, "webhook that alerts are posted to, as CloudEvents JSON; empty logs them only (env COMPANIONSYNC_NOTIFY_URL)")
	fs.Var(&in.fleetGauges, "fleet-gauges-interval", "how often the fleet's gauges on /metrics are read, by one worker at a time; 0 exports none (default 30s; env COMPANIONSYNC_FLEET_GAUGES_INTERVAL)")
	fs.Var(&in.resync, "resync-interval", "how often a quiet connection checks its health on its own, whatever the fleet watcher says: the most a missed wake costs (default 24h; env COMPANIONSYNC_RESYNC_INTERVAL)")
	fs.Var(&in.licenceWarning, "licence-warning", "how long before a home org's licence expires its connections alert (default 336h, 14 days; env COMPANIONSYNC_LICENCE_WARNING)")
	fs.Var(&in.reconcile, "reconcile-interval", "period of the reconciler's schedule; 0 leaves the schedule alone (default 1m on the dev server, 30m otherwise; env COMPANIONSYNC_RECONCILE_INTERVAL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return nil
}

// resolveCodec sets the codec server's address and origins: on the
// embedded default, unless set, the codec server runs beside the dev UI and
// grants it CORS.
func (cfg *Config) resolveCodec(in inputs) {
	cfg.CodecAddr = in.codecAddr
	if !in.codecAddrSet && cfg.TemporalAddress == "" {
		cfg.CodecAddr = defaultDevCodecAddr
	}
	for _, o := range strings.Split(in.origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.CodecOrigins = append(cfg.CodecOrigins, o)
		}
	}
	if len(cfg.CodecOrigins) == 0 && cfg.TemporalAddress == "" && cfg.DevUI != "" {
		cfg.CodecOrigins = devUIOrigins(cfg.DevUI)
	}
}

// resolveSettings sets the connections' default settings and the
// reconciler's period: shorter on the embedded default, so they can be
// watched, unless set.
func (cfg *Config) resolveSettings(in inputs) {
	cfg.Defaults = contract.DefaultSettings()
	// The watcher keeps quiet connections fresh; the reconciler repairs
	// what vanished (rare), and each run costs a dozen billable actions.
	cfg.ReconcileInterval = 30 * time.Minute
	cfg.FleetGaugesInterval = 30 * time.Second
	if cfg.TemporalAddress == "" {
		cfg.Defaults.HealthCheckInterval = devInterval
		cfg.Defaults.MetadataSyncInterval = devInterval
		cfg.ReconcileInterval = devReconcileInterval
	}
	for _, d := range []struct {
		v   durationFlag
		dst *time.Duration
	}{
		{in.health, &cfg.Defaults.HealthCheckInterval},
		{in.metadata, &cfg.Defaults.MetadataSyncInterval},
		{in.removal, &cfg.Defaults.RemovalDeadline},
		{in.reconcile, &cfg.ReconcileInterval},
		{in.licenceWarning, &cfg.Defaults.LicenceWarning},
		{in.resync, &cfg.Defaults.ResyncInterval},
		{in.fleetGauges, &cfg.FleetGaugesInterval},
	} {
		if d.v.set {
			*d.dst = d.v.d
		}
	}
}

func (c Config) validate() error {
	var errs []error
	addr := func(name, v string, optional bool) {
		if v == "" && optional {
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port", name, v))
		}
	}
	if c.TemporalAddress != "" {
		addr("temporal-address (TEMPORAL_ADDRESS)", c.TemporalAddress, false)
	} else {
		addr("dev-frontend", c.DevFrontend, false)
		addr("dev-ui", c.DevUI, true)
	}
	addr("metrics-addr", c.MetricsAddr, true)
	addr("codec-addr", c.CodecAddr, true)
	if c.CodecAddr != "" && c.TemporalAddress != "" && c.CodecToken == "" {
		errs = append(errs, errors.New("codec-addr: set COMPANIONSYNC_CODEC_TOKEN, the bearer token the codec server requires outside the embedded default"))
	}
	if c.CodecAddr != "" && c.Keys == codec.Off {
		errs = append(errs, fmt.Errorf("codec-addr: a codec server needs keys, and %s=%s turns encryption off", codec.KeysEnv, codec.Off))
	}
	if c.Namespace == "" {
		errs = append(errs, errors.New("namespace (TEMPORAL_NAMESPACE) is empty"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls-cert and tls-key (TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY) go together: set both or neither"))
	}
	if c.WorkflowCache < 1 {
		errs = append(errs, fmt.Errorf("workflow-cache %d: want at least 1", c.WorkflowCache))
	}
	if c.SeedRecords < 0 {
		errs = append(errs, fmt.Errorf("seed-records %d: want 0 or more", c.SeedRecords))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	for name, d := range map[string]time.Duration{
		"health-check-interval": c.Defaults.HealthCheckInterval, "metadata-sync-interval": c.Defaults.MetadataSyncInterval,
		"removal-deadline": c.Defaults.RemovalDeadline,
	} {
		if d < time.Second {
			errs = append(errs, fmt.Errorf("%s %s: want at least 1s", name, d))
		}
	}
	if c.NotifyURL != "" {
		if u, err := url.Parse(c.NotifyURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("notify-url %q: want an http:// or https:// URL", c.NotifyURL))
		}
	}
	if c.ReconcileInterval != 0 && c.ReconcileInterval < time.Second {
		errs = append(errs, fmt.Errorf("reconcile-interval %s: want 0 (off) or at least 1s", c.ReconcileInterval))
	}
	return errors.Join(errs...)
}

// durationFlag is a time.Duration flag that knows whether it was set.
type durationFlag struct {
	d   time.Duration
	set bool
}

func (f *durationFlag) String() string { return f.d.String() }

func (f *durationFlag) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("want a duration such as 30s or 5m")
	}
	f.d, f.set = d, true
	return nil
}
