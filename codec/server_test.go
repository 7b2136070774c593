package codec

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

const (
	testToken  = "codec-token-0123456789"
	uiOrigin   = "http://localhost:8233"
	evilOrigin = "https://evil.example"
)

// serverFixture is a codec server for namespace "default" with ring k2
// (active) and k1, plus payloads to send it.
type serverFixture struct {
	h       http.Handler
	codec   *Codec
	secrets [][]byte
}

func newServerFixture(t *testing.T, opts HandlerOptions) *serverFixture {
	t.Helper()
	c := NewCodec(testRing(t, testKey(t, "k2", 0xA0), testKey(t, "k1", 0x80)))
	if opts.Codec == nil && opts.Codecs == nil {
		opts.Codec, opts.Namespaces = c, []string{"default"}
	}
	if err := opts.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return &serverFixture{h: NewHandler(opts), codec: c, secrets: [][]byte{testSecret(0xA0), testSecret(0x80), testSecret(0xC0)}}
}

// body renders payloads as the UI sends them.
func body(t *testing.T, ps ...*commonpb.Payload) string {
	t.Helper()
	b, err := protojson.Marshal(&commonpb.Payloads{Payloads: ps})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type req struct {
	method, path, body string
	header             map[string]string
}

func (f *serverFixture) do(t *testing.T, r req) *httptest.ResponseRecorder {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	hr := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, hr)
	// No answer ever carries key material.
	assertNoSecret(t, "response body", w.Body.String(), f.secrets...)
	for k, vs := range w.Header() {
		assertNoSecret(t, "response header "+k, strings.Join(vs, ","), f.secrets...)
	}
	return w
}

func auth(extra ...string) map[string]string {
	h := map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/json"}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

func decodeAnswer(t *testing.T, w *httptest.ResponseRecorder) []*commonpb.Payload {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	var out commonpb.Payloads
	if err := protojson.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("answer is not protojson payloads: %v\n%s", err, w.Body)
	}
	return out.Payloads
}

