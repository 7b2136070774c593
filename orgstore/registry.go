package orgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/companionsync/companionsync"
)

// DataSpaces returns the names of the home org's data spaces, sorted. An
// unknown home org is an error wrapping companionsync.ErrNotFound.
func (s *Store) DataSpaces(ctx context.Context, home string) ([]string, error) {
	if _, err := orgOf(ctx, s.db, home); err != nil {
		return nil, fmt.Errorf("list data spaces: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM data_spaces WHERE home = ? ORDER BY name`, home)
	if err != nil {
		return nil, fmt.Errorf("list data spaces of %q: %w", home, err)
	}
	defer rows.Close()
	names := []string{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("list data spaces of %q: %w", home, err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list data spaces of %q: %w", home, err)
	}
	return names, nil
}

// ConnectionOf returns the connection the companion is registered in, or an
// error wrapping companionsync.ErrNotFound.
func (s *Store) ConnectionOf(ctx context.Context, companion string) (companionsync.Connection, error) {
	return connectionOf(ctx, s.db, companion)
}

func connectionOf(ctx context.Context, q querier, companion string) (companionsync.Connection, error) {
	c := companionsync.Connection{Companion: companion}
	err := q.QueryRowContext(ctx, `SELECT home, token FROM connections WHERE companion = ?`, companion).
		Scan(&c.Home, &c.Token)
	if errors.Is(err, sql.ErrNoRows) {
		return companionsync.Connection{}, fmt.Errorf("connection of companion %q: %w", companion, companionsync.ErrNotFound)
	}
	if err != nil {
		return companionsync.Connection{}, fmt.Errorf("read connection of companion %q: %w", companion, err)
	}
	return c, nil
}

// Register records c atomically; see companionsync.Registry.Register.
//
// On PostgreSQL, the home's and the companion's org rows are locked first
// (in id order, so two registrations never deadlock): registrations of one
// home, or of one companion, then run one after another, and the limit
// check and the insert cannot interleave with another registration's.
func (s *Store) Register(ctx context.Context, c companionsync.Connection, maxCompanions int) error {
	return s.inTx(ctx, func(tx querier) error {
		if lock := s.dialect.forUpdate(); lock != "" {
			rows, err := tx.QueryContext(ctx, `SELECT id FROM orgs WHERE id IN (?, ?) ORDER BY id`+lock, c.Home, c.Companion)
			if err != nil {
				return fmt.Errorf("register %s/%s: lock orgs: %w", c.Home, c.Companion, err)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("register %s/%s: lock orgs: %w", c.Home, c.Companion, err)
			}
		}
		existing, err := connectionOf(ctx, tx, c.Companion)
		switch {
		case err == nil && existing == c:
			return nil
		case err == nil:
			return fmt.Errorf("register %s/%s: companion is already a companion of %q: %w",
				c.Home, c.Companion, existing.Home, companionsync.ErrCompanionTaken)
		case !errors.Is(err, companionsync.ErrNotFound):
			return fmt.Errorf("register %s/%s: %w", c.Home, c.Companion, err)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM connections WHERE home = ?`, c.Home).Scan(&n); err != nil {
			return fmt.Errorf("register %s/%s: count connections: %w", c.Home, c.Companion, err)
		}
		if n >= maxCompanions {
			return fmt.Errorf("register %s/%s: home has %d of %d companions: %w",
				c.Home, c.Companion, n, maxCompanions, companionsync.ErrCompanionLimit)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO connections (companion, home, token, connected_at) VALUES (?, ?, ?, ?)`,
			c.Companion, c.Home, c.Token, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("register %s/%s: %w", c.Home, c.Companion, err)
		}
		return nil
	})
}

// Deregister removes the connection home/companion; see
// companionsync.Registry.Deregister.
func (s *Store) Deregister(ctx context.Context, home, companion string) error {
	if _, err := s.db.ExecContext(ctx,
		`DELETE FROM connections WHERE home = ? AND companion = ?`, home, companion); err != nil {
		return fmt.Errorf("deregister %s/%s: %w", home, companion, err)
	}
	return nil
}

// CompanionCount returns the number of companions registered with the
// home; see companionsync.Registry.CompanionCount.
func (s *Store) CompanionCount(ctx context.Context, home string) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM connections WHERE home = ?`, home).Scan(&n); err != nil {
		return 0, fmt.Errorf("count companions of %s: %w", home, err)
	}
	return n, nil
}

// Connections returns a page of the registry in companion order; see
// companionsync.Registry.Connections.
func (s *Store) Connections(ctx context.Context, after string, limit int) ([]companionsync.Connection, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list connections: limit %d must be positive", limit)
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT companion, home, token FROM connections WHERE companion > ? ORDER BY companion LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list connections after %q: %w", after, err)
	}
	defer rows.Close()
	page := []companionsync.Connection{}
	for rows.Next() {
		var c companionsync.Connection
		if err := rows.Scan(&c.Companion, &c.Home, &c.Token); err != nil {
			return nil, fmt.Errorf("list connections after %q: %w", after, err)
		}
		page = append(page, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list connections after %q: %w", after, err)
	}
	return page, nil
}
