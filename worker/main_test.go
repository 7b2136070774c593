package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is one run of the worker's real main loop.
type process struct {
	cancel   context.CancelFunc
	done     chan error
	stdout   *syncBuffer
	frontend string
	dataDir  string
}

var frontendLine = regexp.MustCompile(`Temporal frontend\s+(\S+)`)

// startWorker runs the worker's run function as main does, and waits until
// it prints that it is ready.
func startWorker(t *testing.T, dataDir string, extraArgs ...string) *process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{cancel: cancel, done: make(chan error, 1), stdout: &syncBuffer{}, dataDir: dataDir}
	args := []string{
		"-data-dir", dataDir, "-dev-frontend", "127.0.0.1:0", "-dev-ui", "127.0.0.1:0", "-metrics-addr", "127.0.0.1:0", "-codec-addr", "127.0.0.1:0",
		"-seed-records", "3000", "-health-check-interval", "1s", "-metadata-sync-interval", "1s", "-log-level", "warn",
	}
	args = append(args, extraArgs...)
	getenv := func(string) string { return "" } // the test's own environment must not leak in
	go func() { p.done <- run(ctx, args, getenv, p.stdout, &syncBuffer{}) }()
	testenv.Eventually(t, 2*time.Minute, "worker ready", func() bool {
		select {
		case err := <-p.done:
			t.Fatalf("worker exited before ready: %v", err)
		default:
		}
		return strings.Contains(p.stdout.String(), "ready")
	})
	m := frontendLine.FindStringSubmatch(p.stdout.String())
	require.NotNil(t, m, "frontend address in %q", p.stdout.String())
	p.frontend = m[1]
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop cancels the worker's context, as SIGINT does, and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	select {
	case err := <-p.done:
		assert.NoError(t, err, "worker shutdown")
	case <-time.After(time.Minute):
		t.Fatal("worker did not stop within a minute")
	}
}

func (p *process) client(t *testing.T) *control.Client {
	t.Helper()
	c, err := control.Dial(context.Background(), control.DialOptions{Address: p.frontend, Keys: devKeys(t, p.dataDir)})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return control.New(c)
}

// devKeys reads the key ring the embedded default generated in dataDir,
// as the CLI does.
func devKeys(t *testing.T, dataDir string) *codec.KeyRing {
	t.Helper()
	ring, _, err := codec.Source{DevKeyFile: filepath.Join(dataDir, devKeyFile)}.Load()
	require.NoError(t, err)
	return ring
}

func TestWorkerRestartsAndContinuesWorkflows(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}

	first := startWorker(t, dir)
	out := first.stdout.String()
	for _, want := range []string{"Web UI", "http://127.0.0.1:", "/metrics", "starter connect"} {
		assert.Contains(t, out, want)
	}
	c := first.client(t)
	_, err := c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)
	_, err = c.Share(ctx, ref, "default")
	require.NoError(t, err)
	testenv.Eventually(t, time.Minute, "default Active", func() bool {
		v, err := c.Status(ctx, ref)
		return err == nil && len(v.DataSpaces) == 1 && v.DataSpaces[0].InitializationStatus == contract.ShareActive
	})
	first.stop(t)

	second := startWorker(t, dir)
	c = second.client(t)
	v, err := c.Status(ctx, ref)
	require.NoError(t, err, "the connection survived the restart")
	assert.Equal(t, contract.Active, v.Status)
	// The workflow is alive: it takes a new operation and finishes it.
	_, err = c.Share(ctx, ref, "marketing")
	require.NoError(t, err)
	testenv.Eventually(t, time.Minute, "marketing Active after restart", func() bool {
		v, err := c.Status(ctx, ref)
		return err == nil && len(v.DataSpaces) == 2 && v.DataSpaces[1].InitializationStatus == contract.ShareActive
	})
	v, err = c.Disconnect(ctx, ref, true)
	require.NoError(t, err)
	assert.Equal(t, contract.Disconnected, v.Status)
}

