package contract

import "time"

// ConnectionState is the whole state of a connection. It is carried across
// continue-as-new, so it holds everything a new run needs.
//
// The connection is a level-triggered reconciler: for each share and for the
// metadata sync it keeps the desired state (what operators asked for, under
// a generation number bumped by every accepted request) and the observed
// state (what the child workflow last reported, with the generation it
// acknowledged). Each pass of the main loop sends a child whatever it has
// not been given yet; a report of an older generation is ignored.
type ConnectionState struct {
	Status     ConnectionStatus `json:"status"`
	Reason     string           `json:"reason"`
	Handshaken bool             `json:"handshaken"`
	// DataSpaces are the home org's data spaces, from the handshake and
	// refreshed by each health check; share requests are checked against them.
	DataSpaces []string `json:"dataSpaces"`
	// Generation is the last generation handed out, for shares and the
	// metadata sync alike, so a re-created share never reuses one.
	Generation int64                   `json:"generation"`
	Shares     map[string]*ShareRecord `json:"shares"`
	Metadata   MetadataRecord          `json:"metadata"`

	NextHealthCheck time.Time    `json:"nextHealthCheck"`
	Disconnecting   bool         `json:"disconnecting"`
	LastRejected    string       `json:"lastRejected"`
	Transitions     []Transition `json:"transitions"`
	// Licence is what the last health check read of the home's licence.
	Licence *Licence `json:"licence,omitempty"`

	// PendingAudit are audit entries not written to the org store yet
	// (ProtocolAccountable); AuditSeq numbers the entries of signals, and
	// AuditDropped counts those dropped while the store was unreachable.
	PendingAudit []AuditEntry `json:"pendingAudit,omitempty"`
	AuditSeq     int64        `json:"auditSeq,omitempty"`
	AuditDropped int          `json:"auditDropped,omitempty"`
	// Incidents are the alert conditions open now, by Incident.Key, and
	// Notices the notifications of their opening or clearing not delivered
	// yet, oldest first (ProtocolAccountable).
	Incidents map[string]Incident `json:"incidents,omitempty"`
	Notices   []Notice            `json:"notices,omitempty"`
	// Watched is set once the connection recorded what it saw for the
	// fleet watcher (ProtocolWatched): from then on it waits without a
	// health-check timer while nothing is in flight. LastCheck is when it
	// last learnt its health, by its own check or from the watcher.
	Watched   bool      `json:"watched,omitempty"`
	LastCheck time.Time `json:"lastCheck,omitzero"`
	// Recheck asks for a health check at once (a re-check request), settled
	// or not (ProtocolWatched).
	Recheck bool `json:"recheck,omitempty"`
}

// ShareRecord is the connection's record of one share.
type ShareRecord struct {
	// Since is the generation of the share request that created the record;
	// reports of an earlier share of the same data space are ignored.
	Since   int64        `json:"since"`
	Desired ShareDesired `json:"desired"`
	// Request names the latest accepted request, shown until acknowledged.
	Request  string      `json:"request"`
	Observed ShareReport `json:"observed"`
	// Running is set once the share's workflow was started, and cleared
	// when a signal finds it gone.
	Running bool `json:"running"`
	// Sent is the generation the share's running workflow was last given,
	// by its input or a signal.
	Sent int64 `json:"sent"`
	// Problem is why the share's workflow could not be started.
	Problem string `json:"problem,omitempty"`
	// Probe asks the next pass to send the share's workflow its desired
	// state even if sent before, so that it reports, or is found gone and
	// started again.
	Probe bool `json:"probe,omitempty"`
	// Checkpoint, from the reconciler, is where the copy of a gone share
	// stopped; the share's next start in Activating copies on from it.
	Checkpoint string `json:"checkpoint,omitempty"`
	// StartedBy is the connection run that started the share's running
	// workflow (ProtocolDeliveryAck): that run reads its result.
	StartedBy string `json:"startedBy,omitempty"`
}

// MetadataRecord is the connection's record of its metadata sync.
type MetadataRecord struct {
	Desired  MetadataDesired `json:"desired"`
	Observed MetadataReport  `json:"observed"`
	Running  bool            `json:"running"`
	Sent     int64           `json:"sent"`
	// Probe asks the next pass to send the desired state again.
	Probe bool `json:"probe,omitempty"`
	// StartedBy is the connection run that started the running sync
	// (ProtocolDeliveryAck): that run reads its result.
	StartedBy string `json:"startedBy,omitempty"`
	// Reported is the generation of the last report taken
	// (ProtocolDeliveryAck, where a delivery can raise Observed.Generation
	// above it while the sync's report of a round is on its way).
	Reported int64 `json:"reported,omitempty"`
}

// Pending reports whether the share's workflow has not acknowledged the
// latest request yet.
func (r *ShareRecord) Pending() bool { return r.Observed.Generation < r.Desired.Generation }
