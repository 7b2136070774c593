package orgstore

import (
	"context"
	"fmt"

	"github.com/companionsync/companionsync"
)

var _ companionsync.Orgs = (*DemoFaults)(nil)

// DemoFaults is a Store whose copy batches fail as injected with
// InjectCopyFailures: the port as the demo worker wires it, so that the CLI's
// `demo fail-initial-sync` makes a running worker's initial syncs fail
// transiently. Every other method, of the port or of the Store, is the
// embedded Store's. DemoFaults is safe for concurrent use.
type DemoFaults struct {
	*Store
}

// WithDemoFaults wraps s so that the copy failures injected into its shares
// take effect.
func WithDemoFaults(s *Store) *DemoFaults {
	return &DemoFaults{Store: s}
}

// CopyBatch first consumes one injected failure of the share, if any. When
// it took one it copies nothing and fails with a transient error saying how
// many failures are left, so the initial-sync step fails and is retried;
// otherwise it is Store.CopyBatch.
func (d *DemoFaults) CopyBatch(ctx context.Context, sh companionsync.Share, after string, limit int) (companionsync.CopiedBatch, error) {
	left, taken, err := d.Store.Demo().TakeInjectedFailure(ctx, sh)
	if err != nil {
		return companionsync.CopiedBatch{}, fmt.Errorf("read injected failures: %w", err)
	}
	if taken {
		return companionsync.CopiedBatch{}, fmt.Errorf("injected transient failure (%d left)", left)
	}
	return d.Store.CopyBatch(ctx, sh, after, limit)
}

// TakeInjectedFailure consumes, in one transaction, one failure injected
// into the share with InjectCopyFailures, if any: taken reports whether one
// was consumed and left how many remain. DemoFaults calls it
// before each copy batch.
func (s *Demo) TakeInjectedFailure(ctx context.Context, sh companionsync.Share) (left int, taken bool, err error) {
	// Most calls find nothing: look without taking the write lock first. A
	// failure injected after this read is taken by the next call.
	var pending bool
	if err := s.db.QueryRowContext(ctx, `
		SELECT EXISTS (SELECT 1 FROM injected_failures f JOIN data_spaces d ON d.id = f.data_space_id
		               WHERE f.companion = ? AND d.home = ? AND d.name = ? AND f.remaining > 0)`,
		sh.Companion, sh.Home, sh.DataSpace).Scan(&pending); err != nil {
		return 0, false, fmt.Errorf("look for injected failures of %s in %s: %w", sh.DataSpace, sh.Companion, err)
	}
	if !pending {
		return 0, false, nil
	}
	err = s.inTx(ctx, func(tx querier) error {
		ds, err := dataSpaceID(ctx, tx, sh.Home, sh.DataSpace)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx,
			`UPDATE injected_failures SET remaining = remaining - 1
			 WHERE companion = ? AND data_space_id = ? AND remaining > 0`, sh.Companion, ds)
		if err != nil {
			return fmt.Errorf("take injected failure: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		taken = true
		return tx.QueryRowContext(ctx,
			`SELECT remaining FROM injected_failures WHERE companion = ? AND data_space_id = ?`,
			sh.Companion, ds).Scan(&left)
	})
	return left, taken, err
}
