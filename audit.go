package companionsync

import "time"

// AuditEntry is one request to a connection as the audit trail keeps it:
// who asked, when, what, and what came of it. The trail lives in the org
// store, beyond the connection's workflows, and keeps every entry for the
// connection's whole life and after it disconnects.
type AuditEntry struct {
	// Connection is the connection's reference, HOME/COMPANION.
	Connection string `json:"connection"`
	// ID makes the entry unique within the connection; recording it again
	// (a retried step, a replayed validator) changes nothing.
	ID string `json:"id"`
	// At is when the worker took the request (the workflow's clock).
	At time.Time `json:"at"`
	// Actor is who asked: the --as flag or COMPANIONSYNC_ACTOR of starter
	// (by default USER@HOST), the actor a code caller set, contract.ActorReconciler
	// for repairs, or contract.ActorUnattributed for a message without the header.
	Actor string `json:"actor"`
	// Request is the operation: connect, share, unshare, retry, resume,
	// recheck, disconnect, or a repair (contract.AuditRepairPrefix + its kind).
	Request string `json:"request"`
	// Subject is the data space a share, unshare or retry names, or the
	// workflow a repair acted on; empty otherwise.
	Subject string `json:"subject,omitempty"`
	// Via is how the request came: update, signal, start or reconciler.
	Via string `json:"via"`
	// Outcome is contract.AuditAccepted or contract.AuditRefused.
	Outcome string `json:"outcome"`
	// Reason is the refusal (or what a repair did).
	Reason string `json:"reason,omitempty"`
}