func TestHandlerRejections(t *testing.T) {
	f := newServerFixture(t, HandlerOptions{Origins: []string{uiOrigin}, Token: testToken, MaxBody: 1024})
	good := body(t, jsonPayload(t, "hello"))
	enc := mustEncode(t, f.codec, jsonPayload(t, "hello"))
	unknownKey := NewCodec(testRing(t, testKey(t, "k3", 0xC0)))
	encK3 := mustEncode(t, unknownKey, jsonPayload(t, "hello"))

	tests := []struct {
		name       string
		req        req
		code       int
		bodyHas    string
		header     map[string]string // expected response headers
		noHeader   []string          // response headers that must be absent
		wantGrants bool              // CORS grant for uiOrigin expected
	}{
		{name: "missing token", req: req{path: "/default/decode", body: good, header: map[string]string{"Content-Type": "application/json"}},
			code: 401, header: map[string]string{"WWW-Authenticate": `Bearer realm="companionsync-codec"`}},
		{name: "wrong token", req: req{path: "/default/decode", body: good, header: map[string]string{"Authorization": "Bearer nope"}},
			code: 401, header: map[string]string{"WWW-Authenticate": `Bearer realm="companionsync-codec", error="invalid_token"`}},
		{name: "token prefix", req: req{path: "/default/decode", body: good, header: map[string]string{"Authorization": "Bearer " + testToken[:10]}}, code: 401},
		{name: "token with suffix", req: req{path: "/default/decode", body: good, header: map[string]string{"Authorization": "Bearer " + testToken + "x"}}, code: 401},
		{name: "basic auth", req: req{path: "/default/decode", body: good, header: map[string]string{"Authorization": "Basic " + testToken}}, code: 401},
		{name: "bare token", req: req{path: "/default/decode", body: good, header: map[string]string{"Authorization": testToken}}, code: 401},
		{name: "bearer lower case", req: req{path: "/default/decode", body: good, header: map[string]string{"Authorization": "bearer " + testToken}}, code: 200},
		{name: "allowed origin without token", req: req{path: "/default/decode", body: good, header: map[string]string{"Origin": uiOrigin}},
			code: 401, wantGrants: true},
		{name: "foreign origin POST", req: req{path: "/default/decode", body: good, header: auth("Origin", evilOrigin)},
			code: 403, noHeader: []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"}},
		{name: "foreign origin preflight", req: req{method: "OPTIONS", path: "/default/decode", header: map[string]string{"Origin": evilOrigin, "Access-Control-Request-Method": "POST"}},
			code: 403, noHeader: []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers"}},
		{name: "origin differing by port", req: req{path: "/default/decode", body: good, header: auth("Origin", "http://localhost:8234")}, code: 403,
			noHeader: []string{"Access-Control-Allow-Origin"}},
		{name: "origin as suffix trick", req: req{path: "/default/decode", body: good, header: auth("Origin", "http://localhost:8233.evil.example")}, code: 403,
			noHeader: []string{"Access-Control-Allow-Origin"}},
		{name: "allowed origin preflight", req: req{method: "OPTIONS", path: "/default/decode", header: map[string]string{
			"Origin": uiOrigin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type,x-namespace"}},
			code: 204, wantGrants: true, header: map[string]string{
				"Access-Control-Allow-Methods": "POST, OPTIONS",
				"Access-Control-Allow-Headers": "Content-Type, Authorization, X-Namespace",
			}},
		{name: "preflight for unknown namespace", req: req{method: "OPTIONS", path: "/other/decode", header: map[string]string{"Origin": uiOrigin, "Access-Control-Request-Method": "POST"}},
			code: 204, wantGrants: true},
		{name: "GET", req: req{method: "GET", path: "/default/decode", header: auth()}, code: 405, header: map[string]string{"Allow": "POST, OPTIONS"}},
		{name: "PUT", req: req{method: "PUT", path: "/default/decode", body: good, header: auth()}, code: 405},
		{name: "unknown namespace", req: req{path: "/other/decode", body: good, header: auth()}, code: 404, bodyHas: `namespace "other"`},
		{name: "unknown operation", req: req{path: "/default/download", body: good, header: auth()}, code: 404},
		{name: "too deep", req: req{path: "/a/default/decode", body: good, header: auth()}, code: 404},
		{name: "bare path without namespace header", req: req{path: "/decode", body: good, header: auth()}, code: 404},
		{name: "unknown namespace before auth is 401", req: req{path: "/other/decode", body: good}, code: 401},
		{name: "oversize body", req: req{path: "/default/encode", body: body(t, &commonpb.Payload{Data: make([]byte, 2048)}), header: auth()}, code: 413},
		{name: "text/plain body", req: req{path: "/default/decode", body: good, header: auth("Content-Type", "text/plain")}, code: 415},
		{name: "malformed JSON", req: req{path: "/default/decode", body: `{"payloads":[`, header: auth()}, code: 400, bodyHas: "malformed request"},
		{name: "not an object", req: req{path: "/default/decode", body: `[1,2]`, header: auth()}, code: 400},
		{name: "data not base64", req: req{path: "/default/decode", body: `{"payloads":[{"metadata":{"encoding":"YmluYXJ5L2VuY3J5cHRlZA=="},"data":"!!notbase64!!"}]}`, header: auth()}, code: 400},
		{name: "metadata not base64", req: req{path: "/default/decode", body: `{"payloads":[{"metadata":{"encoding":"json plain!"}}]}`, header: auth()}, code: 400},
		{name: "null payload", req: req{path: "/default/decode", body: `{"payloads":[null]}`, header: auth()}, code: 400},
		{name: "unknown key", req: req{path: "/default/decode", body: body(t, encK3...), header: auth()}, code: 422,
			bodyHas: `decode: decrypt payload: key "k3" is not in the key ring (it has k2, k1)`},
		{name: "tampered", req: req{path: "/default/decode", body: body(t, &commonpb.Payload{Metadata: enc[0].Metadata, Data: flipFirstByte(enc[0].Data)}), header: auth()},
			code: 422, bodyHas: "authentication failed"},
		{name: "decode with namespace header", req: req{path: "/decode", body: body(t, enc...), header: auth("X-Namespace", "default")}, code: 200},
		{name: "allowed origin POST", req: req{path: "/default/decode", body: body(t, enc...), header: auth("Origin", uiOrigin)}, code: 200, wantGrants: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.do(t, tt.req)
			if w.Code != tt.code {
				t.Fatalf("status = %d, want %d; body %q", w.Code, tt.code, w.Body)
			}
			if tt.bodyHas != "" && !strings.Contains(w.Body.String(), tt.bodyHas) {
				t.Errorf("body %q does not say %q", w.Body, tt.bodyHas)
			}
			if w.Code >= 400 && strings.Count(strings.TrimSpace(w.Body.String()), "\n") > 0 {
				t.Errorf("error body is more than one line: %q", w.Body)
			}
			for k, v := range tt.header {
				if got := w.Header().Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			for _, k := range tt.noHeader {
				if got := w.Header().Get(k); got != "" {
					t.Errorf("header %s = %q, want none", k, got)
				}
			}
			gotOrigin := w.Header().Get("Access-Control-Allow-Origin")
			if tt.wantGrants {
				if gotOrigin != uiOrigin || w.Header().Get("Access-Control-Allow-Credentials") != "true" {
					t.Errorf("no CORS grant for %s: %v", uiOrigin, w.Header())
				}
			} else if gotOrigin != "" {
				t.Errorf("unexpected CORS grant %q", gotOrigin)
			}
			if vary := strings.Join(w.Header().Values("Vary"), ","); !strings.Contains(vary, "Origin") {
				t.Errorf("Vary = %q, want Origin", vary)
			}
		})
	}
}

func TestHandlerDecodeRoundTrip(t *testing.T) {
	f := newServerFixture(t, HandlerOptions{Origins: []string{uiOrigin}, Token: testToken})
	plain := []*commonpb.Payload{
		jsonPayload(t, order{ID: "o-1", Items: []string{"tea"}}),
		jsonPayload(t, strings.Repeat("large and compressible ", 100)),
		jsonPayload(t, "written before encryption"),
	}
	// Two encrypted (one compressed), one old plaintext payload.
	enc := append(mustEncode(t, f.codec, plain[:2]...), plain[2])
	w := f.do(t, req{path: "/default/decode", body: body(t, enc...), header: auth("Origin", uiOrigin, "X-Namespace", "default")})
	got := decodeAnswer(t, w)
	if len(got) != len(plain) {
		t.Fatalf("got %d payloads, want %d", len(got), len(plain))
	}
	for i := range plain {
		if !proto.Equal(got[i], plain[i]) {
			t.Errorf("payload %d = %v, want %v", i, got[i], plain[i])
		}
	}
	// The answer uses the protojson field names the UI reads.
	var raw struct {
		Payloads []struct {
			Metadata map[string]string `json:"metadata"`
			Data     string            `json:"data"`
		} `json:"payloads"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil || len(raw.Payloads) != 3 || raw.Payloads[0].Metadata["encoding"] != "anNvbi9wbGFpbg==" {
		t.Errorf("answer shape: %v %+v", err, raw)
	}

	// An empty list stays a list.
	w = f.do(t, req{path: "/default/decode", body: `{"payloads":[]}`, header: auth()})
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{"payloads":[]}` {
		t.Errorf("empty request: %d %q", w.Code, w.Body)
	}
}

func TestHandlerEncodeThenDecode(t *testing.T) {
	f := newServerFixture(t, HandlerOptions{Token: testToken})
	plain := []*commonpb.Payload{jsonPayload(t, map[string]int{"answer": 42}), jsonPayload(t, "second")}
	w := f.do(t, req{path: "/default/encode", body: body(t, plain...), header: auth()})
	enc := decodeAnswer(t, w)
	for i, p := range enc {
		if string(p.Metadata[MetadataEncoding]) != MetadataEncodingEncrypted || string(p.Metadata[MetadataEncryptionKeyID]) != "k2" {
			t.Errorf("encoded payload %d metadata %q", i, p.Metadata)
		}
	}
	if strings.Contains(w.Body.String(), "answer") {
		t.Errorf("encode answer contains plaintext: %s", w.Body)
	}
	// What the server encoded, the worker's codec reads...
	local := mustDecode(t, f.codec, enc...)
	for i := range plain {
		if !proto.Equal(local[i], plain[i]) {
			t.Errorf("payload %d decoded locally = %v", i, local[i])
		}
	}
	// ...and so does the server.
	back := decodeAnswer(t, f.do(t, req{path: "/default/decode", body: body(t, enc...), header: auth()}))
	for i := range plain {
		if !proto.Equal(back[i], plain[i]) {
			t.Errorf("payload %d decoded by the server = %v", i, back[i])
		}
	}
}

// TestHandlerWithSDKRemoteCodec checks the wire format against the SDK's own
// remote codec client, which the temporal CLI's --codec-endpoint uses.
func TestHandlerWithSDKRemoteCodec(t *testing.T) {
	f := newServerFixture(t, HandlerOptions{Token: testToken})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	remote := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{
		Endpoint: srv.URL + "/default",
		ModifyRequest: func(r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+testToken)
			return nil
		},
	})
	plain := []*commonpb.Payload{jsonPayload(t, "via the CLI"), jsonPayload(t, strings.Repeat("z", 1000))}
	enc, err := remote.Encode(plain)
	if err != nil {
		t.Fatalf("remote Encode: %v", err)
	}
	dec := mustDecode(t, f.codec, enc...)
	for i := range plain {
		if !proto.Equal(dec[i], plain[i]) {
			t.Errorf("payload %d = %v", i, dec[i])
		}
	}
	back, err := remote.Decode(enc)
	if err != nil {
		t.Fatalf("remote Decode: %v", err)
	}
	for i := range plain {
		if !proto.Equal(back[i], plain[i]) {
			t.Errorf("payload %d = %v", i, back[i])
		}
	}
	// A client with the wrong token hears 401.
	bad := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{Endpoint: srv.URL + "/default"})
	if _, err := bad.Decode(enc); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
		t.Errorf("remote Decode without token: %v", err)
	}
}

func TestHandlerOversizeChunkedBody(t *testing.T) {
	f := newServerFixture(t, HandlerOptions{MaxBody: 100})
	big := body(t, &commonpb.Payload{Data: make([]byte, 500)})
	r := httptest.NewRequest(http.MethodPost, "/default/encode", io.MultiReader(strings.NewReader(big)))
	r.ContentLength = -1 // unknown length, as with chunked encoding
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("status = %d, want 413", w.Code)
	}
}

