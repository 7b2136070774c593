// Package storetest is the conformance suite of the org store: every method
// of the companionsync.Orgs port, the demo operations, idempotency, and the
// invariants that must hold under concurrent workers (one registration per
// companion, the companion limit, exactly-once metadata apply, a change log
// read without gaps). Run runs it against any database orgstore.Open
// accepts; the orgstore tests run it on SQLite and on PostgreSQL.
package storetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/orgstore"
)

// Target returns, for each call, the location of a new empty database that
// orgstore.Open accepts: a file path or a postgres:// URL.
type Target func(t testing.TB) string

// SQLite returns a Target of SQLite files in the test's temporary
// directory.
func SQLite() Target {
	return func(t testing.TB) string {
		return t.TempDir() + "/orgs.db"
	}
}

// EnvPostgresURL names the PostgreSQL server the tests use: a URL of an
// existing database on it, through which they create and drop their own.
const EnvPostgresURL = "COMPANIONSYNC_TEST_POSTGRES"

// DefaultPostgresURL is the server the tests use when EnvPostgresURL is
// unset: the machine's local PostgreSQL.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Postgres returns a Target of fresh PostgreSQL databases, each created on
// the server of EnvPostgresURL (or DefaultPostgresURL) and dropped when its
// test ends. When the server cannot be reached the test is skipped with a
// one-line reason, except under CI=true, where it fails: CI must run
// against PostgreSQL.
func Postgres() Target {
	return func(t testing.TB) string { return NewPostgresDatabase(t, "orgs") }
}

// NewPostgresDatabase creates an empty database whose name starts with
// prefix, drops it (with any connection left open) when t ends, and returns
// its URL. It skips or fails t like Postgres when no server is reachable.
func NewPostgresDatabase(t testing.TB, prefix string) string {
	t.Helper()
	admin := os.Getenv(EnvPostgresURL)
	if admin == "" {
		admin = DefaultPostgresURL
	}
	db, err := sql.Open("pgx", admin)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		if db != nil {
			db.Close()
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL at %s is required under CI=true: %v", redacted(admin), err)
		}
		t.Skipf("no PostgreSQL at %s (set %s): %v", redacted(admin), EnvPostgresURL, firstLine(err))
	}
	t.Cleanup(func() { db.Close() })
	name := fmt.Sprintf("cs_%s_%d_%d", prefix, time.Now().UnixNano()%1e12, seq.Add(1))
	if _, err := db.Exec(`CREATE DATABASE ` + name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvPostgresURL, err)
	}
	u.Path = "/" + name
	return u.String()
}

var seq atomic.Int64

func redacted(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// Open opens a new store of target, closed when t ends, seeded with records
// per default data space unless records is 0.
func Open(t testing.TB, target Target, records int) *orgstore.Store {
	t.Helper()
	s, err := orgstore.Open(context.Background(), target(t))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	if records > 0 {
		require.NoError(t, s.Demo().Seed(context.Background(), orgstore.SeedOptions{RecordsPerDataSpace: records}))
	}
	return s
}

// Run runs the conformance suite against stores of target.
func Run(t *testing.T, target Target) {
	tests := []struct {
		name string
		fn   func(t *testing.T, target Target)
	}{
		{"Reopen", testReopen},
		{"Seed", testSeed},
		{"SeedConcurrently", testSeedConcurrently},
		{"Registry", testRegistry},
		{"RegisterIsAtomic", testRegisterIsAtomic},
		{"ConnectionsInPages", testConnectionsInPages},
		{"CopyBatch", testCopyBatch},
		{"CopyBatchConcurrently", testCopyBatchConcurrently},
		{"RemoveBatch", testRemoveBatch},
		{"Fencing", testFencing},
		{"FencingConcurrently", testFencingConcurrently},
		{"CompleteInitialSync", testCompleteInitialSync},
		{"Metadata", testMetadata},
		{"ApplyChangeOnceUnderConcurrency", testApplyChangeOnce},
		{"SyncersAndPublishersConcurrently", testSyncersAndPublishers},
		{"LogErrors", testLogErrors},
		{"DemoOperationsNameWhatIsWrong", testDemoOperationsNameWhatIsWrong},
		{"DemoOperationsChangeState", testDemoOperationsChangeState},
		{"InjectedFailures", testInjectedFailures},
		{"AddOrg", testAddOrg},
		{"Watches", testWatches},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, target) })
	}
}

