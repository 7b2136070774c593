package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

func TestDoctorUsageErrors(t *testing.T) {
	// Found before anything is dialled: no server needed.
	getenv := func(string) string { return "" }
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"doctor", "--bogus"}, "-bogus"},
		{"bad threshold", []string{"doctor", "--error-after", "soon"}, "error-after"},
		{"negative threshold", []string{"doctor", "--paused-after", "-5m"}, "--paused-after -5m0s: want a positive duration"},
		{"zero threshold", []string{"doctor", "--inactive-after", "0s"}, "--inactive-after 0s"},
		{"bad removal threshold", []string{"doctor", "--removal-after", "1 hour"}, "removal-after"},
		{"no repairs allowed", []string{"doctor", "--repair", "--batch-size", "0"}, "--batch-size 0"},
		{"stray argument", []string{"doctor", "now"}, `unexpected argument "now"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, getenv, &stdout, &stderr)
			assert.Equal(t, exitUsage, code, "stderr %q", stderr.String())
			assert.Contains(t, stderr.String(), tc.want)
			assert.Equal(t, 1, strings.Count(stderr.String(), "\n"), "one line: %q", stderr.String())
			assert.Empty(t, stdout.String())
		})
	}
}

// TestDoctor: nothing to find exits 0; a terminated connection workflow is
// a finding (exit 1, with what to do); --repair --json restarts it and
// exits 0; afterwards nothing remains.
func TestDoctor(t *testing.T) {
	c := newCLI(t)
	ctx := context.Background()
	// The demo seed registers globex/globex-emea without a workflow.
	out := c.run("doctor")
	assert.Equal(t, exitFailed, out.code, "stdout %q", out.stdout)
	assert.Contains(t, out.stdout, "connection-workflow-missing  globex/globex-emea")
	assert.Contains(t, out.stderr, "1 finding remain")
	require.NoError(t, c.env.Store.Deregister(ctx, "globex", "globex-emea"))
	assert.Contains(t, c.ok("doctor"), "0 findings, 0 repaired, 0 remaining")

	ref := control.Ref{Home: "acme", Companion: "acme-emea"}
	c.ok("connect", "--home", "acme", "--companion", "acme-emea")
	c.ok("share", "--connection", "acme/acme-emea", "--data-space", "marketing")
	c.waitFor(ref, "marketing Active", testenv.ShareIs("marketing", contract.ShareActive))
	require.NoError(t, c.env.Client.TerminateWorkflow(ctx, contract.ConnectionWorkflowID(ref.Home, ref.Companion), "", "test"))

	out = c.run("doctor")
	assert.Equal(t, exitFailed, out.code)
	assert.Contains(t, out.stdout, "connection-workflow-missing  acme/acme-emea  age ")
	assert.Contains(t, out.stdout, "is Terminated")
	assert.Contains(t, out.stdout, "what to do: 'starter doctor --repair' restarts it")
	assert.Equal(t, "starter: doctor: 1 finding remains; run 'starter doctor --repair' for the ones it can repair\n", out.stderr)

	var report contract.ReconcileReport
	require.NoError(t, json.Unmarshal([]byte(c.ok("doctor", "--repair", "--json")), &report))
	require.Len(t, report.Findings, 1)
	assert.Equal(t, contract.FindingConnectionWorkflowMissing, report.Findings[0].Kind)
	assert.Equal(t, contract.OutcomeRepaired, report.Findings[0].Outcome)
	assert.Equal(t, 1, report.Repaired)

	c.waitFor(ref, "marketing Active on the restarted workflow", func(v contract.StatusView) bool {
		return v.Workflow == contract.RunRunning && testenv.ShareIs("marketing", contract.ShareActive)(v)
	})
	assert.Contains(t, c.ok("doctor"), "0 findings")
	c.ok("disconnect", "--connection", "acme/acme-emea", "--wait")
}
