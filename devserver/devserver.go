// Package devserver runs a Temporal server and the Temporal Web UI inside the
// calling process, for the local default of the worker and for end-to-end tests.
//
// The server is the real one from go.temporal.io/server with SQLite
// persistence: a file under Options.DataDir, so workflows survive a restart on
// the same directory, or memory only. It has one cluster, one history shard and
// static membership; the internal services take free ports on 127.0.0.1.
//
// Tests in other packages start one on free ports in a temporary directory and
// dial it with the SDK:
//
//	srv, err := devserver.Start(ctx, devserver.Options{
//		DataDir:          t.TempDir(),
//		FrontendAddr:     "127.0.0.1:0",
//		SearchAttributes: attrs, // optional
//	})
//	if err != nil {
//		t.Fatal(err)
//	}
//	t.Cleanup(func() { _ = srv.Stop() })
//	c, err := client.Dial(client.Options{HostPort: srv.FrontendAddr(), Namespace: srv.Namespace()})
//
// Register the client's Close (and any worker's Stop) with t.Cleanup after the
// server's, so that they run before it. Leave UIAddr empty unless the test
// looks at the UI; "127.0.0.1:0" picks a free port for it. A test that
// restarts on the same DataDir must Stop the first server before starting the
// second.
package devserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/temporal"
)

// quiet is a log level above any the server uses.
const quiet = slog.LevelError + 100

// DefaultNamespace is the namespace used when Options.Namespace is empty.
const DefaultNamespace = "default"

// readyTimeout bounds Start's readiness waits when ctx allows longer; a
// healthy server is ready in about a second.
const readyTimeout = time.Minute

// Options configures an in-process Temporal server. The zero value is an
// in-memory server on a free loopback port, without UI.
type Options struct {
	// DataDir holds the SQLite file DataDir/temporal.db (and its -wal and -shm
	// companions: copy all three), created with its schema on first use. ""
	// keeps everything in memory, lost on Stop. Either way the server's SQLite
	// plugin keeps its connection (and an in-memory database's memory) until
	// the process exits.
	DataDir string
	// FrontendAddr is the host:port of the gRPC frontend, e.g. "127.0.0.1:7233".
	// The host must be an IP address or localhost; port 0 or "" picks a free
	// loopback port (see Server.FrontendAddr).
	FrontendAddr string
	// UIAddr is the host:port of the Web UI, e.g. "127.0.0.1:8233"; port 0 picks
	// a free one. "" runs no UI.
	UIAddr string
	// CodecEndpoint is the URL of a codec server (see package codec) the
	// Web UI calls to decode payloads; "" shows them as stored.
	CodecEndpoint string
	// Namespace is registered if missing; "" means DefaultNamespace.
	Namespace string
	// SearchAttributes are custom search attributes that Start registers in
	// Namespace when missing, on a new or an existing database. An attribute
	// that exists with another type is an error.
	SearchAttributes map[string]enums.IndexedValueType
	// Logger receives the server's logs at Warn and above, except during Stop,
	// when the services log canceled calls to each other. nil discards them.
	// Label it (e.g. With("component", "temporal-server")) to tell them apart.
	Logger *slog.Logger
}

// Server is a running Temporal server, and Web UI if asked for. Its methods are
// safe for concurrent use.
type Server struct {
	server       temporal.Server
	ui           *webUI
	frontendAddr string
	namespace    string
	logLevel     *slog.LevelVar

	stopOnce sync.Once
	stopErr  error
}

// Start starts the server and returns once the frontend answers for the
// namespace, the search attributes are usable in visibility queries and, with
// a UI, the UI answers 200 on "/". ctx bounds that wait, not the server's life:
// call Stop to end it. A requested address already in use is refused before
// anything starts, with an error that wraps ErrAddrInUse.
func Start(ctx context.Context, opts Options) (*Server, error) {
	s, err := start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start dev server: %w", err)
	}
	return s, nil
}