func TestConfigRefusesBadValues(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad address", []string{"-temporal-address", "nohostport"}, nil, "temporal-address"},
		{"bad env duration", nil, map[string]string{"COMPANIONSYNC_HEALTH_CHECK_INTERVAL": "soon"}, "COMPANIONSYNC_HEALTH_CHECK_INTERVAL"},
		{"tiny interval", []string{"-metadata-sync-interval", "1ms"}, nil, "metadata-sync-interval"},
		{"half mTLS", []string{"-tls-cert", "a.pem"}, nil, "tls-key"},
		{"bad log level", []string{"-log-level", "loud"}, nil, "log-level"},
		{"bad seed env", nil, map[string]string{"COMPANIONSYNC_SEED_RECORDS": "many"}, "COMPANIONSYNC_SEED_RECORDS"},
		{"stray argument", []string{"extra"}, nil, "unexpected"},
		{"codec server without a token on a cluster", []string{"-temporal-address", "temporal:7233", "-codec-addr", "127.0.0.1:0"}, nil, "COMPANIONSYNC_CODEC_TOKEN"},
		{"codec server without keys", nil, map[string]string{"COMPANIONSYNC_KEYS": "none"}, "turns encryption off"},
		{"bad codec address", []string{"-codec-addr", "nowhere"}, nil, "codec-addr"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, &bytes.Buffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestConfigPrecedence(t *testing.T) {
	env := map[string]string{"TEMPORAL_ADDRESS": "temporal.example:7233", "TEMPORAL_NAMESPACE": "ns-from-env"}
	cfg, err := parseConfig([]string{"-namespace", "ns-from-flag"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, "temporal.example:7233", cfg.TemporalAddress)
	assert.Equal(t, "ns-from-flag", cfg.Namespace, "flags override env")
	assert.Equal(t, contract.DefaultSettings().HealthCheckInterval, cfg.Defaults.HealthCheckInterval, "production defaults on a cluster")

	cfg, err = parseConfig(nil, func(string) string { return "" }, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, devInterval, cfg.Defaults.MetadataSyncInterval, "short intervals on the dev server")
	assert.Equal(t, ".data/orgs.db", cfg.OrgStore)
}

// TestConfigMetricsOff: metrics are on by default and off with "off" in
// the environment or the flag, or with an empty flag.
func TestConfigMetricsOff(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"default", nil, nil, "127.0.0.1:9464"},
		{"empty variable reads as unset", nil, map[string]string{"COMPANIONSYNC_METRICS_ADDR": ""}, "127.0.0.1:9464"},
		{"variable off", nil, map[string]string{"COMPANIONSYNC_METRICS_ADDR": "off"}, ""},
		{"variable address", nil, map[string]string{"COMPANIONSYNC_METRICS_ADDR": "127.0.0.1:9999"}, "127.0.0.1:9999"},
		{"flag off", []string{"-metrics-addr", "off"}, nil, ""},
		{"empty flag", []string{"-metrics-addr", ""}, nil, ""},
		{"flag over variable", []string{"-metrics-addr", "off"}, map[string]string{"COMPANIONSYNC_METRICS_ADDR": "127.0.0.1:9999"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, &bytes.Buffer{})
			require.NoError(t, err)
			assert.Equal(t, tc.want, cfg.MetricsAddr)
		})
	}
}

// TestStartRefusesBadKeys: a key ring the worker cannot use stops it at
// start, before anything listens, with one line that says what to fix and
// shows no key material.
func TestStartRefusesBadKeys(t *testing.T) {
	short := "c2hvcnQ=" // "short" in base64: 5 bytes
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"malformed", map[string]string{"COMPANIONSYNC_KEYS": "k1"}, "COMPANIONSYNC_KEYS"},
		{"wrong length", map[string]string{"COMPANIONSYNC_KEYS": "k1:" + short}, "want 32"},
		{"missing key file", map[string]string{"COMPANIONSYNC_KEY_FILE": filepath.Join(t.TempDir(), "none.keys")}, "none.keys"},
		{"no keys on a cluster", map[string]string{"TEMPORAL_ADDRESS": "127.0.0.1:1"}, "COMPANIONSYNC_KEYS=none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"COMPANIONSYNC_DATA_DIR": t.TempDir()}
			maps.Copy(env, tc.env)
			cfg, err := parseConfig([]string{"-dev-ui", "", "-metrics-addr", "", "-codec-addr", ""}, func(k string) string { return env[k] }, &bytes.Buffer{})
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = Start(ctx, cfg, slog.New(slog.DiscardHandler))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n", "one line")
			assert.NotContains(t, err.Error(), short, "no key material")
		})
	}
}

