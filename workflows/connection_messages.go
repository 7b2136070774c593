package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"go.temporal.io/sdk/workflow"
)

// Message handling of the ConnectionWorkflow. Handlers only validate and
// change state, then wake the main loop, which does the work. Each operator
// message is a signal and an update sharing one validate-and-apply path; a
// signal with bad input is logged and recorded as the last rejected message.

// registerHandlers installs queries, updates and signal listeners.
func (c *connection) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (StatusView, error) {
		return c.view(), nil
	}); err != nil {
		return fmt.Errorf("register status query: %w", err)
	}

	c.signals = map[string]workflow.ReceiveChannel{}
	c.handlers = map[string]func(workflow.Context, json.RawMessage){}
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
	if err := workflow.SetUpdateHandler(ctx, UpdateAwaitConnected, c.awaitConnected); err != nil {
		return fmt.Errorf("register %s update: %w", UpdateAwaitConnected, err)
	}

	c.listen(ctx, SignalShareReport, func(ctx workflow.Context, raw json.RawMessage) {
		var v ShareView
		if err := json.Unmarshal(raw, &v); err != nil {
			c.logger.Error("malformed share report", "error", err)
			return
		}
		c.applyShareReport(ctx, v)
	})
	c.listen(ctx, SignalMetadataReport, func(ctx workflow.Context, raw json.RawMessage) {
		var v MetadataSyncView
		if err := json.Unmarshal(raw, &v); err != nil {
			c.logger.Error("malformed metadata sync report", "error", err)
			return
		}
		c.applyMetadataReport(ctx, v)
	})
	return nil
}

// dataSpaceMessage is an operator message naming a data space.
type dataSpaceMessage struct {
	name     string
	validate func(ds string) error
	apply    func(ctx workflow.Context, ds string)
}

// plainMessage is an operator message without input.
type plainMessage struct {
	name     string
	validate func() error
	apply    func(ctx workflow.Context)
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
	validate := func(req DataSpaceRequest) error {
		if err := ValidateDataSpaceName(req.DataSpace); err != nil {
			return err
		}
		return m.validate(req.DataSpace)
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, m.name,
		func(ctx workflow.Context, req DataSpaceRequest) (StatusView, error) {
			// Validated already; state may not have changed since.
			if err := validate(req); err != nil {
				return StatusView{}, err
			}
			m.apply(ctx, req.DataSpace)
			c.wake.SendAsync(nil)
			return c.view(), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req DataSpaceRequest) error {
			return validate(req)
		}},
	)
	if err != nil {
		return fmt.Errorf("register %s update: %w", m.name, err)
	}
	c.listen(ctx, m.name, func(ctx workflow.Context, raw json.RawMessage) {
		req, err := DecodeDataSpaceRequest(raw)
		if err == nil {
			err = m.validate(req.DataSpace)
		}
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
			if err := m.validate(); err != nil {
				return StatusView{}, err
			}
			m.apply(ctx)
			c.wake.SendAsync(nil)
			return c.view(), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context) error { return m.validate() }},
	)
	if err != nil {
		return fmt.Errorf("register %s update: %w", m.name, err)
	}
	c.listen(ctx, m.name, func(ctx workflow.Context, raw json.RawMessage) {
		// Plain messages ignore their payload: the CLI and the Web UI may
		// send none, {} or anything else.
		if err := m.validate(); err != nil {
			c.reject(m.name, describePayload(raw), err)
			return
		}
		m.apply(ctx)
	})
	return nil
}

// listen registers the handler of a signal. The main loop receives the
// payloads raw, so a malformed one reaches handle instead of being dropped by
// the SDK.
func (c *connection) listen(ctx workflow.Context, name string, handle func(workflow.Context, json.RawMessage)) {
	c.signals[name] = workflow.GetSignalChannel(ctx, name)
	c.handlers[name] = handle
	c.signalOrder = append(c.signalOrder, name)
}

// drainSignals applies every signal buffered but not yet received, so none
// is lost across continue-as-new.
func (c *connection) drainSignals(ctx workflow.Context) {
	for _, name := range c.signalOrder {
		for {
			var raw json.RawMessage
			if !c.signals[name].ReceiveAsync(&raw) {
				break
			}
			c.handlers[name](ctx, raw)
		}
	}
}

// reject records a refused signal; the sender cannot be answered.
func (c *connection) reject(name, payload string, err error) {
	c.LastRejected = fmt.Sprintf("%s %s: %v", name, payload, err)
	c.logger.Warn("signal rejected", "signal", name, "payload", payload, "error", err)
}

// errFinished refuses every operation once a disconnect has begun.
var errFinished = errors.New("the connection is disconnecting or disconnected; connect again to start a new one")

// operable refuses operations while connecting or after a disconnect.
func (c *connection) operable() error {
	switch {
	case c.Disconnecting || c.Status == Disconnected:
		return errFinished
	case c.Status == Connecting:
		return errors.New("the connection is still Connecting (handshake in progress); wait until it is Incomplete")
	}
	return nil
}

