package orgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/companionsync/companionsync"
)

// Demo is the demo and test side of an org store: demo seeding, the demo
// operations the CLI offers (expire a licence, make a conflict, inject copy
// failures, ...), and read helpers for tests and operators (record counts
// and checksums, the error log, metadata copies and cursors). It works on
// the database of the Store it wraps, whose methods it has too. Production
// code holds a Store (the companionsync.Orgs port) and never a Demo.
type Demo struct {
	*Store
}

// Demo is the demo and test side of s.
func (s *Store) Demo() *Demo { return &Demo{Store: s} }

// DefaultSeedRecords is the number of records of acme's `default` data
// space: enough that its initial sync takes a few seconds in the demo (see
// BenchmarkInitialSync for the copy rate).
const DefaultSeedRecords = 150_000

// SeedOptions sizes the demo data.
type SeedOptions struct {
	// RecordsPerDataSpace is the number of records of acme's `default`
	// data space; the other data spaces get a tenth of it (at least one).
	// Zero means DefaultSeedRecords.
	RecordsPerDataSpace int
	// Now anchors licence expiry (valid for a year from Now). Zero means
	// time.Now().
	Now time.Time
}

// seedObjects are the metadata objects of each seeded data space.
var seedObjects = map[string][]struct{ name, kind string }{
	"default": {
		{"Account", companionsync.ObjectDMO}, {"Contact", companionsync.ObjectDMO}, {"Order", companionsync.ObjectDMO},
		{"LifetimeValue", companionsync.ObjectCalculatedInsight}, {"HighValueCustomers", companionsync.ObjectSegment},
	},
	"marketing": {
		{"Campaign", companionsync.ObjectDMO}, {"EngagementScore", companionsync.ObjectCalculatedInsight},
		{"NewsletterSubscribers", companionsync.ObjectSegment},
	},
	"sales": {
		{"Opportunity", companionsync.ObjectDMO}, {"PipelineValue", companionsync.ObjectCalculatedInsight},
		{"TopAccounts", companionsync.ObjectSegment},
	},
}

// seedRecordObjects are the record objects, assigned round-robin.
var seedRecordObjects = []string{"accounts", "contacts", "orders"}

// SeededConnectionToken is the token of the seeded globex/globex-emea
// connection, which stands for a connection made outside this service: a
// handshake of that pair with any other token is refused.
const SeededConnectionToken = "seed"

