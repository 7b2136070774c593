package devserver

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
)

// dbFileName is the SQLite file inside Options.DataDir.
const dbFileName = "temporal.db"

const clusterName = "active"

// sqlConfig describes the SQLite store: a file in dataDir, or a private
// in-memory database when dataDir is "".
func sqlConfig(dataDir string) *config.SQL {
	if dataDir == "" {
		return &config.SQL{
			PluginName: sqliteplugin.PluginName,
			// A random name keeps two in-memory servers in one process apart.
			DatabaseName:      "devserver-" + strconv.FormatUint(rand.Uint64(), 36),
			ConnectAttributes: map[string]string{"mode": "memory", "cache": "shared"},
		}
	}
	return &config.SQL{
		PluginName:   sqliteplugin.PluginName,
		DatabaseName: filepath.Join(dataDir, dbFileName),
		ConnectAttributes: map[string]string{
			"mode": "rwc",
			// WAL with synchronous=NORMAL syncs at checkpoints instead of on
			// every commit (100 concurrent workflows ran 4x faster); a crash of
			// the process loses nothing, a power cut may lose the last commits.
			"journal_mode": "wal",
			"synchronous":  "normal",
		},
	}
}

// prepareDB creates the schema of a new database file and the namespace (with
// its search attributes) when missing. Namespaces created here, before the
// server starts, are visible at once; one created through the API would wait
// for the namespace cache to refresh.
func prepareDB(sql *config.SQL, dataDir, namespace string, attrs map[string]enums.IndexedValueType) error {
	if dataDir != "" {
		// The path goes into a file: URI unescaped.
		if strings.ContainsAny(dataDir, "?#%") {
			return fmt.Errorf("data dir %q: choose a path without ?, # or %%", dataDir)
		}
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
		_, err := os.Stat(sql.DatabaseName)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := sqliteschema.SetupSchema(sql); err != nil {
				// Leave no half-initialised file behind for the next start.
				_ = os.Remove(sql.DatabaseName)
				return fmt.Errorf("create schema in %s: %w", sql.DatabaseName, err)
			}
		case err != nil:
			return fmt.Errorf("check database file: %w", err)
		}
	}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, namespace, false, attrs)
	if err != nil {
		return fmt.Errorf("namespace %q: %w", namespace, err)
	}
	if err := sqliteschema.CreateNamespaces(sql, ns); err != nil {
		return fmt.Errorf("create namespace %q: %w", namespace, err)
	}
	return nil
}

// serverConfig is the static server configuration: one cluster, one history
// shard, SQLite for both the default and the visibility store.
func serverConfig(sql *config.SQL, p ports) *config.Config {
	const store = "sqlite-default"
	frontendAddr := hostPort(p.frontend.dialHost(), p.frontend.port)
	service := func(port int, bindIP string) config.Service {
		return config.Service{RPC: config.RPC{GRPCPort: port, BindOnIP: bindIP}}
	}
	frontendSvc := service(p.frontend.port, p.frontend.host)
	frontendSvc.RPC.HTTPPort = p.frontendHTTP
	var c config.Config
	c.Global.Membership = config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: loopback}
	c.Persistence = config.Persistence{
		DefaultStore:     store,
		VisibilityStore:  store,
		NumHistoryShards: 1,
		DataStores:       map[string]config.DataStore{store: {SQL: sql}},
	}
	c.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             frontendAddr,
				HTTPAddress:            hostPort(p.frontend.dialHost(), p.frontendHTTP),
			},
		},
	}
	c.DCRedirectionPolicy.Policy = "noop"
	c.Services = map[string]config.Service{
		string(primitives.FrontendService): frontendSvc,
		string(primitives.HistoryService):  service(p.history, loopback),
		string(primitives.MatchingService): service(p.matching, loopback),
		string(primitives.WorkerService):   service(p.worker, loopback),
	}
	c.Archival.History.State = "disabled"
	c.Archival.Visibility.State = "disabled"
	c.NamespaceDefaults.Archival.History.State = "disabled"
	c.NamespaceDefaults.Archival.Visibility.State = "disabled"
	// The worker service's own SDK client dials this.
	c.PublicClient.HostPort = frontendAddr
	return &c
}

// staticHosts replaces ringpop membership: every service is one known host.
func staticHosts(p ports) map[primitives.ServiceName]static.Hosts {
	return map[primitives.ServiceName]static.Hosts{
		primitives.FrontendService: static.SingleLocalHost(hostPort(p.frontend.dialHost(), p.frontend.port)),
		primitives.HistoryService:  static.SingleLocalHost(hostPort(loopback, p.history)),
		primitives.MatchingService: static.SingleLocalHost(hostPort(loopback, p.matching)),
		primitives.WorkerService:   static.SingleLocalHost(hostPort(loopback, p.worker)),
	}
}

// dynamicConfig holds the values a local dev server wants. Keys come from the
// server's typed settings so that a key removed in an upgrade fails to compile
// rather than being ignored silently (the static client accepts any key).
func dynamicConfig() dynamicconfig.StaticClient {
	return dynamicconfig.StaticClient{
		// Search attributes are not read through on every use: on SQL
		// visibility a custom attribute is a namespace alias of a fixed
		// column, so the cluster-wide cache never changes, and reading it
		// from the database on every start and upsert cost 6% of the server's
		// CPU in BenchmarkLifecycle, on the one SQLite connection.
		dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): false,
		dynamicconfig.ForceNexusEndpointRefreshOnRead.Key():         true,
		// Raise the persistence limits: a busy local server should not be
		// throttled by limits sized for a shared cluster.
		dynamicconfig.FrontendPersistenceMaxQPS.Key(): 10000,
		dynamicconfig.HistoryPersistenceMaxQPS.Key():  45000,
		// The Web UI lists and counts often; the default of 10/s throttles it.
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		// Validated updates are how the typed client changes workflows. On by
		// default in this server version; set so a default change cannot surprise.
		dynamicconfig.FrontendEnableUpdateWorkflowExecution.Key():              true,
		dynamicconfig.FrontendEnableUpdateWorkflowExecutionAsyncAccepted.Key(): true,
		// A smaller mutable-state cache (default 128k entries) keeps memory low.
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key(): 8192,
	}
}

func hostPort(host string, port int) string {
	return endpoint{host: host, port: port}.String()
}
