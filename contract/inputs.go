package contract

import "time"

// ConnectionInput starts a ConnectionWorkflow. State is empty on the first
// run and carries everything across continue-as-new.
type ConnectionInput struct {
	Home      string           `json:"home"`
	Companion string           `json:"companion"`
	Settings  Settings         `json:"settings,omitzero"`
	State     *ConnectionState `json:"state,omitempty"`
	// Protocol is the acknowledgement protocol of the connection and its
	// children, carried across continue-as-new. From ProtocolPublished on,
	// the workflow chooses it for a new connection (CurrentProtocol) and
	// ignores what the starter sent; starters still send one
	// (StarterProtocol) for workers of earlier releases.
	Protocol Protocol `json:"protocol,omitempty"`
	// Adopt, set by the reconciler on a first run, takes over a registered
	// connection whose workflow is gone instead of connecting anew.
	Adopt *AdoptState `json:"adopt,omitempty"`
}

// AdoptState starts a ConnectionWorkflow that takes over a registered
// connection whose workflow is gone. There is no handshake: the registry row
// stays as it is (its token names the gone run, and a disconnect removes it
// all the same). Shares whose workflow still runs are adopted and asked to
// report; the others are started again with their intent, from the data
// the companion holds (copies are idempotent). The metadata sync is adopted
// or started again like any child.
type AdoptState struct {
	// Reason says why the connection is adopted, for the transitions.
	Reason string `json:"reason"`
	// DataSpaces are the home org's data spaces.
	DataSpaces []string       `json:"dataSpaces"`
	Shares     []AdoptedShare `json:"shares"`
	// Disconnecting carries on a disconnect the gone run had accepted.
	Disconnecting bool `json:"disconnecting,omitempty"`
}

