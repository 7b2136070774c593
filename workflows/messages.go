package workflows

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// DecodeDataSpaceRequest decodes the payload of a share, unshare or retry
// signal. It is strict, because a signal cannot answer its sender: the
// payload must be one JSON object with a single "dataSpace" string field
// holding a valid name.
func DecodeDataSpaceRequest(raw json.RawMessage) (DataSpaceRequest, error) {
	var req DataSpaceRequest
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return req, errors.New(`missing payload: send {"dataSpace":"NAME"}`)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return DataSpaceRequest{}, fmt.Errorf(`malformed payload (want {"dataSpace":"NAME"}): %w`, err)
	}
	if dec.More() {
		return DataSpaceRequest{}, errors.New(`malformed payload: more than one JSON value; send {"dataSpace":"NAME"}`)
	}
	if err := ValidateDataSpaceName(req.DataSpace); err != nil {
		return DataSpaceRequest{}, err
	}
	return req, nil
}

// ValidateDataSpaceName checks the form of a data space name: 1 to
// MaxDataSpaceName characters, letters, digits, '-', '_' and '.'.
func ValidateDataSpaceName(name string) error {
	switch {
	case name == "":
		return errors.New("data space name is empty")
	case len(name) > MaxDataSpaceName:
		return fmt.Errorf("data space name is %d bytes long; the limit is %d", len(name), MaxDataSpaceName)
	}
	for _, r := range name {
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("-_.", r)) {
			return fmt.Errorf("data space name %q has the character %q; use letters, digits, '-', '_' or '.'", name, r)
		}
	}
	return nil
}

// describePayload renders a rejected payload for the status, bounded so a
// huge payload cannot bloat the workflow state.
func describePayload(raw json.RawMessage) string {
	const limit = 80
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return "(no payload)"
	}
	if len(s) > limit {
		return fmt.Sprintf("%s… (%d bytes)", strings.ToValidUTF8(s[:limit], ""), len(s))
	}
	return s
}