// Seed fills an empty store with the demo orgs and data: home `acme`
// (production, 3 companions max) with companions `acme-emea`, `acme-apac`
// (production), `acme-sbx` (sandbox) and `acme-old` (inactive production);
// home `globex` with companion `globex-emea` already registered; data spaces
// `default`, `marketing` and `sales` of acme and `default` of globex, each
// with records and metadata objects. Seed does nothing when the store
// already holds orgs, so it is safe to call on every start.
func (s *Demo) Seed(ctx context.Context, opt SeedOptions) error {
	if opt.RecordsPerDataSpace <= 0 {
		opt.RecordsPerDataSpace = DefaultSeedRecords
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	small := max(opt.RecordsPerDataSpace/10, 1)
	licence := opt.Now.AddDate(1, 0, 0).UnixMilli()
	err := s.inTx(ctx, func(tx querier) error {
		if s.dialect == dialectPostgres {
			// Workers starting together seed once.
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, migrationLock); err != nil {
				return err
			}
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM orgs`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		orgs := []struct {
			id, role, kind string
			expires        any
			max            int
			active         bool
		}{
			{"acme", "home", "production", licence, 3, true},
			{"acme-emea", "companion", "production", nil, 0, true},
			{"acme-apac", "companion", "production", nil, 0, true},
			{"acme-sbx", "companion", "sandbox", nil, 0, true},
			{"acme-old", "companion", "production", nil, 0, false},
			{"globex", "home", "production", licence, 2, true},
			{"globex-emea", "companion", "production", nil, 0, true},
		}
		for _, o := range orgs {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO orgs (id, role, kind, licence_expires_at, max_companions, active) VALUES (?, ?, ?, ?, ?, ?)`,
				o.id, o.role, o.kind, o.expires, o.max, boolInt(o.active)); err != nil {
				return fmt.Errorf("insert org %s: %w", o.id, err)
			}
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO connections (companion, home, token, connected_at) VALUES (?, ?, ?, ?)`,
			"globex-emea", "globex", SeededConnectionToken, opt.Now.UnixMilli()); err != nil {
			return fmt.Errorf("register globex/globex-emea: %w", err)
		}
		spaces := []struct {
			home, name string
			records    int
		}{
			{"acme", "default", opt.RecordsPerDataSpace},
			{"acme", "marketing", small},
			{"acme", "sales", small},
			{"globex", "default", small},
		}
		for _, sp := range spaces {
			if err := seedDataSpace(ctx, tx, sp.home, sp.name, sp.records); err != nil {
				return fmt.Errorf("seed data space %s/%s: %w", sp.home, sp.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("seed org store: %w", err)
	}
	return nil
}

func seedDataSpace(ctx context.Context, tx querier, home, name string, records int) error {
	var ds int64
	if err := tx.QueryRowContext(ctx,
		`INSERT INTO data_spaces (home, name) VALUES (?, ?) RETURNING id`, home, name).Scan(&ds); err != nil {
		return err
	}
	// Multi-row inserts keep the round trips few on a networked database.
	const rowsPerInsert = 1000
	regions := []string{"EMEA", "APAC", "AMER"}
	for first := 1; first <= records; first += rowsPerInsert {
		last := min(first+rowsPerInsert-1, records)
		var b strings.Builder
		b.WriteString(`INSERT INTO records (data_space_id, id, object, payload) VALUES `)
		args := make([]any, 0, 4*(last-first+1))
		for i := first; i <= last; i++ {
			if i > first {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?, ?)")
			object := seedRecordObjects[i%len(seedRecordObjects)]
			payload := fmt.Sprintf(`{"dataSpace":%q,"object":%q,"name":"%s %d","region":%q,"value":%d}`,
				name, object, object, i, regions[i%len(regions)], (i*7919)%100_000)
			args = append(args, ds, fmt.Sprintf("r%08d", i), object, payload)
		}
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return err
		}
	}
	for _, o := range seedObjects[name] {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO metadata_objects (data_space_id, name, kind, version, definition) VALUES (?, ?, ?, 1, ?)`,
			ds, o.name, o.kind, definition(o.name, o.kind, 1)); err != nil {
			return err
		}
	}
	return nil
}

// AddDataSpace adds a data space with records records to a home org, for
// load tests that need more homes than the seed. An existing name is
// refused.
func (s *Demo) AddDataSpace(ctx context.Context, home, name string, records int) error {
	err := s.inTx(ctx, func(tx querier) error {
		if err := requireOrg(ctx, tx, home, companionsync.RoleHome); err != nil {
			return err
		}
		return seedDataSpace(ctx, tx, home, name, records)
	})
	if err != nil {
		return fmt.Errorf("add data space %s/%s: %w", home, name, err)
	}
	return nil
}

func definition(name, kind string, version int) string {
	return fmt.Sprintf(`{"name":%q,"kind":%q,"revision":%d}`, name, kind, version)
}

// generated returns the demo definition of each version of an object.
func generated(name, kind string) func(version int) string {
	return func(version int) string { return definition(name, kind, version) }
}

// requireOrg fails with a clear error unless id is an org with the role.
func requireOrg(ctx context.Context, q querier, id string, role companionsync.Role) error {
	o, err := orgOf(ctx, q, id)
	if errors.Is(err, companionsync.ErrNotFound) {
		return fmt.Errorf("org %q does not exist; check the org id: %w", id, err)
	}
	if err != nil {
		return err
	}
	if o.Role != role {
		return fmt.Errorf("org %q is a %s org, not a %s org", id, o.Role, role)
	}
	return nil
}

// ExpireLicence makes the home org's licence expire now, so the next health
// check moves its connections to Inactive.
func (s *Demo) ExpireLicence(ctx context.Context, home string) error {
	return s.setLicence(ctx, home, time.Now().Add(-time.Second))
}