// concurrently runs fn(i) for i in [0, n) at once and returns the errors.
func concurrently(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

func testReopen(t *testing.T, target Target) {
	ctx := context.Background()
	where := target(t)
	s, err := orgstore.Open(ctx, where)
	require.NoError(t, err)
	v, err := s.SchemaVersion(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, v)
	require.NoError(t, s.Demo().Seed(ctx, orgstore.SeedOptions{RecordsPerDataSpace: 10}))
	require.NoError(t, s.Close())

	s, err = orgstore.Open(ctx, where)
	require.NoError(t, err, "reopening applies no migration twice")
	defer s.Close()
	v, err = s.SchemaVersion(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, v)
	n, err := s.Demo().CountRecords(ctx, "acme", "default")
	require.NoError(t, err)
	assert.Equal(t, 10, n, "data survives a reopen")
}

func testSeed(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 2500) // more than one multi-row insert
	require.NoError(t, s.Demo().Seed(ctx, orgstore.SeedOptions{RecordsPerDataSpace: 999}), "seeding again is a no-op")

	orgs := []struct {
		id     string
		role   companionsync.Role
		kind   companionsync.Kind
		active bool
	}{
		{"acme", companionsync.RoleHome, companionsync.KindProduction, true},
		{"acme-emea", companionsync.RoleCompanion, companionsync.KindProduction, true},
		{"acme-apac", companionsync.RoleCompanion, companionsync.KindProduction, true},
		{"acme-sbx", companionsync.RoleCompanion, companionsync.KindSandbox, true},
		{"acme-old", companionsync.RoleCompanion, companionsync.KindProduction, false},
		{"globex", companionsync.RoleHome, companionsync.KindProduction, true},
		{"globex-emea", companionsync.RoleCompanion, companionsync.KindProduction, true},
	}
	for _, want := range orgs {
		o, err := s.Org(ctx, want.id)
		require.NoError(t, err, want.id)
		assert.Equal(t, want.role, o.Role, want.id)
		assert.Equal(t, want.kind, o.Kind, want.id)
		assert.Equal(t, want.active, o.Active, want.id)
		if want.role == companionsync.RoleHome {
			assert.True(t, o.LicenceExpiresAt.After(time.Now().AddDate(0, 11, 0)), want.id)
		}
	}
	acme, err := s.Org(ctx, "acme")
	require.NoError(t, err)
	assert.Equal(t, 3, acme.MaxCompanions)
	conn, err := s.ConnectionOf(ctx, "globex-emea")
	require.NoError(t, err)
	assert.Equal(t, companionsync.Connection{Home: "globex", Companion: "globex-emea", Token: orgstore.SeededConnectionToken}, conn)

	spaces, err := s.DataSpaces(ctx, "acme")
	require.NoError(t, err)
	assert.Equal(t, []string{"default", "marketing", "sales"}, spaces)
	for ds, want := range map[string]int{"default": 2500, "marketing": 250, "sales": 250} {
		n, err := s.RecordCount(ctx, "acme", ds)
		require.NoError(t, err)
		assert.Equal(t, want, n, ds)
	}
	_, err = s.Org(ctx, "initech")
	assert.ErrorIs(t, err, companionsync.ErrNotFound)
	_, err = s.DataSpaces(ctx, "initech")
	assert.ErrorIs(t, err, companionsync.ErrNotFound)
	_, err = s.RecordCount(ctx, "acme", "finance")
	assert.ErrorIs(t, err, companionsync.ErrNotFound)
}

// testSeedConcurrently: workers starting together on one database seed it
// once.
func testSeedConcurrently(t *testing.T, target Target) {
	ctx := context.Background()
	where := target(t)
	errs := concurrently(3, func(int) error {
		s, err := orgstore.Open(ctx, where)
		if err != nil {
			return err
		}
		defer s.Close()
		return s.Demo().Seed(ctx, orgstore.SeedOptions{RecordsPerDataSpace: 50})
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	s, err := orgstore.Open(ctx, where)
	require.NoError(t, err)
	defer s.Close()
	n, err := s.RecordCount(ctx, "acme", "default")
	require.NoError(t, err)
	assert.Equal(t, 50, n)
}

func testRegistry(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 10)
	_, err := s.ConnectionOf(ctx, "acme-emea")
	assert.ErrorIs(t, err, companionsync.ErrNotFound)

	c := companionsync.Connection{Home: "acme", Companion: "acme-emea", Token: "t1"}
	require.NoError(t, s.Register(ctx, c, 3))
	got, err := s.ConnectionOf(ctx, "acme-emea")
	require.NoError(t, err)
	assert.Equal(t, c, got)

	require.NoError(t, s.Deregister(ctx, "globex", "acme-emea"), "deregistering another home's pair is a no-op")
	_, err = s.ConnectionOf(ctx, "acme-emea")
	require.NoError(t, err, "the companion's connection to acme is untouched")
	require.NoError(t, s.Deregister(ctx, "acme", "acme-emea"))
	require.NoError(t, s.Deregister(ctx, "acme", "acme-emea"), "deregistering is idempotent")
	_, err = s.ConnectionOf(ctx, "acme-emea")
	assert.ErrorIs(t, err, companionsync.ErrNotFound)
}

func testConnectionsInPages(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 10)
	seeded := companionsync.Connection{Home: "globex", Companion: "globex-emea", Token: "seed"}
	page, err := s.Connections(ctx, "", 10)
	require.NoError(t, err)
	assert.Equal(t, []companionsync.Connection{seeded}, page, "the seed registers globex/globex-emea")

	want := []companionsync.Connection{
		{Home: "acme", Companion: "acme-apac", Token: "t2"},
		{Home: "acme", Companion: "acme-emea", Token: "t1"},
		seeded,
	}
	for _, c := range []companionsync.Connection{want[1], want[0]} {
		require.NoError(t, s.Register(ctx, c, 3))
	}
	var got []companionsync.Connection
	after, pages := "", 0
	for {
		page, err := s.Connections(ctx, after, 2)
		require.NoError(t, err)
		pages++
		got = append(got, page...)
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].Companion
	}
	assert.Equal(t, want, got, "every connection once, in companion order")
	assert.Equal(t, 2, pages)

	require.NoError(t, s.Deregister(ctx, "acme", "acme-emea"))
	page, err = s.Connections(ctx, "acme-apac", 10)
	require.NoError(t, err)
	assert.Equal(t, want[2:], page, "a deregistered connection is gone from the pages")
	_, err = s.Connections(ctx, "", 0)
	assert.Error(t, err, "a page needs a positive limit")
}

