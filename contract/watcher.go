package contract

import "time"

// The fleet watcher: one workflow per namespace that, every health-check
// interval, reads the health of every watched connection (and, every
// metadata-sync interval, the pending changes of every metadata sync that
// waits) in a few batched store queries, and signals only the connections
// whose state changed. A connection on the protocol "watched" waits without
// timers while nothing is in flight; see the design notes.
const (
	WatcherWorkflowName = "FleetWatcherWorkflow"
	// WatcherWorkflowID is the one watcher's workflow ID.
	WatcherWorkflowID = "companionsync-fleet-watcher"
)

// Signals of the fleet watcher.
const (
	// SignalWatch carries a WatchReport to a connection whose health
	// changed since it last saw it.
	SignalWatch = "watch"
	// SignalMetadataWake carries a MetadataWake to a metadata sync that
	// waits for changes when some arrived.
	SignalMetadataWake = "metadata-wake"
	// SignalWatcherSettings carries a WatcherInput with new periods to the
	// watcher.
	SignalWatcherSettings = "watcher-settings"
)

// Health is what a health check finds: whether the connection can
// function and, when not, what is wrong and how to fix it; the home's data
// spaces; its licence and companion slots (CheckedAt unset).
type Health struct {
	Healthy    bool     `json:"healthy"`
	Reason     string   `json:"reason"`
	DataSpaces []string `json:"dataSpaces"`
	Licence    Licence  `json:"licence"`
}

// WatchReport is the health the watcher read at At.
type WatchReport struct {
	Health Health    `json:"health"`
	At     time.Time `json:"at"`
}

// MetadataWake tells a waiting metadata sync that Pending changes arrived.
type MetadataWake struct {
	Pending int       `json:"pending"`
	At      time.Time `json:"at"`
}

// WatcherInput are the watcher's periods; zero fields take the defaults.
type WatcherInput struct {
	// HealthInterval is the period of its health sweep: the freshness of
	// Inactive on a connection that waits.
	HealthInterval time.Duration `json:"healthInterval,omitzero"`
	// MetadataInterval is the period of its pending-change sweep.
	MetadataInterval time.Duration `json:"metadataInterval,omitzero"`
	// State carries a continued run's view.
	State *WatcherView `json:"state,omitempty"`
}

// WithDefaults fills zero periods from DefaultSettings.
func (in WatcherInput) WithDefaults() WatcherInput {
	d := DefaultSettings()
	if in.HealthInterval <= 0 {
		in.HealthInterval = d.HealthCheckInterval
	}
	if in.MetadataInterval <= 0 {
		in.MetadataInterval = d.MetadataSyncInterval
	}
	return in
}

// WatcherView is the watcher's status query answer (QueryStatus).
type WatcherView struct {
	// LastSweepAt is when the last health sweep read the store; zero
	// before the first. The watcher sweeps every min(HealthInterval,
	// MetadataInterval), each part when its period is due.
	LastSweepAt time.Time `json:"lastSweepAt"`
	// LastMetadataSweepAt is when the last pending-change sweep ran.
	LastMetadataSweepAt time.Time `json:"lastMetadataSweepAt"`
	// Watched is how many connections the last sweep read.
	Watched int `json:"watched"`
	// Sweeps, Woken and Failed count since the watcher started: sweeps
	// run, connections and metadata syncs signalled, signals that failed
	// (tried again at the next sweep).
	Sweeps int64 `json:"sweeps"`
	Woken  int64 `json:"woken"`
	Failed int64 `json:"failed"`
	// LastError is the last sweep's failure, empty once one succeeds.
	LastError string `json:"lastError,omitempty"`
}
