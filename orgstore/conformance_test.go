package orgstore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/orgstore"
	"github.com/companionsync/companionsync/orgstore/storetest"
)

// The conformance suite runs on both databases. Without a reachable
// PostgreSQL the PostgreSQL runs skip, with the reason, except under
// CI=true (see storetest.Postgres).
func TestConformanceSQLite(t *testing.T)   { storetest.Run(t, storetest.SQLite()) }
func TestConformancePostgres(t *testing.T) { storetest.Run(t, storetest.Postgres()) }

// TestOpenRefusesWhatItCannotUse: each bad target stops Open with one line
// that says what to fix, and never shows a password.
func TestOpenRefusesWhatItCannotUse(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name, target, want string
	}{
		{"empty path", "", "want a database file path or a postgres:// URL"},
		{"memory", ":memory:", "want a database file path or a postgres:// URL"},
		{"malformed URL", "postgres://user:secret@127.0.0.1:notaport/db", "malformed PostgreSQL URL"},
		{"unreachable", "postgres://user:secret@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", "cannot reach PostgreSQL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := orgstore.Open(ctx, tt.target)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "secret", "the password stays out of errors")
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

// TestOpenRefusesANewerSchema: a database migrated by a newer binary is
// refused on both databases, and left as it is.
func TestOpenRefusesANewerSchema(t *testing.T) {
	ctx := context.Background()
	for name, target := range map[string]storetest.Target{"sqlite": storetest.SQLite(), "postgres": storetest.Postgres()} {
		t.Run(name, func(t *testing.T) {
			where := target(t)
			s, err := orgstore.Open(ctx, where)
			require.NoError(t, err)
			require.NoError(t, s.Close())

			driver, dsn := "sqlite", where
			if orgstore.IsURL(where) {
				driver = "pgx"
			}
			raw, err := sql.Open(driver, dsn)
			require.NoError(t, err)
			defer raw.Close()
			_, err = raw.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)`)
			require.NoError(t, err)

			_, err = orgstore.Open(ctx, where)
			require.ErrorIs(t, err, orgstore.ErrSchemaTooNew)
			assert.Contains(t, err.Error(), "at version 99, this binary knows 1")
			var n int
			require.NoError(t, raw.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n))
			assert.Equal(t, 2, n, "nothing was applied")
		})
	}
}

func TestIsURL(t *testing.T) {
	for target, want := range map[string]bool{
		"postgres://h/db": true, "postgresql://h/db": true,
		"orgs.db": false, filepath.Join("data", "postgres.db"): false, "": false,
	} {
		assert.Equal(t, want, orgstore.IsURL(target), target)
	}
	assert.True(t, strings.HasPrefix(storetest.DefaultPostgresURL, "postgres://"))
}
