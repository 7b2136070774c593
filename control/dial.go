package control

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/workflow"

	"github.com/companionsync/companionsync/codec"
)

// DialOptions say how to reach a Temporal cluster: the same settings the
// worker reads (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
// TEMPORAL_TLS_CERT/_KEY/_CA). Reading them from the environment is the
// caller's job.
type DialOptions struct {
	// Address is the frontend host:port; "" means 127.0.0.1:7233.
	Address string
	// Namespace; "" means "default".
	Namespace string
	// APIKey authenticates to e.g. Temporal Cloud, over TLS.
	APIKey string
	// TLSCert and TLSKey are the client certificate files for mTLS; set
	// both or neither.
	TLSCert string
	TLSKey  string
	// TLSCA is the CA certificate file that verifies the server.
	TLSCA string
	// Keys encrypt every payload the client sends and decrypt those it
	// reads (inputs, results, signals, updates, queries, failure messages):
	// the same key ring as the workers'. nil sends and reads plaintext.
	Keys *codec.KeyRing
	// Logger receives the SDK's logs; nil discards them.
	Logger *slog.Logger
	// Compression is the gRPC compression of requests and responses:
	// CompressionGzip, CompressionNone, or "" for none on a loopback
	// address and gzip elsewhere.
	Compression string
	// Actor is who the requests of this client come from, for the audit
	// trail (see WithActor for one call); "" means the client's identity.
	Actor string
	// Identity is the client identity the server records on each request;
	// "" means the SDK's, PID@HOST.
	Identity string
}

// Values of DialOptions.Compression.
const (
	CompressionGzip = "gzip"
	CompressionNone = "none"
)

// Defaults of DialOptions.
const (
	DefaultAddress   = "127.0.0.1:7233"
	DefaultNamespace = "default"
)

// Validate reports bad options, naming each setting.
func (o DialOptions) Validate() error {
	var errs []error
	if o.Address != "" {
		if _, _, err := net.SplitHostPort(o.Address); err != nil {
			errs = append(errs, fmt.Errorf("address (TEMPORAL_ADDRESS) %q: want host:port", o.Address))
		}
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		errs = append(errs, errors.New("tls-cert and tls-key (TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY) go together: set both or neither"))
	}
	if o.Compression != "" && o.Compression != CompressionGzip && o.Compression != CompressionNone {
		errs = append(errs, fmt.Errorf("compression %q: want %q or %q", o.Compression, CompressionGzip, CompressionNone))
	}
	return errors.Join(errs...)
}

// ClientOptions are the SDK client options for o, defaults applied; callers
// that need more (a metrics handler) add it before dialling.
func (o DialOptions) ClientOptions() (client.Options, error) {
	if err := o.Validate(); err != nil {
		return client.Options{}, err
	}
	if o.Address == "" {
		o.Address = DefaultAddress
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	opts := client.Options{
		HostPort:  o.Address,
		Namespace: o.Namespace,
		Logger:    sdklog.NewStructuredLogger(logger),
		Identity:  o.Identity,
	}
	actor := o.Actor
	if actor == "" {
		actor = or(o.Identity, clientIdentity())
	}
	opts.ContextPropagators = []workflow.ContextPropagator{ActorPropagator(actor)}
	tlsCfg, err := o.tlsConfig()
	if err != nil {
		return client.Options{}, err
	}
	opts.ConnectionOptions.TLS = tlsCfg
	if o.Compression == CompressionNone || o.Compression == "" && isLoopback(o.Address) {
		// On loopback gzip only costs CPU, on both ends: it was 4% of the
		// worker's and 4% of the embedded server's in BenchmarkLifecycle.
		// Encrypted payloads are compressed before they are encrypted and
		// gain nothing from it anywhere.
		opts.ConnectionOptions.GrpcCompression = &client.GrpcCompressionNone{}
	}
	if o.APIKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(o.APIKey)
	}
	if o.Keys != nil {
		opts.DataConverter, opts.FailureConverter = codec.NewConverters(o.Keys)
	}
	return opts, nil
}

// isLoopback reports whether host:port names this machine: localhost or a
// loopback IP.
func isLoopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Dial connects to Temporal and checks the server answers. The caller
// closes the client; wrap it with New to drive connections.
func Dial(ctx context.Context, o DialOptions) (client.Client, error) {
	opts, err := o.ClientOptions()
	if err != nil {
		return nil, err
	}
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("cannot reach Temporal at %s (namespace %s): start the worker (go run ./worker) or set TEMPORAL_ADDRESS: %w",
			opts.HostPort, opts.Namespace, err)
	}
	return c, nil
}

// tlsConfig builds the client TLS configuration: mTLS with a certificate,
// server verification with a CA, plain TLS for an API key, none otherwise.
func (o DialOptions) tlsConfig() (*tls.Config, error) {
	if o.TLSCert == "" && o.TLSCA == "" && o.APIKey == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("tls-cert/tls-key (TEMPORAL_TLS_CERT/_KEY): %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("tls-ca (TEMPORAL_TLS_CA): %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls-ca (TEMPORAL_TLS_CA) %s: no PEM certificate found", o.TLSCA)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
