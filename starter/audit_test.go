package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/internal/testenv"
)

// TestAuditCommand: requests made with --as are in the trail that starter
// audit prints, the refused one with its reason, as a table and as JSON;
// a bad --since is a usage error.
func TestAuditCommand(t *testing.T) {
	c := newCLI(t)
	conn := "acme/acme-emea"
	c.ok("connect", "--home", "acme", "--companion", "acme-emea", "--as", "ops-ann")
	c.ok("share", "--connection", conn, "--data-space", "default", "--as", "ops-ann")
	c.refused("already shared", "share", "--connection", conn, "--data-space", "default", "--as", "ops-ben")

	// The refusal is written by the worker beside the workflow.
	var entries []contract.AuditEntry
	testenv.Eventually(t, 30*time.Second, "three entries", func() bool {
		out := c.ok("audit", "--connection", conn, "--json")
		require.NoError(t, json.Unmarshal([]byte(out), &entries))
		if len(entries) < 3 {
			t.Log(out)
		}
		return len(entries) >= 3
	})
	require.Len(t, entries, 3)
	assert.Equal(t, []string{"ops-ann", "ops-ann", "ops-ben"}, []string{entries[0].Actor, entries[1].Actor, entries[2].Actor})
	assert.Equal(t, contract.AuditRefused, entries[2].Outcome)

	table := c.ok("audit", "--connection", conn, "--since", "1h")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	require.Len(t, lines, 4, table)
	assert.Contains(t, lines[0], "ACTOR")
	assert.Contains(t, lines[3], "ops-ben")
	assert.Contains(t, lines[3], "refused")
	assert.Contains(t, lines[3], "already shared")

	assert.Contains(t, c.ok("audit", "--connection", "acme/acme-apac"), "no requests recorded")
	r := c.run("audit", "--connection", conn, "--since", "yesterday")
	assert.Equal(t, 2, r.code, "a bad --since is a usage error: %q", r.stderr)
	assert.Contains(t, r.stderr, "--since")
}
