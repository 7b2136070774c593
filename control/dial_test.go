package control

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Dial(context.Background(), tc.opts)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}
