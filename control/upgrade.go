package control

import (
	"context"
	"fmt"
	"strings"

	"go.temporal.io/sdk/converter"

	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/workflows"
)

// UpgradeOptions configure Upgrade.
type UpgradeOptions struct {
	// By names the sender in the runs' logs ("worker", "doctor").
	By string
	// Move sends the runs on an earlier protocol SignalUpgrade; without it
	// Upgrade only reports.
	Move bool
	// CheckWorkers holds the moves while workers of an earlier release
	// poll the task queue (a rolling deploy): a run that moved must not be
	// taken by one. The embedded default, one process, needs no check.
	CheckWorkers bool
	// Converter decodes the inputs of runs that predate the protocol
	// search attribute (with payload encryption, the codec's converter).
	Converter converter.DataConverter
	// PageSize is the number of runs read per visibility page (default 500).
	PageSize int
	// Plan, when set, is a reading of the running workflows just made
	// (by an earlier Upgrade): it is used instead of reading them again.
	Plan *workflows.UpgradePlan
}

// UpgradeResult says what Upgrade found and did.
type UpgradeResult struct {
	workflows.UpgradePlan
	// OlderWorkers are the workers of an earlier release still polling;
	// while there are any, nothing is moved.
	OlderWorkers []string `json:"olderWorkers,omitempty"`
	// Signalled counts the runs asked to move; Gone those that closed
	// meanwhile.
	Signalled int `json:"signalled"`
	Gone      int `json:"gone"`
}

// Held reports whether moves were held back by workers of an earlier release.
func (r UpgradeResult) Held() bool { return len(r.OlderWorkers) > 0 && len(r.Move)+len(r.Unknown) > 0 }

// Upgrade reads the protocol of every running connection, share and
// metadata-sync workflow and, with opts.Move, asks each run on an earlier
// protocol to continue as new onto the current one at its next safe point.
// The signal is idempotent: sending it again is harmless.
func (c *Client) Upgrade(ctx context.Context, opts UpgradeOptions) (UpgradeResult, error) {
	fleet := &activities.Fleet{Client: c.temporal, Converter: opts.Converter}
	size := opts.PageSize
	if size <= 0 {
		size = 500
	}
	var res UpgradeResult
	if opts.Plan != nil {
		res.UpgradePlan = *opts.Plan
	}
	for token := []byte(nil); opts.Plan == nil; {
		page, err := fleet.RunProtocols(ctx, workflows.RunProtocolsInput(size, token))
		if err != nil {
			return res, fmt.Errorf("read the protocols of running workflows: %w", err)
		}
		res.Add(workflows.PlanUpgrade(page.Runs))
		if len(page.NextPageToken) == 0 {
			break
		}
		token = page.NextPageToken
	}
	if !opts.Move || len(res.Move)+len(res.Unknown) == 0 {
		return res, nil
	}
	if opts.CheckWorkers {
		pollers, err := fleet.Pollers(ctx, activities.PollersInput{TaskQueue: contract.TaskQueue, Within: workflows.PollerWindow})
		if err != nil {
			return res, err
		}
		if res.OlderWorkers = workflows.OlderWorkers(pollers); len(res.OlderWorkers) > 0 {
			return res, nil
		}
	}
	ids := make([]string, 0, len(res.Move)+len(res.Unknown))
	for _, r := range append(res.Move, res.Unknown...) {
		ids = append(ids, r.WorkflowID)
	}
	sent, err := fleet.SignalRuns(ctx, activities.SignalRunsInput{
		WorkflowIDs: ids, Signal: contract.SignalUpgrade, Payload: workflows.UpgradeSignal(opts.By),
	})
	res.Signalled, res.Gone = sent.Sent, sent.Gone
	return res, err
}

// UnsupportedError says that running workflows are on a protocol this
// release cannot run (the worker refuses to run workflows with it).
type UnsupportedError struct {
	Runs []activities.RunProtocol
}

func (e *UnsupportedError) Error() string {
	names := make([]string, 0, len(e.Runs))
	for _, r := range e.Runs {
		names = append(names, fmt.Sprintf("%s (protocol %d)", r.WorkflowID, r.Protocol))
	}
	return fmt.Sprintf("%d running workflow(s) on a protocol this release does not run (it runs %d to %d): %s; "+
		"run a release that supports them (a newer one for a newer protocol; for an older one, the release named in docs/operations.md, Upgrades) until starter doctor reports none",
		len(e.Runs), contract.OldestProtocol, contract.CurrentProtocol, strings.Join(names, ", "))
}
