package orgstore_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/internal/faultproxy"
	"github.com/companionsync/companionsync/orgstore"
	"github.com/companionsync/companionsync/orgstore/storetest"
)

// TestUnavailableThroughAProxy: a PostgreSQL store behind a proxy that
// goes down answers with errors Unavailable recognises, fast, and works
// again when the proxy is up; errors of the data are not outages.
func TestUnavailableThroughAProxy(t *testing.T) {
	target, err := url.Parse(storetest.NewPostgresDatabase(t, "outage"))
	require.NoError(t, err)
	proxy, err := faultproxy.Start(target.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	target.Host = proxy.Addr()

	ctx := context.Background()
	s, err := orgstore.Open(ctx, target.String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.NoError(t, s.Demo().Seed(ctx, orgstore.SeedOptions{RecordsPerDataSpace: 10}))

	_, err = s.RecordCount(ctx, "acme", "nowhere")
	require.ErrorIs(t, err, companionsync.ErrNotFound)
	assert.False(t, orgstore.Unavailable(err), "a missing data space is not an outage")
	assert.False(t, orgstore.Unavailable(context.Canceled), "a cancelled caller is not an outage")
	assert.False(t, orgstore.Unavailable(errors.New("syntax error")))

	checked := 0
	for _, fault := range []struct {
		name string
		do   func()
	}{
		{"down", proxy.Down},
		{"cut", proxy.Cut},
	} {
		fault.do()
		start := time.Now()
		_, err := s.RecordCount(ctx, "acme", "default")
		if fault.name == "cut" && err == nil {
			// database/sql retries a cut pooled connection on a new one,
			// which the proxy accepts: a cut alone can pass unseen.
			checked++
			continue
		}
		require.Error(t, err, fault.name)
		assert.True(t, orgstore.Unavailable(err), "%s: %v", fault.name, err)
		assert.Less(t, time.Since(start), 5*time.Second, "%s: the store answers fast", fault.name)
		proxy.Up()
		n, err := s.RecordCount(ctx, "acme", "default")
		require.NoError(t, err, "%s: back after the proxy is up", fault.name)
		assert.Equal(t, 10, n)
		checked++
	}
	assert.Equal(t, 2, checked)
}