func testRegisterIsAtomic(t *testing.T, target Target) {
	ctx := context.Background()
	t.Run("home limit", func(t *testing.T) {
		s := Open(t, target, 10)
		companions := []string{"acme-emea", "acme-apac", "acme-sbx", "acme-old"}
		errs := concurrently(len(companions), func(i int) error {
			return s.Register(ctx, companionsync.Connection{Home: "acme", Companion: companions[i], Token: "t"}, 2)
		})
		var ok, limited int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, companionsync.ErrCompanionLimit):
				limited++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}
		assert.Equal(t, 2, ok)
		assert.Equal(t, 2, limited)
	})
	t.Run("one home per companion", func(t *testing.T) {
		s := Open(t, target, 10)
		homes := []string{"acme", "globex"}
		errs := concurrently(len(homes), func(i int) error {
			return s.Register(ctx, companionsync.Connection{Home: homes[i], Companion: "acme-emea", Token: homes[i]}, 3)
		})
		var ok, taken int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, companionsync.ErrCompanionTaken):
				taken++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}
		assert.Equal(t, 1, ok)
		assert.Equal(t, 1, taken)
	})
	t.Run("same token again", func(t *testing.T) {
		s := Open(t, target, 10)
		c := companionsync.Connection{Home: "acme", Companion: "acme-emea", Token: "t"}
		errs := concurrently(3, func(int) error { return s.Register(ctx, c, 1) })
		for _, err := range errs {
			require.NoError(t, err, "a retried registration succeeds, even at the limit")
		}
		c.Token = "other"
		assert.ErrorIs(t, s.Register(ctx, c, 1), companionsync.ErrCompanionTaken)
	})
}

// copyAll copies the share in batches of limit and returns the batches.
func copyAll(t *testing.T, s *orgstore.Store, sh companionsync.Share, limit int) []companionsync.CopiedBatch {
	t.Helper()
	var out []companionsync.CopiedBatch
	after := ""
	for {
		b, err := s.CopyBatch(context.Background(), sh, after, limit)
		require.NoError(t, err)
		out = append(out, b)
		after = b.Last
		if !b.More {
			return out
		}
		require.Less(t, len(out), 10_000, "copy does not end")
	}
}

// assertSameRecords checks the companion holds exactly the data space's
// records.
func assertSameRecords(t *testing.T, s *orgstore.Store, sh companionsync.Share) {
	t.Helper()
	ctx := context.Background()
	want, err := s.RecordCount(ctx, sh.Home, sh.DataSpace)
	require.NoError(t, err)
	got, err := s.CopiedCount(ctx, sh)
	require.NoError(t, err)
	assert.Equal(t, want, got, "copied records")
	home, err := s.Demo().RecordChecksum(ctx, sh.Home, sh.DataSpace)
	require.NoError(t, err)
	comp, err := s.Demo().CompanionChecksum(ctx, sh.Home, sh.Companion, sh.DataSpace)
	require.NoError(t, err)
	assert.Equal(t, home, comp, "checksums")
}

func testCopyBatch(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 100) // marketing has 10 records
	sh := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "marketing"}

	_, err := s.CopyBatch(ctx, sh, "", 0)
	assert.ErrorContains(t, err, "limit must be positive")
	_, err = s.CopyBatch(ctx, companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "finance"}, "", 5)
	assert.ErrorIs(t, err, companionsync.ErrNotFound)

	first, err := s.CopyBatch(ctx, sh, "", 4)
	require.NoError(t, err)
	assert.Equal(t, companionsync.CopiedBatch{Last: "r00000004", Copied: 4, Added: 4, More: true}, first)
	again, err := s.CopyBatch(ctx, sh, "", 4)
	require.NoError(t, err)
	assert.Equal(t, companionsync.CopiedBatch{Last: "r00000004", Copied: 4, Added: 0, More: true}, again,
		"a replayed batch adds nothing")
	n, err := s.CopiedCount(ctx, sh)
	require.NoError(t, err)
	assert.Equal(t, 4, n)

	rest := copyAll(t, s, sh, 4)
	assert.Len(t, rest, 3)
	assert.Equal(t, companionsync.CopiedBatch{Last: "r00000010", Copied: 2, Added: 2, More: false}, rest[2])
	assertSameRecords(t, s, sh)
	end, err := s.CopyBatch(ctx, sh, "r00000010", 4)
	require.NoError(t, err)
	assert.Equal(t, companionsync.CopiedBatch{Last: "r00000010"}, end, "a batch after the last record is empty")

	other := companionsync.Share{Home: "acme", Companion: "acme-apac", DataSpace: "marketing"}
	n, err = s.CopiedCount(ctx, other)
	require.NoError(t, err)
	assert.Zero(t, n, "another companion got nothing")
}

