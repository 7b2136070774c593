//go:build linux

package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/orgstore"
	"github.com/companionsync/companionsync/orgstore/storetest"
)

// envClusterRecords sizes each data space of TestCluster (default 6000);
// COMPANIONSYNC_CLUSTER_RECORDS=50000 is the long run, with copies that
// last minutes (see docs/testing.md).
const envClusterRecords = "COMPANIONSYNC_CLUSTER_RECORDS"

// clusterPairs is the number of connections TestCluster drives.
const clusterPairs = 20

// TestCluster runs the deployment's real processes — a temporal-server
// built from the pinned module on PostgreSQL, and three worker processes on
// a PostgreSQL org store — and drives 20 connections, each sharing a data
// space, through three faults: a worker killed with SIGKILL while it copies
// records, a rolling restart of the workers, and a restart of the server.
// Metadata changes are published between the faults. At the end, the
// connections kept are Active with exactly the home's records (count and
// checksum) and metadata (versions, cursor), the others are Disconnected
// with their copies gone, and no metadata change was applied to a companion
// twice (a trigger on the companion's metadata records every apply).
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a temporal-server and three worker processes on PostgreSQL")
	}
	records := 6000
	if v := os.Getenv(envClusterRecords); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, envClusterRecords)
		require.True(t, n >= 10 && n <= 1_000_000, "%s=%d: want 10 to 1000000", envClusterRecords, n)
		records = n
	}
	began := time.Now()
	cl := StartCluster(t, ClusterOptions{
		Workers:     3,
		SeedRecords: 10,
		WorkerEnv: []string{
			"COMPANIONSYNC_HEALTH_CHECK_INTERVAL=2s",
			"COMPANIONSYNC_METADATA_SYNC_INTERVAL=2s",
		},
	})
	t.Logf("cluster up: build %s, schemas %s, server %s, namespace %s, 3 workers %s",
		cl.Timings.Build.Round(time.Millisecond), cl.Timings.Schema.Round(time.Millisecond),
		cl.Timings.ServerStart.Round(time.Millisecond), cl.Timings.Namespace.Round(time.Millisecond),
		cl.Timings.Workers.Round(time.Millisecond))
	ctx := context.Background()
	store, err := orgstore.Open(ctx, cl.OrgStoreURL)
	require.NoError(t, err)
	defer store.Close()
	applies := auditApplies(t, cl.OrgStoreURL)

	refs := make([]control.Ref, clusterPairs)
	for i := range refs {
		home := fmt.Sprintf("cluster-h%02d", i)
		refs[i] = control.Ref{Home: home, Companion: home + "-c"}
		require.NoError(t, store.Demo().AddOrg(ctx, companionsync.Org{ID: home, Role: companionsync.RoleHome,
			Kind: companionsync.KindProduction, LicenceExpiresAt: time.Now().AddDate(1, 0, 0), MaxCompanions: 1}))
		require.NoError(t, store.Demo().AddOrg(ctx, companionsync.Org{ID: refs[i].Companion, Role: companionsync.RoleCompanion,
			Kind: companionsync.KindProduction, Active: true}))
		// "default" gets the seed's five metadata objects.
		require.NoError(t, store.Demo().AddDataSpace(ctx, home, "default", recordsOf(i, records)))
	}
	c := control.New(cl.Client).WithQueryTimeout(time.Minute)
	each := func(what string, fn func(ref control.Ref) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, len(refs))
		for i, ref := range refs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = fn(ref)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "%s %s", what, refs[i])
		}
	}
	publish := func() {
		t.Helper()
		for _, ref := range refs {
			_, err := store.Demo().ChangeMetadata(ctx, ref.Home, "default", 2)
			require.NoError(t, err)
		}
	}

	each("connect and share", func(ref control.Ref) error {
		if _, err := c.Connect(ctx, ref, contract.Settings{}); err != nil {
			return err
		}
		_, err := c.Share(ctx, ref, "default")
		return err
	})

	// Fault 1: kill -9 the worker running a copy: the first pair's data
	// space is large enough that its copy is still running.
	victim, share := awaitCopyingWorker(t, cl, refs[:1])
	victim.Kill()
	killed := time.Now()
	t.Logf("fault 1: killed %s (pid %d) while it copied %s", victim.Name(), victim.Pid(), share)
	publish()
	allActive := func(ref control.Ref) error { return awaitShareActive(ctx, c, ref) }
	each("share Active after the kill", allActive)
	t.Logf("fault 1: every share Active %s after the kill (%d records each, %d in the first)",
		time.Since(killed).Round(time.Millisecond), records, recordsOf(0, records))
	victim.Start(t)
	each("metadata caught up after the kill", func(ref control.Ref) error { return awaitMetadataCaughtUp(ctx, c, store, ref) })

	// Fault 2: a rolling restart of every worker.
	publish()
	restart := time.Now()
	cl.RollingRestart(t)
	t.Logf("fault 2: rolling restart of 3 workers took %s", time.Since(restart).Round(time.Millisecond))
	each("metadata caught up after the rolling restart", func(ref control.Ref) error { return awaitMetadataCaughtUp(ctx, c, store, ref) })
	t.Logf("fault 2: metadata caught up %s after the rolling restart began", time.Since(restart).Round(time.Millisecond))

	// Fault 3: restart the server; then disconnect half the connections.
	publish()
	restart = time.Now()
	cl.Server.Restart(t)
	t.Logf("fault 3: server restarted in %s", time.Since(restart).Round(time.Millisecond))
	keep, drop := refs[:clusterPairs/2], refs[clusterPairs/2:]
	var wg sync.WaitGroup
	errs := make(chan error, clusterPairs)
	for _, ref := range drop {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Bounded, so that a disconnect that never ends fails with the
			// connection's last status rather than at the test's timeout.
			dctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			defer cancel()
			_, err := c.Disconnect(dctx, ref, true)
			if err != nil {
				v, serr := c.Status(ctx, ref)
				err = fmt.Errorf("%s: disconnect: %w; last status %+v (%v)", ref, err, v, serr)
			}
			errs <- err
		}()
	}
	for _, ref := range keep {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- awaitMetadataCaughtUp(ctx, c, store, ref)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Logf("fault 3: every connection settled %s after the server restart began", time.Since(restart).Round(time.Millisecond))

	// The end state, read from the org store itself.
	checks, moved := 0, 0
	for i, ref := range keep {
		sh := companionsync.Share{Home: ref.Home, Companion: ref.Companion, DataSpace: "default"}
		want, err := store.RecordCount(ctx, ref.Home, "default")
		require.NoError(t, err)
		got, err := store.CopiedCount(ctx, sh)
		require.NoError(t, err)
		assert.Equal(t, recordsOf(i, records), want)
		assert.Equal(t, want, got, "%s: records copied", ref)
		moved += got
		hs, err := store.Demo().RecordChecksum(ctx, ref.Home, "default")
		require.NoError(t, err)
		cs, err := store.Demo().CompanionChecksum(ctx, ref.Home, ref.Companion, "default")
		require.NoError(t, err)
		assert.Equal(t, hs, cs, "%s: checksum", ref)
		v, err := c.Status(ctx, ref)
		require.NoError(t, err)
		assert.Equal(t, contract.Active, v.Status, "%s", ref)
		assert.True(t, audited(t, store, ref, contract.RequestConnect), "%s: the connect in the audit trail", ref)
		assert.True(t, audited(t, store, ref, contract.MessageShare), "%s: the share in the audit trail", ref)
		checks++
	}
	for _, ref := range drop {
		n, err := store.CopiedCount(ctx, companionsync.Share{Home: ref.Home, Companion: ref.Companion, DataSpace: "default"})
		require.NoError(t, err)
		assert.Zero(t, n, "%s: copies removed", ref)
		_, err = store.ConnectionOf(ctx, ref.Companion)
		assert.ErrorIs(t, err, companionsync.ErrNotFound, "%s: deregistered", ref)
		v, err := c.Status(ctx, ref)
		require.NoError(t, err)
		assert.Equal(t, contract.Disconnected, v.Status, "%s", ref)
		assert.True(t, audited(t, store, ref, contract.MessageDisconnect), "%s: the disconnect in the audit trail", ref)
		checks++
	}
	require.Equal(t, clusterPairs, checks, "every connection checked")

	var twice int
	require.NoError(t, applies.QueryRowContext(ctx, `
		SELECT COUNT(*) FROM (SELECT companion, name, version FROM apply_audit
		                      GROUP BY companion, name, version HAVING COUNT(*) > 1) d`).Scan(&twice))
	var total int
	require.NoError(t, applies.QueryRowContext(ctx, `SELECT COUNT(*) FROM apply_audit`).Scan(&total))
	assert.Zero(t, twice, "metadata changes applied twice")
	assert.Positive(t, total, "metadata changes applied")
	t.Logf("%d connections, %d records each and %d in the first (%d in the companions kept), %d metadata changes applied once each; test took %s",
		clusterPairs, records, recordsOf(0, records), moved, total, time.Since(began).Round(time.Second))
}

