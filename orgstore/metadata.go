package orgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/companionsync/companionsync"
)

// checkDataSpaces fails with an error wrapping companionsync.ErrNotFound naming
// the first of names that the home does not have.
func checkDataSpaces(ctx context.Context, q querier, home string, names []string) error {
	for _, n := range names {
		if _, err := dataSpaceID(ctx, q, home, n); err != nil {
			return err
		}
	}
	return nil
}

// inList returns "?, ?, ?" for n placeholders and names as arguments.
func inList(names []string) (string, []any) {
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = n
	}
	return strings.TrimSuffix(strings.Repeat("?, ", len(names)), ", "), args
}

// unappliedFrom is the FROM/WHERE clause selecting a connection's unapplied
// changes in some data spaces; its arguments are companion, home, the names.
const unappliedFrom = `
	FROM metadata_changes c
	JOIN data_spaces d ON d.id = c.data_space_id
	JOIN metadata_cursors k ON k.data_space_id = c.data_space_id AND k.companion = ?
	WHERE d.home = ? AND c.seq > k.seq AND d.name IN (%s)`

// PendingChanges counts the connection's unapplied changes; see
// companionsync.Metadata.PendingChanges.
func (s *Store) PendingChanges(ctx context.Context, c companionsync.Connection, dataSpaces []string) (int, int64, error) {
	if err := checkDataSpaces(ctx, s.db, c.Home, dataSpaces); err != nil {
		return 0, 0, fmt.Errorf("count pending changes of %s/%s: %w", c.Home, c.Companion, err)
	}
	if len(dataSpaces) == 0 {
		return 0, 0, nil
	}
	list, names := inList(dataSpaces)
	var (
		n    int
		upTo int64
	)
	err := s.db.QueryRowContext(ctx,
		`SELECT COUNT(*), COALESCE(MAX(c.seq), 0)`+fmt.Sprintf(unappliedFrom, list),
		append([]any{c.Companion, c.Home}, names...)...).Scan(&n, &upTo)
	if err != nil {
		return 0, 0, fmt.Errorf("count pending changes of %s/%s: %w", c.Home, c.Companion, err)
	}
	return n, upTo, nil
}

// Changes returns the connection's unapplied changes up to upTo; see
// companionsync.Metadata.Changes.
func (s *Store) Changes(ctx context.Context, c companionsync.Connection, dataSpaces []string, upTo int64) ([]companionsync.Change, error) {
	if err := checkDataSpaces(ctx, s.db, c.Home, dataSpaces); err != nil {
		return nil, fmt.Errorf("read changes of %s/%s: %w", c.Home, c.Companion, err)
	}
	if len(dataSpaces) == 0 {
		return nil, nil
	}
	list, names := inList(dataSpaces)
	rows, err := s.db.QueryContext(ctx,
		`SELECT c.seq, d.name, c.object, c.kind, c.version, c.definition`+
			fmt.Sprintf(unappliedFrom, list)+` AND c.seq <= ? ORDER BY c.seq`,
		append(append([]any{c.Companion, c.Home}, names...), upTo)...)
	if err != nil {
		return nil, fmt.Errorf("read changes of %s/%s: %w", c.Home, c.Companion, err)
	}
	defer rows.Close()
	var out []companionsync.Change
	for rows.Next() {
		var ch companionsync.Change
		if err := rows.Scan(&ch.Sequence, &ch.DataSpace, &ch.Object, &ch.ObjectKind, &ch.Version, &ch.Definition); err != nil {
			return nil, fmt.Errorf("read changes of %s/%s: %w", c.Home, c.Companion, err)
		}
		out = append(out, ch)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read changes of %s/%s: %w", c.Home, c.Companion, err)
	}
	return out, nil
}

