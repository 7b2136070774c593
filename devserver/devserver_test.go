package devserver_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/devserver"
)

const taskQueue = "devserver-test"

var homeOrg = temporal.NewSearchAttributeKeyKeyword("HomeOrg")

// greet upserts a custom search attribute and runs one activity, enough to
// exercise history, matching, visibility and the worker path.
func greet(ctx workflow.Context, org string) (string, error) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, homeOrg.ValueSet(org)); err != nil {
		return "", err
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
	var out string
	err := workflow.ExecuteActivity(ctx, hello, org).Get(ctx, &out)
	return out, err
}

func hello(_ context.Context, org string) (string, error) { return "hello " + org, nil }

// TestPersistsAcrossRestart runs a workflow end to end on a file-backed server
// with the UI, restarts on the same data dir and finds the workflow again.
func TestPersistsAcrossRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	logger := testLogger(t)

	began := time.Now()
	srv, err := devserver.Start(ctx, devserver.Options{
		DataDir:          dir,
		FrontendAddr:     "127.0.0.1:0",
		UIAddr:           "127.0.0.1:0",
		SearchAttributes: map[string]enums.IndexedValueType{"HomeOrg": enums.INDEXED_VALUE_TYPE_KEYWORD},
		Logger:           logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	t.Logf("first start (new database) ready in %v: frontend %s, UI %s", time.Since(began), srv.FrontendAddr(), srv.UIURL())

	c := dial(t, srv, logger)
	w := worker.New(c, taskQueue, worker.Options{})
	w.RegisterWorkflow(greet)
	w.RegisterActivity(hello)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "greet-acme", TaskQueue: taskQueue}, greet, "acme")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if got != "hello acme" {
		t.Fatalf("workflow result = %q, want %q", got, "hello acme")
	}
	awaitVisible(ctx, t, c, srv.Namespace(), `HomeOrg = "acme"`, 1)
	assertSearchAttributes(ctx, t, c, srv.Namespace(), "HomeOrg")
	assertUI(t, srv)

	w.Stop()
	c.Close()
	stopping := time.Now()
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	t.Logf("stopped in %v", time.Since(stopping))
	if err := srv.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if got := srv.UIURL(); got == "" {
		t.Errorf("UIURL after stop is empty, want the URL it served")
	}

	// The existing database gains the attribute it lacks.
	began = time.Now()
	srv2, err := devserver.Start(ctx, devserver.Options{
		DataDir:      dir,
		FrontendAddr: "127.0.0.1:0",
		SearchAttributes: map[string]enums.IndexedValueType{
			"HomeOrg":   enums.INDEXED_VALUE_TYPE_KEYWORD,
			"DataSpace": enums.INDEXED_VALUE_TYPE_KEYWORD,
		},
		Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv2.Stop() })
	t.Logf("restart (existing database, one attribute added) ready in %v", time.Since(began))
	if srv2.UIURL() != "" {
		t.Errorf("UIURL = %q without UIAddr, want empty", srv2.UIURL())
	}

	c2 := dial(t, srv2, logger)
	desc, err := c2.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
	if err != nil {
		t.Fatalf("workflow from before the restart: %v", err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enums.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Errorf("workflow status after restart = %v, want completed", st)
	}
	assertSearchAttributes(ctx, t, c2, srv2.Namespace(), "HomeOrg", "DataSpace")
	awaitVisible(ctx, t, c2, srv2.Namespace(), `HomeOrg = "acme" AND DataSpace IS NULL`, 1)
}

// TestInMemory starts the zero-value configuration with a custom namespace.
func TestInMemory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := devserver.Start(ctx, devserver.Options{Namespace: "devserver-memory", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	if !strings.HasPrefix(srv.FrontendAddr(), "127.0.0.1:") || strings.HasSuffix(srv.FrontendAddr(), ":0") {
		t.Errorf("FrontendAddr = %q, want 127.0.0.1 with a real port", srv.FrontendAddr())
	}
	c := dial(t, srv, testLogger(t))
	if _, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "devserver-memory"}); err != nil {
		t.Fatalf("describe namespace: %v", err)
	}
}

// TestAddressInUse checks that a taken port is refused before anything starts,
// with a message naming the address.
func TestAddressInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()

	for _, tc := range []struct {
		name string
		opts devserver.Options
		want string
	}{
		{"frontend", devserver.Options{FrontendAddr: addr}, "frontend address " + addr},
		{"ui", devserver.Options{FrontendAddr: "127.0.0.1:0", UIAddr: addr}, "web UI address " + addr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.DataDir = t.TempDir()
			srv, err := devserver.Start(context.Background(), tc.opts)
			if err == nil {
				_ = srv.Stop()
				t.Fatal("Start succeeded on a taken address")
			}
			if !errors.Is(err, devserver.ErrAddrInUse) {
				t.Errorf("error %q does not wrap ErrAddrInUse", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "choose another address") {
				t.Errorf("error %q should name %q and say what to do", err, tc.want)
			}
		})
	}
}

func TestBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts devserver.Options
		want string
	}{
		{"host name", devserver.Options{FrontendAddr: "example.com:7233"}, "IP address or localhost"},
		{"no port", devserver.Options{FrontendAddr: "127.0.0.1"}, "want host:port"},
		{"bad port", devserver.Options{FrontendAddr: "127.0.0.1:99999"}, "port must be"},
		{"data dir for a URI", devserver.Options{DataDir: "/tmp/a?b"}, "without ?"},
		{"untyped attribute", devserver.Options{SearchAttributes: map[string]enums.IndexedValueType{"X": 0}}, "has no type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := devserver.Start(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func dial(t *testing.T, srv *devserver.Server, logger *slog.Logger) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{
		HostPort:  srv.FrontendAddr(),
		Namespace: srv.Namespace(),
		Logger:    sdklog.NewStructuredLogger(logger),
	})
	if err != nil {
		t.Fatalf("dial %s: %v", srv.FrontendAddr(), err)
	}
	t.Cleanup(c.Close)
	return c
}

// awaitVisible polls a visibility query until it counts want executions;
// visibility is updated asynchronously after a workflow changes.
func awaitVisible(ctx context.Context, t *testing.T, c client.Client, ns, query string, want int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		resp, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: ns, Query: query})
		if err == nil && resp.GetCount() == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("query %q: count %d, err %v; want %d", query, resp.GetCount(), err, want)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func assertSearchAttributes(ctx context.Context, t *testing.T, c client.Client, ns string, names ...string) {
	t.Helper()
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		t.Fatalf("list search attributes: %v", err)
	}
	for _, n := range names {
		if typ := resp.GetCustomAttributes()[n]; typ != enums.INDEXED_VALUE_TYPE_KEYWORD {
			t.Errorf("search attribute %s: type %v, want Keyword (have %v)", n, typ, resp.GetCustomAttributes())
		}
	}
}

func assertUI(t *testing.T, srv *devserver.Server) {
	t.Helper()
	for _, tc := range []struct{ path, want string }{
		{"/", "<html"},
		{"/api/v1/namespaces", srv.Namespace()},
	} {
		resp, err := http.Get(srv.UIURL() + tc.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s: %s, body %.200q; want 200 containing %q", tc.path, resp.Status, body, tc.want)
		}
	}
}

// testLogger sends server and SDK logs to the test log until the test ends;
// server goroutines may still log while they wind down.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	mu     sync.Mutex
	t      *testing.T
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}
