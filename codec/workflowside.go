package codec

import (
	"context"
	"errors"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

// inWorkflowsFailTheTask is a data converter that, inside workflow code,
// turns a payload it cannot decrypt into a panic. The SDK reports a panic in
// a workflow task as a failed task, retried and shown in the Web UI, until a
// worker with the key runs it. Returned as an error, the same failure would
// end the workflow: the SDK fails a workflow whose input it cannot decode,
// and workflow code cannot tell an undecryptable signal or result from a
// malformed one. Outside workflows (clients, activities) it returns the
// error.
type inWorkflowsFailTheTask struct {
	converter.DataConverter
}

var _ converter.ContextAware = inWorkflowsFailTheTask{}

// WithWorkflowContext is the converter workflow code uses.
func (c inWorkflowsFailTheTask) WithWorkflowContext(converter.WorkflowContext) converter.DataConverter {
	return failTheTask(c)
}

// WithContext is the converter of activities and clients.
func (c inWorkflowsFailTheTask) WithContext(context.Context) converter.DataConverter {
	return c.DataConverter
}

// failTheTask panics on a payload the key ring cannot decrypt.
type failTheTask struct {
	converter.DataConverter
}

func (c failTheTask) FromPayload(p *commonpb.Payload, v any) error {
	return c.check(c.DataConverter.FromPayload(p, v))
}

func (c failTheTask) FromPayloads(p *commonpb.Payloads, v ...any) error {
	return c.check(c.DataConverter.FromPayloads(p, v...))
}

func (c failTheTask) check(err error) error {
	var unknown *UnknownKeyError
	if errors.As(err, &unknown) || errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrCorrupt) {
		panic(fmt.Errorf("a payload of this workflow cannot be decrypted; the workflow task fails until a worker with its key runs it: %w", err))
	}
	return err
}
