package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/companionsync/companionsync/contract"
)

// TestIncidentsNow: each alert condition is derived from the connection's
// own state, one incident per condition and subject, and none on a healthy
// connection.
func TestIncidentsNow(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	past, soon := now.Add(-time.Minute), now.Add(72*time.Hour)
	healthy := func() *connection {
		return &connection{home: "acme", companion: "acme-emea", settings: Settings{}.WithDefaults(),
			ConnectionState: ConnectionState{Status: Active, Handshaken: true, Shares: map[string]*ShareRecord{
				"default": {Observed: ShareReport{View: ShareView{InitializationStatus: ShareActive}}},
			}, Licence: &contract.Licence{ExpiresAt: now.AddDate(1, 0, 0)}}}
	}
	keys := func(c *connection) []string {
		var out []string
		for k := range c.incidentsNow(now) {
			out = append(out, k)
		}
		return out
	}
	assert.Empty(t, keys(healthy()))

	cases := []struct {
		name  string
		setup func(c *connection)
		want  string
	}{
		{"share in Error", func(c *connection) {
			c.Shares["default"].Observed.View = ShareView{InitializationStatus: ShareError, Error: "boom"}
		}, contract.AlertShareError + "/default"},
		{"removal past its deadline", func(c *connection) {
			c.Shares["default"].Observed.View = ShareView{InitializationStatus: ShareActive, RemovalDeadline: &past}
		}, contract.AlertRemovalOverdue + "/default"},
		{"metadata paused", func(c *connection) {
			c.Metadata.Observed.View = MetadataSyncView{Paused: true}
		}, contract.AlertMetadataPaused},
		{"Inactive", func(c *connection) { c.Status, c.Reason = Inactive, "licence expired" }, contract.AlertInactive},
		{"licence expiring", func(c *connection) { c.Licence.ExpiresAt = soon }, contract.AlertLicenceExpiring},
	}
	checked := 0
	for _, tc := range cases {
		c := healthy()
		tc.setup(c)
		assert.Equal(t, []string{tc.want}, keys(c), tc.name)
		checked++
	}
	assert.Equal(t, len(cases), checked)

	// A retry requested clears the Error incident until the share reports
	// again; a resume requested clears the paused one.
	c := healthy()
	c.Shares["default"].Observed.View = ShareView{InitializationStatus: ShareError}
	c.Shares["default"].Desired.Generation, c.Shares["default"].Request = 5, RequestRetry
	assert.Empty(t, keys(c))
}