// testCopyBatchConcurrently: a batch retried while its first attempt still
// runs (a worker that lost its heartbeat) duplicates nothing.
func testCopyBatchConcurrently(t *testing.T, target Target) {
	s := Open(t, target, 3000)
	sh := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "sales"}
	errs := concurrently(3, func(int) error {
		after := ""
		for {
			b, err := s.CopyBatch(context.Background(), sh, after, 50)
			if err != nil {
				return err
			}
			if after = b.Last; !b.More {
				return nil
			}
		}
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	assertSameRecords(t, s, sh)
}

func testRemoveBatch(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 100)
	sh := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "marketing"}
	keep := []companionsync.Share{
		{Home: "acme", Companion: "acme-emea", DataSpace: "sales"},
		{Home: "acme", Companion: "acme-apac", DataSpace: "marketing"},
	}
	for _, x := range append([]companionsync.Share{sh}, keep...) {
		copyAll(t, s, x, 100)
		require.NoError(t, s.CompleteInitialSync(ctx, x))
	}

	_, _, err := s.RemoveBatch(ctx, sh, 0)
	assert.ErrorContains(t, err, "limit must be positive")
	removed, more, err := s.RemoveBatch(ctx, sh, 6)
	require.NoError(t, err)
	assert.Equal(t, 6, removed)
	assert.True(t, more)
	removed, more, err = s.RemoveBatch(ctx, sh, 6)
	require.NoError(t, err)
	assert.Equal(t, 4, removed)
	assert.False(t, more)
	removed, more, err = s.RemoveBatch(ctx, sh, 6)
	require.NoError(t, err)
	assert.Zero(t, removed, "removing again removes nothing")
	assert.False(t, more)

	require.NoError(t, s.CompleteRemoval(ctx, sh))
	require.NoError(t, s.CompleteRemoval(ctx, sh), "completing a removal is idempotent")
	_, ok, err := s.Demo().MetadataCursor(ctx, "acme", "acme-emea", "marketing")
	require.NoError(t, err)
	assert.False(t, ok, "the cursor is gone")
	objs, err := s.Demo().CompanionMetadata(ctx, "acme", "acme-emea", "marketing")
	require.NoError(t, err)
	assert.Empty(t, objs, "the metadata copies are gone")
	for _, x := range keep {
		assertSameRecords(t, s, x)
		_, ok, err := s.Demo().MetadataCursor(ctx, x.Home, x.Companion, x.DataSpace)
		require.NoError(t, err)
		assert.True(t, ok, "%v keeps its cursor", x)
	}

	// A batch starts where the last one ended; copies written before that
	// point meanwhile are still removed before the removal reports none
	// left.
	copyAll(t, s, sh, 100)
	removed, more, err = s.RemoveBatch(ctx, sh, 3)
	require.NoError(t, err)
	require.Equal(t, 3, removed)
	require.True(t, more)
	copyAll(t, s, sh, 100)
	total, batches := 3, 1
	for more {
		removed, more, err = s.RemoveBatch(ctx, sh, 3)
		require.NoError(t, err)
		total += removed
		batches++
		require.Less(t, batches, 20, "the removal does not end")
	}
	assert.Equal(t, 13, total, "10 copies, and the 3 written again before the cursor")
	n, err := s.CopiedCount(ctx, sh)
	require.NoError(t, err)
	assert.Zero(t, n)
	for _, x := range keep {
		assertSameRecords(t, s, x)
	}
}

// testFencing: a copy step that still runs after the removal that followed
// it (an attempt its workflow gave up on) writes nothing, and neither does a
// removal's attempt after a new share's copy; unfenced calls and the step
// holding the greatest token go on.
func testFencing(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 100)
	share := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "marketing"}
	at := func(token int64) companionsync.Share { x := share; x.Fence = token; return x }
	copied := func() int {
		t.Helper()
		n, err := s.CopiedCount(ctx, share)
		require.NoError(t, err)
		return n
	}

	// A copy (token 100) copies half, then the removal (200) removes it all.
	b, err := s.CopyBatch(ctx, at(100), "", 5)
	require.NoError(t, err)
	removed, more, err := s.RemoveBatch(ctx, at(200), 100)
	require.NoError(t, err)
	assert.Equal(t, 5, removed)
	assert.False(t, more)
	require.NoError(t, s.CompleteRemoval(ctx, at(200)))

	// The copy's attempt goes on: every write of it is refused.
	_, err = s.CopyBatch(ctx, at(100), b.Last, 5)
	assert.ErrorIs(t, err, companionsync.ErrFenced)
	assert.ErrorIs(t, s.CompleteInitialSync(ctx, at(100)), companionsync.ErrFenced)
	assert.Zero(t, copied(), "the fenced copy wrote nothing")
	_, ok, err := s.Demo().MetadataCursor(ctx, "acme", "acme-emea", "marketing")
	require.NoError(t, err)
	assert.False(t, ok, "the fenced completion set no cursor")

	// Every attempt of the removal holds its token and goes on.
	_, _, err = s.RemoveBatch(ctx, at(200), 100)
	require.NoError(t, err)

	// A new share's copy (300) shuts the removal out in turn.
	copyAll(t, s, at(300), 4)
	require.NoError(t, s.CompleteInitialSync(ctx, at(300)))
	_, _, err = s.RemoveBatch(ctx, at(200), 100)
	assert.ErrorIs(t, err, companionsync.ErrFenced)
	assert.ErrorIs(t, s.CompleteRemoval(ctx, at(200)), companionsync.ErrFenced)
	assertSameRecords(t, s, share)

	// Another share of the same data space has a fence of its own.
	other := companionsync.Share{Home: "acme", Companion: "acme-apac", DataSpace: "marketing", Fence: 1}
	copyAll(t, s, other, 100)
	// Unfenced calls (the demo's, the tests') neither check nor move it.
	_, _, err = s.RemoveBatch(ctx, share, 100)
	require.NoError(t, err)
	_, err = s.CopyBatch(ctx, at(300), "", 100)
	require.NoError(t, err, "an unfenced call left the fence where it was")
}

// testFencingConcurrently: a copy attempt that keeps writing while the
// removal after it runs leaves nothing behind once the removal is done.
func testFencingConcurrently(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 3000)
	share := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "sales"}
	copyStep, removal := share, share
	copyStep.Fence, removal.Fence = 100, 200
	first, err := s.CopyBatch(ctx, copyStep, "", 20)
	require.NoError(t, err)

	started := make(chan struct{})
	fenced := make(chan error, 1)
	go func() {
		after := first.Last
		close(started)
		for {
			b, err := s.CopyBatch(ctx, copyStep, after, 20)
			if err != nil {
				fenced <- err
				return
			}
			if after = b.Last; !b.More {
				fenced <- nil
				return
			}
		}
	}()
	<-started
	for {
		_, more, err := s.RemoveBatch(ctx, removal, 50)
		require.NoError(t, err)
		if !more {
			break
		}
	}
	require.NoError(t, s.CompleteRemoval(ctx, removal))
	err = <-fenced
	n, cerr := s.CopiedCount(ctx, share)
	require.NoError(t, cerr)
	if err == nil {
		// The copy finished before the removal's first batch: the removal
		// removed it all.
		assert.Zero(t, n)
		return
	}
	assert.ErrorIs(t, err, companionsync.ErrFenced)
	assert.Zero(t, n, "the copy wrote after the removal")
}

