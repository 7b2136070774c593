package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// cli runs the real CLI in-process against one test environment.
type cli struct {
	t   *testing.T
	env *testenv.Env
	c   *control.Client
	// frontend, when set, is the address the CLI dials instead of the
	// server's (a proxy of the test's).
	frontend string
}

func newCLI(t *testing.T) *cli {
	env := testenv.Start(t, testenv.Options{})
	return &cli{t: t, env: env, c: control.New(env.Client)}
}

func (c *cli) getenv(name string) string {
	switch name {
	case "TEMPORAL_ADDRESS":
		if c.frontend != "" {
			return c.frontend
		}
		return c.env.Server.FrontendAddr()
	case "TEMPORAL_NAMESPACE":
		return c.env.Server.Namespace()
	case "COMPANIONSYNC_DATA_DIR":
		return c.env.Dir
	case "COMPANIONSYNC_KEYS":
		return testenv.KeySpec
	case "COMPANIONSYNC_QUERY_TIMEOUT":
		// The suite runs beside others on two cores: a slow answer must
		// not turn into a stale view the assertions do not expect.
		return "30s"
	}
	return ""
}

// result is the outcome of one CLI run.
type result struct {
	code           int
	stdout, stderr string
}

// run runs starter with args and returns its exit code and outputs.
func (c *cli) run(args ...string) result {
	c.t.Helper()
	return c.runCtx(context.Background(), nil, args...)
}

