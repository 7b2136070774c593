package activities

import (
	"context"
	"errors"
)

// Orgs is the port to the system of record. Placeholder: the org-store work
// defines it fully.
type Orgs interface{}

// Activities implements every activity of the companion connection workflows.
type Activities struct {
	Orgs Orgs
}

var errTODO = errors.New("not implemented")

// Handshake checks every eligibility rule and registers the connection.
func (a *Activities) Handshake(ctx context.Context, in HandshakeInput) (HandshakeResult, error) {
	return HandshakeResult{}, errTODO
}

// CheckHealth reports whether the home licence is valid and the companion active.
func (a *Activities) CheckHealth(ctx context.Context, in HealthInput) (HealthResult, error) {
	return HealthResult{}, errTODO
}

// CopyRecords copies one chunk of a data space's records to the companion.
func (a *Activities) CopyRecords(ctx context.Context, in CopyInput) (CopyProgress, error) {
	return CopyProgress{}, errTODO
}

// RemoveRecords removes one chunk of a data space's data from the companion.
func (a *Activities) RemoveRecords(ctx context.Context, in RemoveInput) (RemoveProgress, error) {
	return RemoveProgress{}, errTODO
}

// CountPendingMetadata counts unapplied metadata changes.
func (a *Activities) CountPendingMetadata(ctx context.Context, in PendingInput) (PendingResult, error) {
	return PendingResult{}, errTODO
}

// ApplyMetadata applies one metadata round.
func (a *Activities) ApplyMetadata(ctx context.Context, in ApplyInput) (ApplyResult, error) {
	return ApplyResult{}, errTODO
}

// RecordSyncFailure writes one error-log entry of kind "failed".
func (a *Activities) RecordSyncFailure(ctx context.Context, in RecordFailureInput) error {
	return errTODO
}

// Disconnect deregisters the connection.
func (a *Activities) Disconnect(ctx context.Context, in DisconnectInput) error {
	return errTODO
}
