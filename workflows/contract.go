// Package workflows runs companion connections on Temporal: one
// ConnectionWorkflow per home/companion pair, one DataSpaceShareWorkflow per
// shared data space and one MetadataSyncWorkflow per connection, and the
// ReconcilerWorkflow that repairs what went missing.
//
// The names and shapes the workflows share with their callers are in
// package contract. This file re-exports them, so code that names
// workflows.StatusView or workflows.Active keeps compiling; new code uses
// contract directly.
package workflows

import (
	"go.temporal.io/sdk/temporal"

	"github.com/companionsync/companionsync/contract"
)

// The contract's types, values and functions under their former names.
type (
	WatcherInput         = contract.WatcherInput
	WatcherView          = contract.WatcherView
	WatchReport          = contract.WatchReport
	MetadataWake         = contract.MetadataWake
	AdoptState           = contract.AdoptState
	AdoptedShare         = contract.AdoptedShare
	ConnectionInput      = contract.ConnectionInput
	ConnectionState      = contract.ConnectionState
	ConnectionStatus     = contract.ConnectionStatus
	DataSpaceRequest     = contract.DataSpaceRequest
	Finding              = contract.Finding
	FindingKind          = contract.FindingKind
	InitializationStatus = contract.InitializationStatus
	MetadataDesired      = contract.MetadataDesired
	MetadataRecord       = contract.MetadataRecord
	MetadataReport       = contract.MetadataReport
	MetadataSyncInput    = contract.MetadataSyncInput
	MetadataSyncState    = contract.MetadataSyncState
	MetadataSyncStatus   = contract.MetadataSyncStatus
	MetadataSyncView     = contract.MetadataSyncView
	PastFinding          = contract.PastFinding
	ProbeRequest         = contract.ProbeRequest
	Protocol             = contract.Protocol
	ReconcileReport      = contract.ReconcileReport
	ReconcilerInput      = contract.ReconcilerInput
	RetrySettings        = contract.RetrySettings
	RunState             = contract.RunState
	Settings             = contract.Settings
	ShareDesired         = contract.ShareDesired
	ShareInput           = contract.ShareInput
	ShareIntent          = contract.ShareIntent
	ShareRecord          = contract.ShareRecord
	ShareReport          = contract.ShareReport
	ShareState           = contract.ShareState
	ShareView            = contract.ShareView
	Licence              = contract.Licence
	StatusView           = contract.StatusView
	Transition           = contract.Transition
	UpgradeRequest       = contract.UpgradeRequest
)

