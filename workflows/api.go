// Package workflows runs companion connections on Temporal: one
// ConnectionWorkflow per home/companion pair, one DataSpaceShareWorkflow per
// shared data space and one MetadataSyncWorkflow per connection.
//
// This file is the contract: the task queue, workflow names and IDs, inputs,
// statuses, message names and payloads, and search-attribute keys. Clients,
// the CLI and tests use these names; no other file spells them.
package workflows

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/companionsync/companionsync/activities"
)

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

// ConnectionStatus is the Connection Status of SPEC. Values are the published names.
type ConnectionStatus string

// Connection statuses.
const (
	Connecting   ConnectionStatus = "Connecting"
	Incomplete   ConnectionStatus = "Incomplete"
	Active       ConnectionStatus = "Active"
	Inactive     ConnectionStatus = "Inactive"
	Disconnected ConnectionStatus = "Disconnected"
)

// Names that appear in transitions, listings and the CLI beside the published
// statuses. They are not statuses of a running workflow.
const (
	// Refused is how a connection whose handshake refused the pair is shown.
	Refused = "Refused"
	// Disconnecting is the transition recorded when a disconnect is accepted.
	Disconnecting = "Disconnecting"
	// Removed is the transition recorded when a share's data is gone from the
	// companion and the share no longer exists.
	Removed = "Removed"
)

// RunState is the execution status of the workflow behind a status read:
// Running while it works, otherwise how it closed. A read of a connection
// whose workflow closed other than by a disconnect reports the closing state
// instead of the last live status.
type RunState string

// Run states, named as the Web UI names execution statuses.
const (
	RunRunning    RunState = "Running"
	RunCompleted  RunState = "Completed"
	RunFailed     RunState = "Failed"
	RunTerminated RunState = "Terminated"
	RunTimedOut   RunState = "TimedOut"
	RunCanceled   RunState = "Canceled"
)

// InitializationStatus is the Initialization Status of one shared data space.
type InitializationStatus string

// Initialization statuses.
const (
	Activating      InitializationStatus = "Activating"
	ShareActive     InitializationStatus = "Active"
	ShareError      InitializationStatus = "Error"
	RemovingSharing InitializationStatus = "Removing Sharing"
)

// MetadataSyncStatus is the Metadata Sync Status of a connection. It is empty
// until the first share becomes Active and the metadata sync starts.
type MetadataSyncStatus string

// Metadata sync statuses.
const (
	SyncPending    MetadataSyncStatus = "Pending"
	SyncInProgress MetadataSyncStatus = "In Progress"
	SyncSucceeded  MetadataSyncStatus = "Succeeded"
	SyncError      MetadataSyncStatus = "Error"
)

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
	// QueryErrorLog returns the []activities.ErrorLogEntry of the last
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
	// activities.Ineligibility naming the rule.
	RefusalIneligible = activities.ErrIneligible
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

// Search attributes (all Keyword), registered at worker start.
var (
	AttrConnectionStatus     = temporal.NewSearchAttributeKeyKeyword("CompanionConnectionStatus")
	AttrMetadataSyncStatus   = temporal.NewSearchAttributeKeyKeyword("MetadataSyncStatus")
	AttrInitializationStatus = temporal.NewSearchAttributeKeyKeyword("InitializationStatus")
	AttrHomeOrg              = temporal.NewSearchAttributeKeyKeyword("HomeOrg")
	AttrCompanionOrg         = temporal.NewSearchAttributeKeyKeyword("CompanionOrg")
	AttrDataSpace            = temporal.NewSearchAttributeKeyKeyword("DataSpace")
	// AttrProtocol is the protocol a run executes (its decimal number), from
	// ProtocolPublished on: set at a child's start, written by a
	// connection's first run with its first status update, by a run that
	// moves just before it continues as new, and carried by continue-as-new.
	// A run without it started under an earlier protocol.
	AttrProtocol = temporal.NewSearchAttributeKeyKeyword("CompanionProtocol")
)

// SearchAttributes lists every custom search attribute of the contract.
func SearchAttributes() []temporal.SearchAttributeKeyKeyword {
	return []temporal.SearchAttributeKeyKeyword{
		AttrConnectionStatus, AttrMetadataSyncStatus, AttrInitializationStatus,
		AttrHomeOrg, AttrCompanionOrg, AttrDataSpace, AttrProtocol,
	}
}

// RetrySettings is the retry policy of an activity.
type RetrySettings struct {
	InitialInterval    time.Duration `json:"initialInterval,omitzero"`
	BackoffCoefficient float64       `json:"backoffCoefficient,omitzero"`
	MaximumInterval    time.Duration `json:"maximumInterval,omitzero"`
	// MaximumAttempts bounds the attempts of one step; 0 means unlimited.
	MaximumAttempts int32 `json:"maximumAttempts,omitzero"`
}

