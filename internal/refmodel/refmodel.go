// Package refmodel is a plain reference model of a companion connection's
// lifecycle, for tests: what operators asked for, which requests the
// connection must refuse (and with which refusal type) given the status its
// validators see, and what the settled status must then be. It knows
// nothing of Temporal; the workflow tests and the real-server tests drive
// the real system and this model with the same operations.
package refmodel

import (
	"fmt"
	"slices"

	"github.com/companionsync/companionsync/contract"
)

// Model is what operators asked for and what the world is.
type Model struct {
	// Intent is the desired intent of every data space ever shared.
	Intent map[string]contract.ShareIntent
	// CopyFailed and RemoveFailed record data spaces whose copy or removal
	// was made to fail at some time: they may settle in Error.
	CopyFailed, RemoveFailed map[string]bool
	// LicenceExpired and CompanionInactive are the health of the pair.
	LicenceExpired, CompanionInactive bool
	// Disconnected is set once a disconnect was accepted.
	Disconnected bool
	// Accepted counts accepted requests.
	Accepted int

	dataSpaces []string
}

// New returns the model of a new connection whose home org has dataSpaces.
func New(dataSpaces []string) *Model {
	return &Model{
		Intent:     map[string]contract.ShareIntent{},
		CopyFailed: map[string]bool{}, RemoveFailed: map[string]bool{},
		dataSpaces: slices.Clone(dataSpaces),
	}
}

// ExpectRefusal is the refusal type the connection must answer op (a
// workflows.Message* name) on data space ds with, given the status v its
// validator sees, or "" when op must be accepted.
func (m *Model) ExpectRefusal(v contract.StatusView, op, ds string) string {
	share, shared := contract.ShareView{}, false
	for _, s := range v.DataSpaces {
		if s.DataSpace == ds {
			share, shared = s, true
		}
	}
	if v.Disconnecting || v.Status == contract.Disconnected {
		return contract.RefusalDisconnecting
	}
	switch op {
	case contract.MessageShare:
		switch {
		case v.Status == contract.Inactive:
			return contract.RefusalConnectionInactive
		case shared:
			return contract.RefusalAlreadyShared
		case !slices.Contains(m.dataSpaces, ds):
			return contract.RefusalUnknownDataSpace
		}
	case contract.MessageUnshare:
		switch {
		case !shared:
			return contract.RefusalNotShared
		case m.Intent[ds] == contract.IntentRemoved && share.InitializationStatus != contract.ShareError:
			return contract.RefusalAlreadyRemoving
		}
	case contract.MessageRetry:
		switch {
		case !shared:
			return contract.RefusalNotShared
		case share.InitializationStatus != contract.ShareError || share.Requested != "":
			return contract.RefusalNotInError
		}
	case contract.MessageResume:
		if !v.MetadataSync.Paused || v.MetadataSync.Requested != "" {
			return contract.RefusalNotPaused
		}
	}
	return ""
}

// Accept records an accepted operation.
func (m *Model) Accept(op, ds string) {
	m.Accepted++
	switch op {
	case contract.MessageShare:
		m.Intent[ds] = contract.IntentShared
	case contract.MessageUnshare:
		m.Intent[ds] = contract.IntentRemoved
	case contract.MessageDisconnect:
		m.Disconnected = true
		for d := range m.Intent {
			m.Intent[d] = contract.IntentRemoved
		}
	}
}

// Shared lists, sorted, the data spaces operators want shared.
func (m *Model) Shared() []string {
	var out []string
	for ds, intent := range m.Intent {
		if intent == contract.IntentShared {
			out = append(out, ds)
		}
	}
	slices.Sort(out)
	return out
}

// Status is the Connection Status a settled connection with listed data
// spaces must read.
func (m *Model) Status(listed int) contract.ConnectionStatus {
	switch {
	case m.LicenceExpired || m.CompanionInactive:
		return contract.Inactive
	case listed > 0:
		return contract.Active
	}
	return contract.Incomplete
}

// Settled lists how the settled status v differs from the model; empty
// when it agrees. copied(ds) reports the companion's records of ds and
// total(ds) the home's.
func (m *Model) Settled(v contract.StatusView, copied, total func(ds string) int) []string {
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	var listed []string
	for _, s := range v.DataSpaces {
		if s.Requested != "" {
			add("data space %s: %s requested, not acknowledged", s.DataSpace, s.Requested)
		}
		if m.Intent[s.DataSpace] == contract.IntentRemoved {
			// A removal whose retries were used up waits in Error.
			if !m.RemoveFailed[s.DataSpace] || s.InitializationStatus != contract.ShareError {
				add("data space %s unshared but listed as %s", s.DataSpace, s.InitializationStatus)
			}
			continue
		}
		listed = append(listed, s.DataSpace)
		switch s.InitializationStatus {
		case contract.ShareActive:
			if got, want := copied(s.DataSpace), total(s.DataSpace); got != want {
				add("data space %s Active with %d of %d records in the companion", s.DataSpace, got, want)
			}
		case contract.ShareError:
			if !m.CopyFailed[s.DataSpace] && !m.RemoveFailed[s.DataSpace] {
				add("data space %s in Error without an injected failure: %s", s.DataSpace, s.Error)
			}
		case contract.Activating:
			// An Inactive connection holds its first syncs (protocol 5).
			if !(m.LicenceExpired || m.CompanionInactive) || s.Waiting != contract.SuspendedWaiting {
				add("data space %s settled in %s (waiting %q)", s.DataSpace, s.InitializationStatus, s.Waiting)
			}
		default:
			add("data space %s settled in %s", s.DataSpace, s.InitializationStatus)
		}
	}
	if want := m.Shared(); !slices.Equal(want, listed) {
		add("shared data spaces %v, want %v", listed, want)
	}
	for _, ds := range m.dataSpaces {
		if m.Intent[ds] != contract.IntentShared && !m.RemoveFailed[ds] && copied(ds) != 0 {
			add("data space %s not shared, yet the companion holds %d of its records", ds, copied(ds))
		}
	}
	if want := m.Status(len(v.DataSpaces)); v.Status != want {
		add("connection status %s, want %s", v.Status, want)
	}
	if v.MetadataSync.Requested != "" {
		add("metadata sync: resume requested, not acknowledged")
	}
	return diffs
}
