package codec

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

type order struct {
	ID    string   `json:"id"`
	Items []string `json:"items"`
}

func mustEncode(t *testing.T, c *Codec, ps ...*commonpb.Payload) []*commonpb.Payload {
	t.Helper()
	enc, err := c.Encode(ps)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if len(enc) != len(ps) {
		t.Fatalf("Encode returned %d payloads for %d", len(enc), len(ps))
	}
	return enc
}

func mustDecode(t *testing.T, c *Codec, ps ...*commonpb.Payload) []*commonpb.Payload {
	t.Helper()
	dec, err := c.Decode(ps)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if len(dec) != len(ps) {
		t.Fatalf("Decode returned %d payloads for %d", len(dec), len(ps))
	}
	return dec
}

func TestRoundTrip(t *testing.T) {
	c := NewCodec(testRing(t, testKey(t, "k1", 0x80)))
	in := []*commonpb.Payload{
		jsonPayload(t, order{ID: "secret-order-7", Items: []string{"tea"}}),
		{Metadata: map[string][]byte{"encoding": []byte("binary/plain"), "custom": []byte("meta-secret")}, Data: []byte("raw-secret")},
		{Metadata: map[string][]byte{"encoding": []byte("binary/null")}},
		{},
	}
	orig := make([]*commonpb.Payload, len(in))
	for i, p := range in {
		orig[i] = proto.Clone(p).(*commonpb.Payload)
	}
	enc := mustEncode(t, c, in...)
	for i, p := range enc {
		md := p.GetMetadata()
		if got := string(md[MetadataEncoding]); got != MetadataEncodingEncrypted {
			t.Errorf("payload %d encoding = %q, want %q", i, got, MetadataEncodingEncrypted)
		}
		if got := string(md[MetadataEncryptionKeyID]); got != "k1" {
			t.Errorf("payload %d key id = %q, want k1", i, got)
		}
		if len(md) != 2 {
			t.Errorf("payload %d has metadata %q, want only encoding and key id (the original metadata is encrypted)", i, md)
		}
		wire, _ := proto.Marshal(p)
		for _, secret := range []string{"secret-order-7", "meta-secret", "raw-secret", "json/plain", "custom"} {
			if containsBytes(wire, secret) {
				t.Errorf("encoded payload %d shows %q in plaintext", i, secret)
			}
		}
	}
	for i := range in {
		if !proto.Equal(in[i], orig[i]) {
			t.Errorf("Encode changed its input payload %d", i)
		}
	}
	dec := mustDecode(t, c, enc...)
	for i := range in {
		if !proto.Equal(dec[i], orig[i]) {
			t.Errorf("payload %d: decoded %v, want %v", i, dec[i], orig[i])
		}
	}

	// A fresh nonce each time: the same payload never encrypts the same way.
	again := mustEncode(t, c, in[0])
	if bytes.Equal(again[0].Data, enc[0].Data) {
		t.Errorf("two encryptions of one payload are identical")
	}
	if n := len(again[0].Data) - proto.Size(in[0]); n != 12+16 {
		t.Errorf("ciphertext overhead = %d bytes, want 28 (nonce and tag)", n)
	}
}

func TestCompressionOnlyWhenItPays(t *testing.T) {
	c := NewCodec(testRing(t, testKey(t, "k1", 0x80)))
	random := make([]byte, 4096)
	_, _ = rand.Read(random)
	tests := []struct {
		name     string
		payload  *commonpb.Payload
		compress bool
	}{
		{"small", jsonPayload(t, order{ID: "o1", Items: []string{"a", "b"}}), false},
		{"just below threshold", &commonpb.Payload{Data: bytes.Repeat([]byte("a"), CompressThreshold-4)}, false},
		{"large repetitive", jsonPayload(t, order{ID: "o2", Items: strings.Split(strings.Repeat("espresso,", 1000), ",")}), true},
		{"large random", &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: random}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := mustEncode(t, c, tt.payload)[0]
			marker, compressed := enc.Metadata[MetadataEncryptionCompression]
			if compressed != tt.compress {
				t.Fatalf("compressed = %v, want %v (plaintext %d bytes, ciphertext %d)", compressed, tt.compress, proto.Size(tt.payload), len(enc.Data))
			}
			if compressed {
				if string(marker) != CompressionDeflate {
					t.Errorf("compression marker = %q, want %q", marker, CompressionDeflate)
				}
				if len(enc.Data) >= proto.Size(tt.payload)/4 {
					t.Errorf("compressed ciphertext %d bytes for %d bytes of plaintext", len(enc.Data), proto.Size(tt.payload))
				}
			} else if len(enc.Data) != proto.Size(tt.payload)+28 {
				t.Errorf("uncompressed ciphertext %d bytes for %d bytes of plaintext", len(enc.Data), proto.Size(tt.payload))
			}
			dec := mustDecode(t, c, enc)[0]
			if !proto.Equal(dec, tt.payload) {
				t.Errorf("round trip changed the payload")
			}
		})
	}
}