func testCompleteInitialSync(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 10)
	sh := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "marketing"}
	last, err := s.Demo().ChangeMetadata(ctx, "acme", "marketing", 2)
	require.NoError(t, err)
	require.NoError(t, s.CompleteInitialSync(ctx, sh))
	seq, ok, err := s.Demo().MetadataCursor(ctx, "acme", "acme-emea", "marketing")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, last, seq, "the cursor starts at the latest change")
	objs, err := s.Demo().CompanionMetadata(ctx, "acme", "acme-emea", "marketing")
	require.NoError(t, err)
	require.Len(t, objs, 3)
	assert.Equal(t, "Campaign", objs[0].Name, "copies are sorted by name")

	conn := companionsync.Connection{Home: "acme", Companion: "acme-emea"}
	n, _, err := s.PendingChanges(ctx, conn, []string{"marketing"})
	require.NoError(t, err)
	assert.Zero(t, n, "changes before the snapshot are not pending")

	edited, err := s.Demo().MakeConflict(ctx, "acme", "acme-emea", "marketing")
	require.NoError(t, err)
	require.NoError(t, s.CompleteInitialSync(ctx, sh), "completing again is idempotent")
	objs, err = s.Demo().CompanionMetadata(ctx, "acme", "acme-emea", "marketing")
	require.NoError(t, err)
	for _, o := range objs {
		if o.Name == edited {
			assert.True(t, o.LocalEdit, "a local edit survives a repeated initial sync")
			assert.Contains(t, o.Definition, "editedIn")
		}
	}
	assert.ErrorIs(t, s.CompleteInitialSync(ctx, companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "finance"}),
		companionsync.ErrNotFound)
}

func testMetadata(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 10)
	conn := companionsync.Connection{Home: "acme", Companion: "acme-emea"}
	for _, ds := range []string{"marketing", "sales"} {
		require.NoError(t, s.CompleteInitialSync(ctx, companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: ds}))
	}
	_, err := s.Demo().ChangeMetadata(ctx, "acme", "marketing", 2)
	require.NoError(t, err)
	_, err = s.Demo().ChangeMetadata(ctx, "acme", "sales", 1)
	require.NoError(t, err)
	upToDefault, err := s.Demo().ChangeMetadata(ctx, "acme", "default", 1) // not synced to acme-emea
	require.NoError(t, err)

	n, upTo, err := s.PendingChanges(ctx, conn, []string{"marketing", "sales", "default"})
	require.NoError(t, err)
	assert.Equal(t, 3, n, "the unsynced data space has nothing pending")
	assert.Less(t, upTo, upToDefault)
	_, _, err = s.PendingChanges(ctx, conn, []string{"finance"})
	assert.ErrorIs(t, err, companionsync.ErrNotFound)
	n, upTo2, err := s.PendingChanges(ctx, conn, nil)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Zero(t, upTo2)

	changes, err := s.Changes(ctx, conn, []string{"marketing", "sales", "default"}, upTo)
	require.NoError(t, err)
	require.Len(t, changes, 3)
	for i := 1; i < len(changes); i++ {
		assert.Less(t, changes[i-1].Sequence, changes[i].Sequence, "changes come in sequence order")
	}
	_, err = s.Changes(ctx, conn, []string{"finance"}, upTo)
	assert.ErrorIs(t, err, companionsync.ErrNotFound)
	some, err := s.Changes(ctx, conn, []string{"marketing", "sales"}, changes[0].Sequence)
	require.NoError(t, err)
	assert.Len(t, some, 1, "changes stop at upTo")

	// A local object named like the first change's object conflicts.
	require.NoError(t, s.Demo().CreateLocalObject(ctx, "acme", "acme-emea", changes[0].DataSpace, changes[0].Object, changes[0].ObjectKind))
	local, err := s.LocalObjects(ctx, conn, []string{"marketing", "sales"})
	require.NoError(t, err)
	assert.Equal(t, []companionsync.LocalObject{{DataSpace: changes[0].DataSpace, Name: changes[0].Object}}, local)
	applied, err := s.ApplyChange(ctx, conn, changes[0])
	assert.ErrorIs(t, err, companionsync.ErrConflict)
	assert.False(t, applied)
	seq, _, err := s.Demo().MetadataCursor(ctx, "acme", "acme-emea", changes[0].DataSpace)
	require.NoError(t, err)
	assert.Less(t, seq, changes[0].Sequence, "a conflict applies nothing")

	_, err = s.Demo().ResolveConflicts(ctx, "acme", "acme-emea")
	require.NoError(t, err)
	for _, ch := range changes {
		applied, err := s.ApplyChange(ctx, conn, ch)
		require.NoError(t, err)
		assert.True(t, applied, "change %d", ch.Sequence)
		applied, err = s.ApplyChange(ctx, conn, ch)
		require.NoError(t, err)
		assert.False(t, applied, "change %d applies once", ch.Sequence)
	}
	objs, err := s.Demo().CompanionMetadata(ctx, "acme", "acme-emea", changes[0].DataSpace)
	require.NoError(t, err)
	found := false
	for _, o := range objs {
		if o.Name == changes[0].Object {
			found = true
			assert.Equal(t, changes[0].Version, o.Version)
			assert.Equal(t, changes[0].Definition, o.Definition)
		}
	}
	assert.True(t, found, "the applied change is in the companion")
	n, _, err = s.PendingChanges(ctx, conn, []string{"marketing", "sales"})
	require.NoError(t, err)
	assert.Zero(t, n)

	// A change of a data space no longer synced applies nothing.
	sh := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "sales"}
	require.NoError(t, s.CompleteRemoval(ctx, sh))
	late, err := s.Demo().ChangeMetadata(ctx, "acme", "sales", 1)
	require.NoError(t, err)
	applied, err = s.ApplyChange(ctx, conn, companionsync.Change{Sequence: late, DataSpace: "sales", Object: "Opportunity", ObjectKind: companionsync.ObjectDMO, Version: 9, Definition: "{}"})
	require.NoError(t, err)
	assert.False(t, applied)
}

