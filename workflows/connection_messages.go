package workflows

import (
	"encoding/json"
	"fmt"
	"slices"

	"go.temporal.io/sdk/workflow"
)

// Message handling of the ConnectionWorkflow. Handlers only validate and
// change the desired state, then wake the main loop, which does the work.
// Signals are buffered and applied by the main loop, or by an update
// handler before its own request, so a signal sent before an update is
// carried out before it. (Signals of different names delivered in one
// workflow task are applied in a fixed order of names; the typed client's
// updates are strictly ordered.)
// Each operator message is a signal and an update sharing one
// validate-and-apply path. An update returns once the responsible child
// has acknowledged the request, so its answer shows what the child reports;
// a signal with bad input is logged and recorded as the last rejected message.

// registerHandlers installs queries, updates and signal listeners.
func (c *connection) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryStatus, func() (StatusView, error) {
		return c.view(), nil
	}, queryOptions(describeConnectionStatus)); err != nil {
		return fmt.Errorf("register status query: %w", err)
	}
	c.wake = workflow.NewBufferedChannel(ctx, 1)
	for _, m := range c.dataSpaceMessages() {
		if err := c.registerDataSpaceMessage(ctx, m); err != nil {
			return err
		}
	}
	for _, m := range c.plainMessages() {
		if err := c.registerPlainMessage(ctx, m); err != nil {
			return err
		}
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateAwaitConnected, c.awaitConnected,
		workflow.UpdateHandlerOptions{Description: describeAwaitConnected}); err != nil {
		return fmt.Errorf("register %s update: %w", UpdateAwaitConnected, err)
	}
	c.signals.listen(ctx, SignalShareReport, func(ctx workflow.Context, raw json.RawMessage) {
		var r ShareReport
		if err := decodeSignal(raw, &r); err != nil {
			c.logger.Error("share report ignored", "error", err)
			return
		}
		c.applyShareReport(ctx, r)
	})
	c.signals.listen(ctx, SignalProbe, func(ctx workflow.Context, raw json.RawMessage) {
		var req ProbeRequest
		if len(raw) > 0 && string(raw) != "null" {
			if err := decodeSignal(raw, &req); err != nil {
				c.logger.Error("probe payload ignored", "error", err)
			}
		}
		c.logger.Info("probing children at the reconciler's request", "checkpoints", len(req.Checkpoints))
		c.probe(req)
	})
	c.signals.listen(ctx, SignalMetadataReport, func(ctx workflow.Context, raw json.RawMessage) {
		var r MetadataReport
		if err := decodeSignal(raw, &r); err != nil {
			c.logger.Error("metadata sync report ignored", "error", err)
			return
		}
		c.applyMetadataReport(ctx, r)
	})
	c.signals.listen(ctx, SignalWatch, c.watched)
	return nil
}

// dataSpaceMessage is an operator message naming a data space. apply
// returns the condition under which the request is acknowledged.
type dataSpaceMessage struct {
	name     string
	validate func(ds string) error
	apply    func(ctx workflow.Context, ds string) func() bool
}

// plainMessage is an operator message without input.
type plainMessage struct {
	name     string
	validate func() error
	apply    func(ctx workflow.Context) func() bool
}

func (c *connection) dataSpaceMessages() []dataSpaceMessage {
	return []dataSpaceMessage{
		{MessageShare, c.validateShare, c.applyShare},
		{MessageUnshare, c.validateUnshare, c.applyUnshare},
		{MessageRetry, c.validateRetry, c.applyRetry},
	}
}

func (c *connection) plainMessages() []plainMessage {
	return []plainMessage{
		{MessageResume, c.validateResume, c.applyResume},
		{MessageRecheck, c.validateRecheck, c.applyRecheck},
		{MessageDisconnect, c.validateDisconnect, c.applyDisconnect},
	}
}

func (c *connection) registerDataSpaceMessage(ctx workflow.Context, m dataSpaceMessage) error {
	// A malformed name is refused whatever the state; the rest depends on it.
	wellFormed := func(req DataSpaceRequest) error {
		if err := ValidateDataSpaceName(req.DataSpace); err != nil {
			return refuse(RefusalInvalidRequest, "%v", err)
		}
		return nil
	}
	validate := func(req DataSpaceRequest) error {
		if err := wellFormed(req); err != nil {
			return err
		}
		return m.validate(req.DataSpace)
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, m.name,
		func(ctx workflow.Context, req DataSpaceRequest) (StatusView, error) {
			// Children's ends and signals that came before the update are
			// carried out before it.
			c.applyEnds(ctx)
			c.signalsBefore(ctx)
			// Validated already; state may have changed since.
			err := validate(req)
			c.auditUpdate(ctx, m.name, req.DataSpace, err)
			if err != nil {
				return StatusView{}, err
			}
			return c.accept(ctx, m.apply(ctx, req.DataSpace))
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req DataSpaceRequest) error {
			if err := wellFormed(req); err != nil {
				return err
			}
			return c.validateAfterEnds(m.validate(req.DataSpace))
		}, Description: messageDescriptions[m.name]},
	)
	if err != nil {
		return fmt.Errorf("register %s update: %w", m.name, err)
	}
	c.signals.listen(ctx, m.name, func(ctx workflow.Context, raw json.RawMessage) {
		c.applyEnds(ctx)
		req, err := DecodeDataSpaceRequest(raw)
		if err == nil {
			err = m.validate(req.DataSpace)
		}
		subject := req.DataSpace
		if subject == "" {
			subject = describePayload(raw)
		}
		c.auditSignal(ctx, m.name, subject, err)
		if err != nil {
			c.reject(m.name, describePayload(raw), err)
			return
		}
		m.apply(ctx, req.DataSpace)
	})
	return nil
}

