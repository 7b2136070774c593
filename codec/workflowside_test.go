package codec

import (
	"context"
	"strings"
	"testing"

	"go.temporal.io/sdk/converter"
)

// TestUndecryptableFailsTheTaskInWorkflowsOnly: in workflow code a payload
// under a missing key panics (the SDK fails the workflow task, which is
// retried); elsewhere it is an error naming the key; a payload that only
// fails to unmarshal stays an error everywhere.
func TestUndecryptableFailsTheTaskInWorkflowsOnly(t *testing.T) {
	written := NewDataConverter(testRing(t, testKey(t, "k1", 0x80)))
	p, err := written.ToPayload("secret")
	if err != nil {
		t.Fatal(err)
	}
	reader := NewDataConverter(testRing(t, testKey(t, "k2", 0xA0))).(converter.ContextAware)

	var s string
	err = reader.WithContext(context.Background()).FromPayload(p, &s)
	if err == nil || !strings.Contains(err.Error(), `key "k1" is not in the key ring`) {
		t.Fatalf("outside workflows: err = %v, want the missing key named", err)
	}

	panicked := func(f func()) (v any) {
		defer func() { v = recover() }()
		f()
		return nil
	}
	inWorkflow := reader.WithWorkflowContext(nil)
	if v := panicked(func() { _ = inWorkflow.FromPayload(p, &s) }); v == nil || !strings.Contains(v.(error).Error(), `key "k1"`) {
		t.Fatalf("in a workflow: recovered %v, want a panic naming the key", v)
	}

	// A payload this ring decrypts but that does not fit the target stays
	// an error: workflow code handles it (a malformed signal).
	own, err := NewDataConverter(testRing(t, testKey(t, "k2", 0xA0))).ToPayload("text")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if v := panicked(func() { err = inWorkflow.FromPayload(own, &n) }); v != nil || err == nil {
		t.Fatalf("a decryptable payload of the wrong shape: panic %v, err %v; want an error", v, err)
	}
}
