package workflows

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/companionsync/companionsync/contract"
)

func TestReferenceOf(t *testing.T) {
	ref, ok := referenceOf(contract.ConnectionWorkflowID("acme", "acme-emea"))
	assert.True(t, ok)
	assert.Equal(t, "acme/acme-emea", ref)
	for _, id := range []string{contract.ShareWorkflowID("acme", "acme-emea", "default")[:0] + "companion-share:acme:acme-emea:x", "companion-connection:acme", "companion-connection::x", ""} {
		_, ok := referenceOf(id)
		assert.False(t, ok, id)
	}
}

func TestCleanActor(t *testing.T) {
	assert.Equal(t, contract.ActorUnattributed, cleanActor("  "))
	assert.Equal(t, "ann ops", cleanActor("ann\nops"))
	long := cleanActor(strings.Repeat("é", 300))
	assert.LessOrEqual(t, len(long), maxActor+len("…"))
	assert.True(t, strings.HasSuffix(long, "…"))
}
