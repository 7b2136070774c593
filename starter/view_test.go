package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/companionsync/companionsync/workflows"
)

func TestStatusTextShowsRequestsAndClosedWorkflows(t *testing.T) {
	for _, tc := range []struct {
		name string
		view workflows.StatusView
		want []string
	}{
		{"unshare not yet acknowledged", workflows.StatusView{Status: workflows.Active, DataSpaces: []workflows.ShareView{
			{DataSpace: "sales", InitializationStatus: workflows.ShareActive, Requested: workflows.RequestUnshare, RecordsCopied: 5, RecordsTotal: 5},
		}}, []string{"Active → Removing Sharing (requested)  5/5"}},
		{"share not yet started", workflows.StatusView{Status: workflows.Active, DataSpaces: []workflows.ShareView{
			{DataSpace: "sales", Requested: workflows.RequestShare},
		}}, []string{"not started → Activating (requested)"}},
		{"retry of a failed share", workflows.StatusView{Status: workflows.Active, DataSpaces: []workflows.ShareView{
			{DataSpace: "sales", InitializationStatus: workflows.ShareError, Requested: workflows.RequestRetry, Error: "boom"},
		}}, []string{"Error → retry (requested)"}},
		{"resume not yet acknowledged", workflows.StatusView{Status: workflows.Active,
			MetadataSync: workflows.MetadataSyncView{Status: workflows.SyncError, Paused: true, Requested: workflows.RequestResume}},
			[]string{"paused → resume (requested)"}},
		{"terminated workflow", workflows.StatusView{Status: workflows.ConnectionStatus(workflows.RunTerminated),
			LastStatus: workflows.Active, Workflow: workflows.RunTerminated},
			[]string{"Status         Terminated (workflow closed; it last reported Active"}},
		{"no worker answered", workflows.StatusView{Status: workflows.Active, Stale: true, DataSpaces: []workflows.ShareView{
			{DataSpace: "sales", InitializationStatus: workflows.ShareActive},
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
