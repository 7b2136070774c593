package contract

import "github.com/companionsync/companionsync"

// AuditEntry is one request to a connection as the audit trail keeps it
// (companionsync.AuditEntry, the org store's record).
type AuditEntry = companionsync.AuditEntry

// Outcomes of an audited request.
const (
	AuditAccepted = "accepted"
	AuditRefused  = "refused"
)

// How an audited request came.
const (
	ViaUpdate     = "update"
	ViaSignal     = "signal"
	ViaStart      = "start"
	ViaReconciler = "reconciler"
)

// Actors the product names itself.
const (
	// ActorReconciler is the actor of the scheduled reconciler's repairs.
	ActorReconciler = "reconciler"
	// ActorUnattributed is recorded for a message that carries no actor
	// header: sent from the Web UI, the temporal CLI or a client without
	// the propagator. The server's history still names the sender's
	// client identity on the signal or update event.
	ActorUnattributed = "unattributed"
)

// AuditRepairPrefix starts the Request of a repair ("repair:restart").
const AuditRepairPrefix = "repair:"

// RequestConnect names a connect in the audit trail.
const RequestConnect = "connect"

// ActorHeader is the Temporal header that carries the actor of a request
// (a JSON string), set by control's context propagator.
const ActorHeader = "companionsync-actor"
