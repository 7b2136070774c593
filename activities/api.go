// Package activities holds the side effects of companion connections: the
// handshake and eligibility check, health checks, the initial sync and
// removal of a shared data space, and the metadata sync rounds.
//
// Activities are methods on Activities, which holds a companionsync.Orgs
// port; they never depend on a concrete store. Each activity performs one
// side effect and leaves decisions to the workflows. Business failures (an
// ineligible pair, a data space that no longer exists, a metadata conflict)
// cross the activity boundary as non-retryable temporal.ApplicationErrors
// whose type is one of the Err* constants below; every other error is
// retried by Temporal. The domain types and the port are in package
// companionsync.
package activities

import (
	"time"

	"github.com/companionsync/companionsync/contract"
)

// Application error types returned by the activities, eligibility rules
// and the error log, from the contract. Workflows match on the error types
// with temporal.ApplicationError.Type().
const (
	ErrIneligible       = contract.ErrIneligible
	ErrUnknownOrg       = contract.ErrUnknownOrg
	ErrUnknownDataSpace = contract.ErrUnknownDataSpace
	ErrMetadataConflict = contract.ErrMetadataConflict
	ErrMetadataInvalid  = contract.ErrMetadataInvalid
	ErrStoreUnavailable = contract.ErrStoreUnavailable
	ErrFenced           = contract.ErrFenced

	RuleCompanionExists       = contract.RuleCompanionExists
	RuleCompanionActive       = contract.RuleCompanionActive
	RuleCompanionNotHome      = contract.RuleCompanionNotHome
	RuleCompanionUnconnected  = contract.RuleCompanionUnconnected
	RuleSameKind              = contract.RuleSameKind
	RuleHomeExists            = contract.RuleHomeExists
	RuleHomeLicenceValid      = contract.RuleHomeLicenceValid
	RuleHomeUnderCompanionMax = contract.RuleHomeUnderCompanionMax

	KindConflict = contract.KindConflict
	KindInvalid  = contract.KindInvalid
	KindFailed   = contract.KindFailed
)

// Ineligibility is the detail of an ErrIneligible error.
type Ineligibility = contract.Ineligibility

// ErrorLogEntry is one failed metadata change; it crosses the activity
// boundary in ApplyResult.
type ErrorLogEntry = contract.ErrorLogEntry

// HandshakeInput names the pair to connect. Token identifies the connecting
// workflow, so a retried handshake is idempotent while a second connection
// attempt for the same pair is refused.
type HandshakeInput struct {
	Home      string `json:"home"`
	Companion string `json:"companion"`
	Token     string `json:"token"`
	// Watch records what the handshake saw for the fleet watcher.
	Watch bool `json:"watch,omitempty"`
}

// HandshakeResult is what the connection needs to validate later requests.
type HandshakeResult struct {
	// DataSpaces are the home org's data spaces, sorted by name.
	DataSpaces []string `json:"dataSpaces"`
	// Licence is the home's licence and companion slots (CheckedAt unset).
	Licence contract.Licence `json:"licence"`
}

// HealthInput names the connection to check.
type HealthInput struct {
	Home      string `json:"home"`
	Companion string `json:"companion"`
	// Watch records what the check saw for the fleet watcher, which wakes
	// the connection when the store moves on (the protocol "watched").
	Watch bool `json:"watch,omitempty"`
}

// HealthResult reports whether the connection can function. Reason is empty
// when Healthy, and otherwise says what is wrong and how to fix it. The fleet
// watcher sends the same to a connection whose health changed.
type HealthResult = contract.Health

// CopyInput asks for one chunk of the initial sync of a data space. The
// activity copies batches of BatchSize records with ids greater than After,
// heartbeating a CopyProgress after each batch, until the data space is
// fully copied or Budget has elapsed, then returns its progress. A retried
// attempt resumes from the heartbeat checkpoint when it is further along than
// After.
type CopyInput struct {
	Home      string `json:"home"`
	Companion string `json:"companion"`
	DataSpace string `json:"dataSpace"`
	After     string `json:"after"`
	BatchSize int    `json:"batchSize"`
	// MaxBatchSize bounds the batches, which grow from BatchSize while
	// quick; zero means maxBatchGrowth times BatchSize, a negative value
	// keeps them at BatchSize.
	MaxBatchSize int           `json:"maxBatchSize,omitzero"`
	Budget       time.Duration `json:"budget"`
	// UnavailableSince is when the org store became unreachable, as the
	// previous step reported it; zero when it was reachable.
	UnavailableSince time.Time `json:"unavailableSince,omitzero"`
}

