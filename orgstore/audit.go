package orgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/companionsync/companionsync"
)

// RecordAudit adds entries to the audit trail. An entry already recorded
// (the same connection and ID) is left as it is, so a retried step records
// nothing twice.
func (s *Store) RecordAudit(ctx context.Context, entries []companionsync.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx querier) error {
		for _, e := range entries {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO audit_log (connection, id, at, actor, request, subject, via, outcome, reason)
				 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (connection, id) DO NOTHING`,
				e.Connection, e.ID, e.At.UnixNano(), e.Actor, e.Request, e.Subject, e.Via, e.Outcome, e.Reason); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record %d audit entries: %w", len(entries), err)
	}
	return nil
}

// Audit returns the audit trail of a connection (HOME/COMPANION) from since
// on (zero: all of it), oldest first.
func (s *Store) Audit(ctx context.Context, connection string, since time.Time) ([]companionsync.AuditEntry, error) {
	from := int64(0)
	if !since.IsZero() {
		from = since.UnixNano()
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, at, actor, request, subject, via, outcome, reason FROM audit_log
		 WHERE connection = ? AND at >= ? ORDER BY at, id`, connection, from)
	if err != nil {
		return nil, fmt.Errorf("read the audit trail of %s: %w", connection, err)
	}
	defer rows.Close()
	var out []companionsync.AuditEntry
	for rows.Next() {
		e := companionsync.AuditEntry{Connection: connection}
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Request, &e.Subject, &e.Via, &e.Outcome, &e.Reason); err != nil {
			return nil, fmt.Errorf("read the audit trail of %s: %w", connection, err)
		}
		e.At = time.Unix(0, at).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the audit trail of %s: %w", connection, err)
	}
	return out, nil
}

// NoticeSent reports whether the notification event id was delivered.
func (s *Store) NoticeSent(ctx context.Context, id string) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM notices_sent WHERE id = ?`, id).Scan(&n); err != nil {
		return false, fmt.Errorf("read notices sent: %w", err)
	}
	return n > 0, nil
}

// MarkNoticeSent records the delivery of the notification event id.
func (s *Store) MarkNoticeSent(ctx context.Context, id string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx,
		`INSERT INTO notices_sent (id, sent_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`, id, at.UnixNano()); err != nil {
		return fmt.Errorf("record notice sent: %w", err)
	}
	return nil
}

// OpenIncidents returns the incidents the reconciler has open: key to the
// notice body that opened it.
func (s *Store) OpenIncidents(ctx context.Context) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT incident_key, body FROM incidents`)
	if err != nil {
		return nil, fmt.Errorf("read open incidents: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, b string
		if err := rows.Scan(&k, &b); err != nil {
			return nil, fmt.Errorf("read open incidents: %w", err)
		}
		out[k] = b
	}
	return out, rows.Err()
}

// OpenIncident records an incident as open, with the body of its notice.
func (s *Store) OpenIncident(ctx context.Context, key, body string, since time.Time) error {
	if _, err := s.db.ExecContext(ctx,
		`INSERT INTO incidents (incident_key, body, since) VALUES (?, ?, ?) ON CONFLICT (incident_key) DO NOTHING`,
		key, body, since.UnixNano()); err != nil {
		return fmt.Errorf("open incident %s: %w", key, err)
	}
	return nil
}

// CloseIncident forgets an open incident.
func (s *Store) CloseIncident(ctx context.Context, key string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM incidents WHERE incident_key = ?`, key); err != nil {
		return fmt.Errorf("close incident %s: %w", key, err)
	}
	return nil
}

// TryLease takes or renews the lease name for owner until now+ttl, and
// reports whether owner holds it: a lease held by another owner is taken
// only once it has expired.
func (s *Store) TryLease(ctx context.Context, name, owner string, now time.Time, ttl time.Duration) (bool, error) {
	if _, err := s.db.ExecContext(ctx,
		`INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)
		 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
		 WHERE leases.owner = excluded.owner OR leases.expires_at < ?`,
		name, owner, now.Add(ttl).UnixNano(), now.UnixNano()); err != nil {
		return false, fmt.Errorf("take lease %s: %w", name, err)
	}
	var holder string
	if err := s.db.QueryRowContext(ctx, `SELECT owner FROM leases WHERE name = ?`, name).Scan(&holder); err != nil {
		return false, fmt.Errorf("read lease %s: %w", name, err)
	}
	return holder == owner, nil
}

// ReleaseLease gives the lease up if owner holds it.
func (s *Store) ReleaseLease(ctx context.Context, name, owner string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND owner = ?`, name, owner); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// LicenceCounts counts the home orgs with at least one connection whose
// licence has expired by now, and those whose licence expires within
// warning of now.
func (s *Store) LicenceCounts(ctx context.Context, now time.Time, warning time.Duration) (expired, expiring int, err error) {
	err = s.db.QueryRowContext(ctx,
		`SELECT
		   COALESCE(SUM(CASE WHEN o.licence_expires_at <= ? THEN 1 ELSE 0 END), 0),
		   COALESCE(SUM(CASE WHEN o.licence_expires_at > ? AND o.licence_expires_at <= ? THEN 1 ELSE 0 END), 0)
		 FROM orgs o WHERE o.licence_expires_at IS NOT NULL
		   AND EXISTS (SELECT 1 FROM connections c WHERE c.home = o.id)`,
		now.UnixMilli(), now.UnixMilli(), now.Add(warning).UnixMilli()).Scan(&expired, &expiring)
	if err != nil {
		return 0, 0, fmt.Errorf("count licences: %w", err)
	}
	return expired, expiring, nil
}