// recordsOf is the size of pair i's data space: the first pair's copy takes
// long enough (some seconds) for the test to find the worker running it.
func recordsOf(i, records int) int {
	if i == 0 {
		return max(records, 100_000)
	}
	return records
}

// auditApplies installs a trigger that records every metadata change a
// metadata apply writes to a companion (the single-row upsert of
// ApplyChange, told apart from the initial sync's INSERT … SELECT by its
// statement text), and returns a connection to read the record.
func auditApplies(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", url)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	for _, stmt := range []string{
		`CREATE TABLE apply_audit (companion TEXT, name TEXT, version INTEGER, at TIMESTAMPTZ DEFAULT now())`,
		`CREATE FUNCTION audit_apply() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN
		   IF position('VALUES' in upper(current_query())) > 0 THEN
		     INSERT INTO apply_audit (companion, name, version) VALUES (NEW.companion, NEW.name, NEW.version);
		   END IF;
		   RETURN NEW;
		 END $$`,
		`CREATE TRIGGER audit_apply AFTER INSERT OR UPDATE ON companion_metadata
		 FOR EACH ROW EXECUTE FUNCTION audit_apply()`,
	} {
		_, err := db.Exec(stmt)
		require.NoError(t, err, "%.60s", stmt)
	}
	return db
}

