package companionsync

// Watched is what one sweep of the fleet watcher reads of one watched
// connection: what it last told the connection, and the store's current
// state from which it derives what to tell now. The watcher keeps no state
// of its own: a connection that waits without timers (see the connection
// protocol "watched") records here what it saw, and the watcher wakes it
// when the store has moved on.
type Watched struct {
	Connection
	// Health is the digest of the health the connection last saw: recorded
	// by its own checks, or by the watcher when it told it of a change.
	Health string
	// HomeOrg and CompanionOrg are the orgs as they are now.
	HomeOrg, CompanionOrg Org
	// CompanionsUsed is the home org's number of connections now.
	CompanionsUsed int
	// DataSpaces are the home org's data spaces now, sorted.
	DataSpaces []string
	// MetadataWaiting is set while the connection's metadata sync waits
	// for changes without a timer, over MetadataSpaces; PendingChanges are
	// the changes of those data spaces not applied yet.
	MetadataWaiting bool
	MetadataSpaces  []string
	PendingChanges  int
}