func (c *connection) registerPlainMessage(ctx workflow.Context, m plainMessage) error {
	err := workflow.SetUpdateHandlerWithOptions(ctx, m.name,
		func(ctx workflow.Context) (StatusView, error) {
			c.applyEnds(ctx)
			c.signalsBefore(ctx)
			err := m.validate()
			c.auditUpdate(ctx, m.name, "", err)
			if err != nil {
				return StatusView{}, err
			}
			return c.accept(ctx, m.apply(ctx))
		},
		workflow.UpdateHandlerOptions{
			Validator:   func(ctx workflow.Context) error { return c.validateAfterEnds(m.validate()) },
			Description: messageDescriptions[m.name],
		},
	)
	if err != nil {
		return fmt.Errorf("register %s update: %w", m.name, err)
	}
	c.signals.listen(ctx, m.name, func(ctx workflow.Context, raw json.RawMessage) {
		// Plain messages ignore their payload: the CLI and the Web UI may
		// send none, {} or anything else.
		c.applyEnds(ctx)
		err := m.validate()
		c.auditSignal(ctx, m.name, "", err)
		if err != nil {
			c.reject(m.name, describePayload(raw), err)
			return
		}
		m.apply(ctx)
	})
	return nil
}

// validateAfterEnds is a validator's verdict err, given that a validator
// cannot apply children's ends. When the server delivers an update in the
// same workflow task as a child's end that came first, the end is ready but
// not applied yet (endsFirst): a refusal could then rest on the state from
// before the end (a share still being removed), so the update is let through
// and its handler, which applies the ends first, validates it again and
// refuses it there if it is still invalid.
func (c *connection) validateAfterEnds(err error) error {
	if err != nil && slices.ContainsFunc(c.ends, func(end *childEnd) bool { return !end.applied && end.child.IsReady() }) {
		return nil
	}
	return err
}

// accept wakes the main loop to carry out an accepted update and answers
// once the request is acknowledged, or after ackWait with the request shown
// as requested.
func (c *connection) accept(ctx workflow.Context, acknowledged func() bool) (StatusView, error) {
	c.wake.SendAsync(nil)
	// Acknowledgements come from deliveries, at once unless a child is
	// down or closing; the wait ends at the next health check or before
	// continue-as-new at the latest, without a timer of its own.
	ticket := c.releases
	if err := workflow.Await(ctx, func() bool { return acknowledged() || c.releases > ticket || c.draining }); err != nil {
		return StatusView{}, err
	}
	return c.view(), nil
}

// reject records a refused signal; the sender cannot be answered.
func (c *connection) reject(name, payload string, err error) {
	reason := err.Error()
	if kind := refusalKind(err); kind != "" {
		reason = rootMessage(err)
	}
	c.LastRejected = fmt.Sprintf("%s %s: %s", name, payload, reason)
	c.logger.Warn("signal rejected", "signal", name, "payload", payload, "error", err)
}

// operable refuses operations while connecting or once a disconnect began.
func (c *connection) operable() error {
	switch {
	case c.Disconnecting || c.Status == Disconnected:
		return refuse(RefusalDisconnecting, "the connection is disconnecting or disconnected; connect again to start a new one")
	case c.Status == Connecting:
		return refuse(RefusalStillConnecting, "the connection is still Connecting (handshake in progress); wait until it is Incomplete")
	}
	return nil
}

func (c *connection) validateShare(ds string) error {
	if err := c.operable(); err != nil {
		return err
	}
	if c.Status == Inactive {
		return refuse(RefusalConnectionInactive, "the connection is Inactive (%s); fix that and run recheck before sharing", c.Reason)
	}
	if sh, ok := c.Shares[ds]; ok {
		if sh.Desired.Intent == IntentRemoved {
			return refuse(RefusalAlreadyShared, "data space %q is being removed; share it again once it is gone", ds)
		}
		return refuse(RefusalAlreadyShared, "data space %q is already shared (initialization status %s)", ds, c.shareView(ds).InitializationStatus)
	}
	if !slices.Contains(c.DataSpaces, ds) {
		return refuse(RefusalUnknownDataSpace, "unknown data space %q: the home org %s has %v", ds, c.home, c.DataSpaces)
	}
	return nil
}