// LocalObjects returns the companion's locally edited copies and local
// objects in the data spaces; see companionsync.Metadata.LocalObjects.
func (s *Store) LocalObjects(ctx context.Context, c companionsync.Connection, dataSpaces []string) ([]companionsync.LocalObject, error) {
	if len(dataSpaces) == 0 {
		return nil, nil
	}
	list, names := inList(dataSpaces)
	args := append([]any{c.Companion, c.Home}, names...)
	rows, err := s.db.QueryContext(ctx, fmt.Sprintf(`
		SELECT d.name, m.name, 1 FROM companion_metadata m JOIN data_spaces d ON d.id = m.data_space_id
		WHERE m.companion = ? AND d.home = ? AND d.name IN (%[1]s) AND m.local_edit = 1
		UNION ALL
		SELECT d.name, l.name, 0 FROM companion_local_objects l JOIN data_spaces d ON d.id = l.data_space_id
		WHERE l.companion = ? AND d.home = ? AND d.name IN (%[1]s)`, list),
		append(args, args...)...)
	if err != nil {
		return nil, fmt.Errorf("read local objects of %s: %w", c.Companion, err)
	}
	defer rows.Close()
	var out []companionsync.LocalObject
	for rows.Next() {
		var o companionsync.LocalObject
		if err := rows.Scan(&o.DataSpace, &o.Name, &o.Edited); err != nil {
			return nil, fmt.Errorf("read local objects of %s: %w", c.Companion, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read local objects of %s: %w", c.Companion, err)
	}
	return out, nil
}

// ApplyChange applies one change exactly once; see
// companionsync.Metadata.ApplyChange.
func (s *Store) ApplyChange(ctx context.Context, c companionsync.Connection, ch companionsync.Change) (bool, error) {
	applied := false
	err := s.inTx(ctx, func(tx querier) error {
		ds, err := dataSpaceID(ctx, tx, c.Home, ch.DataSpace)
		if err != nil {
			return err
		}
		// The cursor row is locked (on PostgreSQL; SQLite's write lock
		// covers it): a concurrent apply of the same change waits here, then
		// reads the advanced cursor and applies nothing.
		var cursor int64
		err = tx.QueryRowContext(ctx,
			`SELECT seq FROM metadata_cursors WHERE companion = ? AND data_space_id = ?`+s.dialect.forUpdate(),
			c.Companion, ds).Scan(&cursor)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && cursor >= ch.Sequence) {
			return nil // no longer shared, or applied before
		}
		if err != nil {
			return fmt.Errorf("read cursor: %w", err)
		}
		var edits int
		if err := tx.QueryRowContext(ctx, `
			SELECT (SELECT COUNT(*) FROM companion_metadata
			        WHERE companion = ? AND data_space_id = ? AND name = ? AND local_edit = 1)
			     + (SELECT COUNT(*) FROM companion_local_objects
			        WHERE companion = ? AND data_space_id = ? AND name = ?)`,
			c.Companion, ds, ch.Object, c.Companion, ds, ch.Object).Scan(&edits); err != nil {
			return fmt.Errorf("look for local edits: %w", err)
		}
		if edits > 0 {
			return fmt.Errorf("%s %q in data space %q: %w", ch.ObjectKind, ch.Object, ch.DataSpace, companionsync.ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO companion_metadata (companion, data_space_id, name, kind, version, definition)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (companion, data_space_id, name) DO UPDATE
			SET kind = excluded.kind, version = excluded.version, definition = excluded.definition`,
			c.Companion, ds, ch.Object, ch.ObjectKind, ch.Version, ch.Definition); err != nil {
			return fmt.Errorf("write companion copy: %w", err)
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE metadata_cursors SET seq = ? WHERE companion = ? AND data_space_id = ?`,
			ch.Sequence, c.Companion, ds); err != nil {
			return fmt.Errorf("advance cursor: %w", err)
		}
		applied = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("apply change %d to %s: %w", ch.Sequence, c.Companion, err)
	}
	return applied, nil
}

// LogErrors appends entries to the connection's error log, ignoring those
// already written for the round; see companionsync.Metadata.LogErrors.
func (s *Store) LogErrors(ctx context.Context, c companionsync.Connection, round string, entries []companionsync.ErrorLogEntry) error {
	err := s.inTx(ctx, func(tx querier) error {
		for _, e := range entries {
			if _, err := tx.ExecContext(ctx, `
				INSERT INTO error_log (home, companion, round, seq, data_space, object, kind, message, at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (home, companion, round, seq) DO NOTHING`,
				c.Home, c.Companion, round, e.Sequence, e.DataSpace, e.Object, e.Kind, e.Message, e.At.UnixMilli()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write error log of %s/%s round %q: %w", c.Home, c.Companion, round, err)
	}
	return nil
}
