package activities_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/orgstore"
)

// downOrgs is a store that can be made unreachable: every call then fails
// as a refused connection does.
type downOrgs struct {
	companionsync.Orgs
	down  atomic.Bool
	calls atomic.Int64
}

var errRefused = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

func (d *downOrgs) fail() error {
	d.calls.Add(1)
	if d.down.Load() {
		return fmt.Errorf("store: %w", errRefused)
	}
	return nil
}

func (d *downOrgs) Org(ctx context.Context, id string) (companionsync.Org, error) {
	if err := d.fail(); err != nil {
		return companionsync.Org{}, err
	}
	return d.Orgs.Org(ctx, id)
}

func (d *downOrgs) DataSpaces(ctx context.Context, home string) ([]string, error) {
	if err := d.fail(); err != nil {
		return nil, err
	}
	return d.Orgs.DataSpaces(ctx, home)
}

func (d *downOrgs) RecordCount(ctx context.Context, home, ds string) (int, error) {
	if err := d.fail(); err != nil {
		return 0, err
	}
	return d.Orgs.RecordCount(ctx, home, ds)
}

func (d *downOrgs) CopiedCount(ctx context.Context, s companionsync.Share) (int, error) {
	if err := d.fail(); err != nil {
		return 0, err
	}
	return d.Orgs.CopiedCount(ctx, s)
}

func (d *downOrgs) CopyBatch(ctx context.Context, s companionsync.Share, after string, limit int) (companionsync.CopiedBatch, error) {
	if err := d.fail(); err != nil {
		return companionsync.CopiedBatch{}, err
	}
	return d.Orgs.CopyBatch(ctx, s, after, limit)
}

func (d *downOrgs) RemoveBatch(ctx context.Context, s companionsync.Share, limit int) (int, bool, error) {
	if err := d.fail(); err != nil {
		return 0, false, err
	}
	return d.Orgs.RemoveBatch(ctx, s, limit)
}

func (d *downOrgs) PendingChanges(ctx context.Context, c companionsync.Connection, ds []string) (int, int64, error) {
	if err := d.fail(); err != nil {
		return 0, 0, err
	}
	return d.Orgs.PendingChanges(ctx, c, ds)
}

// upAfter brings the store back after d.
func upAfter(orgs *downOrgs, d time.Duration) {
	time.AfterFunc(d, func() { orgs.down.Store(false) })
}

func TestCopyWaitsForTheStore(t *testing.T) {
	s := openStore(t)
	orgs := &downOrgs{Orgs: s}
	acts := &activities.Activities{Orgs: orgs, Unavailable: orgstore.Unavailable, OutageWait: 20 * time.Second}
	orgs.down.Store(true)
	upAfter(orgs, 1500*time.Millisecond)
	p, err := execute[activities.CopyProgress](t, newEnv(t, acts), acts.CopyRecords,
		activities.CopyInput{Home: "acme", Companion: "acme-emea", DataSpace: "sales", BatchSize: 50})
	require.NoError(t, err, "an outage shorter than the step's wait is waited out")
	assert.True(t, p.Done)
	assert.Nil(t, p.Outage)
	assertSameRecords(t, s, "acme", "acme-emea", "sales")
}

func TestCopyReportsAnOutageAndFailsPastTheLimit(t *testing.T) {
	s := openStore(t)
	orgs := &downOrgs{Orgs: s}
	acts := &activities.Activities{Orgs: orgs, Unavailable: orgstore.Unavailable,
		OutageWait: 1500 * time.Millisecond, OutageLimit: time.Hour}
	in := activities.CopyInput{Home: "acme", Companion: "acme-emea", DataSpace: "sales", BatchSize: 50}

	// Half copied, then the store goes.
	in.Budget = time.Nanosecond
	p, err := execute[activities.CopyProgress](t, newEnv(t, acts), acts.CopyRecords, in)
	require.NoError(t, err)
	require.False(t, p.Done)
	orgs.down.Store(true)

	in.After, in.Budget = p.After, 0
	start := time.Now()
	p, err = execute[activities.CopyProgress](t, newEnv(t, acts), acts.CopyRecords, in)
	require.NoError(t, err, "an outage is not a failed attempt")
	require.NotNil(t, p.Outage, "the step returns with the outage")
	assert.False(t, p.Done)
	assert.Equal(t, in.After, p.After, "the checkpoint stays")
	assert.WithinDuration(t, start, p.Outage.Since, 5*time.Second)
	assert.Equal(t, p.Outage.Since.Add(time.Hour), p.Outage.Until)
	assert.Contains(t, p.Outage.String(), "the org store is unreachable since")
	assert.Contains(t, p.Outage.Error, "connection refused")

	// The next step keeps the outage's start; past the limit it fails, as a
	// retryable error that the retry policy counts.
	in.UnavailableSince = time.Now().Add(-2 * time.Hour)
	_, err = execute[activities.CopyProgress](t, newEnv(t, acts), acts.CopyRecords, in)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "longer than the outage limit of 1h0m0s")
	if appErr := applicationError(t, err); appErr != nil {
		assert.False(t, appErr.NonRetryable())
	}

	// Back: the copy goes on from the checkpoint, exactly.
	orgs.down.Store(false)
	in.UnavailableSince = p.Outage.Since
	p, err = execute[activities.CopyProgress](t, newEnv(t, acts), acts.CopyRecords, in)
	require.NoError(t, err)
	assert.True(t, p.Done)
	assert.Nil(t, p.Outage)
	assertSameRecords(t, s, "acme", "acme-emea", "sales")
}

