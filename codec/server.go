package codec

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
)

// DefaultMaxBody is the request body limit of the codec server when
// HandlerOptions.MaxBody is not set.
const DefaultMaxBody int64 = 4 << 20

// NamespaceHeader is the header in which the Temporal Web UI sends the
// namespace of the payloads it asks to decode.
const NamespaceHeader = "X-Namespace"

// corsAllowHeaders are the request headers the Web UI and the temporal CLI
// send to a codec server.
const corsAllowHeaders = "Content-Type, Authorization, X-Namespace"

// corsMaxAge lets browsers cache a preflight answer for ten minutes.
const corsMaxAge = "600"

// HandlerOptions configures NewHandler.
type HandlerOptions struct {
	// Codecs maps each namespace to the codec for its payloads.
	Codecs map[string]converter.PayloadCodec
	// Codec serves every namespace listed in Namespaces; it is an alternative
	// to (or addition to) Codecs for when all namespaces share one codec.
	// An entry in Codecs wins over Namespaces.
	Codec converter.PayloadCodec
	// Namespaces lists the namespaces Codec serves.
	Namespaces []string

	// Origins lists the browser origins allowed to call the server, exactly
	// as a browser sends them in the Origin header, e.g.
	// "http://localhost:8233" for a dev server's UI. There are no wildcards.
	// Requests with an Origin header not listed are refused with 403 and get
	// no CORS grant; requests without one (the temporal CLI, scripts) are
	// not subject to CORS.
	Origins []string

	// Token, when set, is the bearer token every request except a CORS
	// preflight must present as "Authorization: Bearer <token>". When empty,
	// authentication is OFF: callers must allow that only in dev mode.
	Token string

	// MaxBody is the largest request body accepted, in bytes; larger ones get
	// 413. Zero or negative means DefaultMaxBody.
	MaxBody int64
}

// Validate reports configuration mistakes that would make the handler refuse
// every request or every browser: no namespace served, a namespace without a
// codec, or an origin a browser never sends. NewHandler does not call it
// (misconfigured entries simply never match); call it at startup.
func (o HandlerOptions) Validate() error {
	if len(o.Codecs) == 0 && len(o.Namespaces) == 0 {
		return errors.New("codec server: no namespaces: set Codecs or Codec and Namespaces")
	}
	for ns, c := range o.Codecs {
		if c == nil {
			return fmt.Errorf("codec server: namespace %q has a nil codec", ns)
		}
		if err := checkNamespace(ns); err != nil {
			return err
		}
	}
	if len(o.Namespaces) > 0 && o.Codec == nil {
		return errors.New("codec server: Namespaces is set but Codec is nil")
	}
	for _, ns := range o.Namespaces {
		if err := checkNamespace(ns); err != nil {
			return err
		}
	}
	for _, origin := range o.Origins {
		if err := checkOrigin(origin); err != nil {
			return err
		}
	}
	return nil
}

// checkOrigin reports whether origin has the scheme://host[:port] form
// browsers send in the Origin header.
func checkOrigin(origin string) error {
	if strings.Contains(origin, "*") {
		return fmt.Errorf("codec server: origin %q: wildcards are not supported, list each origin", origin)
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("codec server: origin %q: want scheme://host[:port] without a path, e.g. http://localhost:8233", origin)
	}
	return nil
}

// checkNamespace reports whether ns can be served under /{namespace}/.
func checkNamespace(ns string) error {
	if ns == "" || strings.ContainsAny(ns, "/") {
		return fmt.Errorf("codec server: namespace %q: want a non-empty name without '/'", ns)
	}
	return nil
}

// handler is the codec server built by NewHandler.
type handler struct {
	codecs    map[string]converter.PayloadCodec
	origins   map[string]bool
	tokenHash [sha256.Size]byte
	authOn    bool
	maxBody   int64
}

