package orgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/companionsync/companionsync"
)

// RecordCount returns the number of records in the home's data space.
func (s *Store) RecordCount(ctx context.Context, home, dataSpace string) (int, error) {
	ds, err := dataSpaceID(ctx, s.db, home, dataSpace)
	if err != nil {
		return 0, err
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM records WHERE data_space_id = ?`, ds).Scan(&n); err != nil {
		return 0, fmt.Errorf("count records of %s/%s: %w", home, dataSpace, err)
	}
	return n, nil
}

// CopiedCount returns the number of the data space's records present in the
// companion.
func (s *Store) CopiedCount(ctx context.Context, sh companionsync.Share) (int, error) {
	return s.companionRecordCount(ctx, sh.Home, sh.Companion, sh.DataSpace)
}

// companionRecordCount returns the number of the data space's records copied
// to the companion.
func (s *Store) companionRecordCount(ctx context.Context, home, companion, dataSpace string) (int, error) {
	ds, err := dataSpaceID(ctx, s.db, home, dataSpace)
	if err != nil {
		return 0, err
	}
	var n int
	if err := s.db.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM companion_records WHERE companion = ? AND data_space_id = ?`, companion, ds).Scan(&n); err != nil {
		return 0, fmt.Errorf("count records of %s/%s in %s: %w", home, dataSpace, companion, err)
	}
	return n, nil
}