// awaitCopyingWorker waits until a worker process runs a copy of one of the
// refs' shares, and returns it with the share's workflow ID.
func awaitCopyingWorker(t *testing.T, cl *Cluster, refs []control.Ref) (*WorkerProcess, string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		for _, ref := range refs {
			id := contract.ShareWorkflowID(ref.Home, ref.Companion, "default")
			d, err := cl.Client.DescribeWorkflowExecution(ctx, id, "")
			if err != nil {
				continue
			}
			for _, pa := range d.GetPendingActivities() {
				if pa.GetState() != enumspb.PENDING_ACTIVITY_STATE_STARTED || !strings.Contains(pa.GetActivityType().GetName(), "Copy") {
					continue
				}
				pid, _, _ := strings.Cut(pa.GetLastWorkerIdentity(), "@")
				for _, w := range cl.Workers {
					if w.Running() && strconv.Itoa(w.Pid()) == pid {
						return w, id
					}
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no worker was seen copying records within two minutes")
	return nil, ""
}

func awaitShareActive(ctx context.Context, c *control.Client, ref control.Ref) error {
	return awaitStatus(ctx, c, ref, func(v contract.StatusView) bool {
		return len(v.DataSpaces) == 1 && v.DataSpaces[0].InitializationStatus == contract.ShareActive
	})
}

// awaitMetadataCaughtUp waits until the companion's metadata cursor is at
// the home's latest change and the sync reports nothing pending.
func awaitMetadataCaughtUp(ctx context.Context, c *control.Client, store *orgstore.Store, ref control.Ref) error {
	conn := companionsync.Connection{Home: ref.Home, Companion: ref.Companion}
	return awaitStatus(ctx, c, ref, func(v contract.StatusView) bool {
		if v.Status != contract.Active || v.MetadataSync.Status != contract.SyncSucceeded {
			return false
		}
		n, _, err := store.PendingChanges(ctx, conn, []string{"default"})
		return err == nil && n == 0
	})
}

func awaitStatus(ctx context.Context, c *control.Client, ref control.Ref, cond func(contract.StatusView) bool) error {
	deadline := time.Now().Add(3 * time.Minute)
	var (
		last contract.StatusView
		err  error
	)
	for time.Now().Before(deadline) {
		last, err = c.Status(ctx, ref)
		if err == nil && cond(last) {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s: condition not reached in 3 minutes; last status %+v, error %v", ref, last, err)
}

// TestApplyAuditSeesASecondApply checks TestCluster's detector: one
// ApplyChange is recorded once, an initial sync is not recorded, and the
// same change written again by an apply statement shows as applied twice.
func TestApplyAuditSeesASecondApply(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewPostgresDatabase(t, "audit")
	store, err := orgstore.Open(ctx, url)
	require.NoError(t, err)
	defer store.Close()
	require.NoError(t, store.Demo().Seed(ctx, orgstore.SeedOptions{RecordsPerDataSpace: 10}))
	audit := auditApplies(t, url)
	sh := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "sales"}
	require.NoError(t, store.CompleteInitialSync(ctx, sh))
	_, err = store.Demo().ChangeMetadata(ctx, "acme", "sales", 1)
	require.NoError(t, err)
	conn := companionsync.Connection{Home: "acme", Companion: "acme-emea"}
	changes, err := store.Changes(ctx, conn, []string{"sales"}, 1<<40)
	require.NoError(t, err)
	require.Len(t, changes, 1)
	applied, err := store.ApplyChange(ctx, conn, changes[0])
	require.NoError(t, err)
	require.True(t, applied)

	twice := func() (n, total int) {
		require.NoError(t, audit.QueryRowContext(ctx, `
			SELECT COUNT(*) FROM (SELECT 1 FROM apply_audit GROUP BY companion, name, version HAVING COUNT(*) > 1) d`).Scan(&n))
		require.NoError(t, audit.QueryRowContext(ctx, `SELECT COUNT(*) FROM apply_audit`).Scan(&total))
		return n, total
	}
	n, total := twice()
	assert.Zero(t, n)
	assert.Equal(t, 1, total, "the apply is recorded, the initial sync is not")

	// A second apply of the same change, as a broken cursor would allow.
	ch := changes[0]
	_, err = audit.ExecContext(ctx, `
		INSERT INTO companion_metadata (companion, data_space_id, name, kind, version, definition)
		VALUES ($1, (SELECT id FROM data_spaces WHERE home = $2 AND name = $3), $4, $5, $6, $7)
		ON CONFLICT (companion, data_space_id, name) DO UPDATE SET version = excluded.version`,
		conn.Companion, conn.Home, ch.DataSpace, ch.Object, ch.ObjectKind, ch.Version, ch.Definition)
	require.NoError(t, err)
	n, _ = twice()
	assert.Equal(t, 1, n, "the detector sees the change applied twice")
}

// audited reports whether the connection's audit trail, in the org store
// the workers share, holds an accepted request.
func audited(t *testing.T, store *orgstore.Store, ref control.Ref, request string) bool {
	t.Helper()
	trail, err := store.Audit(context.Background(), ref.String(), time.Time{})
	require.NoError(t, err)
	for _, e := range trail {
		if e.Request == request && e.Outcome == contract.AuditAccepted && e.Actor != "" {
			return true
		}
	}
	return false
}
