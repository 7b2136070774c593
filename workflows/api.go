// Package workflows runs companion connections on Temporal: one
// ConnectionWorkflow per home/companion pair, one DataSpaceShareWorkflow per
// shared data space and one MetadataSyncWorkflow per connection.
//
// This file is the contract: the task queue, workflow names and IDs, inputs,
// statuses, message names and payloads, and search-attribute keys. Clients,
// the CLI and tests use these names; no other file spells them.
package workflows

import (
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

// Internal signals between the workflows of one connection.
const (
	// SignalShareReport carries a ShareView from a share to its connection.
	SignalShareReport = "share-report"
	// SignalMetadataReport carries a MetadataSyncView to the connection.
	SignalMetadataReport = "metadata-sync-report"
	// SignalScope carries a SyncScope from the connection to its metadata sync.
	SignalScope = "scope"
	// SignalStop asks the metadata sync to finish.
	SignalStop = "stop"
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
)

// SearchAttributes lists every custom search attribute of the contract.
func SearchAttributes() []temporal.SearchAttributeKeyKeyword {
	return []temporal.SearchAttributeKeyKeyword{
		AttrConnectionStatus, AttrMetadataSyncStatus, AttrInitializationStatus,
		AttrHomeOrg, AttrCompanionOrg, AttrDataSpace,
	}
}

// RetrySettings is the retry policy of an activity.
type RetrySettings struct {
	InitialInterval    time.Duration `json:"initialInterval"`
	BackoffCoefficient float64       `json:"backoffCoefficient"`
	MaximumInterval    time.Duration `json:"maximumInterval"`
	// MaximumAttempts bounds the attempts of one step; 0 means unlimited.
	MaximumAttempts int32 `json:"maximumAttempts"`
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
	HealthCheckInterval time.Duration `json:"healthCheckInterval"`
	// MetadataSyncInterval is the period of metadata sync rounds.
	MetadataSyncInterval time.Duration `json:"metadataSyncInterval"`
	// RemovalDeadline bounds the removal of a data space from the companion.
	RemovalDeadline time.Duration `json:"removalDeadline"`
	// InitialSyncRetry is the retry policy of each initial sync step.
	InitialSyncRetry RetrySettings `json:"initialSyncRetry"`
	// ActivityRetry is the retry policy of the other activities.
	ActivityRetry RetrySettings `json:"activityRetry"`
	// BatchSize is the number of records copied or removed per batch.
	BatchSize int `json:"batchSize"`
	// StepBudget is how long one copy or removal activity works before it
	// reports progress back to the workflow.
	StepBudget time.Duration `json:"stepBudget"`
	// EventBudget is the history length after which a long-lived workflow
	// continues as new, even if the server has not suggested it yet.
	EventBudget int `json:"eventBudget"`
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

// ConnectionInput starts a ConnectionWorkflow. State is empty on the first
// run and carries everything across continue-as-new.
type ConnectionInput struct {
	Home      string           `json:"home"`
	Companion string           `json:"companion"`
	Settings  Settings         `json:"settings"`
	State     *ConnectionState `json:"state,omitempty"`
}

// ShareInput starts a DataSpaceShareWorkflow. State is empty on a new share
// and carries the share across continue-as-new; a connection that finds its
// share workflow gone restarts it with State.Removing to finish an unshare.
type ShareInput struct {
	Home      string      `json:"home"`
	Companion string      `json:"companion"`
	DataSpace string      `json:"dataSpace"`
	Settings  Settings    `json:"settings"`
	State     *ShareState `json:"state,omitempty"`
}

// ShareState is the state of a share carried to its next run.
type ShareState struct {
	View ShareView `json:"view"`
	// Checkpoint is the last record id the initial sync has copied up to.
	Checkpoint string `json:"checkpoint"`
	// Removing is set once an unshare was received.
	Removing bool `json:"removing"`
	// RemovalDeadline is when the running removal must be done; zero when
	// no removal is running.
	RemovalDeadline time.Time `json:"removalDeadline"`
}

// MetadataSyncInput starts a MetadataSyncWorkflow. State carries the sync
// state across continue-as-new and across a restart of the sync.
type MetadataSyncInput struct {
	Home      string           `json:"home"`
	Companion string           `json:"companion"`
	Scope     SyncScope        `json:"scope"`
	Settings  Settings         `json:"settings"`
	State     MetadataSyncView `json:"state"`
	// UpTo is the highest change sequence counted for the next round.
	UpTo int64 `json:"upTo"`
	// NextRoundAt is when the next round is due.
	NextRoundAt time.Time `json:"nextRoundAt"`
	// ResumePending carries a resume received just before continue-as-new.
	ResumePending bool `json:"resumePending"`
	// ErrorLog holds the entries of the last failed round.
	ErrorLog []activities.ErrorLogEntry `json:"errorLog,omitempty"`
}

// SyncScope tells the metadata sync which data spaces to sync, and whether
// to hold off entirely (the connection is Inactive).
type SyncScope struct {
	DataSpaces []string `json:"dataSpaces"`
	Suspended  bool     `json:"suspended"`
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
}
