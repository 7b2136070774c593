package activities

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/companionsync/companionsync/contract"
)

// TestSettledSkipsOnlyQuietConnections: the survey skips the status query
// of a connection only when nothing the reconciler looks for can be found;
// each way of being unsettled makes it query.
func TestSettledSkipsOnlyQuietConnections(t *testing.T) {
	quiet := func() ConnectionSurvey {
		return ConnectionSurvey{HomeKnown: true, CompanionKnown: true,
			Workflow: Execution{Status: string(contract.RunRunning), Attrs: map[string]string{
				contract.AttrProtocol.GetName(): "6", contract.AttrConnectionStatus.GetName(): string(contract.Active),
				contract.AttrMetadataSyncStatus.GetName(): string(contract.SyncSucceeded)}},
			Metadata: Execution{Status: string(contract.RunRunning)},
			Shares: []ShareSurvey{
				{DataSpace: "default", Copied: 10, Execution: Execution{Status: string(contract.RunRunning),
					Attrs: map[string]string{contract.AttrInitializationStatus.GetName(): string(contract.ShareActive)}}},
				{DataSpace: "old", Execution: Execution{Status: string(contract.RunCompleted)}},
			}}
	}
	assert.True(t, settled(quiet()))
	for name, edit := range map[string]func(*ConnectionSurvey){
		"connection not running": func(s *ConnectionSurvey) { s.Workflow.Status = string(contract.RunTerminated) },
		"unknown companion":      func(s *ConnectionSurvey) { s.CompanionKnown = false },
		"protocol without attrs": func(s *ConnectionSurvey) { delete(s.Workflow.Attrs, contract.AttrProtocol.GetName()) },
		"protocol 3":             func(s *ConnectionSurvey) { s.Workflow.Attrs[contract.AttrProtocol.GetName()] = "3" },
		"Inactive": func(s *ConnectionSurvey) {
			s.Workflow.Attrs[contract.AttrConnectionStatus.GetName()] = string(contract.Inactive)
		},
		"metadata in Error": func(s *ConnectionSurvey) {
			s.Workflow.Attrs[contract.AttrMetadataSyncStatus.GetName()] = string(contract.SyncError)
		},
		"metadata sync gone":  func(s *ConnectionSurvey) { s.Metadata.Status = string(contract.RunTerminated) },
		"share workflow gone": func(s *ConnectionSurvey) { s.Shares[0].Execution.Status = string(contract.RunTerminated) },
		"share copying": func(s *ConnectionSurvey) {
			s.Shares[0].Execution.Attrs[contract.AttrInitializationStatus.GetName()] = string(contract.Activating)
		},
		"data left after unshare":  func(s *ConnectionSurvey) { s.Shares[1].Copied = 3 },
		"data without a share run": func(s *ConnectionSurvey) { s.Shares = append(s.Shares, ShareSurvey{DataSpace: "x", Copied: 1}) },
	} {
		s := quiet()
		edit(&s)
		assert.False(t, settled(s), name)
	}
}
