// Package orgstore is the SQL system of record behind the activities: orgs,
// the connection registry, data spaces with their records and metadata, the
// metadata change log (an outbox per home org), per-share metadata cursors,
// the companion-side copies and local edits, the error log, and demo fault
// injections. Store implements companionsync.Orgs on SQLite
// (modernc.org/sqlite, pure Go, one file: the embedded default) or on
// PostgreSQL (github.com/jackc/pgx/v5: several worker processes, the
// production choice). Open picks the database from its argument: a
// postgres:// URL or a file path.
//
// The statements are shared by both databases (upserts with ON CONFLICT, no
// database-only functions); each has its own schema migrations and its own
// locking: SQLite serialises write transactions on the database lock, while
// PostgreSQL runs them at READ COMMITTED and locks the rows a decision
// depends on (see dialect.forUpdate and the methods' comments).
//
// Store holds what production code calls: the port, Open, Close and the
// schema version. Demo (Store.Demo) is the demo and test side: demo
// seeding (Seed), the demo operations the CLI calls (ExpireLicence,
// MakeConflict, InjectCopyFailures, ...) and read helpers for tests and
// operators (CountRecords, RecordChecksum, ErrorLog, ...). Copy failures
// injected with InjectCopyFailures take effect only through DemoFaults
// (WithDemoFaults), the port as the demo worker wires it; Store itself never
// fails a copy on purpose.
package orgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	"github.com/companionsync/companionsync"
)

var _ companionsync.Orgs = (*Store)(nil)

// Store is an org store backed by a SQLite database file or a PostgreSQL
// database. It is safe for concurrent use by many goroutines, and by several
// processes sharing the database.
type Store struct {
	sqlDB   *sql.DB
	db      bound // sqlDB bound to the dialect
	dialect dialect
	target  string // the file path, or the URL without its password
}

// BusyTimeout is how long a SQLite write waits for another writer before
// failing.
const BusyTimeout = 10 * time.Second

// connectTimeout bounds how long Open waits for PostgreSQL to answer.
const connectTimeout = 10 * time.Second

// IsURL reports whether target names a PostgreSQL database (a postgres:// or
// postgresql:// URL) rather than a SQLite file.
func IsURL(target string) bool {
	return strings.HasPrefix(target, "postgres://") || strings.HasPrefix(target, "postgresql://")
}

// Open opens the org store target names and applies any pending schema
// migrations: a postgres:// (or postgresql://) URL opens that PostgreSQL
// database, anything else is the path of a SQLite file, created if needed.
// Open fails, with an error that says what to fix, when the URL is
// malformed, the database cannot be reached, or its schema is newer than
// this binary knows. Close the store when done.
func Open(ctx context.Context, target string) (*Store, error) {
	if IsURL(target) {
		return openPostgres(ctx, target)
	}
	return openSQLite(ctx, target)
}

// openSQLite opens the SQLite database at path, with WAL journaling, a busy
// timeout and foreign keys on.
func openSQLite(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.Contains(path, ":memory:") {
		return nil, fmt.Errorf("open org store: want a database file path or a postgres:// URL, got %q", path)
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
	return finishOpen(ctx, db, dialectSQLite, path)
}

// openPostgres opens the PostgreSQL database rawURL names, through pgx's
// database/sql driver: the port's methods are short transactions of
// set-based statements, which database/sql's pool serves well, and both
// databases then share one implementation.
func openPostgres(ctx context.Context, rawURL string) (*Store, error) {
	shown := redact(rawURL)
	if _, err := pgx.ParseConfig(rawURL); err != nil {
		return nil, fmt.Errorf("open org store %s: malformed PostgreSQL URL (want postgres://user[:password]@host:port/database?sslmode=disable): %v", shown, shortError(err))
	}
	db, err := sql.Open("pgx", rawURL)
	if err != nil {
		return nil, fmt.Errorf("open org store %s: %w", shown, err)
	}
	// Several workers share the database: keep each one's share of the
	// server's connections modest.
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open org store %s: cannot reach PostgreSQL (is it running, and does the database exist?): %v", shown, shortError(err))
	}
	return finishOpen(ctx, db, dialectPostgres, shown)
}

