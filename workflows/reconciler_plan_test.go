package workflows

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync"
	"github.com/companionsync/companionsync/activities"
)

// The planner's table tests: each case is one observation and the plan
// expected of it. Every finding kind has a case (TestPlanCoversEveryKind
// checks), and the adoption of a share running each supported protocol.

var planNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func testPlanner() planner {
	return planner{in: DefaultReconcilerInput(), now: planNow}
}

var pair = companionsync.Connection{Home: "acme", Companion: "acme-emea", Token: "t1"}

func runningExec(id string, attrs map[string]string) activities.Execution {
	return activities.Execution{WorkflowID: id, RunID: "run-" + id, Status: "Running", Attrs: attrs}
}

func closedExec(id, status string, at time.Time) activities.Execution {
	return activities.Execution{WorkflowID: id, RunID: "run-" + id, Status: status, CloseTime: at}
}

func statusJSON(t *testing.T, v StatusView) json.RawMessage {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	return raw
}

// healthy is the survey of a running, Active connection sharing "default".
func healthy(t *testing.T, edit func(*activities.ConnectionSurvey, *StatusView)) activities.ConnectionSurvey {
	view := StatusView{Status: Active,
		DataSpaces:   []ShareView{{DataSpace: "default", InitializationStatus: ShareActive}},
		MetadataSync: MetadataSyncView{Status: SyncSucceeded},
		Transitions:  []Transition{{At: planNow.Add(-48 * time.Hour), Subject: subjectConnection, Status: string(Active)}},
	}
	s := activities.ConnectionSurvey{Connection: pair, HomeKnown: true, CompanionKnown: true,
		Workflow:   runningExec(ConnectionWorkflowID("acme", "acme-emea"), nil),
		Metadata:   runningExec(MetadataSyncWorkflowID("acme", "acme-emea"), nil),
		DataSpaces: []string{"default", "sales"},
		Shares: []activities.ShareSurvey{{DataSpace: "default",
			Execution: runningExec(ShareWorkflowID("acme", "acme-emea", "default"), nil), Copied: 10}},
	}
	if edit != nil {
		edit(&s, &view)
	}
	s.Status = statusJSON(t, view)
	return s
}

func kinds(fs []Finding) []FindingKind {
	out := []FindingKind{}
	for _, f := range fs {
		out = append(out, f.Kind)
	}
	return out
}

// planKindsSeen collects the finding kinds the table tests produced.
var planKindsSeen = map[FindingKind]bool{}

func seen(fs []Finding) {
	for _, f := range fs {
		planKindsSeen[f.Kind] = true
	}
}

