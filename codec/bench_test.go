package codec

import (
	"encoding/json"
	"fmt"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

// BenchmarkEncodeDecode encodes and decodes a status-sized JSON payload (a
// connection's status view with a few shares and transitions, about 2 KiB),
// compressed and encrypted:
//
//	go test ./codec -run '^$' -bench EncodeDecode -benchmem
func BenchmarkEncodeDecode(b *testing.B) {
	k, err := NewKey("k1", testSecret(0x80))
	if err != nil {
		b.Fatal(err)
	}
	ring, err := NewKeyRing(k)
	if err != nil {
		b.Fatal(err)
	}
	c := NewCodec(ring)
	type share struct {
		DataSpace, Status string
		Copied, Total     int
		Removed, ToRemove int
	}
	type transition struct{ At, Subject, Status, Detail string }
	view := struct {
		Connection, Status string
		Shares             []share
		Transitions        []transition
	}{Connection: "acme → acme-emea", Status: "Active"}
	for i := range 4 {
		view.Shares = append(view.Shares, share{DataSpace: fmt.Sprintf("space-%d", i), Status: "Active", Copied: 1000 * i, Total: 1000 * i})
	}
	for i := range 12 {
		view.Transitions = append(view.Transitions, transition{At: fmt.Sprintf("2026-11-30T14:%02d:00Z", i), Subject: "data space space-1", Status: "Activating", Detail: "copy started"})
	}
	data, err := json.Marshal(view)
	if err != nil {
		b.Fatal(err)
	}
	p := &commonpb.Payload{Metadata: map[string][]byte{converter.MetadataEncoding: []byte(converter.MetadataEncodingJSON)}, Data: data}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		enc, err := c.Encode([]*commonpb.Payload{p})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}
