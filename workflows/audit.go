package workflows

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/activities"
	"github.com/companionsync/companionsync/contract"
)

// The audit trail, workflow side. Each request a connection takes (an
// update or a signal of an operator message, and its connect) is kept as
// an AuditEntry in the connection's state, and the main loop writes what
// is pending to the org store in one local activity (one marker event per
// pass that took requests, none when idle). Entries not written yet are
// carried across continue-as-new, so none is lost; each has an ID unique
// within the connection, so writing one twice changes nothing.
//
// Who asked travels in the ActorHeader header of the request. An update
// handler reads it from its context; a signal's header is visible only to
// a worker interceptor (Interceptor), which queues it for the workflow
// code that takes the signal. Both come from the history, so replay reads
// the same actors.

// maxPendingAudit bounds the entries kept while the org store cannot take
// them; past it the oldest are dropped, and counted in the next entry.
const maxPendingAudit = 500

// maxActor bounds the recorded length of an actor.
const maxActor = 200

// actorOf is the actor named by ctx's header (an update's, a signal's, or
// the run's start), or ActorUnattributed.
func actorOf(ctx workflow.Context) string {
	p := interceptor.WorkflowHeader(ctx)[contract.ActorHeader]
	if p == nil {
		return contract.ActorUnattributed
	}
	var actor string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &actor); err != nil {
		return contract.ActorUnattributed
	}
	return cleanActor(actor)
}

// cleanActor bounds an actor and keeps it printable on one line.
func cleanActor(actor string) string {
	actor = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(actor))
	if actor == "" {
		return contract.ActorUnattributed
	}
	if len(actor) > maxActor {
		cut := maxActor
		for cut > 0 && !utf8.RuneStart(actor[cut]) {
			cut--
		}
		actor = actor[:cut] + "…"
	}
	return actor
}

// senders are the actors of operator signals delivered to a run and not
// taken by the workflow code yet, in order per signal name, and how many
// signals of each name have been delivered to the run.
type senders struct {
	queues  map[string][]string
	arrived map[string]int
}

// arrivals is how many signals of each name the run has been delivered;
// nil without Interceptor.
func (s *senders) arrivals() map[string]int {
	if s == nil {
		return nil
	}
	return s.arrived
}

func (s *senders) push(name, actor string) {
	s.queues[name] = append(s.queues[name], actor)
}

// pop takes the actor of the next signal of name; ActorUnattributed when
// no interceptor queued one.
func (s *senders) pop(name string) string {
	if s == nil || len(s.queues[name]) == 0 {
		return contract.ActorUnattributed
	}
	actor := s.queues[name][0]
	s.queues[name] = s.queues[name][1:]
	return actor
}

type sendersKey struct{}

// sendersOf is the run's senders, set by Interceptor; nil without it.
func sendersOf(ctx workflow.Context) *senders {
	s, _ := ctx.Value(sendersKey{}).(*senders)
	return s
}

// auditedSignals are the signals whose actors are queued.
var auditedSignals = map[string]bool{
	MessageShare: true, MessageUnshare: true, MessageRetry: true,
	MessageResume: true, MessageRecheck: true, MessageDisconnect: true,
}

// Interceptor is the worker interceptor the connection's audit trail needs:
// it queues the actor of each operator signal for the workflow code, and
// hands each update a connection's validator refused to refused (nil: not
// recorded). A refused update never reaches the history, so the worker
// that refused it is the only place that can record it; refused is called
// on the workflow's goroutine and must not block (the worker hands the
// entry to a writer of its own). Replay needs the interceptor too, or
// signals read as unattributed.
func Interceptor(refused func(contract.AuditEntry)) interceptor.WorkerInterceptor {
	return &auditInterceptor{refused: refused}
}

type auditInterceptor struct {
	interceptor.WorkerInterceptorBase
	refused func(contract.AuditEntry)
}

func (a *auditInterceptor) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &auditInbound{
		WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next},
		refused:                        a.refused,
		senders:                        &senders{queues: map[string][]string{}, arrived: map[string]int{}},
	}
}

type auditInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	refused func(contract.AuditEntry)
	senders *senders
}

func (a *auditInbound) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (any, error) {
	// The SDK takes the start's header off the context before the
	// workflow function runs: keep its actor.
	ctx = workflow.WithValue(ctx, startActorKey{}, actorOf(ctx))
	return a.Next.ExecuteWorkflow(workflow.WithValue(ctx, sendersKey{}, a.senders), in)
}

type startActorKey struct{}

// startActorOf is who started the run, as Interceptor read it from the
// start's header; ActorUnattributed without it.
func startActorOf(ctx workflow.Context) string {
	if actor, ok := ctx.Value(startActorKey{}).(string); ok {
		return actor
	}
	return contract.ActorUnattributed
}

func (a *auditInbound) HandleSignal(ctx workflow.Context, in *interceptor.HandleSignalInput) error {
	if workflow.GetInfo(ctx).WorkflowType.Name == ConnectionWorkflowName {
		a.senders.arrived[in.SignalName]++
		if auditedSignals[in.SignalName] {
			a.senders.push(in.SignalName, actorOf(ctx))
		}
	}
	return a.Next.HandleSignal(ctx, in)
}

