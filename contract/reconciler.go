package contract

import "time"

// The contract of the reconciler: a short workflow, started by a Temporal
// Schedule (and by `starter doctor`), that compares the registry of the org
// store with the workflows that should carry each connection out, reports
// what is wrong as findings and, when asked to, repairs what is safe to
// repair.

// ReconcilerWorkflowName is the reconciler's workflow type.
const ReconcilerWorkflowName = "ReconcilerWorkflow"

// ReconcilerScheduleID is the ID of the schedule that starts the reconciler;
// its runs have IDs starting with it.
const ReconcilerScheduleID = "companionsync-reconciler"

// ReconcilerDoctorIDPrefix starts the workflow ID of a reconciler run that
// `starter doctor` starts.
const ReconcilerDoctorIDPrefix = "companionsync-doctor-"

// FindingKind names what a finding is about. Values are stable: the doctor
// prints them, --json carries them and the findings gauge is tagged with
// them.
type FindingKind string

// Finding kinds.
const (
	// FindingConnectionWorkflowMissing: a registered connection without a
	// running connection workflow. Repair: restart it, adopting its
	// children.
	FindingConnectionWorkflowMissing FindingKind = "connection-workflow-missing"
	// FindingShareWorkflowMissing: a share its running connection lists
	// whose workflow does not run. Repair: probe the connection, which starts
	// it again.
	FindingShareWorkflowMissing FindingKind = "share-workflow-missing"
	// FindingMetadataSyncMissing: a started metadata sync whose workflow
	// does not run. Repair: probe the connection.
	FindingMetadataSyncMissing FindingKind = "metadata-sync-missing"
	// FindingRemovalPastDeadline: a share in Removing Sharing for longer
	// than the removal threshold.
	FindingRemovalPastDeadline FindingKind = "removal-past-deadline"
	// FindingShareInError: a share in Error for longer than the threshold.
	FindingShareInError FindingKind = "share-in-error"
	// FindingMetadataSyncPaused: a metadata sync paused (Error) for longer
	// than the threshold.
	FindingMetadataSyncPaused FindingKind = "metadata-sync-paused"
	// FindingConnectionInactive: a connection Inactive for longer than the
	// threshold.
	FindingConnectionInactive FindingKind = "connection-inactive"
	// FindingOrphanConnectionWorkflow: a running connection workflow whose
	// registry row is gone. Reported, never stopped by the reconciler.
	FindingOrphanConnectionWorkflow FindingKind = "orphan-connection-workflow"
	// FindingOrphanShareData: records of a data space in the companion that
	// no share of the running connection accounts for.
	FindingOrphanShareData FindingKind = "orphan-share-data"
	// FindingUnknownOrg: a registry row naming an org that does not exist.
	// Reported, never repaired by guessing.
	FindingUnknownOrg FindingKind = "unknown-org"
	// FindingOldProtocol: a running workflow on a protocol older than the
	// current one. Repair: ask it to move (SignalUpgrade), once no worker
	// of an earlier release polls.
	FindingOldProtocol FindingKind = "old-protocol"
	// FindingUnsupportedProtocol: a running workflow on a protocol this
	// release cannot run. Reported; workers of this release run no
	// workflows while one exists.
	FindingUnsupportedProtocol FindingKind = "unsupported-protocol"
)

// FindingKinds lists every finding kind.
func FindingKinds() []FindingKind {
	return []FindingKind{
		FindingConnectionWorkflowMissing, FindingShareWorkflowMissing, FindingMetadataSyncMissing,
		FindingRemovalPastDeadline, FindingShareInError, FindingMetadataSyncPaused,
		FindingConnectionInactive, FindingOrphanConnectionWorkflow, FindingOrphanShareData,
		FindingUnknownOrg, FindingOldProtocol, FindingUnsupportedProtocol,
	}
}

// Outcomes of a finding in one reconciler run.
const (
	// OutcomeRepaired: this run repaired it.
	OutcomeRepaired = "repaired"
	// OutcomeResolved: it was resolved meanwhile by someone else (another
	// reconciler run, an operator, a disconnect that finished).
	OutcomeResolved = "resolved"
)

// Finding is one thing the reconciler found wrong.
type Finding struct {
	Kind FindingKind `json:"kind"`
	// Connection is "HOME/COMPANION"; DataSpace is set for share findings.
	Connection string `json:"connection"`
	DataSpace  string `json:"dataSpace,omitempty"`
	// Since is when the condition started, as far as known; Age is how long
	// it has lasted at the run's start, rounded to the second.
	Since  *time.Time `json:"since,omitempty"`
	Age    string     `json:"age,omitempty"`
	Detail string     `json:"detail"`
	// Action says what to do about it.
	Action string `json:"action"`
	// Outcome is OutcomeRepaired or OutcomeResolved, or empty when the
	// finding remains; Repair says what the run did or why it did not.
	Outcome string `json:"outcome,omitempty"`
	Repair  string `json:"repair,omitempty"`
}

