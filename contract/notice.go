package contract

import "time"

// Notice is one notification, as the worker posts it to the -notify-url
// webhook: a CloudEvents 1.0 event in structured mode (Content-Type
// application/cloudevents+json) whose data is an Alert. ID is stable for
// the event: a delivery retried after a failure or a worker restart carries
// the same ID, so a receiver that sees it twice can drop the second.
type Notice struct {
	SpecVersion     string    `json:"specversion"` // "1.0"
	ID              string    `json:"id"`
	Source          string    `json:"source"` // "companionsync/HOME/COMPANION" or "companionsync/fleet"
	Type            string    `json:"type"`   // NoticeFiring or NoticeResolved
	Subject         string    `json:"subject"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"` // "application/json"
	DataSchema      string    `json:"dataschema"`      // AlertSchema
	Data            Alert     `json:"data"`
}

// The two event types, and the schema of their data.
const (
	NoticeFiring   = "dev.companionsync.alert.firing.v1"
	NoticeResolved = "dev.companionsync.alert.resolved.v1"
	AlertSchema    = "https://companionsync.dev/schemas/alert/v1"
)

// Alert is the data of a Notice: one incident.
type Alert struct {
	// Version is the version of this shape, 1.
	Version int `json:"version"`
	// Kind is what happened: one of the Alert* kinds.
	Kind string `json:"kind"`
	// State is "firing" or "resolved".
	State string `json:"state"`
	// Connection is HOME/COMPANION; empty for a fleet-wide incident.
	Connection string `json:"connection,omitempty"`
	// Subject is the data space or workflow the incident is about.
	Subject string `json:"subject,omitempty"`
	// Summary is one line for a human.
	Summary string `json:"summary"`
	// Since is when the incident began.
	Since time.Time `json:"since"`
	// Advice is what to do.
	Advice string `json:"advice,omitempty"`
}

// Alert states.
const (
	AlertStateFiring   = "firing"
	AlertStateResolved = "resolved"
)

// Alert kinds.
const (
	AlertShareError       = "share-error"
	AlertMetadataPaused   = "metadata-paused"
	AlertInactive         = "connection-inactive"
	AlertRemovalOverdue   = "removal-overdue"
	AlertLicenceExpiring  = "licence-expiring"
	AlertWorkflowVanished = "workflow-vanished"
	AlertWorkflowStuck    = "workflow-stuck"
)

// Incident is an alert condition a workflow holds open: the connection
// keeps one per condition that is true, and notifies when it opens and when
// it clears.
type Incident struct {
	Kind    string    `json:"kind"`
	Subject string    `json:"subject,omitempty"`
	Since   time.Time `json:"since"`
	Summary string    `json:"summary"`
	Advice  string    `json:"advice,omitempty"`
}

// Key identifies the incident within its connection.
func (i Incident) Key() string {
	if i.Subject == "" {
		return i.Kind
	}
	return i.Kind + "/" + i.Subject
}