func testApplyChangeOnce(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 10)
	sh := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "sales"}
	require.NoError(t, s.CompleteInitialSync(ctx, sh))
	_, err := s.Demo().ChangeMetadata(ctx, "acme", "sales", 1)
	require.NoError(t, err)
	conn := companionsync.Connection{Home: "acme", Companion: "acme-emea"}
	changes, err := s.Changes(ctx, conn, []string{"sales"}, 1<<40)
	require.NoError(t, err)
	require.Len(t, changes, 1)

	var applied atomic.Int64
	errs := concurrently(6, func(int) error {
		ok, err := s.ApplyChange(ctx, conn, changes[0])
		if ok {
			applied.Add(1)
		}
		return err
	})
	for _, err := range errs {
		assert.NoError(t, err)
	}
	assert.EqualValues(t, 1, applied.Load())
	seq, ok, err := s.Demo().MetadataCursor(ctx, "acme", "acme-emea", "sales")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, changes[0].Sequence, seq)
}

// testSyncersAndPublishers runs metadata rounds of one connection on several
// goroutines (workers running the same round after a retry) while the home
// publishes: every change is applied exactly once, none is skipped, and the
// companion ends with the home's latest versions.
func testSyncersAndPublishers(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 10)
	conn := companionsync.Connection{Home: "acme", Companion: "acme-emea"}
	spaces := []string{"marketing", "sales"}
	for _, ds := range spaces {
		require.NoError(t, s.CompleteInitialSync(ctx, companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: ds}))
	}
	const publishers, perPublisher, syncers = 2, 15, 3
	var applied, publishing atomic.Int64
	publishing.Store(publishers)
	round := func() error {
		_, upTo, err := s.PendingChanges(ctx, conn, spaces)
		if err != nil {
			return err
		}
		changes, err := s.Changes(ctx, conn, spaces, upTo)
		if err != nil {
			return err
		}
		for _, ch := range changes {
			ok, err := s.ApplyChange(ctx, conn, ch)
			if err != nil {
				return err
			}
			if ok {
				applied.Add(1)
			}
		}
		return nil
	}
	errs := concurrently(publishers+syncers, func(i int) error {
		if i < publishers {
			defer publishing.Add(-1)
			for range perPublisher {
				if _, err := s.Demo().ChangeMetadata(ctx, "acme", spaces[i%len(spaces)], 1); err != nil {
					return err
				}
			}
			return nil
		}
		for publishing.Load() > 0 {
			if err := round(); err != nil {
				return err
			}
		}
		return round()
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, round())
	assert.EqualValues(t, publishers*perPublisher, applied.Load(), "every change applied exactly once")
	n, _, err := s.PendingChanges(ctx, conn, spaces)
	require.NoError(t, err)
	assert.Zero(t, n)
	for _, ds := range spaces {
		objs, err := s.Demo().CompanionMetadata(ctx, "acme", "acme-emea", ds)
		require.NoError(t, err)
		total := 0
		for _, o := range objs {
			total += o.Version - 1
		}
		assert.Equal(t, perPublisher, total, "%s: the companion holds every version published", ds)
	}
}

func testLogErrors(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 10)
	conn := companionsync.Connection{Home: "acme", Companion: "acme-emea"}
	at := time.Now().UTC().Truncate(time.Millisecond)
	entries := []companionsync.ErrorLogEntry{
		{Sequence: 7, DataSpace: "sales", Object: "Opportunity", Kind: companionsync.ErrorKindConflict, Message: "edited in acme-emea", At: at},
		{Sequence: 8, DataSpace: "sales", Object: "TopAccounts", Kind: companionsync.ErrorKindInvalid, Message: "bad definition", At: at},
	}
	require.NoError(t, s.LogErrors(ctx, conn, "round-1", entries))
	require.NoError(t, s.LogErrors(ctx, conn, "round-1", entries), "writing a round again is a no-op")
	require.NoError(t, s.LogErrors(ctx, conn, "round-2", entries[:1]))
	log, err := s.Demo().ErrorLog(ctx, "acme", "acme-emea")
	require.NoError(t, err)
	require.Len(t, log, 3)
	assert.Equal(t, entries[0], log[0])
	other, err := s.Demo().ErrorLog(ctx, "acme", "acme-apac")
	require.NoError(t, err)
	assert.Empty(t, other)
}

func testDemoOperationsNameWhatIsWrong(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 10)
	tests := []struct {
		name string
		op   func() error
		want string
	}{
		{"expire unknown org", func() error { return s.Demo().ExpireLicence(ctx, "initech") }, `org "initech" does not exist`},
		{"expire a companion", func() error { return s.Demo().ExpireLicence(ctx, "acme-emea") }, `org "acme-emea" is a companion org, not a home org`},
		{"deactivate a home", func() error { return s.Demo().Deactivate(ctx, "acme") }, `org "acme" is a home org, not a companion org`},
		{"change unknown data space", func() error { _, err := s.Demo().ChangeMetadata(ctx, "acme", "finance", 1); return err },
			`data space "finance" of home org "acme": not found`},
		{"change nothing", func() error { _, err := s.Demo().ChangeMetadata(ctx, "acme", "sales", 0); return err },
			"the number of changes must be positive"},
		{"conflict in unsynced data space", func() error { _, err := s.Demo().MakeConflict(ctx, "acme", "acme-emea", "sales"); return err },
			`data space "sales" is not synced to companion "acme-emea"`},
		{"inject into unknown companion", func() error { return s.Demo().InjectCopyFailures(ctx, "acme", "initech", "sales", 1) },
			`org "initech" does not exist`},
		{"inject into unknown data space", func() error { return s.Demo().InjectCopyFailures(ctx, "acme", "acme-emea", "finance", 1) },
			`data space "finance" of home org "acme"`},
		{"inject a negative count", func() error { return s.Demo().InjectCopyFailures(ctx, "acme", "acme-emea", "sales", -1) },
			"n must not be negative"},
		{"resolve for unknown home", func() error { _, err := s.Demo().ResolveConflicts(ctx, "initech", "acme-emea"); return err },
			`org "initech" does not exist`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorContains(t, tt.op(), tt.want)
		})
	}
}