func (c *cli) runCtx(ctx context.Context, stdout *bytes.Buffer, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if stdout == nil {
		stdout = &bytes.Buffer{}
	}
	var stderr bytes.Buffer
	code := run(ctx, args, c.getenv, stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// ok runs starter and fails the test unless it exits 0.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	require.Equal(c.t, 0, r.code, "starter %s: stderr %q", strings.Join(args, " "), r.stderr)
	return r.stdout
}

// refused runs starter and checks it exits 1 with one line on stderr that
// contains want.
func (c *cli) refused(want string, args ...string) {
	c.t.Helper()
	r := c.run(args...)
	assert.Equal(c.t, 1, r.code, "starter %s: stdout %q stderr %q", strings.Join(args, " "), r.stdout, r.stderr)
	assert.Equal(c.t, 1, strings.Count(r.stderr, "\n"), "one line on stderr: %q", r.stderr)
	assert.Contains(c.t, r.stderr, want)
	assert.Empty(c.t, r.stdout)
}

func (c *cli) status(ref control.Ref) contract.StatusView {
	c.t.Helper()
	v, err := c.c.Status(context.Background(), ref)
	require.NoError(c.t, err)
	return v
}

// waitFor polls the connection's status until cond holds.
func (c *cli) waitFor(ref control.Ref, what string, cond func(contract.StatusView) bool) contract.StatusView {
	c.t.Helper()
	return testenv.WaitStatus(c.t, c.c, ref, what, cond)
}

// unchanged runs op and checks the connection's state is the same after it.
func (c *cli) unchanged(ref control.Ref, op func()) {
	c.t.Helper()
	before := c.status(ref)
	op()
	after := c.status(ref)
	assert.Equal(c.t, before.Status, after.Status)
	assert.Equal(c.t, before.DataSpaces, after.DataSpaces)
}

func TestUsageErrors(t *testing.T) {
	// Usage errors are found before anything is dialled: no server needed.
	getenv := func(string) string { return "" }
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "usage: starter COMMAND"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"share", "--connection", "acme/acme-emea", "--data-space", "default", "--bogus"}, "-bogus"},
		{"missing connection", []string{"status"}, "--connection is required"},
		{"missing data space", []string{"share", "--connection", "acme/acme-emea"}, "--data-space is required"},
		{"bad connection reference", []string{"status", "--connection", "acme"}, "want HOME/COMPANION"},
		{"too many slashes", []string{"resume", "--connection", "acme/emea/x"}, "want HOME/COMPANION"},
		{"missing companion", []string{"connect", "--home", "acme"}, "--companion is required"},
		{"stray argument", []string{"status", "--connection", "acme/acme-emea", "extra"}, `unexpected argument "extra"`},
		{"bad list status", []string{"list", "--status", "active"}, "want one of Connecting"},
		{"bad error-log format", []string{"error-log", "--connection", "acme/acme-emea", "--format", "xml"}, "want csv or json"},
		{"bad address", []string{"status", "--connection", "acme/acme-emea", "--address", "nowhere"}, "want host:port"},
		{"tls key without cert", []string{"status", "--connection", "acme/acme-emea", "--tls-key", "k.pem"}, "go together"},
		{"no demo command", []string{"demo"}, "usage: starter demo COMMAND"},
		{"unknown demo command", []string{"demo", "explode"}, `unknown command "explode"`},
		{"demo missing org", []string{"demo", "expire-license"}, "--org is required"},
		{"demo missing times", []string{"demo", "fail-initial-sync", "--connection", "acme/acme-emea", "--data-space", "default"}, "--times is required"},
		{"demo bad count", []string{"demo", "change-metadata", "--org", "acme", "--data-space", "default", "--count", "0"}, "want 1 or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, getenv, &stdout, &stderr)
			assert.Equal(t, 2, code, "stderr %q", stderr.String())
			assert.Contains(t, stderr.String(), tc.want)
			assert.Empty(t, stdout.String())
		})
	}

	t.Run("help exits 0", func(t *testing.T) {
		for _, args := range [][]string{{"help"}, {"share", "-h"}, {"demo", "help"}} {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, 0, run(context.Background(), args, getenv, &stdout, &stderr), "%v", args)
			assert.Contains(t, stdout.String(), "usage: starter")
		}
	})

	t.Run("unreachable server is a failure, not a usage error", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"status", "--connection", "acme/acme-emea", "--address", "127.0.0.1:1"}, getenv, &stdout, &stderr)
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr.String(), "cannot reach Temporal at 127.0.0.1:1")
	})

	t.Run("demo without an org store", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		missing := filepath.Join(t.TempDir(), "orgs.db")
		code := run(context.Background(), []string{"demo", "expire-license", "--org", "acme", "--org-store", missing}, getenv, &stdout, &stderr)
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr.String(), "does not exist")
		assert.NoFileExists(t, missing, "a wrong path creates no store")
	})
}

// firstFrame is a stdout that cancels the watch after its first frame.
type firstFrame struct {
	bytes.Buffer
	once   sync.Once
	cancel context.CancelFunc
}

func (f *firstFrame) Write(p []byte) (int, error) {
	defer f.once.Do(f.cancel)
	return f.Buffer.Write(p)
}

