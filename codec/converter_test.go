package codec

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	failurepb "go.temporal.io/api/failure/v1"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"
)

func TestFailureConverterEncryptsMessages(t *testing.T) {
	ring := testRing(t, testKey(t, "k1", 0x80))
	dc, fc := NewConverters(ring)

	const secret = "card 4111-1111 declined for alice@example.com"
	cause := errors.New("upstream said: " + secret)
	appErr := temporal.NewApplicationErrorWithCause("charge failed: "+secret, "ChargeDeclined", cause, "detail: "+secret)

	f := fc.ErrorToFailure(appErr)
	if f == nil {
		t.Fatal("ErrorToFailure returned nil")
	}
	if strings.Contains(f.Message, "card 4111") {
		t.Errorf("failure message is in plaintext: %q", f.Message)
	}
	if f.EncodedAttributes == nil {
		t.Fatal("EncodedAttributes is not set")
	}
	if got := string(f.EncodedAttributes.Metadata[MetadataEncoding]); got != MetadataEncodingEncrypted {
		t.Errorf("EncodedAttributes encoding = %q, want %q", got, MetadataEncodingEncrypted)
	}
	// Nothing the server stores (the whole failure, with cause and details)
	// holds the secret text.
	wire, err := proto.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if containsBytes(wire, "4111") || containsBytes(wire, "alice@") {
		t.Errorf("the failure the server sees contains the plaintext: %v", f)
	}
	if f.GetCause() == nil || strings.Contains(f.GetCause().GetMessage(), "4111") || f.GetCause().GetEncodedAttributes() == nil {
		t.Errorf("cause not encrypted: %v", f.GetCause())
	}

	// The encoded attributes decode back with the data converter...
	var attrs struct {
		Message string `json:"message"`
	}
	if err := dc.FromPayload(f.EncodedAttributes, &attrs); err != nil {
		t.Fatalf("decode EncodedAttributes: %v", err)
	}
	if attrs.Message != "charge failed: "+secret {
		t.Errorf("EncodedAttributes message = %q", attrs.Message)
	}

	// ...and the failure converter restores the error for SDK callers.
	back := fc.FailureToError(proto.Clone(f).(*failurepb.Failure))
	var appBack *temporal.ApplicationError
	if !errors.As(back, &appBack) {
		t.Fatalf("FailureToError = %T %v, want an ApplicationError", back, back)
	}
	if !strings.Contains(appBack.Error(), "charge failed: "+secret) || appBack.Type() != "ChargeDeclined" {
		t.Errorf("restored error = %q (type %q)", appBack.Error(), appBack.Type())
	}
	var detail string
	if err := appBack.Details(&detail); err != nil || detail != "detail: "+secret {
		t.Errorf("restored details = %q, %v", detail, err)
	}
	if c := errors.Unwrap(appBack); c == nil || !strings.Contains(c.Error(), "upstream said: "+secret) {
		t.Errorf("restored cause = %v", c)
	}

	// Without the key the message stays hidden rather than failing.
	_, otherFC := NewConverters(testRing(t, testKey(t, "k2", 0xA0)))
	if msg := fmt.Sprint(otherFC.FailureToError(proto.Clone(f).(*failurepb.Failure))); strings.Contains(msg, "4111") {
		t.Errorf("a converter without the key revealed %q", msg)
	}
}