// finishOpen migrates the schema of a newly opened database.
func finishOpen(ctx context.Context, db *sql.DB, d dialect, target string) (*Store, error) {
	s := &Store{sqlDB: db, db: bound{q: db, d: d}, dialect: d, target: target}
	err := s.migrate(ctx)
	// Processes opening a new SQLite file together can find it locked
	// while another one switches it to WAL mode, a moment the busy timeout
	// does not cover: try again for up to BusyTimeout.
	for deadline := time.Now().Add(BusyTimeout); d == dialectSQLite && isBusy(err) && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(50 * time.Millisecond):
			err = s.migrate(ctx)
		}
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open org store %s: %w", target, err)
	}
	return s, nil
}

// isBusy reports a SQLite "database is locked" error.
func isBusy(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "database is locked"))
}

// redact hides the password of a database URL.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// shortError is the first line of err, so a start-up failure stays one line.
func shortError(err error) string {
	return firstLine(err.Error())
}

// String names the store's database: its file path, or its URL without the
// password.
func (s *Store) String() string { return s.target }

// Close closes the database.
func (s *Store) Close() error {
	if err := s.sqlDB.Close(); err != nil {
		return fmt.Errorf("close org store: %w", err)
	}
	return nil
}

// ErrSchemaTooNew reports a database migrated by a newer binary.
var ErrSchemaTooNew = errors.New("org store schema is newer than this binary")

// migrationLock is the PostgreSQL advisory lock key that serialises
// migrations and seeding of workers starting at once.
const migrationLock = 0x636f6d70 // "comp"

// migrate applies the migrations not yet recorded in schema_migrations, in
// order. On PostgreSQL, all of them run in one transaction under an
// advisory lock, so workers starting together never race; on SQLite each
// runs in its own write transaction, which holds the database lock.
func (s *Store) migrate(ctx context.Context) error {
	steps := s.migrations()
	return s.inTx(ctx, func(tx querier) error {
		if s.dialect == dialectPostgres {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, migrationLock); err != nil {
				return fmt.Errorf("lock for migration: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			applied_at BIGINT NOT NULL
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var have sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&have); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if int(have.Int64) > len(steps) {
			return fmt.Errorf("%w: the database is at version %d, this binary knows %d; run a newer worker, or point it at another store",
				ErrSchemaTooNew, have.Int64, len(steps))
		}
		for i, stmts := range steps[have.Int64:] {
			version := int(have.Int64) + i + 1
			for _, stmt := range stmts {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("apply migration %d: %w in %q", version, err, firstLine(stmt))
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
				version, time.Now().UnixMilli()); err != nil {
				return fmt.Errorf("record migration %d: %w", version, err)
			}
		}
		for _, stmt := range additiveSchema {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("apply additive schema: %w in %q", err, firstLine(stmt))
			}
		}
		return nil
	})
}

// migrations returns the schema versions of the store's database.
func (s *Store) migrations() [][]string {
	if s.dialect == dialectPostgres {
		return postgresMigrations
	}
	return sqliteMigrations
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
func (s *Store) inTx(ctx context.Context, fn func(tx querier) error) error {
	tx, err := s.sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(bound{q: tx, d: s.dialect}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
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

// lockDataSpace locks the data space's row with clause (the dialect's
// forUpdate or forShare; empty on SQLite) until the transaction ends.
func lockDataSpace(ctx context.Context, tx querier, clause string, ds int64) error {
	if clause == "" {
		return nil
	}
	var id int64
	if err := tx.QueryRowContext(ctx, `SELECT id FROM data_spaces WHERE id = ?`+clause, ds).Scan(&id); err != nil {
		return fmt.Errorf("lock data space %d: %w", ds, err)
	}
	return nil
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