// CopyProgress is the checkpoint and progress of an initial sync.
// Copied counts the records of the data space present in the companion, so
// replayed batches never inflate it.
type CopyProgress struct {
	After  string `json:"after"`
	Copied int    `json:"copied"`
	Total  int    `json:"total"`
	Done   bool   `json:"done"`
	// Outage is set when the step ended waiting for an unreachable org
	// store; the next step waits on (and fails once the outage is longer
	// than the worker's outage limit).
	Outage *Outage `json:"outage,omitempty"`
}

// RemoveInput asks for one chunk of the removal of a data space's data from
// the companion: batches of BatchSize until nothing is left or Budget has
// elapsed. When nothing is left the companion's metadata copies, cursors and
// fault injections for the data space are removed too.
type RemoveInput struct {
	Home      string `json:"home"`
	Companion string `json:"companion"`
	DataSpace string `json:"dataSpace"`
	BatchSize int    `json:"batchSize"`
	// MaxBatchSize is as in CopyInput.
	MaxBatchSize int           `json:"maxBatchSize,omitzero"`
	Budget       time.Duration `json:"budget"`
	// UnavailableSince is as in CopyInput.
	UnavailableSince time.Time `json:"unavailableSince,omitzero"`
}

// RemoveProgress reports what a removal chunk did. Remaining is what is left
// in the companion for the data space after the chunk.
type RemoveProgress struct {
	Removed   int  `json:"removed"`
	Remaining int  `json:"remaining"`
	Done      bool `json:"done"`
	// Outage is as in CopyProgress; Remaining is then unknown (0).
	Outage *Outage `json:"outage,omitempty"`
}

// PendingInput names the data spaces whose metadata changes are counted.
type PendingInput struct {
	Home       string   `json:"home"`
	Companion  string   `json:"companion"`
	DataSpaces []string `json:"dataSpaces"`
	// Watch records, when nothing is pending, that the sync waits for
	// changes without a timer, and otherwise that it does not: the fleet
	// watcher wakes a waiting sync when changes arrive.
	Watch bool `json:"watch,omitempty"`
}

// PendingResult is the count of unapplied changes in the given data spaces
// and the highest change sequence among them; a round applies exactly the
// changes up to UpTo.
type PendingResult struct {
	Changes int   `json:"changes"`
	UpTo    int64 `json:"upTo"`
}

// ApplyInput asks for one metadata round: apply, in sequence order, every
// unapplied change with sequence <= UpTo in DataSpaces, each exactly once.
// Round identifies the round so error-log entries of a retried attempt are
// not written twice.
type ApplyInput struct {
	Home       string   `json:"home"`
	Companion  string   `json:"companion"`
	DataSpaces []string `json:"dataSpaces"`
	UpTo       int64    `json:"upTo"`
	Round      string   `json:"round"`
}

// ApplyResult is the outcome of a metadata round. When the round stops at a
// failed change, Failures holds one entry per failed change found up to
// UpTo (the first one and any later ones that would fail too); nothing past
// the first failure is applied.
type ApplyResult struct {
	Applied  int             `json:"applied"`
	Failures []ErrorLogEntry `json:"failures,omitempty"`
}

// RecordFailureInput records a round that failed for a reason other than a
// conflict or invalid change (for example retries exhausted), as one
// error-log entry of kind "failed".
type RecordFailureInput struct {
	Home      string `json:"home"`
	Companion string `json:"companion"`
	Round     string `json:"round"`
	Message   string `json:"message"`
}

// DisconnectInput names the connection to deregister once every share is
// removed; afterwards the companion may join a home org again.
type DisconnectInput struct {
	Home      string `json:"home"`
	Companion string `json:"companion"`
}