// RenewLicence makes the home org's licence valid for a year from now.
func (s *Demo) RenewLicence(ctx context.Context, home string) error {
	return s.setLicence(ctx, home, time.Now().AddDate(1, 0, 0))
}

// SetLicenceExpiry sets when the home org's licence expires.
func (s *Demo) SetLicenceExpiry(ctx context.Context, home string, at time.Time) error {
	return s.setLicence(ctx, home, at)
}

func (s *Demo) setLicence(ctx context.Context, home string, at time.Time) error {
	err := s.inTx(ctx, func(tx querier) error {
		if err := requireOrg(ctx, tx, home, companionsync.RoleHome); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE orgs SET licence_expires_at = ? WHERE id = ?`, at.UnixMilli(), home)
		return err
	})
	if err != nil {
		return fmt.Errorf("set licence expiry of %q: %w", home, err)
	}
	return nil
}

// Deactivate marks the companion org inactive, so the next health check
// moves its connection to Inactive and new handshakes are refused.
func (s *Demo) Deactivate(ctx context.Context, companion string) error {
	return s.setActive(ctx, companion, false)
}

// Reactivate marks the companion org active again.
func (s *Demo) Reactivate(ctx context.Context, companion string) error {
	return s.setActive(ctx, companion, true)
}

func (s *Demo) setActive(ctx context.Context, companion string, active bool) error {
	err := s.inTx(ctx, func(tx querier) error {
		if err := requireOrg(ctx, tx, companion, companionsync.RoleCompanion); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE orgs SET active = ? WHERE id = ?`, boolInt(active), companion)
		return err
	})
	if err != nil {
		return fmt.Errorf("set %q active=%t: %w", companion, active, err)
	}
	return nil
}

