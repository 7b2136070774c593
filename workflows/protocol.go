package workflows

import (
	"fmt"
	"maps"
	"slices"
)

// protocolRules is what one supported protocol does differently. Every
// other behaviour is the same on every protocol from OldestProtocol to
// CurrentProtocol; a difference between them is a field here, read where
// it matters, never a comparison of protocol numbers in the workflow code.
type protocolRules struct {
	// publishes: the run writes its protocol to the CompanionProtocol
	// search attribute (at a child's start, with a connection's first
	// status update).
	publishes bool
	// moves: SignalUpgrade makes the run continue as new onto
	// CurrentProtocol at its next safe point.
	moves bool
	// accountable: the connection records requests in the audit trail,
	// notifies incidents, and suspends first syncs while Inactive.
	accountable bool
	// watched: the connection and its metadata sync wait without timers
	// while nothing is in flight, woken by the fleet watcher.
	watched bool
}

// protocols holds the rules of every protocol this code runs.
var protocols = map[Protocol]protocolRules{
	ProtocolPublished:   {publishes: true, moves: true},
	ProtocolAccountable: {publishes: true, moves: true, accountable: true},
	ProtocolWatched:     {publishes: true, accountable: true, watched: true},
}

// rules are the rules of p, which checkProtocol has accepted.
func rules(p Protocol) protocolRules { return protocols[p] }

// checkProtocol fails the workflow task when the input names a protocol
// this code does not run: newer than it knows (a worker of an older release
// took a task of a run that a newer release moved on), or retired. Failing
// the task (the SDK retries it, and a worker of the newer release takes it)
// keeps the state the older code would drop when it continued as new.
func checkProtocol(workflowName string, p Protocol) {
	if p > CurrentProtocol {
		panic(fmt.Sprintf("%s: input of protocol %d, newer than this worker's %d; a worker of a newer release must run it (this task fails and is retried)",
			workflowName, p, CurrentProtocol))
	}
	if _, ok := protocols[p]; !ok {
		panic(fmt.Sprintf("%s: input of protocol %d, which this release no longer runs (it runs %d to %d); run release %s until starter doctor reports no run on it (this task fails and is retried)",
			workflowName, p, OldestProtocol, CurrentProtocol, LastReleaseOfRetired))
	}
}

// SupportedProtocols lists the protocols this code runs, oldest first.
func SupportedProtocols() []Protocol {
	return slices.Sorted(maps.Keys(protocols))
}