// NewHandler returns the codec server the Temporal Web UI and the temporal
// CLI (--codec-endpoint) call to see payloads in plaintext. It serves
//
//	POST /{namespace}/encode   POST /{namespace}/decode
//	POST /encode               POST /decode   (namespace in the X-Namespace header)
//
// Both take and answer {"payloads":[...]} with payloads in protobuf JSON
// form (metadata values and data base64), the Temporal remote codec
// protocol. Point the UI's codec endpoint at http(s)://host:port/{namespace}
// or at the bare host (it sends X-Namespace). Mount it under a path prefix
// with http.StripPrefix.
//
// Answers: 204 to a CORS preflight from an allowed origin (no token needed),
// 403 to any request from an origin not in Options.Origins, 405 to methods
// other than POST and OPTIONS, 401 with WWW-Authenticate: Bearer when the
// token is required and missing or wrong, 404 for other paths and unknown
// namespaces, 415 for a body that is not JSON, 413 for a body over MaxBody,
// 400 for a malformed body, 422 when the codec refuses the payloads (for
// example a payload encrypted under a key the ring lacks; the message names
// the key ID), and 200 with the converted payloads. Error answers are one
// line of text and never contain key material. Successful answers carry
// Cache-Control: no-store since they may hold decrypted data.
func NewHandler(opts HandlerOptions) http.Handler {
	h := &handler{
		codecs:  make(map[string]converter.PayloadCodec, len(opts.Codecs)+len(opts.Namespaces)),
		origins: make(map[string]bool, len(opts.Origins)),
		maxBody: opts.MaxBody,
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBody
	}
	if opts.Codec != nil {
		for _, ns := range opts.Namespaces {
			h.codecs[ns] = opts.Codec
		}
	}
	for ns, c := range opts.Codecs {
		if c != nil {
			h.codecs[ns] = c
		}
	}
	for _, o := range opts.Origins {
		if o = normalizeOrigin(o); o != "" && !strings.Contains(o, "*") {
			h.origins[o] = true
		}
	}
	if opts.Token != "" {
		h.authOn = true
		h.tokenHash = sha256.Sum256([]byte(opts.Token))
	}
	return h
}

// normalizeOrigin lower-cases an origin and drops a trailing slash, the form
// browsers send.
func normalizeOrigin(o string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(o)), "/")
}

// ServeHTTP implements http.Handler: it grants the origin, answers a CORS
// preflight, admits the request (method, token, namespace), reads its
// payloads, and answers with them encoded or decoded. Each step either
// passes or refuses with the status and one line of text NewHandler
// documents.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Add("Vary", "Origin")
	hdr.Set("X-Content-Type-Options", "nosniff")

	origin := r.Header.Get("Origin")
	if origin != "" {
		if !h.origins[normalizeOrigin(origin)] {
			// No CORS grant: the browser keeps the answer from the page.
			httpError(w, http.StatusForbidden, "origin not allowed: add it to the codec server's allowed origins")
			return
		}
		hdr.Set("Access-Control-Allow-Origin", origin)
		hdr.Set("Access-Control-Allow-Credentials", "true")
	}
	if r.Method == http.MethodOptions {
		preflight(hdr, r, origin)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	codec, op, ref := h.admit(r)
	var payloads []*commonpb.Payload
	if ref == nil {
		payloads, ref = h.readPayloads(w, r)
	}
	var resp []byte
	if ref == nil {
		resp, ref = convert(codec, op, payloads)
	}
	if ref != nil {
		for k, v := range ref.header {
			hdr.Set(k, v)
		}
		httpError(w, ref.code, ref.msg)
		return
	}
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	_, _ = w.Write(resp)
}

// refusal is a request the handler answers with an error: its status, its
// one line of text and the headers that go with it.
type refusal struct {
	code   int
	msg    string
	header map[string]string
}

func refuse(code int, msg string) *refusal { return &refusal{code: code, msg: msg} }

// preflight answers a CORS preflight; the origin is already granted.
func preflight(hdr http.Header, r *http.Request, origin string) {
	hdr.Set("Allow", "POST, OPTIONS")
	if origin == "" {
		return
	}
	hdr.Add("Vary", "Access-Control-Request-Method")
	hdr.Add("Vary", "Access-Control-Request-Headers")
	hdr.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	hdr.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	hdr.Set("Access-Control-Max-Age", corsMaxAge)
	if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		hdr.Set("Access-Control-Allow-Private-Network", "true")
	}
}