func (r RetrySettings) policy() *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:    r.InitialInterval,
		BackoffCoefficient: r.BackoffCoefficient,
		MaximumInterval:    r.MaximumInterval,
		MaximumAttempts:    r.MaximumAttempts,
	}
}

// Settings are the intervals, deadlines and retry policies of a connection.
// Zero fields take the production defaults of DefaultSettings, so tests and
// the demo shrink only what they need.
type Settings struct {
	// HealthCheckInterval is the period of the licence and companion check.
	HealthCheckInterval time.Duration `json:"healthCheckInterval,omitzero"`
	// MetadataSyncInterval is the period of metadata sync rounds.
	MetadataSyncInterval time.Duration `json:"metadataSyncInterval,omitzero"`
	// RemovalDeadline bounds the removal of a data space from the companion.
	RemovalDeadline time.Duration `json:"removalDeadline,omitzero"`
	// InitialSyncRetry is the retry policy of each initial sync step.
	InitialSyncRetry RetrySettings `json:"initialSyncRetry,omitzero"`
	// ActivityRetry is the retry policy of the other activities.
	ActivityRetry RetrySettings `json:"activityRetry,omitzero"`
	// BatchSize is the number of records copied or removed per batch.
	BatchSize int `json:"batchSize,omitzero"`
	// StepBudget is how long one copy or removal activity works before it
	// reports progress back to the workflow.
	StepBudget time.Duration `json:"stepBudget,omitzero"`
	// EventBudget is the history length after which a long-lived workflow
	// continues as new, even if the server has not suggested it yet.
	EventBudget int `json:"eventBudget,omitzero"`
	// TestPassesPerRun is for the SDK's test environment only, which reports
	// no history length: share and metadata-sync workflows continue as new
	// after this many steps or passes of their main loop. (Tests make the
	// connection continue as new with SetContinueAsNewSuggested.) Zero, as
	// in production, disables it.
	TestPassesPerRun int `json:"testPassesPerRun,omitzero"`
}

// DefaultSettings are the production defaults.
func DefaultSettings() Settings {
	return Settings{
		HealthCheckInterval:  5 * time.Minute,
		MetadataSyncInterval: 15 * time.Minute,
		RemovalDeadline:      30 * time.Minute,
		InitialSyncRetry: RetrySettings{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 5,
		},
		ActivityRetry: RetrySettings{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 0,
		},
		BatchSize:   500,
		StepBudget:  2 * time.Second,
		EventBudget: 2000,
	}
}

// fillFrom fills the zero fields of s from d.
func (s Settings) fillFrom(d Settings) Settings {
	if s.HealthCheckInterval <= 0 {
		s.HealthCheckInterval = d.HealthCheckInterval
	}
	if s.MetadataSyncInterval <= 0 {
		s.MetadataSyncInterval = d.MetadataSyncInterval
	}
	if s.RemovalDeadline <= 0 {
		s.RemovalDeadline = d.RemovalDeadline
	}
	if s.InitialSyncRetry.InitialInterval <= 0 {
		s.InitialSyncRetry = d.InitialSyncRetry
	}
	if s.ActivityRetry.InitialInterval <= 0 {
		s.ActivityRetry = d.ActivityRetry
	}
	if s.BatchSize <= 0 {
		s.BatchSize = d.BatchSize
	}
	if s.StepBudget <= 0 {
		s.StepBudget = d.StepBudget
	}
	if s.EventBudget <= 0 {
		s.EventBudget = d.EventBudget
	}
	return s
}

// withDefaults fills zero fields from DefaultSettings.
func (s Settings) withDefaults() Settings { return s.fillFrom(DefaultSettings()) }

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
	// CurrentProtocol is the protocol of connections started now, and the
	// one every running workflow moves to at its next continue-as-new.
	CurrentProtocol = ProtocolPublished
	// StarterProtocol is what starters put in a new connection's input:
	// the protocol a worker of the release before ProtocolPublished runs it
	// on, should one take it during a rolling deploy. Workers of this
	// release ignore it and choose CurrentProtocol.
	StarterProtocol = ProtocolProgressReport
	// OldestProtocol is the oldest protocol this code replays. A worker
	// that finds a running workflow on an older one runs no workflows (see
	// docs/operations.md, "Upgrades").
	OldestProtocol = ProtocolProgressReport
	// LastReleaseOfRetired is the last release (commit) that runs the
	// protocols before OldestProtocol and moves their runs onto the
	// current one: a fleet with runs on them upgrades through it first.
	LastReleaseOfRetired = "2434af3"
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