// ChangeMetadata publishes n new versions of the data space's existing
// metadata objects (round-robin by name), each appended to the change log,
// and returns the sequence of the last one.
func (s *Demo) ChangeMetadata(ctx context.Context, home, dataSpace string, n int) (int64, error) {
	if n <= 0 {
		return 0, fmt.Errorf("change metadata of %s/%s: the number of changes must be positive, got %d", home, dataSpace, n)
	}
	var last int64
	err := s.inTx(ctx, func(tx querier) error {
		ds, err := dataSpaceID(ctx, tx, home, dataSpace)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT name, kind FROM metadata_objects WHERE data_space_id = ? ORDER BY name`, ds)
		if err != nil {
			return err
		}
		var objects [][2]string
		for rows.Next() {
			var o [2]string
			if err := rows.Scan(&o[0], &o[1]); err != nil {
				rows.Close()
				return err
			}
			objects = append(objects, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(objects) == 0 {
			return fmt.Errorf("data space has no metadata objects to change; publish one first")
		}
		var start int64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM metadata_changes WHERE data_space_id = ?`, ds).Scan(&start); err != nil {
			return err
		}
		for i := range n {
			o := objects[(int(start)+i)%len(objects)]
			if last, err = publish(ctx, tx, s.dialect, home, ds, o[0], o[1], generated(o[0], o[1])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("change metadata of %s/%s: %w", home, dataSpace, err)
	}
	return last, nil
}

// PublishMetadata publishes a new version of one metadata object of the
// data space (version 1 when the object is new) with the given kind and
// definition, without validating them, and returns its change sequence.
// Tests and demos use it to publish invalid changes.
func (s *Demo) PublishMetadata(ctx context.Context, home, dataSpace, object, kind, def string) (int64, error) {
	var seq int64
	err := s.inTx(ctx, func(tx querier) error {
		ds, err := dataSpaceID(ctx, tx, home, dataSpace)
		if err != nil {
			return err
		}
		seq, err = publish(ctx, tx, s.dialect, home, ds, object, kind, func(int) string { return def })
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("publish %s %q in %s/%s: %w", kind, object, home, dataSpace, err)
	}
	return seq, nil
}

// publish writes the next version of an object, with the definition def
// returns for that version, and appends it to the change log.
//
// Publishers of one data space serialise on its data_spaces row (a no-op on
// SQLite, whose write transactions never interleave), so on PostgreSQL a
// change's sequence is committed before the next one of the data space is
// taken: a reader of the change log never sees a gap that fills in later.
func publish(ctx context.Context, tx querier, d dialect, home string, ds int64, object, kind string, def func(version int) string) (int64, error) {
	if err := lockDataSpace(ctx, tx, d.forUpdate(), ds); err != nil {
		return 0, err
	}
	var version int
	err := tx.QueryRowContext(ctx,
		`SELECT version FROM metadata_objects WHERE data_space_id = ? AND name = ?`, ds, object).Scan(&version)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	version++
	text := def(version)
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO metadata_objects (data_space_id, name, kind, version, definition) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (data_space_id, name) DO UPDATE
		SET kind = excluded.kind, version = excluded.version, definition = excluded.definition`,
		ds, object, kind, version, text); err != nil {
		return 0, fmt.Errorf("write object: %w", err)
	}
	var seq int64
	if err := tx.QueryRowContext(ctx, `
		INSERT INTO metadata_changes (home, data_space_id, object, kind, version, definition, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq`, home, ds, object, kind, version, text, time.Now().UnixMilli()).Scan(&seq); err != nil {
		return 0, fmt.Errorf("append change: %w", err)
	}
	return seq, nil
}

// MakeConflict edits, in the companion, the first synced metadata copy of
// the data space that is not yet edited, and publishes a new version of that
// object in the home org, so the next metadata round stops with a conflict.
// It returns the object's name, and fails when the data space is not synced
// to the companion.
func (s *Demo) MakeConflict(ctx context.Context, home, companion, dataSpace string) (string, error) {
	var object string
	err := s.inTx(ctx, func(tx querier) error {
		ds, err := dataSpaceID(ctx, tx, home, dataSpace)
		if err != nil {
			return err
		}
		var kind string
		err = tx.QueryRowContext(ctx, `
			SELECT name, kind FROM companion_metadata WHERE companion = ? AND data_space_id = ? AND local_edit = 0
			ORDER BY name LIMIT 1`, companion, ds).Scan(&object, &kind)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("data space %q is not synced to companion %q (or every copy is already edited); share it and wait for Active first",
				dataSpace, companion)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE companion_metadata SET local_edit = 1, local_definition = ?
			WHERE companion = ? AND data_space_id = ? AND name = ?`,
			fmt.Sprintf(`{"name":%q,"kind":%q,"editedIn":%q}`, object, kind, companion),
			companion, ds, object); err != nil {
			return err
		}
		_, err = publish(ctx, tx, s.dialect, home, ds, object, kind, generated(object, kind))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("make a conflict in %s/%s for %s: %w", home, dataSpace, companion, err)
	}
	return object, nil
}

// CreateLocalObject creates an object in the companion org (not from sync)
// in the data space. When the home has an object of that name, the next
// metadata change to it conflicts.
func (s *Demo) CreateLocalObject(ctx context.Context, home, companion, dataSpace, name, kind string) error {
	err := s.inTx(ctx, func(tx querier) error {
		if err := requireOrg(ctx, tx, companion, companionsync.RoleCompanion); err != nil {
			return err
		}
		ds, err := dataSpaceID(ctx, tx, home, dataSpace)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO companion_local_objects (companion, data_space_id, name, kind, definition) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (companion, data_space_id, name) DO NOTHING`,
			companion, ds, name, kind, fmt.Sprintf(`{"name":%q,"kind":%q,"local":true}`, name, kind))
		return err
	})
	if err != nil {
		return fmt.Errorf("create local object %q in %s for %s/%s: %w", name, companion, home, dataSpace, err)
	}
	return nil
}

// ResolveConflicts discards the companion's local edits of synced copies and
// deletes its local objects named like a metadata object of the home, in
// every data space of the home. It returns how many it resolved; after it,
// a resumed metadata sync applies the pending changes.
func (s *Demo) ResolveConflicts(ctx context.Context, home, companion string) (int, error) {
	var resolved int64
	err := s.inTx(ctx, func(tx querier) error {
		if err := requireOrg(ctx, tx, home, companionsync.RoleHome); err != nil {
			return err
		}
		if err := requireOrg(ctx, tx, companion, companionsync.RoleCompanion); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `
			UPDATE companion_metadata SET local_edit = 0, local_definition = NULL
			WHERE companion = ? AND local_edit = 1
			  AND data_space_id IN (SELECT id FROM data_spaces WHERE home = ?)`, companion, home)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		resolved += n
		res, err = tx.ExecContext(ctx, `
			DELETE FROM companion_local_objects
			WHERE companion = ? AND EXISTS (
			  SELECT 1 FROM metadata_objects m JOIN data_spaces d ON d.id = m.data_space_id
			  WHERE d.home = ? AND m.data_space_id = companion_local_objects.data_space_id
			    AND m.name = companion_local_objects.name)`, companion, home)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		resolved += n
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("resolve conflicts of %s/%s: %w", home, companion, err)
	}
	return int(resolved), nil
}

// InjectCopyFailures makes the next n initial-sync steps of the share fail
// with a retryable error (0 clears them). The failures take effect through
// DemoFaults: each of its copy batches consumes one.
func (s *Demo) InjectCopyFailures(ctx context.Context, home, companion, dataSpace string, n int) error {
	if n < 0 {
		return fmt.Errorf("inject copy failures into %s/%s/%s: n must not be negative, got %d", home, companion, dataSpace, n)
	}
	err := s.inTx(ctx, func(tx querier) error {
		if err := requireOrg(ctx, tx, companion, companionsync.RoleCompanion); err != nil {
			return err
		}
		ds, err := dataSpaceID(ctx, tx, home, dataSpace)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO injected_failures (companion, data_space_id, remaining) VALUES (?, ?, ?)
			ON CONFLICT (companion, data_space_id) DO UPDATE SET remaining = excluded.remaining`,
			companion, ds, n)
		return err
	})
	if err != nil {
		return fmt.Errorf("inject copy failures into %s/%s/%s: %w", home, companion, dataSpace, err)
	}
	return nil
}

// CountRecords returns the number of records of the home's data space.
func (s *Demo) CountRecords(ctx context.Context, home, dataSpace string) (int, error) {
	return s.RecordCount(ctx, home, dataSpace)
}

// CompanionRecordCount returns the number of the data space's records copied
// to the companion.
func (s *Demo) CompanionRecordCount(ctx context.Context, home, companion, dataSpace string) (int, error) {
	return s.companionRecordCount(ctx, home, companion, dataSpace)
}

// RecordChecksum returns an order-independent checksum of the object, id and
// payload of every record of the home's data space. It equals
// CompanionChecksum when the companion holds exactly the same records.
func (s *Demo) RecordChecksum(ctx context.Context, home, dataSpace string) (uint64, error) {
	ds, err := dataSpaceID(ctx, s.db, home, dataSpace)
	if err != nil {
		return 0, err
	}
	return checksum(ctx, s.db, `SELECT object, id, payload FROM records WHERE data_space_id = ?`, ds)
}

// CompanionChecksum returns the checksum of RecordChecksum over the
// companion's copies of the data space's records.
func (s *Demo) CompanionChecksum(ctx context.Context, home, companion, dataSpace string) (uint64, error) {
	ds, err := dataSpaceID(ctx, s.db, home, dataSpace)
	if err != nil {
		return 0, err
	}
	return checksum(ctx, s.db,
		`SELECT object, record_id, payload FROM companion_records WHERE data_space_id = ? AND companion = ?`, ds, companion)
}

// checksum sums (mod 2^64) a hash of each row, so row order does not matter
// and a missing, extra or altered row changes the result.
func checksum(ctx context.Context, q querier, query string, args ...any) (uint64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("checksum: %w", err)
	}
	defer rows.Close()
	var sum uint64
	for rows.Next() {
		var object, id, payload string
		if err := rows.Scan(&object, &id, &payload); err != nil {
			return 0, fmt.Errorf("checksum: %w", err)
		}
		h := fnv.New64a()
		fmt.Fprintf(h, "%s\x00%s\x00%s", object, id, payload)
		sum += h.Sum64()
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("checksum: %w", err)
	}
	return sum, nil
}