func TestRotation(t *testing.T) {
	k1, k2 := testKey(t, "k1", 0x80), testKey(t, "k2", 0xA0)
	ring1 := testRing(t, k1)
	old := mustEncode(t, NewCodec(ring1), jsonPayload(t, "written under k1"))[0]
	if got := string(old.Metadata[MetadataEncryptionKeyID]); got != "k1" {
		t.Fatalf("old payload key id = %q", got)
	}

	ring2, err := ring1.WithActive(k2)
	if err != nil {
		t.Fatal(err)
	}
	c2 := NewCodec(ring2)
	if got := string(mustDecode(t, c2, old)[0].Data); got != `"written under k1"` {
		t.Errorf("old payload after rotation decodes to %q", got)
	}
	fresh := mustEncode(t, c2, jsonPayload(t, "written under k2"))[0]
	if got := string(fresh.Metadata[MetadataEncryptionKeyID]); got != "k2" {
		t.Errorf("new payload key id = %q, want k2", got)
	}

	// The same rotation through the env format: new key first.
	ring3, err := ParseKeys(k2.SecretSpec() + "," + k1.SecretSpec())
	if err != nil {
		t.Fatal(err)
	}
	mustDecode(t, NewCodec(ring3), old, fresh)

	// A ring that dropped k1 cannot read the old payload and says which key.
	c3 := NewCodec(testRing(t, k2))
	dec, err := c3.Decode([]*commonpb.Payload{old})
	if err == nil {
		t.Fatalf("decoding a k1 payload without k1 succeeded: %v", dec)
	}
	if dec != nil {
		t.Errorf("Decode returned payloads %v alongside its error", dec)
	}
	want := `decrypt payload: key "k1" is not in the key ring`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if !errors.Is(err, ErrUnknownKey) {
		t.Errorf("error does not wrap ErrUnknownKey")
	}
	var uk *UnknownKeyError
	if !errors.As(err, &uk) || uk.KeyID != "k1" {
		t.Errorf("errors.As UnknownKeyError: %v", uk)
	}
	assertNoSecret(t, "error", err.Error(), testSecret(0x80), testSecret(0xA0))

	// Several payloads: the error says which one.
	_, err = c3.Decode([]*commonpb.Payload{fresh, old})
	if err == nil || !strings.Contains(err.Error(), `decrypt payload 1: key "k1"`) {
		t.Errorf("error %v does not name payload 1 and k1", err)
	}
}

