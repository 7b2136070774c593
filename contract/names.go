// Package contract is what the workflows of companionsync and their callers
// agree on: the task queue, workflow, signal, update and query names,
// workflow IDs, search attributes, status names, the shapes of requests,
// reports, inputs and status views, the protocol numbers, the refusal and
// error types, and the reconciler's findings.
//
// It is a leaf: it imports the domain package and the SDK's temporal
// package (for search-attribute keys and retry policies), nothing else of
// the project. Package workflows implements the contract; activities,
// control and the CLI speak it. Its names are re-exported by workflows and
// activities (as aliases), so code written against those keeps compiling.
package contract

import "strings"

// TaskQueue is the task queue every workflow and activity of the service runs on.
const TaskQueue = "companionsync"

// Workflow type names, as registered with the worker and shown in the UI.
const (
	ConnectionWorkflowName   = "ConnectionWorkflow"
	ShareWorkflowName        = "DataSpaceShareWorkflow"
	MetadataSyncWorkflowName = "MetadataSyncWorkflow"
)

// ConnectionWorkflowID is the workflow ID of the connection HOME/COMPANION.
func ConnectionWorkflowID(home, companion string) string {
	return "companion-connection:" + home + ":" + companion
}

// ShareWorkflowID is the workflow ID of the share of dataSpace on HOME/COMPANION.
func ShareWorkflowID(home, companion, dataSpace string) string {
	return "companion-share:" + home + ":" + companion + ":" + dataSpace
}

// MetadataSyncWorkflowID is the workflow ID of the metadata sync of HOME/COMPANION.
func MetadataSyncWorkflowID(home, companion string) string {
	return "companion-metadata-sync:" + home + ":" + companion
}

// Reference is the operator-facing name of a connection, "HOME/COMPANION".
func Reference(home, companion string) string { return home + "/" + companion }

// ParseReference splits "HOME/COMPANION". ok is false unless both parts are
// non-empty and there is exactly one slash.
func ParseReference(ref string) (home, companion string, ok bool) {
	home, companion, found := strings.Cut(ref, "/")
	if !found || home == "" || companion == "" || strings.Contains(companion, "/") {
		return "", "", false
	}
	return home, companion, true
}

// Operator messages. Each exists as a signal (so `temporal workflow signal`
// and the Web UI can send it) and as a validated update of the same name (so
// the typed client learns of a refusal at once). Share, unshare and retry
// take a DataSpaceRequest; the others take no input.
const (
	MessageShare      = "share"
	MessageUnshare    = "unshare"
	MessageRetry      = "retry"
	MessageResume     = "resume"
	MessageRecheck    = "recheck"
	MessageDisconnect = "disconnect"
)

// UpdateAwaitConnected waits until the handshake is over and returns the
// status; it fails with the ineligibility when the pair was refused.
const UpdateAwaitConnected = "await-connected"

// Queries.
const (
	// QueryStatus returns a StatusView on the connection workflow, a
	// ShareView on a share workflow and a MetadataSyncView on the metadata
	// sync workflow.
	QueryStatus = "status"
	// QueryErrorLog returns the []ErrorLogEntry of the last
	// failed metadata round, on the metadata sync workflow.
	QueryErrorLog = "error-log"
)

// Internal signals between the workflows of one connection. The connection
// sends each child its desired state; the child answers with a report of the
// generation it acknowledged and its own status.
const (
	// SignalShareDesired carries a ShareDesired from a connection to a share.
	SignalShareDesired = "share-desired"
	// SignalShareReport carries a ShareReport from a share to its connection.
	SignalShareReport = "share-report"
	// SignalMetadataDesired carries a MetadataDesired to the metadata sync.
	SignalMetadataDesired = "metadata-sync-desired"
	// SignalMetadataReport carries a MetadataReport to the connection.
	SignalMetadataReport = "metadata-sync-report"
	// SignalProbe (no input) asks a connection to make each child report
	// again, and to start again the ones that are gone: the reconciler's
	// repair of a vanished share or metadata sync.
	SignalProbe = "probe"
	// SignalUpgrade (an optional UpgradeRequest) asks a run of any of the
	// three workflows on an older protocol to continue as new onto
	// CurrentProtocol at its next safe point: between two steps of a copy
	// or removal, or at once when it waits. A run already on the current
	// protocol ignores it, so it may be sent any number of times.
	SignalUpgrade = "upgrade"
)

// UpgradeRequest is the optional payload of SignalUpgrade. Who sends it is
// recorded in the run's log line; the workflow needs nothing from it.
type UpgradeRequest struct {
	// By names the sender (the worker at start, the reconciler, doctor).
	By string `json:"by,omitempty"`
}

// Refusal types: the type of the temporal.ApplicationError with which an
// update, or the handshake, refuses a request. They are stable; clients
// match on them (control turns them into sentinel errors), never on text.
const (
	RefusalInvalidRequest     = "InvalidRequest"
	RefusalUnknownDataSpace   = "UnknownDataSpace"
	RefusalAlreadyShared      = "AlreadyShared"
	RefusalNotShared          = "NotShared"
	RefusalAlreadyRemoving    = "AlreadyRemoving"
	RefusalNotInError         = "NotInError"
	RefusalNotPaused          = "NotPaused"
	RefusalConnectionInactive = "ConnectionInactive"
	RefusalStillConnecting    = "StillConnecting"
	RefusalDisconnecting      = "Disconnecting"
	// RefusalIneligible is the handshake's refusal; its details hold an
	// Ineligibility naming the rule.
	RefusalIneligible = ErrIneligible
)

// Requests, as shown beside a status while the responsible workflow has
// not acknowledged them yet.
const (
	RequestShare   = "share"
	RequestUnshare = "unshare"
	RequestRetry   = "retry"
	RequestResume  = "resume"
)

// MaxDataSpaceName bounds the length of a data space name in a message.
const MaxDataSpaceName = 128

// DataSpaceRequest is the payload of share, unshare and retry.
type DataSpaceRequest struct {
	DataSpace string `json:"dataSpace"`
}
