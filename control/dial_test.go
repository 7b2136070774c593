package control

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
)

func TestDialRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts DialOptions
		want string
	}{
		{"address without port", DialOptions{Address: "localhost"}, "want host:port"},
		{"key without certificate", DialOptions{TLSKey: "k.pem"}, "go together"},
		{"missing certificate files", DialOptions{TLSCert: "nope.pem", TLSKey: "nope.key"}, "tls-cert/tls-key"},
		{"missing CA file", DialOptions{TLSCA: "nope.pem"}, "tls-ca"},
		{"unknown compression", DialOptions{Compression: "zstd"}, `compression "zstd": want "gzip" or "none"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Dial(context.Background(), tc.opts)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

// TestCompression: no gRPC compression on loopback unless asked for, the
// SDK's gzip elsewhere unless turned off.
func TestCompression(t *testing.T) {
	for _, tc := range []struct {
		address, compression string
		gzip                 bool
	}{
		{"", "", false}, // the default address is loopback
		{"127.0.0.1:7233", "", false},
		{"localhost:7233", "", false},
		{"[::1]:7233", "", false},
		{"127.0.0.1:7233", CompressionGzip, true},
		{"temporal.example:7233", "", true},
		{"10.1.2.3:7233", "", true},
		{"temporal.example:7233", CompressionNone, false},
	} {
		opts, err := DialOptions{Address: tc.address, Compression: tc.compression}.ClientOptions()
		require.NoError(t, err)
		_, none := opts.ConnectionOptions.GrpcCompression.(*client.GrpcCompressionNone)
		assert.Equal(t, tc.gzip, !none, "address %q, compression %q", tc.address, tc.compression)
	}
}
