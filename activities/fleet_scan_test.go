package activities

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/companionsync/companionsync"
)

// registryOnly is a registry of connections whose orgs the store does not
// know; nothing else of the store is used by the test below.
type registryOnly struct {
	companionsync.Orgs
	conns []companionsync.Connection
	reads int
}

func (r *registryOnly) Connections(_ context.Context, after string, limit int) ([]companionsync.Connection, error) {
	r.reads++
	i, _ := slices.BinarySearchFunc(r.conns, after, func(c companionsync.Connection, after string) int {
		return strings.Compare(c.Companion, after)
	})
	if i < len(r.conns) && r.conns[i].Companion == after {
		i++
	}
	return r.conns[i:min(i+limit, len(r.conns))], nil
}

func (r *registryOnly) Org(context.Context, string) (companionsync.Org, error) {
	return companionsync.Org{}, companionsync.ErrNotFound
}

// noWorkflows is a server on which no workflow ID was ever used.
type noWorkflows struct{ client.Client }

func (noWorkflows) DescribeWorkflowExecution(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	return nil, serviceerror.NewNotFound("workflow not found")
}

// TestScanRegistryBoundsItsResult: a registry scan over more unsettled
// connections than a MiB of surveys holds returns at the bound with a
// cursor, and the calls that follow it return every connection once, in
// order.
func TestScanRegistryBoundsItsResult(t *testing.T) {
	const n = 3000
	reg := &registryOnly{}
	for i := range n {
		reg.conns = append(reg.conns, companionsync.Connection{Home: "gone", Companion: fmt.Sprintf("c%05d", i)})
	}
	f := &Fleet{Orgs: reg, Client: noWorkflows{}}
	perSurvey := surveySize(ConnectionSurvey{})
	bound := (scanResultBytes + perSurvey - 1) / perSurvey

	var seen []string
	in := RegistryScanInput{PageSize: 5000}
	calls := 0
	for {
		calls++
		require.LessOrEqual(t, calls, n, "the scan does not end")
		out, err := f.ScanRegistry(context.Background(), in)
		require.NoError(t, err)
		assert.Equal(t, len(out.Surveys), out.Surveyed, "every connection is unsettled")
		if out.Next != "" {
			assert.Equal(t, bound, len(out.Surveys), "a result stops at a MiB of surveys")
			assert.Equal(t, out.Surveys[len(out.Surveys)-1].Connection.Companion, out.Next)
		}
		for _, s := range out.Surveys {
			seen = append(seen, s.Connection.Companion)
		}
		if out.Next == "" {
			break
		}
		in.After = out.Next
	}
	want := make([]string, n)
	for i, c := range reg.conns {
		want[i] = c.Companion
	}
	assert.Equal(t, want, seen, "every connection once, in order")
	assert.Equal(t, (n+bound-1)/bound, calls, "calls for %d connections at %d a call", n, bound)
}
