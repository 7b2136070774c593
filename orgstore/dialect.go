package orgstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
)

// dialect is the SQL flavour of a store's database. The statements of the
// port are written once, with ? placeholders; the dialect rewrites the
// placeholders and supplies the few clauses that differ.
type dialect int

const (
	dialectSQLite dialect = iota
	dialectPostgres
)

func (d dialect) String() string {
	if d == dialectPostgres {
		return "postgres"
	}
	return "sqlite"
}

// forUpdate is the row-lock clause for a SELECT inside a write transaction.
// PostgreSQL runs transactions at READ COMMITTED, so a transaction that
// reads a row and then writes depending on it locks the row. SQLite needs
// no clause: its write transactions start with the database's write lock
// (BEGIN IMMEDIATE), so they never interleave.
func (d dialect) forUpdate() string {
	if d == dialectPostgres {
		return " FOR UPDATE"
	}
	return ""
}

// forShare is the shared row-lock clause: it keeps writers that lock the
// row FOR UPDATE out until the transaction ends, without excluding other
// readers that lock it FOR SHARE.
func (d dialect) forShare() string {
	if d == dialectPostgres {
		return " FOR SHARE"
	}
	return ""
}

// bind rewrites the ? placeholders of query into the dialect's form ($1,
// $2, ... for PostgreSQL). The project's statements hold no ? inside string
// literals, so every ? is a placeholder.
func (d dialect) bind(query string) string {
	if d != dialectPostgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] != '?' {
			b.WriteByte(query[i])
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// bound is a querier whose statements are bound to a dialect.
type bound struct {
	q querier
	d dialect
}

func (b bound) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return b.q.ExecContext(ctx, b.d.bind(query), args...)
}

func (b bound) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return b.q.QueryContext(ctx, b.d.bind(query), args...)
}

func (b bound) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return b.q.QueryRowContext(ctx, b.d.bind(query), args...)
}

// boolInt stores a boolean in the schema's 0/1 INTEGER columns.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