func TestTamperedPayloadsFail(t *testing.T) {
	k1, k2 := testKey(t, "k1", 0x80), testKey(t, "k2", 0xA0)
	c := NewCodec(testRing(t, k1, k2))
	small := mustEncode(t, c, jsonPayload(t, "pay 100 to alice"))[0]
	big := mustEncode(t, c, jsonPayload(t, strings.Repeat("pay 100 to alice; ", 100)))[0]
	if _, ok := big.Metadata[MetadataEncryptionCompression]; !ok {
		t.Fatal("big payload was not compressed; the test needs one that is")
	}
	sameKeyOtherSecret := NewCodec(testRing(t, testKey(t, "k1", 0xC0)))

	edit := func(p *commonpb.Payload, f func(p *commonpb.Payload)) *commonpb.Payload {
		q := proto.Clone(p).(*commonpb.Payload)
		f(q)
		return q
	}
	flip := func(i int) func(p *commonpb.Payload) {
		return func(p *commonpb.Payload) {
			if i < 0 {
				i += len(p.Data)
			}
			p.Data[i] ^= 0x01
		}
	}
	tests := []struct {
		name  string
		codec *Codec
		p     *commonpb.Payload
		want  string
	}{
		{"nonce bit", c, edit(small, flip(0)), "authentication failed"},
		{"ciphertext bit", c, edit(small, flip(14)), "authentication failed"},
		{"tag bit", c, edit(small, flip(-1)), "authentication failed"},
		{"truncated", c, edit(small, func(p *commonpb.Payload) { p.Data = p.Data[:len(p.Data)-1] }), "authentication failed"},
		{"too short", c, edit(small, func(p *commonpb.Payload) { p.Data = p.Data[:10] }), "authentication failed"},
		{"empty data", c, edit(small, func(p *commonpb.Payload) { p.Data = nil }), "authentication failed"},
		{"key id swapped", c, edit(small, func(p *commonpb.Payload) { p.Metadata[MetadataEncryptionKeyID] = []byte("k2") }), `key "k2": authentication failed`},
		{"key id removed", c, edit(small, func(p *commonpb.Payload) { delete(p.Metadata, MetadataEncryptionKeyID) }), "no encryption-key-id metadata"},
		{"compression marker stripped", c, edit(big, func(p *commonpb.Payload) { delete(p.Metadata, MetadataEncryptionCompression) }), "authentication failed"},
		{"compression marker added", c, edit(small, func(p *commonpb.Payload) { p.Metadata[MetadataEncryptionCompression] = []byte(CompressionDeflate) }), "authentication failed"},
		{"unknown compression", c, edit(big, func(p *commonpb.Payload) { p.Metadata[MetadataEncryptionCompression] = []byte("zstd") }), `unknown compression "zstd"`},
		{"compressed body bit", c, edit(big, flip(20)), "authentication failed"},
		{"same id, other secret", sameKeyOtherSecret, small, `key "k1": authentication failed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec, err := tt.codec.Decode([]*commonpb.Payload{tt.p})
			if err == nil {
				t.Fatalf("tampered payload decoded to %v", dec)
			}
			if dec != nil {
				t.Errorf("Decode returned %v alongside its error", dec)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("error %q does not wrap ErrCorrupt", err)
			}
			if !strings.HasPrefix(err.Error(), "decrypt payload: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want decrypt payload: ... %q", err, tt.want)
			}
			assertNoSecret(t, "error", err.Error(), testSecret(0x80), testSecret(0xA0), testSecret(0xC0))
		})
	}
	// The untouched payloads still decode.
	mustDecode(t, c, small, big)
}

func TestPlaintextPassesThrough(t *testing.T) {
	c := NewCodec(testRing(t, testKey(t, "k1", 0x80)))
	in := []*commonpb.Payload{
		jsonPayload(t, "from before encryption"),
		{Metadata: map[string][]byte{"encoding": []byte("binary/zlib")}, Data: []byte{1, 2, 3}},
		{Data: []byte("no metadata")},
		nil,
	}
	dec := mustDecode(t, c, in...)
	for i := range in {
		if dec[i] != in[i] {
			t.Errorf("payload %d was not passed through unchanged: %v", i, dec[i])
		}
	}
	// A mix of old plaintext and new ciphertext, as in a history that spans
	// turning encryption on.
	mixed := []*commonpb.Payload{in[0], mustEncode(t, c, jsonPayload(t, "new"))[0]}
	dec = mustDecode(t, c, mixed...)
	if dec[0] != in[0] || string(dec[1].Data) != `"new"` {
		t.Errorf("mixed history decoded to %v", dec)
	}
}

func TestCodecWithoutRing(t *testing.T) {
	c := NewCodec(nil)
	if _, err := c.Encode([]*commonpb.Payload{jsonPayload(t, "x")}); err == nil || !strings.Contains(err.Error(), "no key ring") {
		t.Errorf("Encode without a ring: %v", err)
	}
	p := jsonPayload(t, "plain")
	if dec := mustDecode(t, c, p); dec[0] != p {
		t.Errorf("plaintext did not pass through a ringless codec")
	}
	enc := mustEncode(t, NewCodec(testRing(t, testKey(t, "k1", 0x80))), p)
	if _, err := c.Decode(enc); err == nil || !strings.Contains(err.Error(), `key "k1"`) {
		t.Errorf("Decode without a ring: %v", err)
	}
	if _, err := NewCodec(testRing(t, testKey(t, "k1", 0x80))).Encode([]*commonpb.Payload{nil}); err == nil {
		t.Errorf("Encode accepted a nil payload")
	}
}

func TestDataConverter(t *testing.T) {
	ring := testRing(t, testKey(t, "k1", 0x80))
	dc := NewDataConverter(ring)
	in := order{ID: "secret-order-9", Items: []string{"scone"}}
	p, err := dc.ToPayload(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Metadata[MetadataEncoding]) != MetadataEncodingEncrypted || containsBytes(p.Data, "secret-order-9") {
		t.Fatalf("ToPayload did not encrypt: %v", p)
	}
	var out order
	if err := dc.FromPayload(p, &out); err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || len(out.Items) != 1 {
		t.Errorf("FromPayload = %+v, want %+v", out, in)
	}
	// Plaintext written before encryption still reads.
	plain, _ := converter.GetDefaultDataConverter().ToPayload(in)
	out = order{}
	if err := dc.FromPayload(plain, &out); err != nil || out.ID != in.ID {
		t.Errorf("plaintext payload: %+v, %v", out, err)
	}
	// Another ring cannot read it, and says which key it lacks.
	other := NewDataConverter(testRing(t, testKey(t, "k2", 0xA0)))
	if err := other.FromPayload(p, &out); err == nil || !strings.Contains(err.Error(), `key "k1" is not in the key ring`) {
		t.Errorf("FromPayload with the wrong ring: %v", err)
	}
}