func TestCommandsAgainstRealServer(t *testing.T) {
	c := newCLI(t)
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	conn := ref.String()

	t.Run("unknown connection", func(t *testing.T) {
		c.refused("unknown connection acme/acme-apac", "status", "--connection", "acme/acme-apac")
		c.refused("connect it first", "share", "--connection", "acme/acme-apac", "--data-space", "default")
	})

	t.Run("refused pairs name their rule", func(t *testing.T) {
		c.refused(contract.RuleCompanionExists, "connect", "--home", "acme", "--companion", "nobody")
		c.refused(contract.RuleSameKind, "connect", "--home", "acme", "--companion", "acme-sbx")
		// Nothing is left running for a refused pair.
		c.refused("refused", "share", "--connection", "acme/acme-sbx", "--data-space", "default")
	})

	t.Run("connect", func(t *testing.T) {
		out := c.ok("connect", "--home", "acme", "--companion", "acme-emea")
		assert.Contains(t, out, "connected acme/acme-emea")
		assert.Regexp(t, `Status\s+Incomplete`, out)
		assert.Contains(t, out, "No data space shared.")
	})

	t.Run("share", func(t *testing.T) {
		out := c.ok("share", "--connection", conn, "--data-space", "default")
		assert.Regexp(t, `Status\s+Active`, out, "Active as soon as a share is requested")
		assert.Regexp(t, `default\s+(Activating|Active)\s+(starting|\d+/2000 \(\d+%\))`, out)
	})

	t.Run("watch shows a frame and ends with its context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out := &firstFrame{cancel: cancel}
		var stderr bytes.Buffer
		code := run(ctx, []string{"watch", "--connection", conn}, c.getenv, out, &stderr)
		assert.Equal(t, 0, code, stderr.String())
		assert.Regexp(t, `Connection\s+acme/acme-emea`, out.String())
		assert.Regexp(t, `default\s+(Activating|Active)\s+\[[#.]{24}\]\s+(starting|\d+/2000)`, out.String())
	})

	c.waitFor(ref, "default Active", testenv.ShareIs("default", contract.ShareActive))

	t.Run("status", func(t *testing.T) {
		out := c.ok("status", "--connection", conn)
		assert.Regexp(t, `default\s+Active\s+2000/2000 \(100%\)`, out)

		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(c.ok("status", "--connection", conn, "--json")), &m))
		for _, k := range []string{"connection", "status", "reason", "dataSpaces", "metadataSync", "lastRejected"} {
			assert.Contains(t, m, k)
		}
		assert.Equal(t, "acme/acme-emea", m["connection"])
		assert.Equal(t, "Active", m["status"])
		spaces := m["dataSpaces"].([]any)
		require.Len(t, spaces, 1)
		ds := spaces[0].(map[string]any)
		for _, k := range []string{"name", "initializationStatus", "recordsCopied", "recordsTotal", "error"} {
			assert.Contains(t, ds, k)
		}
		assert.Equal(t, "default", ds["name"])
		assert.Equal(t, "Active", ds["initializationStatus"])
		assert.EqualValues(t, 2000, ds["recordsCopied"])
		assert.EqualValues(t, 2000, ds["recordsTotal"])
		for _, k := range []string{"status", "pendingChanges", "lastSucceededAt", "errorCount", "error"} {
			assert.Contains(t, m["metadataSync"], k)
		}
	})

	t.Run("refusals change nothing", func(t *testing.T) {
		c.unchanged(ref, func() {
			c.refused(`unknown data space`, "share", "--connection", conn, "--data-space", "nope")
			c.refused(`"default" is already shared`, "share", "--connection", conn, "--data-space", "default")
			c.refused("not Error", "retry", "--connection", conn, "--data-space", "default")
			c.refused("not paused", "resume", "--connection", conn)
			c.refused(`it already exists (status Active)`, "connect", "--home", "acme", "--companion", "acme-emea")
		})
	})

	t.Run("list", func(t *testing.T) {
		var list []control.Summary
		testenv.Eventually(t, 30*time.Second, "listed as Active", func() bool {
			r := c.run("list", "--home", "acme", "--status", "Active", "--json")
			list = nil
			return r.code == 0 && json.Unmarshal([]byte(r.stdout), &list) == nil && len(list) == 1
		})
		assert.Equal(t, control.Summary{Connection: conn, Status: "Active", MetadataSyncStatus: list[0].MetadataSyncStatus,
			Protocol: contract.CurrentProtocol.String()}, list[0])
		protocol := c.run("list", "--protocol", contract.CurrentProtocol.String(), "--json")
		require.Equal(t, 0, protocol.code)
		assert.Contains(t, protocol.stdout, conn, "listed by its protocol")
		older := c.run("list", "--protocol", contract.ProtocolProgressReport.String(), "--json")
		require.Equal(t, 0, older.code)
		assert.NotContains(t, older.stdout, conn, "not listed under another protocol")
		var raw []map[string]any
		require.NoError(t, json.Unmarshal([]byte(c.ok("list", "--json")), &raw))
		require.NotEmpty(t, raw)
		for _, k := range []string{"connection", "status", "metadataSyncStatus"} {
			assert.Contains(t, raw[0], k)
		}
		assert.Regexp(t, `acme/acme-emea\s+Active`, c.ok("list"))
		assert.Equal(t, "No connections.\n", c.ok("list", "--home", "initech"))
	})

	t.Run("share while Inactive is refused", func(t *testing.T) {
		assert.Contains(t, c.ok("demo", "expire-license", "--org", "acme"), "licence of acme expired")
		c.ok("recheck", "--connection", conn)
		c.waitFor(ref, "Inactive", func(v contract.StatusView) bool { return v.Status == contract.Inactive })
		c.unchanged(ref, func() {
			c.refused("Inactive", "share", "--connection", conn, "--data-space", "sales")
		})
		assert.Contains(t, c.ok("demo", "renew-license", "--org", "acme"), "licence of acme renewed")
		c.ok("recheck", "--connection", conn)
		c.waitFor(ref, "Active again", func(v contract.StatusView) bool { return v.Status == contract.Active })
	})

	t.Run("deactivate and reactivate the companion", func(t *testing.T) {
		assert.Contains(t, c.ok("demo", "deactivate", "--org", "acme-emea"), "companion acme-emea deactivated")
		c.ok("recheck", "--connection", conn)
		c.waitFor(ref, "Inactive", func(v contract.StatusView) bool { return v.Status == contract.Inactive })
		assert.Regexp(t, `Status\s+Inactive`, c.ok("status", "--connection", conn))
		assert.Contains(t, c.ok("demo", "reactivate", "--org", "acme-emea"), "companion acme-emea reactivated")
		c.ok("recheck", "--connection", conn)
		v := c.waitFor(ref, "Active again", func(v contract.StatusView) bool { return v.Status == contract.Active })
		assert.True(t, testenv.ShareIs("default", contract.ShareActive)(v), "shares intact")
		c.refused(`org "nobody" does not exist`, "demo", "deactivate", "--org", "nobody")
		c.refused(`not a companion org`, "demo", "deactivate", "--org", "acme")
	})

	t.Run("demo change-metadata", func(t *testing.T) {
		before := c.waitFor(ref, "metadata sync running", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncSucceeded })
		out := c.ok("demo", "change-metadata", "--org", "acme", "--data-space", "default", "--count", "3")
		assert.Contains(t, out, "published 3 metadata changes in acme/default")
		// A quiet sync runs no rounds: the changes wake it, and one round
		// applies them.
		c.waitFor(ref, "changes synced", func(v contract.StatusView) bool {
			return v.MetadataSync.Status == contract.SyncSucceeded && v.MetadataSync.PendingChanges == 0 && v.MetadataSync.Rounds > before.MetadataSync.Rounds
		})
		c.refused(`"nope"`, "demo", "change-metadata", "--org", "acme", "--data-space", "nope")
	})

	t.Run("conflict, error log, resolve, resume", func(t *testing.T) {
		out := c.ok("demo", "conflict", "--connection", conn, "--data-space", "default")
		assert.Contains(t, out, "stops with a conflict")
		v := c.waitFor(ref, "metadata Error", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncError })
		assert.True(t, v.MetadataSync.Paused)
		assert.Contains(t, c.ok("status", "--connection", conn), "starter resume --connection acme/acme-emea")

		rows, err := csv.NewReader(strings.NewReader(c.ok("error-log", "--connection", conn))).ReadAll()
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(rows), 2)
		assert.Equal(t, errorLogHeader, rows[0])
		assert.Equal(t, "default", rows[1][1])
		assert.Equal(t, contract.KindConflict, rows[1][3])

		file := filepath.Join(t.TempDir(), "errors.json")
		out = c.ok("error-log", "--connection", conn, "--format", "json", "-o", file)
		assert.Contains(t, out, "error-log")
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		var entries []map[string]any
		require.NoError(t, json.Unmarshal(data, &entries))
		require.NotEmpty(t, entries)
		assert.Equal(t, contract.KindConflict, entries[0]["kind"])
		for _, k := range []string{"sequence", "dataSpace", "object", "kind", "message", "at"} {
			assert.Contains(t, entries[0], k)
		}

		assert.Contains(t, c.ok("demo", "resolve", "--connection", conn), "resolved 1 conflict in acme-emea")
		assert.Contains(t, c.ok("resume", "--connection", conn), "resumed the metadata sync of acme/acme-emea")
		c.waitFor(ref, "metadata Succeeded", func(v contract.StatusView) bool { return v.MetadataSync.Status == contract.SyncSucceeded })
		assert.Equal(t, "[]\n", c.ok("error-log", "--connection", conn, "--format", "json"))
	})

	t.Run("failed initial sync, retry, unshare", func(t *testing.T) {
		out := c.ok("demo", "fail-initial-sync", "--connection", conn, "--data-space", "marketing", "--times", "3")
		assert.Contains(t, out, "the next 3 initial-sync steps of marketing on acme/acme-emea will fail")
		c.ok("share", "--connection", conn, "--data-space", "marketing")
		v := c.waitFor(ref, "marketing Error", testenv.ShareIs("marketing", contract.ShareError))
		s, _ := testenv.Share(v, "marketing")
		assert.Contains(t, s.Error, "injected")
		assert.Contains(t, c.ok("status", "--connection", conn), "starter retry --connection acme/acme-emea --data-space marketing")

		assert.Contains(t, c.ok("retry", "--connection", conn, "--data-space", "marketing"), "retrying marketing on acme/acme-emea")
		c.waitFor(ref, "marketing Active", testenv.ShareIs("marketing", contract.ShareActive))

		assert.Contains(t, c.ok("unshare", "--connection", conn, "--data-space", "marketing"), "removing marketing from acme/acme-emea")
		c.waitFor(ref, "marketing gone", func(v contract.StatusView) bool { _, ok := testenv.Share(v, "marketing"); return !ok })
		n, err := c.env.Store.Demo().CompanionRecordCount(context.Background(), "acme", "acme-emea", "marketing")
		require.NoError(t, err)
		assert.Zero(t, n)
	})

	t.Run("disconnect", func(t *testing.T) {
		out := c.ok("disconnect", "--connection", conn, "--wait")
		assert.Contains(t, out, "disconnected acme/acme-emea")
		assert.Regexp(t, `Status\s+Disconnected`, c.ok("status", "--connection", conn))
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(c.ok("status", "--connection", conn, "--json")), &m))
		assert.Equal(t, "Disconnected", m["status"])
		c.refused("has ended", "share", "--connection", conn, "--data-space", "default")
	})
}

// TestBadQueryTimeoutIsAUsageError: a malformed COMPANIONSYNC_QUERY_TIMEOUT
// or a non-positive --query-timeout is refused before anything is dialled.
func TestBadQueryTimeoutIsAUsageError(t *testing.T) {
	for name, tc := range map[string]struct {
		env  string
		args []string
	}{
		"malformed env": {env: "soon", args: []string{"status", "--connection", "acme/acme-emea"}},
		"zero flag":     {args: []string{"status", "--connection", "acme/acme-emea", "--query-timeout", "0s"}},
	} {
		t.Run(name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "COMPANIONSYNC_QUERY_TIMEOUT" {
					return tc.env
				}
				return ""
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append(tc.args, "--address", "127.0.0.1:1"), getenv, &stdout, &stderr)
			assert.Equal(t, 2, code, stderr.String())
			assert.Contains(t, strings.ToLower(stderr.String()), "query_timeout")
		})
	}
}