func testDemoOperationsChangeState(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 10)

	require.NoError(t, s.Demo().ExpireLicence(ctx, "acme"))
	o, err := s.Org(ctx, "acme")
	require.NoError(t, err)
	assert.False(t, o.LicenceExpiresAt.After(time.Now()))
	require.NoError(t, s.Demo().RenewLicence(ctx, "acme"))
	o, err = s.Org(ctx, "acme")
	require.NoError(t, err)
	assert.True(t, o.LicenceExpiresAt.After(time.Now().AddDate(0, 11, 0)))

	require.NoError(t, s.Demo().Deactivate(ctx, "acme-emea"))
	o, err = s.Org(ctx, "acme-emea")
	require.NoError(t, err)
	assert.False(t, o.Active)
	require.NoError(t, s.Demo().Reactivate(ctx, "acme-emea"))
	o, err = s.Org(ctx, "acme-emea")
	require.NoError(t, err)
	assert.True(t, o.Active)

	sh := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "marketing"}
	require.NoError(t, s.CompleteInitialSync(ctx, sh))
	conn := companionsync.Connection{Home: "acme", Companion: "acme-emea"}
	last, err := s.Demo().ChangeMetadata(ctx, "acme", "marketing", 4)
	require.NoError(t, err)
	n, upTo, err := s.PendingChanges(ctx, conn, []string{"marketing"})
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	assert.Equal(t, last, upTo)

	object, err := s.Demo().MakeConflict(ctx, "acme", "acme-emea", "marketing")
	require.NoError(t, err)
	local, err := s.LocalObjects(ctx, conn, []string{"marketing"})
	require.NoError(t, err)
	assert.Equal(t, []companionsync.LocalObject{{DataSpace: "marketing", Name: object, Edited: true}}, local)
	n, _, err = s.PendingChanges(ctx, conn, []string{"marketing"})
	require.NoError(t, err)
	assert.Equal(t, 5, n, "the conflict publishes a home change too")

	resolved, err := s.Demo().ResolveConflicts(ctx, "acme", "acme-emea")
	require.NoError(t, err)
	assert.Equal(t, 1, resolved)
	local, err = s.LocalObjects(ctx, conn, []string{"marketing"})
	require.NoError(t, err)
	assert.Empty(t, local)

	seq, err := s.Demo().PublishMetadata(ctx, "acme", "marketing", "Broken", "no-such-kind", "{")
	require.NoError(t, err)
	assert.Greater(t, seq, last)
}

func testInjectedFailures(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 1000)
	d := orgstore.WithDemoFaults(s)
	sh := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "marketing"}
	other := companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "sales"}

	const n = 3
	require.NoError(t, s.Demo().InjectCopyFailures(ctx, "acme", "acme-emea", "marketing", n))
	for i := range n {
		_, err := d.CopyBatch(ctx, sh, "", 10)
		require.Error(t, err, "batch %d", i)
		assert.EqualError(t, err, fmt.Sprintf("injected transient failure (%d left)", n-1-i))
		assert.NotErrorIs(t, err, companionsync.ErrNotFound, "an injected failure is transient")
		copied, err := s.CopiedCount(ctx, sh)
		require.NoError(t, err)
		assert.Zero(t, copied, "a failed batch copies nothing")

		b, err := d.CopyBatch(ctx, other, "", 10)
		require.NoError(t, err, "another share of the companion is not affected")
		assert.Equal(t, 10, b.Copied)
	}
	b, err := d.CopyBatch(ctx, sh, "", 10)
	require.NoError(t, err, "the failures are used up")
	assert.Equal(t, 10, b.Copied)

	// The bare store ignores injections.
	require.NoError(t, s.Demo().InjectCopyFailures(ctx, "acme", "acme-emea", "marketing", 1))
	b, err = s.CopyBatch(ctx, sh, b.Last, 10)
	require.NoError(t, err)
	assert.Equal(t, 10, b.Copied)
	_, taken, err := s.Demo().TakeInjectedFailure(ctx, sh)
	require.NoError(t, err)
	assert.True(t, taken, "the bare store left the injected failure")
	_, taken, err = s.Demo().TakeInjectedFailure(ctx, sh)
	require.NoError(t, err)
	assert.False(t, taken)

	// Concurrent takers consume each injected failure once.
	require.NoError(t, s.Demo().InjectCopyFailures(ctx, "acme", "acme-emea", "marketing", 5))
	var took atomic.Int64
	errs := concurrently(12, func(int) error {
		_, ok, err := s.Demo().TakeInjectedFailure(ctx, sh)
		if ok {
			took.Add(1)
		}
		return err
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	assert.EqualValues(t, 5, took.Load())

	// Errors of the store itself pass through.
	_, err = d.CopyBatch(ctx, companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "finance"}, "", 10)
	assert.ErrorIs(t, err, companionsync.ErrNotFound)

	// CompleteRemoval clears the share's injected failures.
	require.NoError(t, s.Demo().InjectCopyFailures(ctx, "acme", "acme-emea", "marketing", 2))
	require.NoError(t, d.CompleteRemoval(ctx, sh))
	_, err = d.CopyBatch(ctx, sh, "", 10)
	assert.NoError(t, err)
}