func TestPlanConnection(t *testing.T) {
	hoursAgo := func(h int) time.Time { return planNow.Add(-time.Duration(h) * time.Hour) }
	cases := []struct {
		name    string
		survey  func(t *testing.T) activities.ConnectionSurvey
		find    []FindingKind // reported as they are
		probe   []FindingKind // repaired by a probe
		restart bool
		check   func(t *testing.T, p connectionPlan)
	}{
		{name: "a healthy connection: nothing",
			survey: func(t *testing.T) activities.ConnectionSurvey { return healthy(t, nil) },
			find:   []FindingKind{}},
		{name: "unknown home org",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return activities.ConnectionSurvey{Connection: pair, CompanionKnown: true}
			},
			find: []FindingKind{FindingUnknownOrg},
			check: func(t *testing.T, p connectionPlan) {
				assert.Contains(t, p.findings[0].Detail, `org "acme"`)
			}},
		{name: "unknown companion org",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return activities.ConnectionSurvey{Connection: pair, HomeKnown: true}
			},
			find: []FindingKind{FindingUnknownOrg},
			check: func(t *testing.T, p connectionPlan) {
				assert.Contains(t, p.findings[0].Detail, `org "acme-emea"`)
			}},
		{name: "no connection workflow ever ran: restart, nothing to adopt",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return activities.ConnectionSurvey{Connection: pair, HomeKnown: true, CompanionKnown: true, DataSpaces: []string{"default"}}
			},
			find: []FindingKind{}, restart: true,
			check: func(t *testing.T, p connectionPlan) {
				f := p.restart.finding
				assert.Equal(t, FindingConnectionWorkflowMissing, f.Kind)
				assert.Contains(t, f.Detail, "no connection workflow ever ran")
				assert.Nil(t, f.Since)
				assert.Equal(t, pair, p.restart.registered, "the restart names the registry row, token included")
				in := p.restart.input
				assert.Equal(t, StarterProtocol, in.Protocol)
				assert.Equal(t, []string{"default"}, in.Adopt.DataSpaces)
				assert.Empty(t, in.Adopt.Shares)
			}},
		{name: "terminated connection: restart adopting each child",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				last := StatusView{Status: Active, Disconnecting: true, DataSpaces: []ShareView{
					{DataSpace: "p3", InitializationStatus: ShareActive},
					{DataSpace: "never-started", Requested: RequestShare},
					{DataSpace: "unshared-never-started", Requested: RequestUnshare},
					{DataSpace: "unshare-requested", InitializationStatus: ShareActive, Requested: RequestUnshare},
				}}
				settings, _ := json.Marshal(Settings{BatchSize: 7})
				return activities.ConnectionSurvey{Connection: pair, HomeKnown: true, CompanionKnown: true,
					Workflow:   closedExec(ConnectionWorkflowID("acme", "acme-emea"), "Terminated", hoursAgo(2)),
					Status:     statusJSON(t, last),
					Settings:   settings,
					DataSpaces: []string{"p3", "p4", "stopped", "gone"},
					Shares: []activities.ShareSurvey{
						// A share running each supported protocol is adopted running.
						{DataSpace: "p3", Execution: runningExec("s-p3", map[string]string{AttrInitializationStatus.GetName(): string(ShareActive)}), Copied: 5},
						{DataSpace: "p4", Execution: runningExec("s-p4", map[string]string{
							AttrInitializationStatus.GetName(): string(Activating), AttrProtocol.GetName(): ProtocolPublished.String()})},
						// A stopped copy goes on from its checkpoint.
						{DataSpace: "stopped", Execution: closedExec("s-stopped", "Terminated", hoursAgo(3)), Copied: 3, Checkpoint: "r0003"},
						// Removed, nothing copied: nothing to carry on.
						{DataSpace: "gone", Execution: closedExec("s-gone", "Completed", hoursAgo(5))},
						{DataSpace: "unshare-requested", Execution: runningExec("s-u", map[string]string{AttrInitializationStatus.GetName(): string(ShareActive)})},
					},
				}
			},
			find: []FindingKind{}, restart: true,
			check: func(t *testing.T, p connectionPlan) {
				f := p.restart.finding
				assert.Equal(t, FindingConnectionWorkflowMissing, f.Kind)
				assert.Contains(t, f.Detail, "is Terminated")
				require.NotNil(t, f.Since)
				assert.Equal(t, "2h0m0s", f.Age)
				in := p.restart.input
				assert.Equal(t, 7, in.Settings.BatchSize, "the gone run's settings are kept")
				assert.True(t, in.Adopt.Disconnecting, "an accepted disconnect goes on")
				assert.Equal(t, f.Detail, in.Adopt.Reason)
				assert.Equal(t, []AdoptedShare{
					{DataSpace: "p3", Running: true, Status: ShareActive},
					{DataSpace: "p4", Running: true, Status: Activating},
					{DataSpace: "stopped", Status: "", Checkpoint: "r0003"},
					{DataSpace: "unshare-requested", Running: true, Status: RemovingSharing},
					{DataSpace: "never-started", Status: Activating},
					{DataSpace: "unshared-never-started", Status: RemovingSharing},
				}, in.Adopt.Shares)
				running, again := p.restart.adopted()
				assert.Equal(t, 3, running)
				assert.Equal(t, 3, again)
			}},
		{name: "no status yet: not examined",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				s := healthy(t, nil)
				s.Status, s.StatusError = nil, "query timed out"
				return s
			},
			find:  []FindingKind{},
			check: func(t *testing.T, p connectionPlan) { assert.Equal(t, "no status: query timed out", p.unexamined) }},
		{name: "still connecting: not examined",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return healthy(t, func(_ *activities.ConnectionSurvey, v *StatusView) { v.Status = Connecting })
			},
			find:  []FindingKind{},
			check: func(t *testing.T, p connectionPlan) { assert.Equal(t, "still connecting", p.unexamined) }},
		{name: "gone share and metadata sync: one probe with the checkpoint",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return healthy(t, func(s *activities.ConnectionSurvey, _ *StatusView) {
					s.Shares[0].Execution = closedExec("s", "Terminated", hoursAgo(1))
					s.Shares[0].Checkpoint = "r0010"
					s.Metadata = activities.Execution{}
				})
			},
			find:  []FindingKind{},
			probe: []FindingKind{FindingShareWorkflowMissing, FindingMetadataSyncMissing},
			check: func(t *testing.T, p connectionPlan) {
				assert.Equal(t, map[string]string{"default": "r0010"}, p.probe.request.Checkpoints)
				assert.Contains(t, p.probe.findings[0].Detail, "is Terminated")
				assert.Contains(t, p.probe.findings[1].Detail, "never ran")
				assert.Equal(t, "1h0m0s", p.probe.findings[0].Age)
			}},
		{name: "a share requested but not acknowledged is not missing",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return healthy(t, func(s *activities.ConnectionSurvey, v *StatusView) {
					s.Shares[0].Execution = activities.Execution{}
					v.DataSpaces[0].Requested = RequestShare
				})
			},
			find: []FindingKind{}},
		{name: "share in Error past the threshold",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return healthy(t, func(_ *activities.ConnectionSurvey, v *StatusView) {
					v.DataSpaces[0].InitializationStatus, v.DataSpaces[0].Error = ShareError, "copy failed"
					v.Transitions = append(v.Transitions, Transition{At: hoursAgo(2), Subject: subjectShare("default"), Status: string(ShareError)})
				})
			},
			find: []FindingKind{FindingShareInError},
			check: func(t *testing.T, p connectionPlan) {
				assert.Equal(t, "copy failed", p.findings[0].Detail)
				assert.Equal(t, "2h0m0s", p.findings[0].Age)
			}},
		{name: "share in Error under the threshold: nothing yet",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return healthy(t, func(_ *activities.ConnectionSurvey, v *StatusView) {
					v.DataSpaces[0].InitializationStatus = ShareError
					v.Transitions = append(v.Transitions, Transition{At: planNow.Add(-time.Minute), Subject: subjectShare("default"), Status: string(ShareError)})
				})
			},
			find: []FindingKind{}},
		{name: "removal past its deadline, dated by the unshare request",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return healthy(t, func(_ *activities.ConnectionSurvey, v *StatusView) {
					v.DataSpaces[0].InitializationStatus = RemovingSharing
					v.DataSpaces[0].RecordsRemoved, v.DataSpaces[0].RecordsToRemove = 4, 10
					v.Transitions = []Transition{{At: hoursAgo(1), Subject: subjectShare("default"), Status: RequestUnshare + " requested"}}
				})
			},
			find: []FindingKind{FindingRemovalPastDeadline},
			check: func(t *testing.T, p connectionPlan) {
				assert.Contains(t, p.findings[0].Detail, "4 of 10 records removed")
			}},
		{name: "data in the companion that no share accounts for",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return healthy(t, func(s *activities.ConnectionSurvey, _ *StatusView) {
					s.Shares = append(s.Shares, activities.ShareSurvey{DataSpace: "sales", Execution: closedExec("x", "Completed", hoursAgo(1)), Copied: 12})
				})
			},
			find: []FindingKind{FindingOrphanShareData},
			check: func(t *testing.T, p connectionPlan) {
				assert.Equal(t, "sales", p.findings[0].DataSpace)
				assert.Contains(t, p.findings[0].Detail, "12 records")
			}},
		{name: "no orphan data while disconnecting",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return healthy(t, func(s *activities.ConnectionSurvey, v *StatusView) {
					v.Disconnecting = true
					s.Shares = append(s.Shares, activities.ShareSurvey{DataSpace: "sales", Copied: 12})
				})
			},
			find: []FindingKind{}},
		{name: "metadata sync paused past the threshold",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return healthy(t, func(_ *activities.ConnectionSurvey, v *StatusView) {
					v.MetadataSync = MetadataSyncView{Status: SyncError, Paused: true, Error: "conflict"}
					v.Transitions = append(v.Transitions, Transition{At: hoursAgo(3), Subject: subjectMetadataSync, Status: string(SyncError)})
				})
			},
			find: []FindingKind{FindingMetadataSyncPaused}},
		{name: "connection Inactive past the threshold",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return healthy(t, func(_ *activities.ConnectionSurvey, v *StatusView) {
					v.Status, v.Reason = Inactive, "licence expired"
					v.Transitions = append(v.Transitions, Transition{At: hoursAgo(30), Subject: subjectConnection, Status: string(Inactive)})
				})
			},
			find:  []FindingKind{FindingConnectionInactive},
			check: func(t *testing.T, p connectionPlan) { assert.Equal(t, "licence expired", p.findings[0].Detail) }},
		{name: "connection Inactive for an hour: nothing yet",
			survey: func(t *testing.T) activities.ConnectionSurvey {
				return healthy(t, func(_ *activities.ConnectionSurvey, v *StatusView) {
					v.Status = Inactive
					v.Transitions = append(v.Transitions, Transition{At: hoursAgo(1), Subject: subjectConnection, Status: string(Inactive)})
				})
			},
			find: []FindingKind{}},
	}
	checked := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testPlanner().connection(tc.survey(t))
			assert.Equal(t, tc.find, kinds(p.findings), "findings")
			seen(p.findings)
			if tc.probe == nil {
				assert.Nil(t, p.probe, "no probe")
			} else if assert.NotNil(t, p.probe) {
				assert.Equal(t, tc.probe, kinds(p.probe.findings), "probe findings")
				seen(p.probe.findings)
			}
			assert.Equal(t, tc.restart, p.restart != nil, "restart")
			if p.restart != nil {
				seen([]Finding{p.restart.finding})
			}
			if tc.check != nil {
				tc.check(t, p)
			}
			checked++
		})
	}
	assert.Equal(t, len(cases), checked, "every case ran")
}