// checkProtocol fails the workflow task when the input names a protocol
// this code does not run: newer than it knows (a worker of an older
// release took a task of a run that a newer release moved on), or retired. Failing the task (the SDK retries
// it, and a worker of the newer release takes it) keeps the state the
// older code would drop when it continued as new.
func checkProtocol(workflowName string, p Protocol) {
	if p > CurrentProtocol {
		panic(fmt.Sprintf("%s: input of protocol %d, newer than this worker's %d; a worker of a newer release must run it (this task fails and is retried)",
			workflowName, p, CurrentProtocol))
	}
	if p < OldestProtocol {
		panic(fmt.Sprintf("%s: input of protocol %d, which this release no longer runs (it runs %d to %d); run release %s until starter doctor reports no run on it (this task fails and is retried)",
			workflowName, p, OldestProtocol, CurrentProtocol, LastReleaseOfRetired))
	}
}

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
}

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
	ErrorLog []activities.ErrorLogEntry `json:"errorLog,omitempty"`
	// ResumePending carries a resume acknowledged but not yet carried out.
	ResumePending bool `json:"resumePending,omitempty"`
}

// ShareView is the state of one shared data space.
type ShareView struct {
	DataSpace            string               `json:"name"`
	InitializationStatus InitializationStatus `json:"initializationStatus"`
	RecordsCopied        int                  `json:"recordsCopied"`
	RecordsTotal         int                  `json:"recordsTotal"`
	RecordsRemoved       int                  `json:"recordsRemoved,omitempty"`
	RecordsToRemove      int                  `json:"recordsToRemove,omitempty"`
	Error                string               `json:"error"`
	// Removed is set on the last report of a share: its data is gone from
	// the companion and the share no longer exists.
	Removed bool `json:"removed,omitempty"`
	// Requested names a request the share's workflow has not acknowledged
	// yet (RequestShare, RequestUnshare or RequestRetry); the status beside
	// it is still the one the workflow last reported.
	Requested string `json:"requested,omitempty"`
	// Orphaned says why the share's workflow stopped working without being
	// asked to (its connection workflow is gone); empty otherwise.
	Orphaned string `json:"orphaned,omitempty"`
}

// MetadataSyncView is the state of a connection's metadata sync.
type MetadataSyncView struct {
	Status          MetadataSyncStatus `json:"status"`
	PendingChanges  int                `json:"pendingChanges"`
	LastSucceededAt *time.Time         `json:"lastSucceededAt"`
	ErrorCount      int                `json:"errorCount"`
	Error           string             `json:"error"`
	// Paused is true while a failed round waits for a resume.
	Paused bool `json:"paused"`
	// Rounds counts the rounds run so far.
	Rounds int `json:"rounds"`
	// Stopped is set on the last report, when the sync has finished.
	Stopped bool `json:"stopped,omitempty"`
	// Requested is RequestResume while a resume is not acknowledged yet.
	Requested string `json:"requested,omitempty"`
	// Orphaned says why the sync stopped without being asked to (its
	// connection workflow is gone); empty otherwise.
	Orphaned string `json:"orphaned,omitempty"`
}

// Transition is one status change of a connection, kept for the status view.
type Transition struct {
	At time.Time `json:"at"`
	// Subject is what changed: "connection", "data space NAME" or "metadata sync".
	Subject string `json:"subject"`
	Status  string `json:"status"`
	Detail  string `json:"detail,omitempty"`
}

// StatusView is the answer of the connection's status query and the shape
// the CLI prints with --json.
type StatusView struct {
	Connection    string           `json:"connection"`
	Status        ConnectionStatus `json:"status"`
	Reason        string           `json:"reason"`
	Disconnecting bool             `json:"disconnecting"`
	DataSpaces    []ShareView      `json:"dataSpaces"`
	MetadataSync  MetadataSyncView `json:"metadataSync"`
	LastRejected  string           `json:"lastRejected"`
	Transitions   []Transition     `json:"transitions"`
	// Workflow is the execution status of the connection's workflow, set by
	// control on a status read. When it closed without a disconnect, Status
	// reads the closing state (for example Terminated) and LastStatus keeps
	// the last status it reported.
	Workflow   RunState         `json:"workflow,omitempty"`
	LastStatus ConnectionStatus `json:"lastStatus,omitempty"`
	// Stale is set by control when no worker answered the status query in
	// time: the view is then the state the workflows last published in
	// their search attributes (statuses only: no reason, progress or
	// requests), read from the server without a worker.
	Stale bool `json:"stale,omitempty"`
	// Protocol is the acknowledgement protocol the connection runs. From
	// ProtocolProgressReport on, the view holds its children's progress
	// and a status read needs no other query.
	Protocol Protocol `json:"protocol,omitempty"`
}
