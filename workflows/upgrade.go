package workflows

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
)

// Upgrades: how running workflows move onto the current protocol. A new
// build replays every running workflow's history with its code (so it must
// replay every protocol from OldestProtocol on); a run moves onto
// CurrentProtocol when SignalUpgrade asks it to, at its next safe point, by
// continuing as new. The signal is sent by the worker when it starts, by
// each reconciler run, and by starter doctor --repair, once no worker of an
// earlier release polls the task queue. See docs/design.md, "Upgrades".

// breakUpgrade, set only in builds with the upgradebreak tag, adds a timer
// to the start of every connection run without a guard: the change an
// upgrade must never ship, kept so that the upgrade test is seen to fail.
var breakUpgrade bool

// UpgradeQuery selects the running workflows whose protocol is examined.
var UpgradeQuery = fmt.Sprintf("ExecutionStatus = 'Running' AND WorkflowType IN ('%s', '%s', '%s')",
	ConnectionWorkflowName, ShareWorkflowName, MetadataSyncWorkflowName)

// RunProtocolsInput is the input of activities.Fleet.RunProtocols for one
// page of UpgradeQuery.
func RunProtocolsInput(pageSize int, token []byte) activities.RunProtocolsInput {
	return activities.RunProtocolsInput{
		ListInput:  activities.ListInput{Query: UpgradeQuery, PageSize: pageSize, PageToken: token},
		Attr:       AttrProtocol.GetName(),
		InputField: "protocol",
	}
}

// UpgradePlan sorts running workflows by what an upgrade does with them.
type UpgradePlan struct {
	// Move are runs on an earlier protocol that move when signalled.
	Move []activities.RunProtocol `json:"move"`
	// Unknown are runs whose protocol could not be read (see
	// activities.RunProtocol.Unknown). They are signalled like Move, which
	// is harmless to a run already current, and never refused.
	Unknown []activities.RunProtocol `json:"unknown,omitempty"`
	// Unsupported are runs on a protocol older than OldestProtocol, or
	// newer than CurrentProtocol: this code cannot run them.
	Unsupported []activities.RunProtocol `json:"unsupported"`
	// Current counts the runs already on CurrentProtocol.
	Current int `json:"current"`
}

// PlanUpgrade sorts runs into an UpgradePlan.
func PlanUpgrade(runs []activities.RunProtocol) UpgradePlan {
	var p UpgradePlan
	for _, r := range runs {
		switch proto := Protocol(r.Protocol); {
		case r.Unknown:
			p.Unknown = append(p.Unknown, r)
		case proto < OldestProtocol || proto > CurrentProtocol:
			p.Unsupported = append(p.Unsupported, r)
		case proto == CurrentProtocol:
			p.Current++
		default:
			p.Move = append(p.Move, r)
		}
	}
	return p
}

// Add merges another page's plan into p.
func (p *UpgradePlan) Add(o UpgradePlan) {
	p.Move = append(p.Move, o.Move...)
	p.Unknown = append(p.Unknown, o.Unknown...)
	p.Unsupported = append(p.Unsupported, o.Unsupported...)
	p.Current += o.Current
}

// WorkerIdentity is the identity a worker of this release polls with: base
// (the SDK's pid@host) followed by the protocol it runs, which tells an
// upgrade whether workers of an earlier release still poll.
func WorkerIdentity(base string) string {
	return fmt.Sprintf("%s companionsync/protocol-%d", base, CurrentProtocol)
}

// PollerWindow is how recently a worker must have polled to count as
// running: a poll lasts about a minute.
const PollerWindow = 90 * time.Second

// OlderWorkers returns the identities of pollers that do not run
// CurrentProtocol or later: workers of an earlier release, which must not
// take a task of a run that has moved.
func OlderWorkers(pollers []activities.Poller) []string {
	var older []string
	for _, p := range pollers {
		if !runsCurrent(p.Identity) {
			older = append(older, p.Identity)
		}
	}
	return older
}

func runsCurrent(identity string) bool {
	_, after, ok := strings.Cut(identity, " companionsync/protocol-")
	if !ok {
		return false
	}
	p, ok := ProtocolOf(after)
	return ok && p >= CurrentProtocol
}

// UpgradeSignal is the payload of SignalUpgrade from sender by.
func UpgradeSignal(by string) json.RawMessage {
	raw, _ := json.Marshal(UpgradeRequest{By: by})
	return raw
}

// versionProtocolCheck guards the reconciler's check of protocols; runs
// recorded before it end without.
const versionProtocolCheck = "protocol-check"

// maxProtocolFindings bounds the old-protocol findings one reconciler run
// lists one by one; the rest are counted in one more finding.
const maxProtocolFindings = 50

// checkProtocols pages through the running workflows, reports those still
// on an earlier protocol (and those on one this release cannot run), and,
// repairing, asks them to move page by page, unless workers of an earlier
// release still poll.
func (r *reconciler) checkProtocols(ctx workflow.Context) error {
	if workflow.GetVersion(ctx, versionProtocolCheck, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return nil
	}
	older, err := r.olderWorkers(ctx)
	if err != nil {
		return err
	}
	var token []byte
	var pager protocolPager
	asked := 0
	for {
		var page activities.RunProtocolsPage
		in := RunProtocolsInput(r.in.PageSize, token)
		if r.filtered {
			// Runs on the current protocol have nothing to plan.
			in.Skip = int(CurrentProtocol)
		}
		if err := workflow.ExecuteActivity(r.activityCtx(ctx, "read the protocols of running workflows"), fleet.RunProtocols,
			in).Get(ctx, &page); err != nil {
			return fmt.Errorf("read the protocols of running workflows: %w", err)
		}
		plan := r.plan.protocols(page.Runs, older, &pager)
		for _, f := range plan.findings {
			r.addProtocolFinding(f)
		}
		ids := plan.signal
		if len(ids) > 0 {
			var res activities.SignalRunsResult
			if err := workflow.ExecuteActivity(r.activityCtx(ctx, "ask older runs to move"), fleet.SignalRuns,
				activities.SignalRunsInput{WorkflowIDs: ids, Signal: SignalUpgrade, Payload: UpgradeSignal("reconciler")}).Get(ctx, &res); err != nil {
				return fmt.Errorf("ask older runs to move: %w", err)
			}
			asked += res.Sent
		}
		if len(page.NextPageToken) == 0 {
			break
		}
		token = page.NextPageToken
	}
	for _, f := range r.plan.unlistedProtocols(pager, older) {
		r.addProtocolFinding(f)
	}
	if asked > 0 {
		r.logger.Info("asked older runs to move to the current protocol", "asked", asked)
	}
	return nil
}

// olderWorkers lists, when repairing, the workers of an earlier release
// still polling: while there are any, nothing is asked to move.
func (r *reconciler) olderWorkers(ctx workflow.Context) ([]string, error) {
	if !r.in.Repair {
		return nil, nil
	}
	var pollers []activities.Poller
	if err := workflow.ExecuteActivity(r.activityCtx(ctx, "list the workers polling"), fleet.Pollers,
		activities.PollersInput{TaskQueue: TaskQueue, Within: PollerWindow}).Get(ctx, &pollers); err != nil {
		return nil, fmt.Errorf("list the workers polling: %w", err)
	}
	return OlderWorkers(pollers), nil
}

// addProtocolFinding records an old- or unsupported-protocol finding and
// counts it when the plan repairs it (the signal that repairs it is sent
// per page).
func (r *reconciler) addProtocolFinding(f Finding) {
	if f.Outcome == OutcomeRepaired {
		r.report.Repaired++
	}
	r.add(f)
}