// ErrorLog returns the connection's error-log entries, oldest first.
func (s *Demo) ErrorLog(ctx context.Context, home, companion string) ([]companionsync.ErrorLogEntry, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT seq, data_space, object, kind, message, at FROM error_log
		WHERE home = ? AND companion = ? ORDER BY at, round, seq`, home, companion)
	if err != nil {
		return nil, fmt.Errorf("read error log of %s/%s: %w", home, companion, err)
	}
	defer rows.Close()
	var out []companionsync.ErrorLogEntry
	for rows.Next() {
		var (
			e  companionsync.ErrorLogEntry
			at int64
		)
		if err := rows.Scan(&e.Sequence, &e.DataSpace, &e.Object, &e.Kind, &e.Message, &at); err != nil {
			return nil, fmt.Errorf("read error log of %s/%s: %w", home, companion, err)
		}
		e.At = time.UnixMilli(at).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read error log of %s/%s: %w", home, companion, err)
	}
	return out, nil
}

// CompanionObject is a companion's synced copy of a metadata object.
type CompanionObject struct {
	Name       string
	Kind       string
	Version    int
	Definition string
	// LocalEdit reports whether the copy was edited in the companion.
	LocalEdit bool
}

// CompanionMetadata returns the companion's synced copies of the data
// space's metadata objects, sorted by name.
func (s *Demo) CompanionMetadata(ctx context.Context, home, companion, dataSpace string) ([]CompanionObject, error) {
	ds, err := dataSpaceID(ctx, s.db, home, dataSpace)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT name, kind, version, COALESCE(local_definition, definition), local_edit FROM companion_metadata
		WHERE companion = ? AND data_space_id = ? ORDER BY name`, companion, ds)
	if err != nil {
		return nil, fmt.Errorf("read metadata of %s/%s in %s: %w", home, dataSpace, companion, err)
	}
	defer rows.Close()
	var out []CompanionObject
	for rows.Next() {
		var o CompanionObject
		if err := rows.Scan(&o.Name, &o.Kind, &o.Version, &o.Definition, &o.LocalEdit); err != nil {
			return nil, fmt.Errorf("read metadata of %s/%s in %s: %w", home, dataSpace, companion, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read metadata of %s/%s in %s: %w", home, dataSpace, companion, err)
	}
	return out, nil
}

// MetadataCursor returns the sequence of the last change applied to the
// companion in the data space; ok is false when the data space is not
// initially synced to it.
func (s *Demo) MetadataCursor(ctx context.Context, home, companion, dataSpace string) (seq int64, ok bool, err error) {
	ds, err := dataSpaceID(ctx, s.db, home, dataSpace)
	if err != nil {
		return 0, false, err
	}
	err = s.db.QueryRowContext(ctx,
		`SELECT seq FROM metadata_cursors WHERE companion = ? AND data_space_id = ?`, companion, ds).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read metadata cursor of %s/%s in %s: %w", home, dataSpace, companion, err)
	}
	return seq, true, nil
}

// AddOrg adds an org, for demos and load tests that need more orgs than the
// seed. A home org's licence is taken from LicenceExpiresAt; an existing id
// is refused.
func (s *Demo) AddOrg(ctx context.Context, o companionsync.Org) error {
	if o.ID == "" || (o.Role != companionsync.RoleHome && o.Role != companionsync.RoleCompanion) ||
		(o.Kind != companionsync.KindProduction && o.Kind != companionsync.KindSandbox) {
		return fmt.Errorf("add org %q: want an id, role home or companion, kind production or sandbox", o.ID)
	}
	var expires any
	if o.Role == companionsync.RoleHome {
		expires = o.LicenceExpiresAt.UnixMilli()
	}
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO orgs (id, role, kind, licence_expires_at, max_companions, active) VALUES (?, ?, ?, ?, ?, ?)`,
		o.ID, string(o.Role), string(o.Kind), expires, o.MaxCompanions, boolInt(o.Active || o.Role == companionsync.RoleHome))
	if err != nil {
		return fmt.Errorf("add org %s: %w", o.ID, err)
	}
	return nil
}