// AdoptedShare is a share found by the reconciler for an adopted connection.
type AdoptedShare struct {
	DataSpace string `json:"dataSpace"`
	// Running says whether the share's workflow still runs.
	Running bool `json:"running"`
	// Status is the share's last published Initialization Status; a share
	// in Removing Sharing goes on removing, any other is kept shared.
	Status InitializationStatus `json:"status"`
	// Checkpoint is where the initial sync of a gone share stopped; a
	// share started again in Activating copies on from it.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// ProbeRequest is the optional payload of SignalProbe: the checkpoints of
// gone shares, by data space, that their restarted copies go on from.
type ProbeRequest struct {
	Checkpoints map[string]string `json:"checkpoints,omitempty"`
}

// ShareIntent is what the operator wants of a share.
type ShareIntent string

// Share intents.
const (
	// IntentShared: the data space's records are copied to the companion.
	IntentShared ShareIntent = "shared"
	// IntentRemoved: the data space's records are removed from the companion
	// and the share ends.
	IntentRemoved ShareIntent = "removed"
)

// ShareDesired is the connection's desired state of a share. Generation is
// bumped by every accepted share, unshare and retry (and by a disconnect);
// a share acknowledges each generation once and carries out its intent: a
// new generation with the same intent is a retry of a share in Error.
type ShareDesired struct {
	Generation int64       `json:"generation"`
	Intent     ShareIntent `json:"intent"`
	// Answer asks for a report even when receiving the generation changes
	// nothing: the connection probes a child whose state it does not know.
	Answer bool `json:"answer,omitempty"`
	// Complete says that the sender is the connection run that started the
	// share's workflow and reads its result: the end of a removal is then
	// reported by completing, not by a signal (ProtocolDeliveryAck).
	Complete bool `json:"complete,omitempty"`
	// Suspended holds a first sync after its current step while the
	// connection is Inactive (ProtocolAccountable); the copy goes on from
	// its checkpoint once a later generation clears it. A removal ignores it.
	Suspended bool `json:"suspended,omitempty"`
}

// SuspendedWaiting is a share's Waiting while its first sync is suspended.
const SuspendedWaiting = "suspended while the connection is Inactive; the first sync goes on from its checkpoint when a health check passes again"

// ShareReport is a share's report to its connection: the generation it has
// acknowledged and its own view. Reports are sent on acknowledgements and
// status changes, never for progress.
type ShareReport struct {
	Generation int64     `json:"generation"`
	View       ShareView `json:"view"`
}

// ShareInput starts a DataSpaceShareWorkflow with its desired state. State
// is empty for a new share; it carries the share across continue-as-new, and
// holds the last report when a connection restarts a vanished share.
type ShareInput struct {
	Home      string       `json:"home"`
	Companion string       `json:"companion"`
	DataSpace string       `json:"dataSpace"`
	Settings  Settings     `json:"settings"`
	Desired   ShareDesired `json:"desired"`
	State     *ShareState  `json:"state,omitempty"`
	// Protocol is its connection's.
	Protocol Protocol `json:"protocol,omitempty"`
}

// ShareState is the state of a share carried to its next run.
type ShareState struct {
	// Acked is the generation of the desired state the share carries out.
	Acked int64     `json:"acked"`
	View  ShareView `json:"view"`
	// Checkpoint is the last record id the initial sync has copied up to.
	Checkpoint string `json:"checkpoint"`
	// RemovalDeadline is when the running removal must be done; zero when
	// no removal is running.
	RemovalDeadline time.Time `json:"removalDeadline"`
	// CopyStartedAt and CopiedAtStart are when the running first sync was
	// first seen moving and how many records were copied then: its rate.
	CopyStartedAt time.Time `json:"copyStartedAt,omitzero"`
	CopiedAtStart int       `json:"copiedAtStart,omitempty"`
}

// MetadataDesired is the connection's desired state of its metadata sync.
// Generation is bumped by every change of it. Resume is the generation of
// the last accepted resume: the sync resumes when it acknowledges a
// generation at or past it for the first time.
type MetadataDesired struct {
	Generation int64    `json:"generation"`
	DataSpaces []string `json:"dataSpaces"`
	// Suspended holds rounds off while the connection is Inactive.
	Suspended bool  `json:"suspended"`
	Resume    int64 `json:"resume"`
	// Stop asks the sync to finish (the connection is disconnecting).
	Stop bool `json:"stop"`
	// Answer asks for a report even when nothing changed (a probe).
	Answer bool `json:"answer,omitempty"`
	// Complete: the sender started the sync and reads its result, so the
	// stop is reported by completing (ProtocolDeliveryAck).
	Complete bool `json:"complete,omitempty"`
}

// MetadataReport is the metadata sync's report to its connection.
type MetadataReport struct {
	Generation int64            `json:"generation"`
	View       MetadataSyncView `json:"view"`
}

// MetadataSyncInput starts a MetadataSyncWorkflow with its desired state.
// State carries the sync across continue-as-new and across a restart by the
// connection.
type MetadataSyncInput struct {
	Home      string            `json:"home"`
	Companion string            `json:"companion"`
	Settings  Settings          `json:"settings"`
	Desired   MetadataDesired   `json:"desired"`
	State     MetadataSyncState `json:"state"`
	// Protocol is its connection's.
	Protocol Protocol `json:"protocol,omitempty"`
}

// MetadataSyncState is the state of a metadata sync carried to its next run.
type MetadataSyncState struct {
	Acked int64            `json:"acked"`
	View  MetadataSyncView `json:"view"`
	// UpTo is the highest change sequence counted for the next round.
	UpTo int64 `json:"upTo"`
	// NextRoundAt is when the next round is due.
	NextRoundAt time.Time `json:"nextRoundAt"`
	// ErrorLog holds the entries of the last failed round.
	ErrorLog []ErrorLogEntry `json:"errorLog,omitempty"`
	// ResumePending carries a resume acknowledged but not yet carried out.
	ResumePending bool `json:"resumePending,omitempty"`
	// Waiting is set while the sync waits for the fleet watcher's wake
	// without a round timer, its last count having found nothing pending
	// (ProtocolWatched).
	Waiting bool `json:"waiting,omitempty"`
}
