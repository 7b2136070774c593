package workflows

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"

	"github.com/companionsync/companionsync/codec"
)

// TestReplayRecordedHistories replays every history recorded from a real
// server (see e2e.TestRecordHistories) against the current workflow code. A
// change that is not deterministic for workflows already running fails here:
// guard it with workflow.GetVersion.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories; record them with COMPANIONSYNC_RECORD_HISTORIES=LABEL go test ./e2e -run TestRecordHistories")
	kinds := map[string]bool{}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			f, err := os.Open(file)
			require.NoError(t, err)
			defer f.Close()
			history, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
			require.NoError(t, err)
			kinds[history.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowType().GetName()] = true
			replayer, err := worker.NewWorkflowReplayerWithOptions(replayOptions(t))
			require.NoError(t, err)
			RegisterWorkflows(replayer, Settings{})
			require.NoError(t, replayer.ReplayWorkflowHistory(testLogger(), history))
		})
	}
	for _, name := range []string{ConnectionWorkflowName, ShareWorkflowName, MetadataSyncWorkflowName, ReconcilerWorkflowName, WatcherWorkflowName} {
		require.True(t, kinds[name], "no recorded history of %s", name)
	}
}

// replayOptions decode histories recorded with payload encryption, with the
// test key ring kept beside them (histories recorded in plaintext pass
// through the codec unchanged).
func replayOptions(t *testing.T) worker.WorkflowReplayerOptions {
	t.Helper()
	spec, err := os.ReadFile(filepath.Join("testdata", "histories", "codec.keys"))
	require.NoError(t, err)
	ring, err := codec.ParseKeys(strings.TrimSpace(string(spec)))
	require.NoError(t, err)
	var opts worker.WorkflowReplayerOptions
	opts.DataConverter, opts.FailureConverter = codec.NewConverters(ring)
	// As the worker runs them: signals' actors are read by the interceptor.
	opts.Interceptors = []interceptor.WorkerInterceptor{Interceptor(nil)}
	return opts
}
