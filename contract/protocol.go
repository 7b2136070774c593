package contract

import "strconv"

// Protocol is how a connection and its children acknowledge each other. It
// is fixed in a connection's input when the connection starts, carried across
// continue-as-new and handed to its children, so a history always replays
// with the protocol it was recorded under; it costs no history events, where
// a workflow.GetVersion marker costs two in every run.
type Protocol int

const (
	// Protocols 0 to 2 are retired: this code runs none of them (see
	// OldestProtocol), and their names stay for messages and history.
	//
	// ProtocolReportEveryAck is the first protocol: a child reports every
	// generation it receives, and the connection waits for that report.
	// Runs recorded before ProtocolDeliveryAck replay with it.
	ProtocolReportEveryAck Protocol = 0
	// ProtocolDeliveryAck: the start of a child, or the server's
	// confirmation that a signal reached it, acknowledges the desired
	// state it carries; both sides derive the status it implies with one
	// function (ackShare). Children report only the changes they make
	// themselves (Active, Error, removed, metadata rounds, stopped). Short
	// steps run as local activities, an update's wait for acknowledgement
	// needs no timer, and the connection's first run writes no version
	// markers.
	ProtocolDeliveryAck Protocol = 1
	// ProtocolLocalReport is ProtocolDeliveryAck with children's reports
	// signalled from a local activity (ReportToConnection): one marker
	// event where a signal sent by the workflow costs two events and a
	// workflow task of the child's own.
	ProtocolLocalReport Protocol = 2
	// Protocol 3 is retired too: LastReleaseOfRetired runs it.
	//
	// ProtocolProgressReport is ProtocolLocalReport with children reporting
	// their progress too: a share after each copy or removal step that did
	// not finish, the metadata sync after each round. The connection then
	// knows everything its status shows, and a status read is one query.
	ProtocolProgressReport Protocol = 3
	// ProtocolPublished is ProtocolProgressReport with every run writing
	// its protocol to the CompanionProtocol search attribute, a new
	// connection's protocol chosen by the workflow code (the starter's is
	// ignored), and a run of an earlier protocol asked by SignalUpgrade
	// continuing as new onto CurrentProtocol. It carries the same state as ProtocolProgressReport,
	// so a worker of the release before, which reads it as
	// ProtocolProgressReport, loses nothing of it.
	ProtocolPublished Protocol = 4
	// ProtocolAccountable is ProtocolPublished with a connection that
	// records every request in the org store's audit trail, notifies the
	// conditions an operator must hear of (a share in Error, a paused
	// metadata sync, Inactive, an overdue removal, a licence about to
	// expire), and suspends its first syncs while it is Inactive. Its
	// children run as on ProtocolPublished, except that a share takes the
	// suspension from its desired state. It carries the state of
	// ProtocolPublished plus fields the earlier code ignores.
	ProtocolAccountable Protocol = 5
	// ProtocolWatched is ProtocolAccountable with a connection that, while
	// nothing is in flight (no request unacknowledged, no removal, no
	// share waiting to start), sets no health-check timer: the fleet
	// watcher reads every connection's health in one sweep and signals
	// (SignalWatch) only the connections whose health changed, and the
	// connection checks on its own once per ResyncInterval and at its
	// licence's warning and expiry times. Its metadata sync, once nothing
	// is pending, waits without a round timer until the watcher signals
	// that changes arrived (SignalMetadataWake). Both record what they saw
	// in the org store for the watcher. It carries the state of
	// ProtocolAccountable plus fields the earlier code ignores.
	ProtocolWatched Protocol = 6
	// CurrentProtocol is the protocol of connections started now, and the
	// one every running workflow moves to at its next continue-as-new.
	CurrentProtocol = ProtocolWatched
	// StarterProtocol is what starters put in a new connection's input.
	// Workers since ProtocolPublished ignore it and choose their current
	// protocol (recorded by a version marker); it is the oldest protocol
	// this code runs.
	StarterProtocol = ProtocolPublished
	// OldestProtocol is the oldest protocol this code replays. A worker
	// that finds a running workflow on an older one runs no workflows (see
	// docs/operations.md, "Upgrades").
	OldestProtocol = ProtocolPublished
	// LastReleaseOfRetired is the last release (commit) that runs
	// ProtocolProgressReport, the last protocol retired, and moves its runs
	// onto a protocol this code runs: a fleet with runs on it upgrades
	// through it first (and one with runs on protocols 0 to 2 through
	// 2434af3 before that).
	LastReleaseOfRetired = "a6bc62f"
)

// ProtocolOf reads the protocol of a run from its CompanionProtocol search
// attribute value; ok is false when the run has none (it predates
// ProtocolPublished) or the value is not a protocol number.
func ProtocolOf(attr string) (p Protocol, ok bool) {
	n, err := strconv.Atoi(attr)
	if err != nil || n < 0 {
		return 0, false
	}
	return Protocol(n), true
}

// String is the protocol's search-attribute value, its decimal number.
func (p Protocol) String() string { return strconv.Itoa(int(p)) }