func TestPlanOrphans(t *testing.T) {
	attrs := func(home, companion string, status ConnectionStatus) map[string]string {
		return map[string]string{AttrHomeOrg.GetName(): home, AttrCompanionOrg.GetName(): companion, AttrConnectionStatus.GetName(): string(status)}
	}
	execs := []activities.Execution{
		runningExec("c1", attrs("acme", "a", Active)),
		runningExec("c2", attrs("acme", "b", Connecting)), // not registered yet
		runningExec("c3", attrs("acme", "c", Active)),
		runningExec("c4", attrs("acme", "d", Incomplete)),
		runningExec("c5", nil), // no attributes: skipped
	}
	execs[2].StartTime = planNow.Add(-time.Hour)
	candidates, companions := orphanCandidates(execs)
	assert.Equal(t, []string{"a", "c", "d"}, companions)
	rows := []companionsync.Connection{{Home: "acme", Companion: "a"}, {}, {Home: "other", Companion: "d"}}
	orphans := unregistered(candidates, rows)
	require.Len(t, orphans, 2)
	described := []activities.Execution{
		orphans[0],                             // still running, same run: an orphan
		closedExec("c4", "Completed", planNow), // closed meanwhile: none
	}
	fs := testPlanner().orphanFindings(orphans, described)
	assert.Equal(t, []FindingKind{FindingOrphanConnectionWorkflow}, kinds(fs))
	assert.Equal(t, "acme/c", fs[0].Connection)
	assert.Equal(t, "1h0m0s", fs[0].Age)
	seen(fs)

	// A new run of the same ID is not the orphan visibility listed.
	again := runningExec("c3", nil)
	again.RunID = "another"
	assert.Empty(t, testPlanner().orphanFindings(orphans[:1], []activities.Execution{again}))
}