func TestHandlerAuthOff(t *testing.T) {
	f := newServerFixture(t, HandlerOptions{}) // dev mode: no token
	enc := mustEncode(t, f.codec, jsonPayload(t, "dev"))
	w := f.do(t, req{path: "/default/decode", body: body(t, enc...)})
	if got := decodeAnswer(t, w); string(got[0].Data) != `"dev"` {
		t.Errorf("decoded %q", got[0].Data)
	}
	// No origins configured: browsers are still refused.
	if w := f.do(t, req{path: "/default/decode", body: body(t, enc...), header: map[string]string{"Origin": uiOrigin}}); w.Code != 403 {
		t.Errorf("browser request with no origins configured: %d", w.Code)
	}
}

func TestHandlerCodecsPerNamespace(t *testing.T) {
	a := NewCodec(testRing(t, testKey(t, "ka", 0x80)))
	b := NewCodec(testRing(t, testKey(t, "kb", 0xA0)))
	f := newServerFixture(t, HandlerOptions{Codecs: map[string]converter.PayloadCodec{"a": a, "b": b}})
	encA := mustEncode(t, a, jsonPayload(t, "for a"))
	if w := f.do(t, req{path: "/a/decode", body: body(t, encA...)}); w.Code != 200 {
		t.Errorf("namespace a: %d %s", w.Code, w.Body)
	}
	if w := f.do(t, req{path: "/b/decode", body: body(t, encA...)}); w.Code != 422 || !strings.Contains(w.Body.String(), `key "ka"`) {
		t.Errorf("namespace b reading a's payload: %d %s", w.Code, w.Body)
	}
}