func (a *auditInbound) ValidateUpdate(ctx workflow.Context, in *interceptor.UpdateInput) error {
	err := a.Next.ValidateUpdate(ctx, in)
	if err == nil || a.refused == nil || !auditedSignals[in.Name] {
		return err
	}
	info := workflow.GetInfo(ctx)
	if info.WorkflowType.Name != ConnectionWorkflowName {
		return err
	}
	ref, ok := referenceOf(info.WorkflowExecution.ID)
	if !ok {
		return err
	}
	e := contract.AuditEntry{
		Connection: ref,
		ID:         "update/" + workflow.GetCurrentUpdateInfo(ctx).ID,
		At:         workflow.Now(ctx),
		Actor:      actorOf(ctx),
		Request:    in.Name,
		Via:        contract.ViaUpdate,
		Outcome:    contract.AuditRefused,
		Reason:     refusalReason(err),
	}
	if len(in.Args) == 1 {
		if req, ok := in.Args[0].(DataSpaceRequest); ok {
			e.Subject = req.DataSpace
		}
	}
	a.refused(e)
	return err
}

// referenceOf is the HOME/COMPANION of a connection's workflow ID.
func referenceOf(workflowID string) (string, bool) {
	// "companion-connection:HOME:COMPANION"
	rest, ok := strings.CutPrefix(workflowID, strings.TrimSuffix(contract.ConnectionWorkflowID("", ""), ":"))
	if !ok {
		return "", false
	}
	home, companion, ok := strings.Cut(rest, ":")
	if !ok || home == "" || companion == "" {
		return "", false
	}
	return contract.Reference(home, companion), true
}

// refusalReason is the message of a refusal, without its wrapping.
func refusalReason(err error) string {
	if refusalKind(err) != "" {
		return rootMessage(err)
	}
	return err.Error()
}

// audit keeps an entry for the audit trail, to be written by the next pass
// of the main loop. Only the accountable protocols keep one. id is the
// request's own ID (an update's); empty numbers the entry in the run.
func (c *connection) audit(ctx workflow.Context, id string, e contract.AuditEntry) {
	if !rules(c.protocol).accountable {
		return
	}
	if id == "" {
		c.AuditSeq++
		id = fmt.Sprintf("%s/%s/%d", e.Via, c.runID, c.AuditSeq)
	}
	e.ID = id
	e.Connection = Reference(c.home, c.companion)
	e.At = workflow.Now(ctx)
	if len(c.PendingAudit) >= maxPendingAudit {
		dropped := len(c.PendingAudit) - maxPendingAudit + 1
		c.PendingAudit = c.PendingAudit[dropped:]
		c.AuditDropped += dropped
	}
	if c.AuditDropped > 0 {
		e.Reason = strings.TrimSpace(fmt.Sprintf("%s (%d earlier entries were dropped while the org store was unreachable)", e.Reason, c.AuditDropped))
		c.AuditDropped = 0
	}
	c.PendingAudit = append(c.PendingAudit, e)
}

// auditUpdate keeps the outcome of an update handled by the connection.
func (c *connection) auditUpdate(ctx workflow.Context, request, subject string, err error) {
	e := contract.AuditEntry{Actor: actorOf(ctx), Request: request, Subject: subject, Via: contract.ViaUpdate, Outcome: contract.AuditAccepted}
	if err != nil {
		e.Outcome, e.Reason = contract.AuditRefused, refusalReason(err)
	}
	c.audit(ctx, "update/"+workflow.GetCurrentUpdateInfo(ctx).ID, e)
}

// auditSignal keeps the outcome of a signal taken by the connection.
func (c *connection) auditSignal(ctx workflow.Context, request, subject string, err error) {
	e := contract.AuditEntry{Actor: c.senders.pop(request), Request: request, Subject: subject, Via: contract.ViaSignal, Outcome: contract.AuditAccepted}
	if err != nil {
		e.Outcome, e.Reason = contract.AuditRefused, refusalReason(err)
	}
	c.audit(ctx, "", e)
}

// flushAudit writes the pending entries to the org store. On failure they
// stay pending, for the next pass. Entries an update handler adds while
// the write is in flight stay pending too: only those written leave.
func (c *connection) flushAudit(ctx workflow.Context) {
	if len(c.PendingAudit) == 0 {
		return
	}
	entries := c.PendingAudit
	err := c.shortStep(ctx, fmt.Sprintf("record %d request(s) in the audit trail", len(entries)), 0, acts.RecordAudit,
		activities.RecordAuditInput{Entries: entries}).Get(ctx, nil)
	if err != nil {
		c.logger.Warn("audit trail not written; kept for the next pass", "entries", len(entries), "error", err)
		return
	}
	written := make(map[string]bool, len(entries))
	for _, e := range entries {
		written[e.ID] = true
	}
	var rest []contract.AuditEntry
	for _, e := range c.PendingAudit {
		if !written[e.ID] {
			rest = append(rest, e)
		}
	}
	c.PendingAudit = rest
}

// auditConnect keeps the outcome of the connect that started the
// connection (its handshake).
func (c *connection) auditConnect(ctx workflow.Context, err error) {
	if c.startActor == "" {
		return
	}
	e := contract.AuditEntry{Actor: c.startActor, Request: contract.RequestConnect, Via: contract.ViaStart, Outcome: contract.AuditAccepted}
	if err != nil {
		e.Outcome, e.Reason = contract.AuditRefused, rootMessage(err)
	}
	c.audit(ctx, "connect/"+workflow.GetInfo(ctx).OriginalRunID, e)
}
