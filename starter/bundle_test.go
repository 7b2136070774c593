package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// TestSupportBundle: a share whose copy failed for good is in Error; the
// support bundle holds its status with the support advice, the failure
// messages of the share's copy attempts read through the codec, and no
// record contents or key material; an unknown connection is refused and
// writes nothing.
func TestSupportBundle(t *testing.T) {
	c := newCLI(t)
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	conn := ref.String()
	dir := t.TempDir()

	path := filepath.Join(dir, "nobody.json")
	c.refused("unknown connection", "support-bundle", "--connection", "acme/acme-apac", "--output", path)
	assert.NoFileExists(t, path, "a refused bundle writes nothing")

	attempts := int(c.env.Settings.InitialSyncRetry.MaximumAttempts)
	require.NoError(t, c.env.Store.Demo().InjectCopyFailures(ctx, "acme", "acme-emea", "marketing", attempts))
	c.ok("connect", "--home", "acme", "--companion", "acme-emea")
	c.ok("share", "--connection", conn, "--data-space", "marketing")
	c.waitFor(ref, "marketing in Error", testenv.ShareIs("marketing", contract.ShareError))
	assert.Contains(t, c.ok("status", "--connection", conn), "create a support ticket", "the status says what to do")

	path = filepath.Join(dir, "bundle.json")
	out := c.ok("support-bundle", "--connection", conn, "--output", path)
	assert.Contains(t, out, "wrote "+path)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var b contract.SupportBundle
	require.NoError(t, json.Unmarshal(raw, &b))

	assert.Equal(t, contract.SupportBundleVersion, b.Version)
	assert.Equal(t, conn, b.Connection)
	assert.Empty(t, b.Unread)
	sh, ok := testenv.Share(b.Status, "marketing")
	require.True(t, ok)
	assert.Equal(t, contract.ShareError, sh.InitializationStatus)
	require.NotEmpty(t, b.Advice)
	assert.Contains(t, strings.Join(b.Advice, "\n"), "create a support ticket")
	assert.NotEmpty(t, b.Status.Transitions, "recent transitions")
	require.NotEmpty(t, b.Audit, "the audit trail")
	assert.Equal(t, contract.RequestConnect, b.Audit[0].Request)

	types := map[string]bool{}
	copyFailures := 0
	for _, r := range b.Runs {
		types[r.Type] = true
		for _, f := range r.Failures {
			if f.Activity == "CopyRecords" {
				copyFailures++
				assert.Contains(t, f.Message, "injected", "the message reads decrypted")
			}
		}
	}
	assert.True(t, types[contract.ConnectionWorkflowName] && types[contract.ShareWorkflowName], "runs of %v", types)
	// The history keeps an activity's last failure once its retries are
	// spent, not one per attempt.
	assert.Equal(t, 1, copyFailures, "the copy's failure")

	// Nothing secret and no record in the file.
	text := string(raw)
	assert.NotContains(t, text, strings.SplitN(testenv.KeySpec, ":", 2)[1], "no key")
	assert.NotContains(t, text, "binary/encrypted", "no encoded payloads")
	assert.NotContains(t, text, `"payload"`, "no record contents")
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "readable by its owner only")
}
