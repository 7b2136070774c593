package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/internal/faultproxy"
)

// TestCLIFailsFastWhenTemporalIsCut: with the connection to the frontend
// cut, a command fails within seconds with one line and exit code 1, and
// works again once the connection is back.
func TestCLIFailsFastWhenTemporalIsCut(t *testing.T) {
	c := newCLI(t)
	proxy, err := faultproxy.Start(c.env.Server.FrontendAddr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	through := &cli{t: t, env: c.env, c: c.c, frontend: proxy.Addr()}

	through.ok("connect", "--home", "acme", "--companion", "acme-emea")
	require.Contains(t, through.ok("status", "--connection", "acme/acme-emea"), "Incomplete")

	proxy.Down()
	checked := 0
	for _, args := range [][]string{
		{"status", "--connection", "acme/acme-emea"},
		{"share", "--connection", "acme/acme-emea", "--data-space", "default"},
		{"list"},
	} {
		start := time.Now()
		r := through.run(args...)
		took := time.Since(start)
		assert.Equal(t, 1, r.code, "%v: stderr %q", args, r.stderr)
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "%v: one line on stderr: %q", args, r.stderr)
		assert.Contains(t, r.stderr, "cannot reach Temporal", "%v", args)
		assert.Less(t, took, 15*time.Second, "%v fails fast", args)
		checked++
	}
	assert.Equal(t, 3, checked)

	proxy.Up()
	through.ok("share", "--connection", "acme/acme-emea", "--data-space", "default")
	assert.Contains(t, through.ok("status", "--connection", "acme/acme-emea"), "default")
}
