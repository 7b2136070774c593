package contract

import (
	"time"

	enumspb "go.temporal.io/api/enums/v1"
)

// ConnectionStatus is the published Connection Status; values are the published names.
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
	// RunContinuedAsNew is never the status of a workflow's latest run.
	RunContinuedAsNew RunState = "ContinuedAsNew"
	// RunUnknown names a status the server did not specify.
	RunUnknown RunState = "Unknown"
)

// RunStateOf names an execution status as the Web UI does.
func RunStateOf(s enumspb.WorkflowExecutionStatus) RunState {
	switch s {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return RunRunning
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return RunCompleted
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:
		return RunFailed
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return RunCanceled
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return RunTerminated
	case enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		return RunContinuedAsNew
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return RunTimedOut
	}
	return RunUnknown
}

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
	// Waiting says why the copy or removal is not moving although nothing
	// failed, for example the org store unreachable since a time and how
	// long that is waited for; empty otherwise.
	Waiting string `json:"waiting,omitempty"`
	// CopyRate is the first sync's rate in records a second since its
	// start, and EstimatedCompletion when it will be done at that rate:
	// an absolute time, so it does not age between reports. Both are set
	// while Activating, once a step has copied records.
	CopyRate            float64    `json:"copyRate,omitempty"`
	EstimatedCompletion *time.Time `json:"estimatedCompletion,omitempty"`
	// RemovalDeadline is when a removal in progress must be done; past it
	// the share goes to Error.
	RemovalDeadline *time.Time `json:"removalDeadline,omitempty"`
}

// Licence is the home org's licence and companion slots as the last health
// check (or the handshake) read them.
type Licence struct {
	// ExpiresAt is when the home org's licence expires.
	ExpiresAt time.Time `json:"expiresAt"`
	// CompanionsUsed of CompanionsMax companion slots of the home org are
	// taken, by every connection of the home, this one included.
	CompanionsUsed int `json:"companionsUsed"`
	CompanionsMax  int `json:"companionsMax"`
	// CheckedAt is when they were read.
	CheckedAt time.Time `json:"checkedAt"`
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
	// Licence is the home org's licence expiry and companion slots, from
	// the last health check; nil before the first one of a release that
	// reads them.
	Licence *Licence `json:"licence,omitempty"`
	// Watched is set when the connection waits for the fleet watcher while
	// nothing is in flight (ProtocolWatched): its health is then read by
	// the watcher's sweeps, and Licence.CheckedAt is the watcher's last
	// sweep, filled in by control on a status read.
	Watched bool `json:"watched,omitempty"`
}
