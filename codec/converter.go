package codec

import (
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
)

// NewDataConverter returns the SDK's default data converter with every
// payload passed through a Codec for ring: values are serialized as usual
// (JSON, protobuf, ...) and then encrypted.
//
// Set it, together with NewFailureConverter, wherever payloads are written or
// read, or the two sides will not understand each other:
//
//	dc := codec.NewDataConverter(ring)
//	client.Options{DataConverter: dc, FailureConverter: codec.NewFailureConverter(dc)}
//	worker.WorkflowReplayerOptions{DataConverter: dc, FailureConverter: codec.NewFailureConverter(dc)}
//
// (the latter for worker.NewWorkflowReplayerWithOptions). A worker created
// from such a client inherits both.
//
// Inside workflow code, a payload the ring cannot decrypt fails the workflow
// task (see inWorkflowsFailTheTask) instead of the workflow.
func NewDataConverter(ring *KeyRing) converter.DataConverter {
	return inWorkflowsFailTheTask{converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), NewCodec(ring))}
}

// NewFailureConverter returns the SDK's default failure converter set to
// serialize failure details with dc and to move each failure's message and
// stack trace into its EncodedAttributes payload, which dc encrypts. The
// server then only sees the message "Encoded failure"; SDK clients with the
// same converters see the original message.
//
// Pass it as client.Options.FailureConverter (and
// worker.WorkflowReplayerOptions.FailureConverter) next to DataConverter:
// a client that has only the data converter writes failure messages in
// plaintext.
func NewFailureConverter(dc converter.DataConverter) converter.FailureConverter {
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter:          dc,
		EncodeCommonAttributes: true,
	})
}

// NewConverters returns NewDataConverter(ring) and the matching
// NewFailureConverter, the pair client.Options and
// worker.WorkflowReplayerOptions need.
func NewConverters(ring *KeyRing) (converter.DataConverter, converter.FailureConverter) {
	dc := NewDataConverter(ring)
	return dc, NewFailureConverter(dc)
}
