package orgstore

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// open opens a store in a fresh temporary directory, seeded with records
// per default data space unless records is 0.
func open(t testing.TB, records int) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "orgs.db"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	if records > 0 {
		require.NoError(t, s.Demo().Seed(context.Background(), SeedOptions{RecordsPerDataSpace: records}))
	}
	return s
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "orgs.db")
	s, err := Open(ctx, path)
	require.NoError(t, err)
	v, err := s.SchemaVersion(ctx)
	require.NoError(t, err)
	assert.Equal(t, len(sqliteMigrations), v)
	var mode string
	require.NoError(t, s.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode))
	assert.Equal(t, "wal", mode)
	var fk int
	require.NoError(t, s.db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk))
	assert.Equal(t, 1, fk)
	require.NoError(t, s.Demo().Seed(ctx, SeedOptions{RecordsPerDataSpace: 10}))
	require.NoError(t, s.Close())

	s, err = Open(ctx, path)
	require.NoError(t, err, "reopening applies no migration twice")
	defer s.Close()
	var applied int
	require.NoError(t, s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&applied))
	assert.Equal(t, len(sqliteMigrations), applied)
	n, err := s.Demo().CountRecords(ctx, "acme", "default")
	require.NoError(t, err)
	assert.Equal(t, 10, n, "data survives a reopen")
}
