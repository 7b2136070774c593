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
	left, taken, err := d.Store.TakeInjectedFailure(ctx, sh)
	if err != nil {
		return companionsync.CopiedBatch{}, fmt.Errorf("read injected failures: %w", err)
	}
	if taken {
		return companionsync.CopiedBatch{}, fmt.Errorf("injected transient failure (%d left)", left)
	}
	return d.Store.CopyBatch(ctx, sh, after, limit)
}