// CopyBatch upserts the companion copies of up to limit records after the
// checkpoint; see companionsync.Records.CopyBatch.
func (s *Store) CopyBatch(ctx context.Context, sh companionsync.Share, after string, limit int) (companionsync.CopiedBatch, error) {
	if limit <= 0 {
		return companionsync.CopiedBatch{}, fmt.Errorf("copy batch: limit must be positive, got %d", limit)
	}
	var b companionsync.CopiedBatch
	err := s.inTx(ctx, func(tx querier) error {
		ds, err := dataSpaceID(ctx, tx, sh.Home, sh.DataSpace)
		if err != nil {
			return err
		}
		if err := s.fence(ctx, tx, sh, ds); err != nil {
			return err
		}
		// The batch is (after, upper]; upper is the limit-th id after the
		// checkpoint, or the last id when fewer remain.
		var upper sql.NullString
		err = tx.QueryRowContext(ctx,
			`SELECT id FROM records WHERE data_space_id = ? AND id > ? ORDER BY id LIMIT 1 OFFSET ?`,
			ds, after, limit-1).Scan(&upper)
		if errors.Is(err, sql.ErrNoRows) {
			err = tx.QueryRowContext(ctx,
				`SELECT MAX(id) FROM records WHERE data_space_id = ? AND id > ?`, ds, after).Scan(&upper)
		}
		if err != nil {
			return fmt.Errorf("find batch bound: %w", err)
		}
		b.Last = after
		if upper.Valid {
			var existing int
			if err := tx.QueryRowContext(ctx, `
				SELECT COUNT(*) FROM companion_records
				WHERE companion = ? AND data_space_id = ? AND record_id > ? AND record_id <= ?`,
				sh.Companion, ds, after, upper.String).Scan(&existing); err != nil {
				return fmt.Errorf("count earlier copies: %w", err)
			}
			res, err := tx.ExecContext(ctx,
				`INSERT INTO companion_records (companion, data_space_id, object, record_id, payload)
				 SELECT ?, data_space_id, object, id, payload FROM records
				 WHERE data_space_id = ? AND id > ? AND id <= ?
				 ON CONFLICT (companion, data_space_id, object, record_id) DO UPDATE SET payload = excluded.payload`,
				sh.Companion, ds, after, upper.String)
			if err != nil {
				return fmt.Errorf("copy records: %w", err)
			}
			n, _ := res.RowsAffected()
			b.Last, b.Copied, b.Added = upper.String, int(n), int(n)-existing
			if err := tx.QueryRowContext(ctx,
				`SELECT EXISTS (SELECT 1 FROM records WHERE data_space_id = ? AND id > ?)`, ds, b.Last).Scan(&b.More); err != nil {
				return fmt.Errorf("look for more records: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return companionsync.CopiedBatch{}, fmt.Errorf("copy batch of %s to %s after %q: %w", sh.DataSpace, sh.Companion, after, err)
	}
	return b, nil
}

// CompleteInitialSync copies the metadata snapshot and sets the metadata
// cursor; see companionsync.Records.CompleteInitialSync.
func (s *Store) CompleteInitialSync(ctx context.Context, sh companionsync.Share) error {
	err := s.inTx(ctx, func(tx querier) error {
		ds, err := dataSpaceID(ctx, tx, sh.Home, sh.DataSpace)
		if err != nil {
			return err
		}
		if err := s.fence(ctx, tx, sh, ds); err != nil {
			return err
		}
		// The snapshot and the cursor must describe the same moment: keep
		// publishers of the data space out until commit (on PostgreSQL,
		// where each statement sees its own snapshot).
		if err := lockDataSpace(ctx, tx, s.dialect.forShare(), ds); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO companion_metadata (companion, data_space_id, name, kind, version, definition)
			 SELECT ?, data_space_id, name, kind, version, definition FROM metadata_objects
			 WHERE data_space_id = ?
			 ON CONFLICT (companion, data_space_id, name) DO UPDATE
			 SET kind = excluded.kind, version = excluded.version, definition = excluded.definition
			 WHERE companion_metadata.local_edit = 0`,
			sh.Companion, ds); err != nil {
			return fmt.Errorf("copy metadata snapshot: %w", err)
		}
		var latest int64
		if err := tx.QueryRowContext(ctx,
			`SELECT COALESCE(MAX(seq), 0) FROM metadata_changes WHERE data_space_id = ?`, ds).Scan(&latest); err != nil {
			return fmt.Errorf("read latest change: %w", err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO metadata_cursors (companion, data_space_id, seq) VALUES (?, ?, ?)
			 ON CONFLICT (companion, data_space_id) DO UPDATE SET seq = excluded.seq`,
			sh.Companion, ds, latest); err != nil {
			return fmt.Errorf("set metadata cursor: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("complete initial sync of %s to %s: %w", sh.DataSpace, sh.Companion, err)
	}
	return nil
}

// RemoveBatch deletes up to limit companion record copies of the share; see
// companionsync.Records.RemoveBatch.
func (s *Store) RemoveBatch(ctx context.Context, sh companionsync.Share, limit int) (removed int, more bool, err error) {
	if limit <= 0 {
		return 0, false, fmt.Errorf("remove batch: limit must be positive, got %d", limit)
	}
	err = s.inTx(ctx, func(tx querier) error {
		ds, err := dataSpaceID(ctx, tx, sh.Home, sh.DataSpace)
		if err != nil {
			return err
		}
		if err := s.fence(ctx, tx, sh, ds); err != nil {
			return err
		}
		removed, more, err = removeRange(ctx, tx, sh.Companion, ds, limit, s.dialect == dialectPostgres)
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("remove batch of %s from %s: %w", sh.DataSpace, sh.Companion, err)
	}
	return removed, more, nil
}

// removeRange deletes the next batch of a removal: a range of the primary
// key, like a plain DELETE of the data space, of the first limit copies
// after the share's removal cursor (where the last batch ended), up to and
// including the limit-th; fewer left, all of them. The cursor saves each
// batch a scan from the first key over the copies the batches before it
// deleted. It is a hint: once nothing is left after it, a check from the
// first key decides whether the removal is over. The cursor pays on
// PostgreSQL, whose deleted rows stay in the index as dead entries until
// vacuum; SQLite removes them from the b-tree at once, so there the
// cursor's reads and writes would only cost (cursor false).
func removeRange(ctx context.Context, tx querier, companion string, ds int64, limit int, cursor bool) (removed int, more bool, err error) {
	share := `companion = ? AND data_space_id = ?`
	from, args := share, []any{companion, ds}
	if cursor {
		var rid, obj string
		err = tx.QueryRowContext(ctx, `SELECT record_id, object FROM removal_cursors WHERE `+share, companion, ds).Scan(&rid, &obj)
		switch {
		case err == nil:
			from, args = share+` AND (record_id, object) > (?, ?)`, []any{companion, ds, rid, obj}
		case !errors.Is(err, sql.ErrNoRows):
			return 0, false, fmt.Errorf("read the removal cursor: %w", err)
		}
	}
	var endRID, endObj string
	err = tx.QueryRowContext(ctx, `SELECT record_id, object FROM companion_records WHERE `+from+
		` ORDER BY record_id, object LIMIT 1 OFFSET ?`, append(args, limit-1)...).Scan(&endRID, &endObj)
	var res sql.Result
	found := err == nil
	switch {
	case errors.Is(err, sql.ErrNoRows):
		res, err = tx.ExecContext(ctx, `DELETE FROM companion_records WHERE `+from, args...)
	case found:
		res, err = tx.ExecContext(ctx, `DELETE FROM companion_records WHERE `+from+` AND (record_id, object) <= (?, ?)`,
			append(args, endRID, endObj)...)
	}
	if err != nil {
		return 0, false, fmt.Errorf("delete records: %w", err)
	}
	n, _ := res.RowsAffected()
	removed = int(n)
	if found {
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM companion_records WHERE `+share+
			` AND (record_id, object) > (?, ?))`, companion, ds, endRID, endObj).Scan(&more); err != nil {
			return 0, false, fmt.Errorf("look past the batch: %w", err)
		}
		if more && !cursor {
			return removed, true, nil
		}
		if more {
			if _, err := tx.ExecContext(ctx, `INSERT INTO removal_cursors (companion, data_space_id, record_id, object)
				VALUES (?, ?, ?, ?) ON CONFLICT (companion, data_space_id) DO UPDATE
				SET record_id = excluded.record_id, object = excluded.object`, companion, ds, endRID, endObj); err != nil {
				return 0, false, fmt.Errorf("move the removal cursor: %w", err)
			}
			return removed, true, nil
		}
	}
	// Nothing after the cursor: the check from the first key decides, and
	// a removal that goes on (copies before the cursor) starts from it.
	if cursor {
		if _, err := tx.ExecContext(ctx, `DELETE FROM removal_cursors WHERE `+share, companion, ds); err != nil {
			return 0, false, fmt.Errorf("drop the removal cursor: %w", err)
		}
	}
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM companion_records WHERE `+share+`)`,
		companion, ds).Scan(&more); err != nil {
		return 0, false, fmt.Errorf("look for records left: %w", err)
	}
	return removed, more, nil
}

// CompleteRemoval deletes the share's metadata copies, cursor and injected
// failures; see companionsync.Records.CompleteRemoval.
func (s *Store) CompleteRemoval(ctx context.Context, sh companionsync.Share) error {
	err := s.inTx(ctx, func(tx querier) error {
		ds, err := dataSpaceID(ctx, tx, sh.Home, sh.DataSpace)
		if err != nil {
			return err
		}
		if err := s.fence(ctx, tx, sh, ds); err != nil {
			return err
		}
		for _, table := range []string{"companion_metadata", "metadata_cursors", "injected_failures", "removal_cursors"} {
			if _, err := tx.ExecContext(ctx,
				`DELETE FROM `+table+` WHERE companion = ? AND data_space_id = ?`, sh.Companion, ds); err != nil {
				return fmt.Errorf("delete from %s: %w", table, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("complete removal of %s from %s: %w", sh.DataSpace, sh.Companion, err)
	}
	return nil
}

// fence records sh.Fence as the share's fencing token when it is the
// greatest seen, and refuses a smaller one with ErrFenced; the token row
// stays locked until the transaction ends, so a step with a greater token
// waits for a batch in flight and then shuts out the ones after it (on
// SQLite the write transaction holds the database's write lock). A zero
// token writes unfenced.
func (s *Store) fence(ctx context.Context, tx querier, sh companionsync.Share, ds int64) error {
	if sh.Fence == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO share_fences (companion, data_space_id, token) VALUES (?, ?, ?)
		 ON CONFLICT (companion, data_space_id) DO UPDATE SET token = excluded.token
		 WHERE share_fences.token < excluded.token`,
		sh.Companion, ds, sh.Fence); err != nil {
		return fmt.Errorf("record fencing token: %w", err)
	}
	var token int64
	if err := tx.QueryRowContext(ctx,
		`SELECT token FROM share_fences WHERE companion = ? AND data_space_id = ?`+s.dialect.forUpdate(),
		sh.Companion, ds).Scan(&token); err != nil {
		return fmt.Errorf("read fencing token: %w", err)
	}
	if token > sh.Fence {
		return fmt.Errorf("token %d, the share's is %d: %w", sh.Fence, token, companionsync.ErrFenced)
	}
	return nil
}