func testAddOrg(t *testing.T, target Target) {
	s := Open(t, target, 10)
	ctx := context.Background()
	expires := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	require.NoError(t, s.Demo().AddOrg(ctx, companionsync.Org{ID: "initech", Role: companionsync.RoleHome, Kind: companionsync.KindSandbox, LicenceExpiresAt: expires, MaxCompanions: 7}))
	require.NoError(t, s.Demo().AddOrg(ctx, companionsync.Org{ID: "initech-eu", Role: companionsync.RoleCompanion, Kind: companionsync.KindSandbox, Active: true}))
	require.NoError(t, s.Demo().AddOrg(ctx, companionsync.Org{ID: "initech-old", Role: companionsync.RoleCompanion, Kind: companionsync.KindSandbox}))

	home, err := s.Org(ctx, "initech")
	require.NoError(t, err)
	assert.Equal(t, companionsync.RoleHome, home.Role)
	assert.Equal(t, 7, home.MaxCompanions)
	assert.True(t, home.Active)
	assert.True(t, home.LicenceExpiresAt.Equal(expires))
	comp, err := s.Org(ctx, "initech-eu")
	require.NoError(t, err)
	assert.True(t, comp.Active)
	old, err := s.Org(ctx, "initech-old")
	require.NoError(t, err)
	assert.False(t, old.Active)

	require.NoError(t, s.Demo().AddDataSpace(ctx, "initech", "small", 7))
	n, err := s.RecordCount(ctx, "initech", "small")
	require.NoError(t, err)
	assert.Equal(t, 7, n)
	assert.Error(t, s.Demo().AddDataSpace(ctx, "initech", "small", 7), "an existing data space is refused")
	assert.ErrorContains(t, s.Demo().AddDataSpace(ctx, "initech-eu", "x", 1), "not a home org")

	for name, bad := range map[string]companionsync.Org{
		"duplicate id": {ID: "acme", Role: companionsync.RoleHome, Kind: companionsync.KindProduction},
		"no id":        {Role: companionsync.RoleHome, Kind: companionsync.KindProduction},
		"bad role":     {ID: "x", Role: "admin", Kind: companionsync.KindProduction},
		"bad kind":     {ID: "x", Role: companionsync.RoleCompanion, Kind: "staging"},
	} {
		assert.Error(t, s.Demo().AddOrg(ctx, bad), name)
	}
}

// testWatches: the fleet watcher's table reads every watched connection with
// the store's current state, takes a waiting metadata sync once, and records
// what it told a connection only when the connection recorded nothing newer.
func testWatches(t *testing.T, target Target) {
	ctx := context.Background()
	s := Open(t, target, 10)
	emea := companionsync.Connection{Home: "acme", Companion: "acme-emea", Token: "t1"}
	apac := companionsync.Connection{Home: "acme", Companion: "acme-apac", Token: "t2"}
	require.NoError(t, s.Register(ctx, emea, 5))
	require.NoError(t, s.Register(ctx, apac, 5))
	got, err := s.Watched(ctx)
	require.NoError(t, err)
	assert.Empty(t, got, "nothing watched yet")

	require.NoError(t, s.Watch(ctx, emea, "h1"))
	require.NoError(t, s.Watch(ctx, apac, "h1"))
	require.NoError(t, s.CompleteInitialSync(ctx, companionsync.Share{Home: "acme", Companion: "acme-emea", DataSpace: "marketing"}))
	require.NoError(t, s.WatchMetadata(ctx, emea, []string{"marketing"}, true))
	_, err = s.Demo().ChangeMetadata(ctx, "acme", "marketing", 3)
	require.NoError(t, err)
	require.NoError(t, s.Demo().Deactivate(ctx, "acme-apac"))

	got, err = s.Watched(ctx)
	require.NoError(t, err)
	require.Len(t, got, 2)
	byCompanion := map[string]companionsync.Watched{}
	for _, w := range got {
		byCompanion[w.Companion] = w
	}
	e, a := byCompanion["acme-emea"], byCompanion["acme-apac"]
	assert.Equal(t, "h1", e.Health)
	assert.Equal(t, "t1", e.Token)
	assert.True(t, e.CompanionOrg.Active)
	assert.False(t, a.CompanionOrg.Active, "read as it is now")
	assert.False(t, e.HomeOrg.LicenceExpiresAt.IsZero())
	assert.Equal(t, 2, e.CompanionsUsed)
	assert.Contains(t, e.DataSpaces, "marketing")
	assert.True(t, e.MetadataWaiting)
	assert.Equal(t, []string{"marketing"}, e.MetadataSpaces)
	assert.Equal(t, 3, e.PendingChanges)
	assert.False(t, a.MetadataWaiting)
	assert.Zero(t, a.PendingChanges)

	ok, err := s.SwapMetadataWaiting(ctx, emea, true, false)
	require.NoError(t, err)
	assert.True(t, ok, "a waiting sync is taken")
	ok, err = s.SwapMetadataWaiting(ctx, emea, true, false)
	require.NoError(t, err)
	assert.False(t, ok, "and only once")

	ok, err = s.Told(ctx, apac, "h1", "h2")
	require.NoError(t, err)
	assert.True(t, ok)
	require.NoError(t, s.Watch(ctx, apac, "h3")) // the connection's own check
	ok, err = s.Told(ctx, apac, "h2", "h4")
	require.NoError(t, err)
	assert.False(t, ok, "the connection's newer record wins")

	require.NoError(t, s.Unwatch(ctx, apac))
	require.NoError(t, s.Unwatch(ctx, apac), "idempotent")
	got, err = s.Watched(ctx)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "acme-emea", got[0].Companion)
}