func TestHandlerOptionsValidate(t *testing.T) {
	c := NewCodec(testRing(t, testKey(t, "k1", 0x80)))
	bad := []HandlerOptions{
		{},
		{Namespaces: []string{"default"}},
		{Codec: c, Namespaces: []string{""}},
		{Codec: c, Namespaces: []string{"a/b"}},
		{Codecs: map[string]converter.PayloadCodec{"x": nil}},
		{Codec: c, Namespaces: []string{"default"}, Origins: []string{"*"}},
		{Codec: c, Namespaces: []string{"default"}, Origins: []string{"localhost:8233"}},
		{Codec: c, Namespaces: []string{"default"}, Origins: []string{"http://localhost:8233/ui"}},
	}
	for i, o := range bad {
		if err := o.Validate(); err == nil {
			t.Errorf("options %d (%+v) validated", i, o)
		}
	}
	good := HandlerOptions{Codec: c, Namespaces: []string{"default"}, Origins: []string{"http://localhost:8233", "https://ui.example.com/"}}
	if err := good.Validate(); err != nil {
		t.Errorf("good options: %v", err)
	}
}

// flipFirstByte returns a copy of data whose first byte differs from the
// original's (setting it to a constant would leave it unchanged when it
// already had that value, once in 256 runs).
func flipFirstByte(data []byte) []byte {
	out := bytes.Clone(data)
	out[0] ^= 0xff
	return out
}