func TestRemoveWaitsForTheStore(t *testing.T) {
	s := openStore(t)
	orgs := &downOrgs{Orgs: s}
	acts := &activities.Activities{Orgs: orgs, Unavailable: orgstore.Unavailable, OutageWait: 1500 * time.Millisecond}
	copyIn := activities.CopyInput{Home: "acme", Companion: "acme-emea", DataSpace: "sales"}
	_, err := execute[activities.CopyProgress](t, newEnv(t, acts), acts.CopyRecords, copyIn)
	require.NoError(t, err)

	in := activities.RemoveInput{Home: "acme", Companion: "acme-emea", DataSpace: "sales", BatchSize: 50}
	orgs.down.Store(true)
	p, err := execute[activities.RemoveProgress](t, newEnv(t, acts), acts.RemoveRecords, in)
	require.NoError(t, err)
	require.NotNil(t, p.Outage)
	assert.False(t, p.Done)

	orgs.down.Store(true)
	upAfter(orgs, time.Second)
	in.UnavailableSince = p.Outage.Since
	acts.OutageWait = 20 * time.Second
	p, err = execute[activities.RemoveProgress](t, newEnv(t, acts), acts.RemoveRecords, in)
	require.NoError(t, err)
	assert.True(t, p.Done)
	n, err := s.Demo().CompanionRecordCount(context.Background(), "acme", "acme-emea", "sales")
	require.NoError(t, err)
	assert.Zero(t, n, "nothing is left")
}

func TestShortStepsFailAtOnceWhenTheStoreIsDown(t *testing.T) {
	s := openStore(t)
	orgs := &downOrgs{Orgs: s}
	acts := &activities.Activities{Orgs: orgs, Unavailable: orgstore.Unavailable}
	orgs.down.Store(true)
	metrics := &countingMetrics{counts: map[string]int64{}}
	newEnv := func(t *testing.T, acts *activities.Activities) *testsuite.TestActivityEnvironment {
		var suite testsuite.WorkflowTestSuite
		suite.SetLogger(quiet)
		suite.SetMetricsHandler(metrics)
		env := suite.NewTestActivityEnvironment()
		env.RegisterActivity(acts)
		return env
	}
	checks := 0
	for name, run := range map[string]func() error{
		"health check": func() error {
			_, err := execute[activities.HealthResult](t, newEnv(t, acts), acts.CheckHealth,
				activities.HealthInput{Home: "acme", Companion: "acme-emea"})
			return err
		},
		"handshake": func() error {
			_, err := execute[activities.HandshakeResult](t, newEnv(t, acts), acts.Handshake,
				activities.HandshakeInput{Home: "acme", Companion: "acme-emea", Token: "t"})
			return err
		},
		"count": func() error {
			_, err := execute[activities.PendingResult](t, newEnv(t, acts), acts.CountPendingMetadata,
				activities.PendingInput{Home: "acme", Companion: "acme-emea", DataSpaces: []string{"default"}})
			return err
		},
	} {
		start := time.Now()
		err := run()
		appErr := applicationError(t, err)
		assert.Equal(t, activities.ErrStoreUnavailable, appErr.Type(), name)
		assert.True(t, appErr.NonRetryable(), name)
		assert.Less(t, time.Since(start), 2*time.Second, "%s holds no workflow task", name)
		checks++
	}
	assert.Equal(t, 3, checks)
	assert.Equal(t, int64(3), metrics.count(activities.StoreUnavailableMetric), "each outage is counted")

	// Without the classifier, an error of the store is retried as before.
	plain := &activities.Activities{Orgs: orgs}
	_, err := execute[activities.HealthResult](t, newEnv(t, plain), plain.CheckHealth,
		activities.HealthInput{Home: "acme", Companion: "acme-emea"})
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.False(t, appErr.NonRetryable())
}

// busyOrgs counts the copy batches that failed (an SQLite lock turned them
// away).
type busyOrgs struct {
	companionsync.Orgs
	busy atomic.Int64
}

func (b *busyOrgs) CopyBatch(ctx context.Context, s companionsync.Share, after string, limit int) (companionsync.CopiedBatch, error) {
	batch, err := b.Orgs.CopyBatch(ctx, s, after, limit)
	if err != nil {
		b.busy.Add(1)
	}
	return batch, err
}

