// Package orgstore is the SQL system of record behind the activities: orgs,
// the connection registry, data spaces with their records and metadata, the
// metadata change log (an outbox per home org), per-share metadata cursors,
// the companion-side copies and local edits, the error log, and demo fault
// injections. Store implements companionsync.Orgs on SQLite
// (modernc.org/sqlite, pure Go); the SQL is kept portable (upserts with ON
// CONFLICT, no SQLite-only functions) so a PostgreSQL implementation can
// follow.
//
// Besides the port, Store offers demo seeding (Seed), the demo operations the
// CLI calls (ExpireLicence, MakeConflict, InjectCopyFailures, ...) and read
// helpers for tests and operators (CountRecords, RecordChecksum, ErrorLog).
// Copy failures injected with InjectCopyFailures take effect only through
// DemoFaults (WithDemoFaults), the port as the demo worker wires it; Store
// itself never fails a copy on purpose.
package orgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/companionsync/companionsync"
)

var _ companionsync.Orgs = (*Store)(nil)

// Store is an org store backed by one SQLite database file. It is safe for
// concurrent use by many goroutines and by several processes sharing the
// file (writes serialise on the database lock, waiting up to BusyTimeout).
type Store struct {
	db *sql.DB
}

// BusyTimeout is how long a write waits for another writer before failing.
const BusyTimeout = 10 * time.Second

// Open opens (creating if needed) the SQLite database at path, with WAL
// journaling, a busy timeout and foreign keys on, and applies any pending
// schema migrations. Close the store when done.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.Contains(path, ":memory:") {
		return nil, fmt.Errorf("open org store: want a database file path, got %q", path)
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// Write transactions take the write lock up front, so a transaction that
	// reads then writes never fails on a lock upgrade.
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open org store %s: %w", path, err)
	}
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open org store %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close org store: %w", err)
	}
	return nil
}

// migrate applies, in order and each in its own transaction, the migrations
// not yet recorded in schema_migrations.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for i, stmts := range migrations {
		version := i + 1
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range stmts {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%w in %q", err, firstLine(stmt))
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
				version, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %d: %w", version, err)
		}
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// SchemaVersion returns the number of migrations applied.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}

// inTx runs fn in a write transaction, committing when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// dataSpaceID resolves a home's data space name to its id.
func dataSpaceID(ctx context.Context, q querier, home, name string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM data_spaces WHERE home = ? AND name = ?`, home, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("data space %q of home org %q: %w", name, home, companionsync.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("look up data space %q of home org %q: %w", name, home, err)
	}
	return id, nil
}

// orgOf reads one org.
func orgOf(ctx context.Context, q querier, id string) (companionsync.Org, error) {
	var (
		o       companionsync.Org
		role    string
		kind    string
		expires sql.NullInt64
		active  bool
	)
	err := q.QueryRowContext(ctx,
		`SELECT id, role, kind, licence_expires_at, max_companions, active FROM orgs WHERE id = ?`, id).
		Scan(&o.ID, &role, &kind, &expires, &o.MaxCompanions, &active)
	if errors.Is(err, sql.ErrNoRows) {
		return companionsync.Org{}, fmt.Errorf("org %q: %w", id, companionsync.ErrNotFound)
	}
	if err != nil {
		return companionsync.Org{}, fmt.Errorf("read org %q: %w", id, err)
	}
	o.Role, o.Kind, o.Active = companionsync.Role(role), companionsync.Kind(kind), active
	if expires.Valid {
		o.LicenceExpiresAt = time.UnixMilli(expires.Int64).UTC()
	}
	return o, nil
}

// Org returns the org with the given id, or an error wrapping
// companionsync.ErrNotFound.
func (s *Store) Org(ctx context.Context, id string) (companionsync.Org, error) {
	return orgOf(ctx, s.db, id)
}
