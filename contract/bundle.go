package contract

import "time"

// SupportBundleVersion is the version of the SupportBundle shape; it grows
// by one with any change a reader must know of.
const SupportBundleVersion = 1

// SupportBundle is what a support engineer needs about one connection, in
// one document (`starter support-bundle`, control.Client.SupportBundle):
// its status, the metadata error log, the status changes it kept, and the
// failure messages of every run of its workflows. It holds no secrets (no
// keys, tokens or passwords) and no record contents: only what the status
// and the workflows' failures already show.
type SupportBundle struct {
	Version     int       `json:"version"`
	GeneratedAt time.Time `json:"generatedAt"`
	Connection  string    `json:"connection"`
	// Status is the connection's status, with its recent transitions.
	Status StatusView `json:"status"`
	// Advice is what to do about each problem the status shows.
	Advice []string `json:"advice"`
	// ErrorLog is the metadata sync's error log of its last failed round.
	ErrorLog []ErrorLogEntry `json:"errorLog"`
	// Audit is the connection's audit trail, its newest BundleAuditEntries
	// entries (who asked for what, and what came of it).
	Audit []AuditEntry `json:"audit,omitempty"`
	// Runs are the runs of the connection's workflows, newest first.
	Runs []BundleRun `json:"runs"`
	// Omitted says what the bundle leaves out, and why.
	Omitted string `json:"omitted"`
	// Unread lists parts that could not be read, with the reason.
	Unread []string `json:"unread,omitempty"`
}

// BundleRun is one run of a connection's workflow in a SupportBundle.
type BundleRun struct {
	WorkflowID    string     `json:"workflowId"`
	RunID         string     `json:"runId"`
	Type          string     `json:"type"`
	Status        RunState   `json:"status"`
	Protocol      string     `json:"protocol,omitempty"`
	Started       time.Time  `json:"started"`
	Closed        *time.Time `json:"closed,omitempty"`
	HistoryLength int        `json:"historyLength"`
	// Failures are the run's failed activities and workflow tasks, and
	// its own failure, newest last (at most BundleFailures).
	Failures []BundleFailure `json:"failures"`
	// FailuresLeftOut counts older failures beyond BundleFailures.
	FailuresLeftOut int `json:"failuresLeftOut,omitempty"`
}

// BundleFailures bounds the failures kept per run.
const BundleFailures = 20

// BundleFailure is one failure of a run.
type BundleFailure struct {
	At time.Time `json:"at"`
	// Event is the history event: ActivityTaskFailed, ActivityTaskTimedOut,
	// WorkflowTaskFailed, WorkflowExecutionFailed, ...
	Event    string `json:"event"`
	Activity string `json:"activity,omitempty"`
	Message  string `json:"message"`
}

// BundleAuditEntries bounds the audit entries a support bundle holds.
const BundleAuditEntries = 500
