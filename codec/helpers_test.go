package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

// testSecret returns 32 distinct, recognizable bytes starting at b.
func testSecret(b byte) []byte {
	s := make([]byte, KeySize)
	for i := range s {
		s[i] = b + byte(i)
	}
	return s
}

// testKey returns a key with the given ID and testSecret(b).
func testKey(t *testing.T, id string, b byte) Key {
	t.Helper()
	k, err := NewKey(id, testSecret(b))
	if err != nil {
		t.Fatalf("NewKey(%q): %v", id, err)
	}
	return k
}

// testRing returns a ring of keys, the first active.
func testRing(t *testing.T, keys ...Key) *KeyRing {
	t.Helper()
	r, err := NewKeyRing(keys[0], keys[1:]...)
	if err != nil {
		t.Fatalf("NewKeyRing: %v", err)
	}
	return r
}

// secretForms returns the ways key material could show up in text: base64
// (with and without padding, and a long prefix), hex, and Go's decimal and
// hex byte-slice renderings.
func secretForms(secret []byte) []string {
	b64 := base64.StdEncoding.EncodeToString(secret)
	var dec, gohex []string
	for _, b := range secret[:8] {
		dec = append(dec, fmt.Sprint(b))
		gohex = append(gohex, fmt.Sprintf("0x%x", b))
	}
	return []string{
		b64,
		b64[:16],
		base64.RawURLEncoding.EncodeToString(secret)[:16],
		hex.EncodeToString(secret)[:16],
		strings.ToUpper(hex.EncodeToString(secret)[:16]),
		strings.Join(dec, " "),
		strings.Join(gohex, ", "),
		string(secret[:8]),
	}
}

// assertNoSecret fails when text contains any form of any of the secrets.
func assertNoSecret(t *testing.T, what, text string, secrets ...[]byte) {
	t.Helper()
	for _, s := range secrets {
		for _, form := range secretForms(s) {
			if strings.Contains(text, form) {
				t.Errorf("%s contains key material %q:\n%s", what, form, text)
			}
		}
	}
}

// jsonPayload returns a json/plain payload of v's text.
func jsonPayload(t *testing.T, v any) *commonpb.Payload {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayload(v)
	if err != nil {
		t.Fatalf("ToPayload: %v", err)
	}
	return p
}

// containsBytes reports whether b contains sub.
func containsBytes(b []byte, sub string) bool { return bytes.Contains(b, []byte(sub)) }