// TestCopyWaitsOutALockedSQLiteFile: another process holding the SQLite
// file's write lock for longer than the busy timeout is an outage of the
// store, not a failed copy: the copy waits and finishes with exact counts.
func TestCopyWaitsOutALockedSQLiteFile(t *testing.T) {
	if testing.Short() {
		t.Skip("holds an SQLite lock past the busy timeout")
	}
	s := openStore(t)
	orgs := &busyOrgs{Orgs: s}
	acts := &activities.Activities{Orgs: orgs, Unavailable: orgstore.Unavailable, OutageWait: time.Minute}

	ctx := context.Background()
	db, err := sql.Open("sqlite", s.String())
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	_, err = conn.ExecContext(ctx, "BEGIN EXCLUSIVE")
	require.NoError(t, err)
	released := make(chan struct{})
	go func() {
		defer close(released)
		// Held until the copy has been turned away once, past the busy
		// timeout.
		for orgs.busy.Load() == 0 {
			time.Sleep(50 * time.Millisecond)
		}
		_, _ = conn.ExecContext(ctx, "COMMIT")
		_ = conn.Close()
	}()

	p, err := execute[activities.CopyProgress](t, newEnv(t, acts), acts.CopyRecords,
		activities.CopyInput{Home: "acme", Companion: "acme-emea", DataSpace: "sales", BatchSize: 500})
	<-released
	require.NoError(t, err, "a locked file is waited out")
	assert.True(t, p.Done)
	assert.Nil(t, p.Outage)
	assert.Positive(t, orgs.busy.Load(), "the lock turned a batch away")
	assertSameRecords(t, s, "acme", "acme-emea", "sales")
}

// TestReadOnlySQLiteIsAnOutage: a database file that cannot be written (a
// file system remounted read-only, a disk full) is ours to fix, not a
// failure of the work: the copy and removal wait as for any outage.
func TestReadOnlySQLiteIsAnOutage(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+s.String()+"?mode=ro")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	_, err = db.ExecContext(ctx, `DELETE FROM companion_records`)
	require.Error(t, err)
	assert.True(t, orgstore.Unavailable(err), "%v", err)
}

// countingMetrics is a metrics handler that counts counter increments by
// name.
type countingMetrics struct {
	mu     sync.Mutex
	counts map[string]int64
}

func (m *countingMetrics) WithTags(map[string]string) client.MetricsHandler { return m }
func (m *countingMetrics) Counter(name string) client.MetricsCounter {
	return counterFunc(func(n int64) { m.mu.Lock(); m.counts[name] += n; m.mu.Unlock() })
}
func (m *countingMetrics) Gauge(string) client.MetricsGauge {
	return client.MetricsNopHandler.Gauge("")
}
func (m *countingMetrics) Timer(string) client.MetricsTimer {
	return client.MetricsNopHandler.Timer("")
}

func (m *countingMetrics) count(name string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[name]
}

type counterFunc func(int64)

func (f counterFunc) Inc(n int64) { f(n) }

// slowOrgs answers each read only after delay (or when the caller gives
// up), as a store that takes seconds per statement does.
type slowOrgs struct {
	companionsync.Orgs
	delay time.Duration
}

func (s *slowOrgs) Org(ctx context.Context, id string) (companionsync.Org, error) {
	select {
	case <-time.After(s.delay):
		return s.Orgs.Org(ctx, id)
	case <-ctx.Done():
		return companionsync.Org{}, fmt.Errorf("read org %q: %w", id, ctx.Err())
	}
}

// TestHealthCheckGivesUpOnASlowStore: a health check runs inside the
// connection's workflow task, so a store too slow to answer within its
// bound is an outage, at once and non-retryable, not a failure retried for
// minutes while the task waits. Its reads run at once: a store a little
// slower than usual costs one round, not three.
func TestHealthCheckGivesUpOnASlowStore(t *testing.T) {
	s := openStore(t)
	in := activities.HealthInput{Home: "acme", Companion: "acme-emea"}

	slow := &activities.Activities{Orgs: &slowOrgs{Orgs: s, delay: time.Minute}, Unavailable: orgstore.Unavailable}
	start := time.Now()
	_, err := execute[activities.HealthResult](t, newEnv(t, slow), slow.CheckHealth, in)
	appErr := applicationError(t, err)
	assert.Equal(t, activities.ErrStoreUnavailable, appErr.Type())
	assert.True(t, appErr.NonRetryable())
	assert.Less(t, time.Since(start), 7*time.Second, "the check gives up at its bound")

	// Two seconds per read: both org reads at once fit the bound.
	slowish := &activities.Activities{Orgs: &slowOrgs{Orgs: s, delay: 2 * time.Second}, Unavailable: orgstore.Unavailable}
	start = time.Now()
	res, err := execute[activities.HealthResult](t, newEnv(t, slowish), slowish.CheckHealth, in)
	require.NoError(t, err)
	assert.True(t, res.Healthy)
	assert.Less(t, time.Since(start), 4*time.Second, "the reads ran at once")
}
