package control

import (
	"context"
	"errors"
	"time"

	"github.com/companionsync/companionsync/contract"
)

// AuditReader reads a connection's audit trail: the org store the workers
// write it to (orgstore.Store).
type AuditReader interface {
	Audit(ctx context.Context, connection string, since time.Time) ([]contract.AuditEntry, error)
}

// WithAudit returns a copy of c that reads the audit trail from r.
func (c *Client) WithAudit(r AuditReader) *Client {
	cp := *c
	cp.audit = r
	return &cp
}

// ErrNoAuditReader is returned by Audit on a client without WithAudit.
var ErrNoAuditReader = errors.New("the audit trail is kept in the org store: give the client the store with WithAudit (starter: --org-store)")

// Audit returns the audit trail of the connection from since on (zero:
// all of it), oldest first: every request to it, who asked, when, and the
// outcome, for its whole life and after it disconnected. It needs no
// worker and no running workflow.
func (c *Client) Audit(ctx context.Context, ref Ref, since time.Time) ([]contract.AuditEntry, error) {
	if c.audit == nil {
		return nil, ErrNoAuditReader
	}
	entries, err := c.audit.Audit(ctx, ref.String(), since)
	if err != nil {
		return nil, err
	}
	if entries == nil {
		entries = []contract.AuditEntry{}
	}
	return entries, nil
}
