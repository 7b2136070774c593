package workflows

import "go.temporal.io/sdk/workflow"

// What the Web UI shows beside each signal, update and query of the
// workflows ("Send a Signal", the query list, the workflow's metadata):
// every handler is registered with its description.
// TestEveryHandlerIsDescribed reads each workflow type's metadata query and
// fails on a handler without one.

// internalNote ends the description of every signal the workflows send each
// other.
const internalNote = " Internal: sent by companionsync's own workflows; not for operators."

// messageDescriptions describe the operator messages, each both a signal and
// an update of the connection.
var messageDescriptions = map[string]string{
	MessageShare: `Share a data space of the home org with the companion: its records are copied, then its metadata kept in sync. ` +
		`Input: {"dataSpace": "NAME"}. Refused when the data space is unknown or already shared, or the connection is Inactive or disconnecting.`,
	MessageUnshare: `Stop sharing a data space: its copies are removed from the companion. ` +
		`Input: {"dataSpace": "NAME"}. Refused when it is not shared or already being removed.`,
	MessageRetry: `Retry the first sync, or the removal, of a data space in Error; a copy goes on from its checkpoint. ` +
		`Input: {"dataSpace": "NAME"}. Refused unless the data space is in Error.`,
	MessageResume:     `Resume the metadata sync paused by a failed round (resolve the conflict first). No input. Refused when nothing is paused.`,
	MessageRecheck:    `Check the home org's licence and the companion's activity now instead of at the next health check. No input.`,
	MessageDisconnect: `Disconnect: remove every shared data space from the companion, stop the metadata sync, release the companion. No input. Cannot be undone.`,
}

// signalDescriptions describe the signals that are not operator messages.
var signalDescriptions = map[string]string{
	SignalShareDesired:    "The state its connection wants this share in (shared or removed), with a generation to acknowledge." + internalNote,
	SignalShareReport:     "A share reports its status, progress and the generation it acknowledged." + internalNote,
	SignalMetadataDesired: "The data spaces its connection wants kept in sync, and a pending resume." + internalNote,
	SignalMetadataReport:  "The metadata sync reports its status, counts and the generation it acknowledged." + internalNote,
	SignalProbe:           "Asks the connection to make each child report again and to start again any that is gone. Sent by the reconciler and `starter doctor --repair`; safe to send by hand.",
	SignalWatch:           "The fleet watcher reports the connection's health (licence, companion, data spaces) because it changed since the connection last saw it. Sent by the fleet watcher; a re-check does the same." + internalNote,
	SignalMetadataWake:    "The fleet watcher reports that metadata changes arrived for a sync that waits for them; the sync counts them and runs its next round an interval later." + internalNote,
	SignalWatcherSettings: "New periods for the fleet watcher (a WatcherInput), taken from its next sweep on. Sent by workers at start when their periods differ; safe to send by hand.",
	SignalUpgrade:         "Asks a run on an earlier protocol to continue as new onto the current one at its next safe point; ignored by a run already on it. Sent by workers at start, the reconciler and `starter doctor --repair`; safe to send by hand.",
}

// describeSignal is the description of a signal name.
func describeSignal(name string) string {
	if d, ok := messageDescriptions[name]; ok {
		return d
	}
	return signalDescriptions[name]
}

// query descriptions, by workflow.
const (
	describeConnectionStatus = "The connection's status: Connection Status and reason, each data space's Initialization Status and progress, the Metadata Sync Status, requests not yet acknowledged, the last rejected message. What `starter status --json` prints."
	describeShareStatus      = "This share's Initialization Status, progress (records copied or removed), checkpoint, error and any wait on the org store."
	describeMetadataStatus   = "The metadata sync's status: pending changes, the last round, whether it is paused and why."
	describeErrorLog         = "The error log of the last failed metadata round: one entry per failing change (sequence, data space, object, kind, message). What `starter error-log` prints."
	describeReconcilerReport = "This reconciler run's report: what it found (kind, workflow, age, what to do) and what it repaired."
	describeWatcherStatus    = "The fleet watcher's last sweeps: when it last read the store, how many connections it watches, how many it woke, and any failure."
	describeAwaitConnected   = "Waits until the handshake is over and returns the status; fails with the rule that refused the pair. Used by `starter connect`."
)

// queryOptions is the options of a query handler described by d.
func queryOptions(d string) workflow.QueryHandlerOptions {
	return workflow.QueryHandlerOptions{Description: d}
}