func TestPlanProtocols(t *testing.T) {
	run := func(id string, p Protocol) activities.RunProtocol {
		return activities.RunProtocol{WorkflowID: "companion-connection:acme:" + id, Protocol: int(p)}
	}
	runs := []activities.RunProtocol{
		run("current", CurrentProtocol),
		run("older", OldestProtocol),
		run("retired", OldestProtocol-1),
		run("newer", CurrentProtocol+1),
		{WorkflowID: "companion-share:acme:x:default", Unknown: true},
	}
	cases := []struct {
		name      string
		repair    bool
		older     []string
		signalled int
		outcome   string
	}{
		{name: "report only", repair: false, signalled: 0, outcome: ""},
		{name: "repair", repair: true, signalled: 2, outcome: OutcomeRepaired},
		{name: "repair held by an older worker", repair: true, older: []string{"w1@host"}, signalled: 0, outcome: ""},
	}
	checked := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testPlanner()
			p.in.Repair = tc.repair
			var pager protocolPager
			plan := p.protocols(runs, tc.older, &pager)
			assert.Equal(t, []FindingKind{FindingUnsupportedProtocol, FindingUnsupportedProtocol, FindingOldProtocol, FindingOldProtocol}, kinds(plan.findings))
			assert.Len(t, plan.signal, tc.signalled)
			for _, f := range plan.findings[2:] {
				assert.Equal(t, tc.outcome, f.Outcome, f.Detail)
				if len(tc.older) > 0 {
					assert.Contains(t, f.Repair, "w1@host")
				}
			}
			assert.Equal(t, "acme/older", plan.findings[2].Connection)
			assert.Contains(t, plan.findings[3].Detail, "could not be read")
			assert.Empty(t, p.unlistedProtocols(pager, tc.older))
			seen(plan.findings)
			checked++
		})
	}
	assert.Equal(t, len(cases), checked)

	// Past maxProtocolFindings, the rest are counted in one finding, and
	// every one is still signalled.
	var many []activities.RunProtocol
	for i := range maxProtocolFindings + 7 {
		many = append(many, run("c"+strconv.Itoa(i), OldestProtocol))
	}
	p := testPlanner()
	var pager protocolPager
	plan := p.protocols(many, nil, &pager)
	assert.Len(t, plan.findings, maxProtocolFindings)
	assert.Len(t, plan.signal, maxProtocolFindings+7)
	rest := p.unlistedProtocols(pager, nil)
	require.Len(t, rest, 1)
	assert.Equal(t, "7 more running workflows on an earlier protocol", rest[0].Detail)
	assert.Equal(t, OutcomeRepaired, rest[0].Outcome)
}

