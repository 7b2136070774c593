package contract

import (
	"time"

	"go.temporal.io/sdk/temporal"
)

// RetrySettings is the retry policy of an activity.
type RetrySettings struct {
	InitialInterval    time.Duration `json:"initialInterval,omitzero"`
	BackoffCoefficient float64       `json:"backoffCoefficient,omitzero"`
	MaximumInterval    time.Duration `json:"maximumInterval,omitzero"`
	// MaximumAttempts bounds the attempts of one step; 0 means unlimited.
	MaximumAttempts int32 `json:"maximumAttempts,omitzero"`
}

func (r RetrySettings) Policy() *temporal.RetryPolicy {
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
	// BatchSize is the number of records copied or removed by the first
	// batch of a step, and the fewest a batch takes.
	BatchSize int `json:"batchSize,omitzero"`
	// MaxBatchSize bounds a batch: batches double while each is quick (an
	// eighth of the step budget), up to it. Zero means 128 times
	// BatchSize; a negative value keeps every batch at BatchSize.
	MaxBatchSize int `json:"maxBatchSize,omitzero"`
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
	// LicenceWarning is how long before the home org's licence expires
	// the connection notifies it (ProtocolAccountable).
	LicenceWarning time.Duration `json:"licenceWarning,omitzero"`
	// ResyncInterval is how often a connection that waits for the fleet
	// watcher checks its health on its own, whatever the watcher says: the
	// most a missed wake can cost (ProtocolWatched).
	ResyncInterval time.Duration `json:"resyncInterval,omitzero"`
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
		BatchSize:      500,
		StepBudget:     2 * time.Second,
		EventBudget:    2000,
		LicenceWarning: 14 * 24 * time.Hour,
		ResyncInterval: 24 * time.Hour,
	}
}

// FillFrom fills the zero fields of s from d.
func (s Settings) FillFrom(d Settings) Settings {
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
	if s.MaxBatchSize == 0 {
		s.MaxBatchSize = d.MaxBatchSize
	}
	if s.StepBudget <= 0 {
		s.StepBudget = d.StepBudget
	}
	if s.EventBudget <= 0 {
		s.EventBudget = d.EventBudget
	}
	if s.LicenceWarning <= 0 {
		s.LicenceWarning = d.LicenceWarning
	}
	if s.ResyncInterval <= 0 {
		s.ResyncInterval = d.ResyncInterval
	}
	return s
}

// WithDefaults fills zero fields from DefaultSettings.
func (s Settings) WithDefaults() Settings { return s.FillFrom(DefaultSettings()) }