// TestWebUIDecodesThroughTheCodecServer follows what the embedded Web UI
// does to show a payload: it reads the codec endpoint from the UI's
// settings, then posts the payload, as stored in history, to that endpoint
// from the UI's origin. The answer is the decrypted payload, with the CORS
// grant the browser needs; another origin gets no grant.
func TestWebUIDecodesThroughTheCodecServer(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	p := startWorker(t, dir)
	out := p.stdout.String()
	uiURL := regexp.MustCompile(`Web UI\s+(\S+)`).FindStringSubmatch(out)
	codecURL := regexp.MustCompile(`codec server\s+(\S+)`).FindStringSubmatch(out)
	require.NotNil(t, uiURL, "Web UI line in %q", out)
	require.NotNil(t, codecURL, "codec server line in %q", out)
	assert.Contains(t, out, "AES-256-GCM", "the ready lines say payloads are encrypted")

	resp, err := http.Get(uiURL[1] + "/api/v1/settings")
	require.NoError(t, err)
	var settings struct{ Codec struct{ Endpoint string } }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&settings))
	resp.Body.Close()
	require.Equal(t, codecURL[1], settings.Codec.Endpoint, "the UI is configured with the codec server")

	c := p.client(t)
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	_, err = c.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)
	raw, err := client.Dial(client.Options{HostPort: p.frontend})
	require.NoError(t, err)
	defer raw.Close()
	it := raw.GetWorkflowHistory(ctx, contract.ConnectionWorkflowID("acme", "acme-emea"), "", false, 0)
	first, err := it.Next()
	require.NoError(t, err)
	input := first.GetWorkflowExecutionStartedEventAttributes().GetInput()
	require.NotEmpty(t, input.GetPayloads())
	require.NotContains(t, string(input.GetPayloads()[0].GetData()), "acme-emea", "stored encrypted")
	body, err := protojson.Marshal(input)
	require.NoError(t, err)

	post := func(origin string) *http.Response {
		req, err := http.NewRequest(http.MethodPost, settings.Codec.Endpoint+"/default/decode", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp = post(uiURL[1])
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, uiURL[1], resp.Header.Get("Access-Control-Allow-Origin"))
	var decoded commonpb.Payloads
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, protojson.Unmarshal(data, &decoded))
	require.Len(t, decoded.GetPayloads(), 1)
	assert.Contains(t, string(decoded.GetPayloads()[0].GetData()), `"companion":"acme-emea"`, "the UI shows the input decoded")

	foreign := post("http://evil.example")
	assert.Empty(t, foreign.Header.Get("Access-Control-Allow-Origin"), "no CORS grant to another origin")
}

// TestWorkerRefusesAProtocolItCannotRun: a worker that finds a running
// workflow on a protocol it cannot run (here a newer release's, as after a
// downgrade) runs no workflows, says which, and keeps the server up.
func TestWorkerRefusesAProtocolItCannotRun(t *testing.T) {
	dataDir := t.TempDir()
	p := startWorker(t, dataDir)
	tc, err := control.Dial(context.Background(), control.DialOptions{Address: p.frontend, Keys: devKeys(t, dataDir)})
	require.NoError(t, err)
	future := contract.CurrentProtocol + 1
	id := contract.ConnectionWorkflowID("acme", "acme-future")
	// On a task queue no worker polls: only its search attribute and input
	// are read.
	_, err = tc.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: id, TaskQueue: "companionsync-test-nobody",
		TypedSearchAttributes: temporal.NewSearchAttributes(contract.AttrProtocol.ValueSet(future.String())),
	}, contract.ConnectionWorkflowName, contract.ConnectionInput{Home: "acme", Companion: "acme-future", Protocol: future,
		State: &contract.ConnectionState{Status: contract.Active}})
	require.NoError(t, err)
	testenv.Eventually(t, time.Minute, "the run in visibility", func() bool {
		res, err := control.New(tc).Upgrade(context.Background(), control.UpgradeOptions{})
		return err == nil && len(res.Unsupported) == 1
	})
	tc.Close()
	p.stop(t)

	again := startWorker(t, dataDir)
	out := again.stdout.String()
	assert.Contains(t, out, "This worker runs NO workflows")
	assert.Contains(t, out, id)
	assert.Contains(t, out, fmt.Sprintf("protocol %d", future))
	c := again.client(t)
	v, err := c.Status(context.Background(), control.Ref{Home: "acme", Companion: "acme-future"})
	require.NoError(t, err, "the server stays up and a status read answers")
	assert.True(t, v.Stale, "from the published state: no worker answers")
}