// TestPlanCoversEveryKind runs after the table tests (Go runs a file's
// tests in order) and checks that together they produced every finding
// kind.
func TestPlanCoversEveryKind(t *testing.T) {
	if len(planKindsSeen) == 0 {
		t.Skip("run with the planner's table tests")
	}
	for _, k := range FindingKinds() {
		assert.True(t, planKindsSeen[k], "no table test produces a %s finding", k)
	}
}

// TestPlannerIsPure: the planner's file imports nothing of Temporal's
// workflow package, so every decision is a plain function.
func TestPlannerIsPure(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "reconciler_plan.go", nil, parser.ImportsOnly)
	require.NoError(t, err)
	require.NotEmpty(t, f.Imports)
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		assert.False(t, strings.HasPrefix(path, "go.temporal.io/"), "reconciler_plan.go imports %s", path)
	}
}

// TestPlanSettledConnection: a connection the survey found settled (and so
// did not query) is examined with nothing to find or repair.
func TestPlanSettledConnection(t *testing.T) {
	p := planner{in: DefaultReconcilerInput().WithDefaults()}
	plan := p.connection(activities.ConnectionSurvey{Connection: pair, HomeKnown: true, CompanionKnown: true,
		Workflow: activities.Execution{Status: string(RunRunning)}, Settled: true})
	assert.Empty(t, plan.unexamined)
	assert.Empty(t, plan.findings)
	assert.Nil(t, plan.probe)
	assert.Nil(t, plan.restart)
}
