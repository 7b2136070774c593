package contract

import "github.com/companionsync/companionsync"

// Application error types returned by the activities. Workflows match on
// them with temporal.ApplicationError.Type(); control turns them into
// sentinel errors.
const (
	// ErrIneligible: the pair may not be connected. The error's details hold
	// an Ineligibility naming the rule.
	ErrIneligible = "Ineligible"
	// ErrUnknownOrg: an org id that the store does not know.
	ErrUnknownOrg = "UnknownOrg"
	// ErrUnknownDataSpace: the data space does not exist in the home org.
	ErrUnknownDataSpace = "UnknownDataSpace"
	// ErrMetadataConflict: a metadata round stopped at a change that
	// conflicts with a companion-side edit or local object. Details hold
	// the activity's ApplyResult.
	ErrMetadataConflict = "MetadataConflict"
	// ErrMetadataInvalid: a metadata round stopped at an invalid change.
	// Details hold the activity's ApplyResult.
	ErrMetadataInvalid = "MetadataInvalid"
	// ErrStoreUnavailable: the org store could not be reached. A short step
	// (a health check, a count) fails with it at once, non-retryable, so
	// that it holds no workflow task; the workflow keeps what it knew.
	ErrStoreUnavailable = "StoreUnavailable"
	// ErrFenced: a copy or removal step was shut out of the share by a
	// later step (a removal after the copy, a new share's copy after the
	// removal). Only an attempt the workflow has given up on meets it.
	ErrFenced = "Fenced"
)

// Eligibility rules, as named in errors and in the Ineligibility details.
const (
	RuleCompanionExists       = "companion-exists"
	RuleCompanionActive       = "companion-active"
	RuleCompanionNotHome      = "companion-not-home"
	RuleCompanionUnconnected  = "companion-not-already-connected"
	RuleSameKind              = "same-kind"
	RuleHomeExists            = "home-exists"
	RuleHomeLicenceValid      = "home-licence-valid"
	RuleHomeUnderCompanionMax = "home-under-companion-limit"
)

// Ineligibility is the detail of an ErrIneligible error.
type Ineligibility struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

// Kinds of error-log entries, as in companionsync.
const (
	// KindConflict is companionsync.ErrorKindConflict.
	KindConflict = companionsync.ErrorKindConflict
	// KindInvalid is companionsync.ErrorKindInvalid.
	KindInvalid = companionsync.ErrorKindInvalid
	// KindFailed is companionsync.ErrorKindFailed.
	KindFailed = companionsync.ErrorKindFailed
)

// ErrorLogEntry is one failed metadata change: companionsync.ErrorLogEntry,
// which the metadata sync carries in its state and its error-log query.
type ErrorLogEntry = companionsync.ErrorLogEntry