func (c *connection) validateShare(ds string) error {
	if err := c.operable(); err != nil {
		return err
	}
	if c.Status == Inactive {
		return fmt.Errorf("the connection is Inactive (%s); fix that and run recheck before sharing", c.Reason)
	}
	if sh, ok := c.Shares[ds]; ok {
		return fmt.Errorf("data space %q is already shared (initialization status %s)", ds, sh.View.InitializationStatus)
	}
	if !slices.Contains(c.DataSpaces, ds) {
		return fmt.Errorf("unknown data space %q: the home org %s has %v", ds, c.home, c.DataSpaces)
	}
	return nil
}

func (c *connection) applyShare(ctx workflow.Context, ds string) {
	c.Shares[ds] = &ShareRecord{View: ShareView{DataSpace: ds, InitializationStatus: Activating}}
	c.transition(ctx, subjectShare(ds), string(Activating), "share requested")
	c.setStatus(ctx, Active, "data space "+ds+" shared")
}

func (c *connection) validateUnshare(ds string) error {
	if c.Disconnecting || c.Status == Disconnected {
		return errFinished
	}
	sh, ok := c.Shares[ds]
	if !ok {
		return fmt.Errorf("data space %q is not shared on this connection", ds)
	}
	if sh.View.InitializationStatus == RemovingSharing {
		return fmt.Errorf("data space %q is already being removed", ds)
	}
	return nil
}

func (c *connection) applyUnshare(ctx workflow.Context, ds string) {
	sh := c.Shares[ds]
	sh.Unshared = true
	sh.UnsharePending = true
	sh.RetryPending = false
	sh.View.InitializationStatus = RemovingSharing
	sh.View.Error = ""
	c.transition(ctx, subjectShare(ds), string(RemovingSharing), "unshare requested")
}

func (c *connection) validateRetry(ds string) error {
	if err := c.operable(); err != nil {
		return err
	}
	sh, ok := c.Shares[ds]
	if !ok {
		return fmt.Errorf("data space %q is not shared on this connection", ds)
	}
	if sh.View.InitializationStatus != ShareError {
		return fmt.Errorf("data space %q is %s, not Error; only a share in Error can be retried", ds, sh.View.InitializationStatus)
	}
	return nil
}

func (c *connection) applyRetry(ctx workflow.Context, ds string) {
	sh := c.Shares[ds]
	sh.RetryPending = true
	sh.View.Error = ""
	sh.View.InitializationStatus = Activating
	if sh.Unshared {
		sh.View.InitializationStatus = RemovingSharing
	}
	c.transition(ctx, subjectShare(ds), string(sh.View.InitializationStatus), "retry requested")
}

func (c *connection) validateResume() error {
	if err := c.operable(); err != nil {
		return err
	}
	if !c.Metadata.Paused {
		return fmt.Errorf("metadata sync is not paused (status %q); resume applies only after a failed round", c.Metadata.Status)
	}
	return nil
}

func (c *connection) applyResume(ctx workflow.Context) {
	c.ResumePending = true
	c.Metadata.Paused = false // a second resume is refused until the sync reports again
	c.transition(ctx, subjectMetadataSync, "Resume requested", "")
}

func (c *connection) validateRecheck() error { return c.operable() }

func (c *connection) applyRecheck(ctx workflow.Context) { c.RecheckPending = true }

func (c *connection) validateDisconnect() error {
	if c.Disconnecting || c.Status == Disconnected {
		return errors.New("the connection is already disconnecting")
	}
	return nil
}

func (c *connection) applyDisconnect(ctx workflow.Context) {
	c.Disconnecting = true
	for _, ds := range workflow.DeterministicKeys(c.Shares) {
		sh := c.Shares[ds]
		if sh.View.InitializationStatus != RemovingSharing {
			c.applyUnshare(ctx, ds)
			continue
		}
		// Already removing: ask again anyway, so that a share whose
		// workflow is gone is found and started again to finish.
		sh.UnsharePending = true
	}
	c.transition(ctx, subjectConnection, "Disconnecting", fmt.Sprintf("%d share(s) to remove", len(c.Shares)))
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

// applyShareReport takes a share workflow's report of its own state.
func (c *connection) applyShareReport(ctx workflow.Context, v ShareView) {
	sh, ok := c.Shares[v.DataSpace]
	if !ok {
		return
	}
	if v.Removed {
		delete(c.Shares, v.DataSpace)
		c.transition(ctx, subjectShare(v.DataSpace), "Removed", "data removed from the companion")
		if len(c.Shares) == 0 && c.Status == Active {
			c.setStatus(ctx, Incomplete, "no data space is shared")
		}
		return
	}
	if sh.Unshared && (v.InitializationStatus == Activating || v.InitializationStatus == ShareActive) {
		return // a report sent before the share received its unshare
	}
	if sh.View.InitializationStatus != v.InitializationStatus {
		c.transition(ctx, subjectShare(v.DataSpace), string(v.InitializationStatus), v.Error)
	}
	sh.View = v
	if c.Disconnecting && v.InitializationStatus == ShareError {
		// A disconnect keeps removing until every share is gone.
		sh.UnsharePending = true
	}
}

// applyMetadataReport takes the metadata sync's report of its state.
func (c *connection) applyMetadataReport(ctx workflow.Context, v MetadataSyncView) {
	if c.Metadata.Status != v.Status {
		c.transition(ctx, subjectMetadataSync, string(v.Status), v.Error)
	}
	c.Metadata = v
}