const (
	Activating                       = contract.Activating
	Active                           = contract.Active
	Connecting                       = contract.Connecting
	ConnectionWorkflowName           = contract.ConnectionWorkflowName
	CurrentProtocol                  = contract.CurrentProtocol
	Disconnected                     = contract.Disconnected
	Disconnecting                    = contract.Disconnecting
	FindingConnectionInactive        = contract.FindingConnectionInactive
	FindingConnectionWorkflowMissing = contract.FindingConnectionWorkflowMissing
	FindingMetadataSyncMissing       = contract.FindingMetadataSyncMissing
	FindingMetadataSyncPaused        = contract.FindingMetadataSyncPaused
	FindingOldProtocol               = contract.FindingOldProtocol
	FindingOrphanConnectionWorkflow  = contract.FindingOrphanConnectionWorkflow
	FindingOrphanShareData           = contract.FindingOrphanShareData
	FindingRemovalPastDeadline       = contract.FindingRemovalPastDeadline
	FindingShareInError              = contract.FindingShareInError
	FindingShareWorkflowMissing      = contract.FindingShareWorkflowMissing
	FindingUnknownOrg                = contract.FindingUnknownOrg
	FindingUnsupportedProtocol       = contract.FindingUnsupportedProtocol
	Inactive                         = contract.Inactive
	Incomplete                       = contract.Incomplete
	IntentRemoved                    = contract.IntentRemoved
	IntentShared                     = contract.IntentShared
	LastReleaseOfRetired             = contract.LastReleaseOfRetired
	MaxDataSpaceName                 = contract.MaxDataSpaceName
	MaxFindingHistory                = contract.MaxFindingHistory
	MessageDisconnect                = contract.MessageDisconnect
	MessageRecheck                   = contract.MessageRecheck
	MessageResume                    = contract.MessageResume
	MessageRetry                     = contract.MessageRetry
	MessageShare                     = contract.MessageShare
	MessageUnshare                   = contract.MessageUnshare
	MetadataSyncWorkflowName         = contract.MetadataSyncWorkflowName
	MetricFindings                   = contract.MetricFindings
	MetricRepairs                    = contract.MetricRepairs
	OldestProtocol                   = contract.OldestProtocol
	OutcomeRepaired                  = contract.OutcomeRepaired
	OutcomeResolved                  = contract.OutcomeResolved
	ProtocolDeliveryAck              = contract.ProtocolDeliveryAck
	ProtocolLocalReport              = contract.ProtocolLocalReport
	ProtocolProgressReport           = contract.ProtocolProgressReport
	ProtocolPublished                = contract.ProtocolPublished
	ProtocolAccountable              = contract.ProtocolAccountable
	ProtocolWatched                  = contract.ProtocolWatched
	ProtocolReportEveryAck           = contract.ProtocolReportEveryAck
	QueryErrorLog                    = contract.QueryErrorLog
	QueryStatus                      = contract.QueryStatus
	ReconcilerDoctorIDPrefix         = contract.ReconcilerDoctorIDPrefix
	ReconcilerScheduleID             = contract.ReconcilerScheduleID
	ReconcilerWorkflowName           = contract.ReconcilerWorkflowName
	RefusalAlreadyRemoving           = contract.RefusalAlreadyRemoving
	RefusalAlreadyShared             = contract.RefusalAlreadyShared
	RefusalConnectionInactive        = contract.RefusalConnectionInactive
	RefusalDisconnecting             = contract.RefusalDisconnecting
	RefusalIneligible                = contract.RefusalIneligible
	RefusalInvalidRequest            = contract.RefusalInvalidRequest
	RefusalNotInError                = contract.RefusalNotInError
	RefusalNotPaused                 = contract.RefusalNotPaused
	RefusalNotShared                 = contract.RefusalNotShared
	RefusalStillConnecting           = contract.RefusalStillConnecting
	RefusalUnknownDataSpace          = contract.RefusalUnknownDataSpace
	Refused                          = contract.Refused
	Removed                          = contract.Removed
	RemovingSharing                  = contract.RemovingSharing
	RequestResume                    = contract.RequestResume
	RequestRetry                     = contract.RequestRetry
	RequestShare                     = contract.RequestShare
	RequestUnshare                   = contract.RequestUnshare
	RunCanceled                      = contract.RunCanceled
	RunCompleted                     = contract.RunCompleted
	RunFailed                        = contract.RunFailed
	RunRunning                       = contract.RunRunning
	RunTerminated                    = contract.RunTerminated
	RunTimedOut                      = contract.RunTimedOut
	ShareActive                      = contract.ShareActive
	ShareError                       = contract.ShareError
	ShareWorkflowName                = contract.ShareWorkflowName
	SignalMetadataDesired            = contract.SignalMetadataDesired
	SignalMetadataReport             = contract.SignalMetadataReport
	SignalProbe                      = contract.SignalProbe
	SignalShareDesired               = contract.SignalShareDesired
	SignalShareReport                = contract.SignalShareReport
	SignalUpgrade                    = contract.SignalUpgrade
	SignalWatch                      = contract.SignalWatch
	SignalMetadataWake               = contract.SignalMetadataWake
	SignalWatcherSettings            = contract.SignalWatcherSettings
	WatcherWorkflowName              = contract.WatcherWorkflowName
	WatcherWorkflowID                = contract.WatcherWorkflowID
	StarterProtocol                  = contract.StarterProtocol
	SyncError                        = contract.SyncError
	SyncInProgress                   = contract.SyncInProgress
	SyncPending                      = contract.SyncPending
	SyncSucceeded                    = contract.SyncSucceeded
	TaskQueue                        = contract.TaskQueue
	UpdateAwaitConnected             = contract.UpdateAwaitConnected
)

var (
	AttrCompanionOrg         = contract.AttrCompanionOrg
	AttrConnectionStatus     = contract.AttrConnectionStatus
	AttrDataSpace            = contract.AttrDataSpace
	AttrHomeOrg              = contract.AttrHomeOrg
	AttrInitializationStatus = contract.AttrInitializationStatus
	AttrMetadataSyncStatus   = contract.AttrMetadataSyncStatus
	AttrProtocol             = contract.AttrProtocol
)

// ConnectionWorkflowID is contract.ConnectionWorkflowID.
func ConnectionWorkflowID(home, companion string) string {
	return contract.ConnectionWorkflowID(home, companion)
}

// DefaultReconcilerInput is contract.DefaultReconcilerInput.
func DefaultReconcilerInput() ReconcilerInput { return contract.DefaultReconcilerInput() }

// DefaultSettings is contract.DefaultSettings.
func DefaultSettings() Settings { return contract.DefaultSettings() }

// FindingKinds is contract.FindingKinds.
func FindingKinds() []FindingKind { return contract.FindingKinds() }

// MetadataSyncWorkflowID is contract.MetadataSyncWorkflowID.
func MetadataSyncWorkflowID(home, companion string) string {
	return contract.MetadataSyncWorkflowID(home, companion)
}

// ParseReference is contract.ParseReference.
func ParseReference(ref string) (home, companion string, ok bool) {
	return contract.ParseReference(ref)
}

// ProtocolOf is contract.ProtocolOf.
func ProtocolOf(attr string) (p Protocol, ok bool) { return contract.ProtocolOf(attr) }

// Reference is contract.Reference.
func Reference(home, companion string) string { return contract.Reference(home, companion) }

// SearchAttributes is contract.SearchAttributes.
func SearchAttributes() []temporal.SearchAttributeKeyKeyword { return contract.SearchAttributes() }

// ShareWorkflowID is contract.ShareWorkflowID.
func ShareWorkflowID(home, companion, dataSpace string) string {
	return contract.ShareWorkflowID(home, companion, dataSpace)
}
