package workflows

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeDataSpaceRequest(t *testing.T) {
	cases := []struct {
		name, payload, want, wantErr string
	}{
		{"valid", `{"dataSpace":"marketing"}`, "marketing", ""},
		{"valid with dots and dashes", `{"dataSpace":"eu-sales.v2_x"}`, "eu-sales.v2_x", ""},
		{"empty payload", ``, "", "missing payload"},
		{"null", `null`, "", "missing payload"},
		{"wrong type", `{"dataSpace":42}`, "", "malformed"},
		{"unknown field", `{"dataSpace":"a","x":1}`, "", "unknown field"},
		{"two values", `{"dataSpace":"a"}{"dataSpace":"b"}`, "", "more than one"},
		{"array", `["a"]`, "", "malformed"},
		{"empty name", `{"dataSpace":""}`, "", "empty"},
		{"space", `{"dataSpace":"a b"}`, "", "character"},
		{"path", `{"dataSpace":"../x"}`, "", "character"},
		{"huge", `{"dataSpace":"` + strings.Repeat("a", 10000) + `"}`, "", "limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := DecodeDataSpaceRequest(json.RawMessage(tc.payload))
			if tc.wantErr == "" {
				if err != nil || req.DataSpace != tc.want {
					t.Fatalf("got %+v, %v; want %q", req, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %+v, %v; want an error containing %q", req, err, tc.wantErr)
			}
		})
	}
}

func TestDescribePayloadIsBounded(t *testing.T) {
	got := describePayload(json.RawMessage(strings.Repeat("é", 1000)))
	if len(got) > 120 || !utf8.ValidString(got) {
		t.Fatalf("describePayload gave %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
}

// FuzzDecodeDataSpaceRequest: any payload either decodes to a valid name or
// is refused with an error; it never panics, and the rejection summary kept
// in the workflow state stays small.
func FuzzDecodeDataSpaceRequest(f *testing.F) {
	for _, seed := range []string{`{"dataSpace":"default"}`, `{}`, `null`, `{"dataSpace":1}`, `"x"`, `{"dataSpace":"a","b":2}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		req, err := DecodeDataSpaceRequest(payload)
		if err == nil {
			if verr := ValidateDataSpaceName(req.DataSpace); verr != nil {
				t.Fatalf("accepted invalid name %q: %v", req.DataSpace, verr)
			}
		}
		if d := describePayload(payload); len(d) > 120 {
			t.Fatalf("rejection summary of %d bytes", len(d))
		}
	})
}

// TestInputShowsOnlyChosenSettings: a connection's input, as the Web UI
// shows it, holds the settings its starter chose and no zeros for the ones
// left to the worker's defaults.
func TestInputShowsOnlyChosenSettings(t *testing.T) {
	in := ConnectionInput{Home: "acme", Companion: "acme-emea", Protocol: CurrentProtocol}
	data, err := json.Marshal(in)
	require.NoError(t, err)
	assert.NotContains(t, string(data), "settings")

	in.Settings = Settings{MetadataSyncInterval: time.Minute, ActivityRetry: RetrySettings{MaximumAttempts: 3}}
	data, err = json.Marshal(in)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"settings":{"metadataSyncInterval":60000000000,"activityRetry":{"maximumAttempts":3}}`)
	var back ConnectionInput
	require.NoError(t, json.Unmarshal(data, &back))
	assert.Equal(t, in, back)
}