// admit checks the method, the token and the path, and returns the codec of
// the namespace and the operation asked for.
func (h *handler) admit(r *http.Request) (converter.PayloadCodec, string, *refusal) {
	if r.Method != http.MethodPost {
		return nil, "", &refusal{code: http.StatusMethodNotAllowed, msg: "method not allowed: use POST",
			header: map[string]string{"Allow": "POST, OPTIONS"}}
	}
	if h.authOn {
		if challenge, ok := h.authorize(r); !ok {
			return nil, "", &refusal{code: http.StatusUnauthorized, msg: "unauthorized: send Authorization: Bearer <codec server token>",
				header: map[string]string{"WWW-Authenticate": challenge}}
		}
	}
	ns, op, ok := route(r)
	if !ok {
		return nil, "", refuse(http.StatusNotFound, "not found: use POST /{namespace}/encode or /{namespace}/decode")
	}
	codec, ok := h.codecs[ns]
	if !ok {
		return nil, "", refuse(http.StatusNotFound, fmt.Sprintf("namespace %q is not served by this codec server", ns))
	}
	return codec, op, nil
}

// readPayloads reads the JSON body, at most maxBody bytes, as payloads.
func (h *handler) readPayloads(w http.ResponseWriter, r *http.Request) ([]*commonpb.Payload, *refusal) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return nil, refuse(http.StatusUnsupportedMediaType, "unsupported content type: send application/json")
		}
	}
	tooBig := refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", h.maxBody))
	if r.ContentLength > h.maxBody {
		return nil, tooBig
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooBig
		}
		return nil, refuse(http.StatusBadRequest, "read request body: "+err.Error())
	}
	var in commonpb.Payloads
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &in); err != nil {
		return nil, refuse(http.StatusBadRequest, "malformed request: want {\"payloads\":[...]} with payloads in protobuf JSON form: "+err.Error())
	}
	for i, p := range in.Payloads {
		if p == nil {
			return nil, refuse(http.StatusBadRequest, fmt.Sprintf("malformed request: payload %d is null", i))
		}
	}
	return in.Payloads, nil
}

// convert encodes or decodes the payloads and renders the answer.
func convert(codec converter.PayloadCodec, op string, payloads []*commonpb.Payload) ([]byte, *refusal) {
	var out []*commonpb.Payload
	var err error
	switch op {
	case "encode":
		out, err = codec.Encode(payloads)
	case "decode":
		out, err = codec.Decode(payloads)
	}
	if err != nil {
		return nil, refuse(http.StatusUnprocessableEntity, op+": "+err.Error())
	}
	resp, err := marshalPayloads(out)
	if err != nil {
		return nil, refuse(http.StatusInternalServerError, op+": marshal answer: "+err.Error())
	}
	return resp, nil
}

// authorize checks the bearer token in constant time. When it fails it
// returns the WWW-Authenticate challenge to send.
func (h *handler) authorize(r *http.Request) (string, bool) {
	const challenge = `Bearer realm="companionsync-codec"`
	auth := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	if auth == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return challenge, false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if subtle.ConstantTimeCompare(got[:], h.tokenHash[:]) != 1 {
		return challenge + `, error="invalid_token"`, false
	}
	return "", true
}

// route splits the request path into namespace and operation.
func route(r *http.Request) (ns, op string, ok bool) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch len(parts) {
	case 1:
		ns, op = r.Header.Get(NamespaceHeader), parts[0]
	case 2:
		ns, op = parts[0], parts[1]
	default:
		return "", "", false
	}
	if ns == "" || (op != "encode" && op != "decode") {
		return "", "", false
	}
	return ns, op, true
}

// marshalPayloads renders {"payloads":[...]} with each payload in protobuf
// JSON form; an empty list stays an empty array rather than vanishing.
func marshalPayloads(payloads []*commonpb.Payload) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"payloads":[`)
	for i, p := range payloads {
		if i > 0 {
			b.WriteByte(',')
		}
		if p == nil {
			return nil, fmt.Errorf("payload %d is missing from the codec's answer", i)
		}
		j, err := protojson.Marshal(p)
		if err != nil {
			return nil, err
		}
		b.Write(j)
	}
	b.WriteString("]}\n")
	if !json.Valid(b.Bytes()) {
		return nil, errors.New("invalid JSON")
	}
	return b.Bytes(), nil
}

// httpError writes a one-line plain-text error.
func httpError(w http.ResponseWriter, code int, msg string) {
	msg = strings.ReplaceAll(msg, "\n", " ")
	http.Error(w, msg, code)
}