// request raises the desired generation of a share and names the request.
func (c *connection) request(ctx workflow.Context, ds string, intent ShareIntent, name string) func() bool {
	sh := c.Shares[ds]
	sh.Desired = ShareDesired{Generation: c.nextGeneration(), Intent: intent}
	sh.Request = name
	c.transition(ctx, subjectShare(ds), name+" requested", "")
	since, gen := sh.Since, sh.Desired.Generation
	return func() bool {
		now := c.Shares[ds]
		return now == nil || now.Since != since || now.Observed.Generation >= gen || now.Problem != "" || c.Status == Disconnected
	}
}

func (c *connection) applyShare(ctx workflow.Context, ds string) func() bool {
	c.Shares[ds] = &ShareRecord{Since: c.Generation + 1}
	c.setStatus(ctx, Active, "data space "+ds+" shared")
	return c.request(ctx, ds, IntentShared, RequestShare)
}

func (c *connection) validateUnshare(ds string) error {
	if c.Disconnecting || c.Status == Disconnected {
		return refuse(RefusalDisconnecting, "the connection is disconnecting or disconnected; every share is being removed")
	}
	sh, ok := c.Shares[ds]
	if !ok {
		return refuse(RefusalNotShared, "data space %q is not shared on this connection", ds)
	}
	if sh.Desired.Intent == IntentRemoved && c.shareView(ds).InitializationStatus != ShareError {
		return refuse(RefusalAlreadyRemoving, "data space %q is already being removed", ds)
	}
	return nil
}

func (c *connection) applyUnshare(ctx workflow.Context, ds string) func() bool {
	return c.request(ctx, ds, IntentRemoved, RequestUnshare)
}

func (c *connection) validateRetry(ds string) error {
	if err := c.operable(); err != nil {
		return err
	}
	if _, ok := c.Shares[ds]; !ok {
		return refuse(RefusalNotShared, "data space %q is not shared on this connection", ds)
	}
	if v := c.shareView(ds); v.InitializationStatus != ShareError || v.Requested != "" {
		status := string(v.InitializationStatus)
		if v.Requested != "" {
			status += " with " + v.Requested + " requested"
		}
		return refuse(RefusalNotInError, "data space %q is %s, not Error; only a share in Error can be retried", ds, status)
	}
	return nil
}

func (c *connection) applyRetry(ctx workflow.Context, ds string) func() bool {
	return c.request(ctx, ds, c.Shares[ds].Desired.Intent, RequestRetry)
}

func (c *connection) validateResume() error {
	if err := c.operable(); err != nil {
		return err
	}
	if v := c.metadataView(); !v.Paused || v.Requested != "" {
		if v.Requested != "" {
			return refuse(RefusalNotPaused, "a resume is already requested; the metadata sync has not acknowledged it yet")
		}
		return refuse(RefusalNotPaused, "metadata sync is not paused (status %q); resume applies only after a failed round", v.Status)
	}
	return nil
}

func (c *connection) applyResume(ctx workflow.Context) func() bool {
	m := &c.Metadata
	m.Desired.Generation = c.nextGeneration()
	m.Desired.Resume = m.Desired.Generation
	c.transition(ctx, subjectMetadataSync, RequestResume+" requested", "")
	gen := m.Desired.Generation
	return func() bool { return c.Metadata.Observed.Generation >= gen || !c.Metadata.Running || c.Disconnecting }
}

func (c *connection) validateRecheck() error { return c.operable() }

func (c *connection) applyRecheck(ctx workflow.Context) func() bool {
	c.NextHealthCheck = workflow.Now(ctx)
	c.Recheck = rules(c.protocol).watched
	return func() bool { return true }
}

func (c *connection) validateDisconnect() error {
	if c.Disconnecting || c.Status == Disconnected {
		return refuse(RefusalDisconnecting, "the connection is already disconnecting")
	}
	return nil
}

// applyDisconnect asks every share to be removed. A share already being
// removed is asked again too, so that one whose workflow is gone is found
// and started again to finish.
func (c *connection) applyDisconnect(ctx workflow.Context) func() bool {
	c.Disconnecting = true
	c.transition(ctx, subjectConnection, Disconnecting, fmt.Sprintf("%d share(s) to remove", len(c.Shares)))
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		c.request(ctx, ds, IntentRemoved, RequestUnshare)
	}
	return func() bool { return true }
}

// awaitConnected answers the typed client's connect: it waits for the end of
// the handshake and fails with the refusal, if any.
func (c *connection) awaitConnected(ctx workflow.Context) (StatusView, error) {
	if err := workflow.Await(ctx, func() bool { return c.Handshaken || c.refused != nil }); err != nil {
		return StatusView{}, err
	}
	if c.refused != nil {
		return StatusView{}, c.refused
	}
	return c.view(), nil
}
