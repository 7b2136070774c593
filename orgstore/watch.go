package orgstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/companionsync/companionsync"
)

// The watch table: what each connection that waits without timers last saw
// (its health digest, and whether its metadata sync waits for changes), read
// by the fleet watcher in a few queries per sweep whatever the fleet size.

// Watch records the health digest a connection saw, and watches it from now
// on.
func (s *Store) Watch(ctx context.Context, c companionsync.Connection, health string) error {
	if _, err := s.db.ExecContext(ctx,
		`INSERT INTO watches (home, companion, health, metadata_spaces, metadata_waiting) VALUES (?, ?, ?, '[]', 0)
		 ON CONFLICT (home, companion) DO UPDATE SET health = excluded.health`,
		c.Home, c.Companion, health); err != nil {
		return fmt.Errorf("watch %s/%s: %w", c.Home, c.Companion, err)
	}
	return nil
}

// Told records that the watcher told the connection of health digest to,
// unless the connection recorded another digest than from meanwhile (its
// own check, newer than the sweep's read): it reports whether it did.
func (s *Store) Told(ctx context.Context, c companionsync.Connection, from, to string) (bool, error) {
	res, err := s.db.ExecContext(ctx,
		`UPDATE watches SET health = ? WHERE home = ? AND companion = ? AND health = ?`, to, c.Home, c.Companion, from)
	if err != nil {
		return false, fmt.Errorf("record the health told to %s/%s: %w", c.Home, c.Companion, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// WatchMetadata records whether the connection's metadata sync waits for
// changes in spaces without a timer.
func (s *Store) WatchMetadata(ctx context.Context, c companionsync.Connection, spaces []string, waiting bool) error {
	if spaces == nil {
		spaces = []string{}
	}
	list, _ := json.Marshal(spaces)
	if _, err := s.db.ExecContext(ctx,
		`INSERT INTO watches (home, companion, health, metadata_spaces, metadata_waiting) VALUES (?, ?, '', ?, ?)
		 ON CONFLICT (home, companion) DO UPDATE SET metadata_spaces = excluded.metadata_spaces, metadata_waiting = excluded.metadata_waiting`,
		c.Home, c.Companion, string(list), boolInt(waiting)); err != nil {
		return fmt.Errorf("watch the metadata of %s/%s: %w", c.Home, c.Companion, err)
	}
	return nil
}

// SwapMetadataWaiting sets whether the connection's metadata sync waits
// to to, if it is from, and reports whether it was: the watcher takes a
// waiting sync before it wakes it, so that the sync's own record, written
// after the wake, is never overwritten by the watcher's.
func (s *Store) SwapMetadataWaiting(ctx context.Context, c companionsync.Connection, from, to bool) (bool, error) {
	res, err := s.db.ExecContext(ctx,
		`UPDATE watches SET metadata_waiting = ? WHERE home = ? AND companion = ? AND metadata_waiting = ?`,
		boolInt(to), c.Home, c.Companion, boolInt(from))
	if err != nil {
		return false, fmt.Errorf("take the waiting metadata sync of %s/%s: %w", c.Home, c.Companion, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Unwatch stops watching the connection (it disconnected). Idempotent.
func (s *Store) Unwatch(ctx context.Context, c companionsync.Connection) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM watches WHERE home = ? AND companion = ?`, c.Home, c.Companion); err != nil {
		return fmt.Errorf("unwatch %s/%s: %w", c.Home, c.Companion, err)
	}
	return nil
}

// Watched reads every watched connection with the store's current state of
// its orgs, data spaces, companion count and, where its metadata sync
// waits, pending changes: four queries, whatever the number of connections.
// A connection whose org no longer exists is left out (the reconciler
// reports it).
func (s *Store) Watched(ctx context.Context) ([]companionsync.Watched, error) {
	var out []companionsync.Watched
	homes := map[string]bool{}
	err := s.rows(ctx, "read the watched connections",
		`SELECT w.home, w.companion, COALESCE(k.token, ''), w.health, w.metadata_spaces, w.metadata_waiting,
		        h.kind, h.licence_expires_at, h.max_companions, c.kind, c.active
		 FROM watches w
		 JOIN orgs h ON h.id = w.home
		 JOIN orgs c ON c.id = w.companion
		 LEFT JOIN connections k ON k.companion = w.companion AND k.home = w.home
		 ORDER BY w.home, w.companion`, nil,
		func(r *sql.Rows) error {
			var (
				w       companionsync.Watched
				spaces  string
				expires sql.NullInt64
				hk, ck  string
			)
			if err := r.Scan(&w.Home, &w.Companion, &w.Token, &w.Health, &spaces, &w.MetadataWaiting,
				&hk, &expires, &w.HomeOrg.MaxCompanions, &ck, &w.CompanionOrg.Active); err != nil {
				return err
			}
			w.HomeOrg.ID, w.HomeOrg.Role, w.HomeOrg.Kind, w.HomeOrg.Active = w.Home, companionsync.RoleHome, companionsync.Kind(hk), true
			w.CompanionOrg.ID, w.CompanionOrg.Kind = w.Companion, companionsync.Kind(ck)
			if expires.Valid {
				w.HomeOrg.LicenceExpiresAt = time.UnixMilli(expires.Int64).UTC()
			}
			if err := json.Unmarshal([]byte(spaces), &w.MetadataSpaces); err != nil {
				return fmt.Errorf("metadata data spaces of %s/%s: %w", w.Home, w.Companion, err)
			}
			homes[w.Home] = true
			out = append(out, w)
			return nil
		})
	if err != nil || len(out) == 0 {
		return out, err
	}
	spaces := map[string][]string{}
	err = s.rows(ctx, "read the data spaces of the watched homes",
		`SELECT home, name FROM data_spaces WHERE home IN (SELECT home FROM watches) ORDER BY home, name`, nil,
		func(r *sql.Rows) error {
			var home, name string
			if err := r.Scan(&home, &name); err != nil {
				return err
			}
			spaces[home] = append(spaces[home], name)
			return nil
		})
	if err != nil {
		return nil, err
	}
	used := map[string]int{}
	err = s.rows(ctx, "count the companions of the watched homes",
		`SELECT home, COUNT(*) FROM connections WHERE home IN (SELECT home FROM watches) GROUP BY home`, nil,
		func(r *sql.Rows) error {
			var home string
			var n int
			if err := r.Scan(&home, &n); err != nil {
				return err
			}
			used[home] = n
			return nil
		})
	if err != nil {
		return nil, err
	}
	// Pending changes per companion and data space, of the metadata syncs
	// that wait only.
	pending := map[[2]string]int{}
	err = s.rows(ctx, "count the pending metadata changes of the waiting syncs",
		`SELECT k.companion, d.name, COUNT(*)
		 FROM metadata_changes c
		 JOIN data_spaces d ON d.id = c.data_space_id
		 JOIN metadata_cursors k ON k.data_space_id = c.data_space_id
		 JOIN watches w ON w.companion = k.companion AND w.home = d.home
		 WHERE w.metadata_waiting = 1 AND c.seq > k.seq
		 GROUP BY k.companion, d.name`, nil,
		func(r *sql.Rows) error {
			var companion, name string
			var n int
			if err := r.Scan(&companion, &name, &n); err != nil {
				return err
			}
			pending[[2]string{companion, name}] = n
			return nil
		})
	if err != nil {
		return nil, err
	}
	for i := range out {
		w := &out[i]
		w.DataSpaces, w.CompanionsUsed = spaces[w.Home], used[w.Home]
		if w.DataSpaces == nil {
			w.DataSpaces = []string{}
		}
		if w.MetadataWaiting {
			for _, ds := range w.MetadataSpaces {
				w.PendingChanges += pending[[2]string{w.Companion, ds}]
			}
		}
	}
	return out, nil
}

// rows runs a query and calls scan for each row.
func (s *Store) rows(ctx context.Context, doing, query string, args []any, scan func(*sql.Rows) error) error {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("%s: %w", doing, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	return nil
}