func start(ctx context.Context, opts Options) (_ *Server, err error) {
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	for name, typ := range opts.SearchAttributes {
		if typ == enums.INDEXED_VALUE_TYPE_UNSPECIFIED {
			return nil, fmt.Errorf("search attribute %q has no type", name)
		}
	}
	// Ports first, so that a second process on the same DataDir stops here
	// with a clear message before it touches the database.
	p, release, err := claimPorts(opts.FrontendAddr, opts.UIAddr)
	if err != nil {
		return nil, err
	}
	defer release()

	sql := sqlConfig(opts.DataDir)
	if err := prepareDB(sql, opts.DataDir, opts.Namespace, opts.SearchAttributes); err != nil {
		return nil, err
	}
	logLevel := new(slog.LevelVar)
	logLevel.Set(slog.LevelWarn)
	out := opts.Logger
	if out == nil {
		out = slog.New(slog.DiscardHandler)
	}
	logger := slog.New(levelHandler{min: logLevel, inner: out.Handler()})

	release() // the server binds its ports while it is being built
	srv, err := newTemporalServer(serverConfig(sql, p), p, serverLogger{log: logger})
	if err != nil {
		return nil, err
	}
	if err := startServer(srv); err != nil {
		return nil, err
	}
	s := &Server{
		server:       srv,
		frontendAddr: hostPort(p.frontend.dialHost(), p.frontend.port),
		namespace:    opts.Namespace,
		logLevel:     logLevel,
	}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	if err := s.awaitFrontend(ctx, logger, opts.SearchAttributes); err != nil {
		return nil, err
	}
	if p.ui != nil {
		s.ui = startUI(*p.ui, s.frontendAddr, opts.Namespace, opts.CodecEndpoint)
		uiCtx, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		if err := s.ui.waitReady(uiCtx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// newTemporalServer builds the server. The server opens its listeners here and
// reports a failure through the logger's Fatal, which panics: that panic, in
// this goroutine, becomes an error.
func newTemporalServer(cfg *config.Config, p ports, logger serverLogger) (_ temporal.Server, err error) {
	defer recoverInto(&err)
	authorizer, err := authorization.GetAuthorizerFromConfig(&cfg.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("authorizer: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&cfg.Global.Authorization, logger)
	if err != nil {
		return nil, fmt.Errorf("claim mapper: %w", err)
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(staticHosts(p)),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dynamicConfig()),
	)
	if err != nil {
		return nil, fmt.Errorf("new temporal server: %w", err)
	}
	return srv, nil
}

// startServer starts the services, turning a Fatal during start-up into an error.
func startServer(srv temporal.Server) (err error) {
	defer func() {
		if err != nil {
			_ = srv.Stop()
		}
	}()
	defer recoverInto(&err)
	if err := srv.Start(); err != nil {
		return fmt.Errorf("temporal server: %w", err)
	}
	return nil
}

// recoverInto turns a panic of the calling goroutine into *err.
func recoverInto(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%v", r)
	}
}

// awaitFrontend waits until the namespace answers, then registers the missing
// search attributes and waits until queries accept them.
func (s *Server) awaitFrontend(ctx context.Context, logger *slog.Logger, attrs map[string]enums.IndexedValueType) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  s.frontendAddr,
		Namespace: s.namespace,
		Logger:    sdklog.NewStructuredLogger(logger),
	})
	if err != nil {
		return fmt.Errorf("dial frontend %s: %w", s.frontendAddr, err)
	}
	defer c.Close()

	err = poll(ctx, starting, func() error {
		_, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: s.namespace})
		return err
	})
	if err != nil {
		return fmt.Errorf("frontend %s: describe namespace %q: %w", s.frontendAddr, s.namespace, err)
	}
	if len(attrs) == 0 {
		return nil
	}
	if err := s.addSearchAttributes(ctx, c.OperatorService(), attrs); err != nil {
		return fmt.Errorf("register search attributes: %w", err)
	}
	// The frontend checks queries against its namespace cache, refreshed every
	// few seconds: once a query naming every attribute passes, they are usable.
	names := slices.Sorted(maps.Keys(attrs))
	terms := make([]string, len(names))
	for i, n := range names {
		terms[i] = fmt.Sprintf("`%s` IS NULL", n)
	}
	query := strings.Join(terms, " AND ")
	err = poll(ctx, catchingUp, func() error {
		_, err := c.WorkflowService().CountWorkflowExecutions(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: s.namespace,
			Query:     query,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("search attributes %v not usable in queries: %w", names, err)
	}
	return nil
}

// addSearchAttributes adds the attributes the namespace lacks, and fails on one
// that exists with another type.
func (s *Server) addSearchAttributes(ctx context.Context, op operatorservice.OperatorServiceClient, want map[string]enums.IndexedValueType) error {
	have, err := op.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: s.namespace})
	if err != nil {
		return err
	}
	missing := map[string]enums.IndexedValueType{}
	for name, typ := range want {
		if _, ok := have.GetSystemAttributes()[name]; ok {
			return fmt.Errorf("%q is a system search attribute: choose another name", name)
		}
		got, ok := have.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing[name] = typ
		case got != typ:
			return fmt.Errorf("search attribute %q exists as %s, want %s: rename it or use a new data dir", name, got, typ)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = op.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        s.namespace,
		SearchAttributes: missing,
	})
	return err
}

// poll calls f until it succeeds, fails with an error that retry refuses, or
// ctx ends.
func poll(ctx context.Context, retry func(error) bool, f func() error) error {
	for {
		err := f()
		if err == nil || !retry(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// starting reports errors of a server whose services are still coming up.
func starting(err error) bool {
	var (
		unavailable *serviceerror.Unavailable
		notFound    *serviceerror.NamespaceNotFound
	)
	return errors.As(err, &unavailable) || errors.As(err, &notFound)
}

// catchingUp also accepts InvalidArgument, which a query naming a new search
// attribute gets until the frontend's namespace cache has refreshed.
func catchingUp(err error) bool {
	var invalid *serviceerror.InvalidArgument
	return starting(err) || errors.As(err, &invalid)
}

// FrontendAddr is the host:port that clients dial, with the port actually used.
func (s *Server) FrontendAddr() string { return s.frontendAddr }

// UIURL is the Web UI's base URL, e.g. "http://127.0.0.1:8233", or "" without UI.
func (s *Server) UIURL() string {
	if s.ui == nil {
		return ""
	}
	return s.ui.url
}

// Namespace is the namespace that Start registered.
func (s *Server) Namespace() string { return s.namespace }

// Stop stops the UI, then the server. Stop workers and close clients first, or
// they log connection errors while the server goes away. Later calls return
// the first call's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.logLevel.Set(quiet)
		if s.ui != nil {
			s.ui.stop()
		}
		if err := s.server.Stop(); err != nil {
			s.stopErr = fmt.Errorf("stop temporal server: %w", err)
		}
	})
	return s.stopErr
}