// Remains reports whether the finding is still there after the run.
func (f Finding) Remains() bool { return f.Outcome == "" }

// ReconcilerInput configures a reconciler run. Zero fields take the values
// of DefaultReconcilerInput.
type ReconcilerInput struct {
	// Repair carries out the safe repairs; without it the run only reports.
	Repair bool `json:"repair"`
	// BatchSize bounds the repairs of one run; the rest wait for the next.
	BatchSize int `json:"batchSize"`
	// PageSize is the number of registry rows, or visibility entries, read
	// at a time, and the most a scan returns per activity: each scan pages
	// inside its activity and returns only what the run must look at.
	PageSize int `json:"pageSize"`
	// Thresholds after which stuck work is reported.
	ErrorAfter    time.Duration `json:"errorAfter"`
	PausedAfter   time.Duration `json:"pausedAfter"`
	InactiveAfter time.Duration `json:"inactiveAfter"`
	RemovalAfter  time.Duration `json:"removalAfter"`
	// Actor is who asked for the run, for the audit trail of its repairs:
	// starter doctor's actor; empty (a scheduled run) is ActorReconciler.
	Actor string `json:"actor,omitempty"`
}

// DefaultReconcilerInput is what a scheduled run uses: repairs on, 20 per
// run, and thresholds of an hour (Error, paused), a day (Inactive) and the
// default removal deadline.
func DefaultReconcilerInput() ReconcilerInput {
	return ReconcilerInput{
		Repair:        true,
		BatchSize:     20,
		PageSize:      1000,
		ErrorAfter:    time.Hour,
		PausedAfter:   time.Hour,
		InactiveAfter: 24 * time.Hour,
		RemovalAfter:  DefaultSettings().RemovalDeadline,
	}
}

// WithDefaults fills the zero fields from DefaultReconcilerInput.
func (in ReconcilerInput) WithDefaults() ReconcilerInput {
	d := DefaultReconcilerInput()
	if in.BatchSize <= 0 {
		in.BatchSize = d.BatchSize
	}
	if in.PageSize <= 0 {
		in.PageSize = d.PageSize
	}
	if in.ErrorAfter <= 0 {
		in.ErrorAfter = d.ErrorAfter
	}
	if in.PausedAfter <= 0 {
		in.PausedAfter = d.PausedAfter
	}
	if in.InactiveAfter <= 0 {
		in.InactiveAfter = d.InactiveAfter
	}
	if in.RemovalAfter <= 0 {
		in.RemovalAfter = d.RemovalAfter
	}
	return in
}

// ReconcileReport is a reconciler run's result and the answer of its status
// query while it runs.
type ReconcileReport struct {
	StartedAt time.Time `json:"startedAt"`
	// Repair says whether the run was allowed to repair.
	Repair bool `json:"repair"`
	// Connections counts the registry rows surveyed; Queried those whose
	// status it asked for (a connection settled by what the server shows
	// is not asked).
	Connections int       `json:"connections"`
	Queried     int       `json:"queried,omitempty"`
	Findings    []Finding `json:"findings"`
	// Repaired counts the repairs this run carried out; Deferred the ones
	// left to the next run by the batch size.
	Repaired int `json:"repaired"`
	Deferred int `json:"deferred"`
	// Done is set when the run has finished.
	Done bool `json:"done"`
	// History holds the findings of earlier runs and of this one, oldest
	// first, at most MaxFindingHistory: each run starts from the history
	// of the latest completed run.
	History []PastFinding `json:"history"`
}

// MaxFindingHistory bounds ReconcileReport.History.
const MaxFindingHistory = 100

// PastFinding is a finding of an earlier reconciler run.
type PastFinding struct {
	// Run is the workflow ID of the run that found it, At its start.
	Run        string      `json:"run"`
	At         time.Time   `json:"at"`
	Kind       FindingKind `json:"kind"`
	Connection string      `json:"connection"`
	DataSpace  string      `json:"dataSpace,omitempty"`
	Outcome    string      `json:"outcome,omitempty"`
}

// Remaining counts the findings that remain after the run.
func (r ReconcileReport) Remaining() int {
	n := 0
	for _, f := range r.Findings {
		if f.Remains() {
			n++
		}
	}
	return n
}

// Metric names of the reconciler, as the SDK's metrics handler reports them.
const (
	// MetricFindings is a gauge per finding kind (tag "kind"): the findings
	// that remained after the last run.
	MetricFindings = "companionsync_reconciler_findings"
	// MetricRepairs counts repairs per finding kind (tag "kind").
	MetricRepairs = "companionsync_reconciler_repairs"
)
