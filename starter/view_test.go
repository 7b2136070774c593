package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/companionsync/companionsync/contract"
)

func TestStatusTextShowsRequestsAndClosedWorkflows(t *testing.T) {
	for _, tc := range []struct {
		name string
		view contract.StatusView
		want []string
	}{
		{"unshare not yet acknowledged", contract.StatusView{Status: contract.Active, DataSpaces: []contract.ShareView{
			{DataSpace: "sales", InitializationStatus: contract.ShareActive, Requested: contract.RequestUnshare, RecordsCopied: 5, RecordsTotal: 5},
		}}, []string{"Active → Removing Sharing (requested)  5/5"}},
		{"share not yet started", contract.StatusView{Status: contract.Active, DataSpaces: []contract.ShareView{
			{DataSpace: "sales", Requested: contract.RequestShare},
		}}, []string{"not started → Activating (requested)"}},
		{"retry of a failed share", contract.StatusView{Status: contract.Active, DataSpaces: []contract.ShareView{
			{DataSpace: "sales", InitializationStatus: contract.ShareError, Requested: contract.RequestRetry, Error: "boom"},
		}}, []string{"Error → retry (requested)"}},
		{"resume not yet acknowledged", contract.StatusView{Status: contract.Active,
			MetadataSync: contract.MetadataSyncView{Status: contract.SyncError, Paused: true, Requested: contract.RequestResume}},
			[]string{"paused → resume (requested)"}},
		{"terminated workflow", contract.StatusView{Status: contract.ConnectionStatus(contract.RunTerminated),
			LastStatus: contract.Active, Workflow: contract.RunTerminated},
			[]string{"Status         Terminated (workflow closed; it last reported Active"}},
		{"no worker answered", contract.StatusView{Status: contract.Active, Stale: true, DataSpaces: []contract.ShareView{
			{DataSpace: "sales", InitializationStatus: contract.ShareActive},
		}}, []string{"last published state, possibly stale", "Next           start a worker", "sales       Active"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := statusText(tc.view, false)
			for _, want := range tc.want {
				assert.True(t, strings.Contains(text, want), "want %q in\n%s", want, text)
			}
		})
	}
}
