package codec

import (
	"errors"
	"fmt"
	"os"
)

// KeyFileEnv names the environment variable holding the path of a key file
// (see LoadKeyFile).
const KeyFileEnv = "COMPANIONSYNC_KEY_FILE"

// Off is the value of KeysEnv that runs without payload encryption. It has
// to be said explicitly: a process that finds no key otherwise refuses to
// start, so a fleet never mixes encrypting and plaintext processes by
// accident.
const Off = "none"

// ErrNoKeys reports that no key ring is configured.
var ErrNoKeys = errors.New("no payload encryption key is configured")

// Source says where a process looks for its key ring, in order: Keys (the
// value of KeysEnv), then KeyFile (KeyFileEnv), then DevKeyFile, the key
// file of the embedded default in its data directory.
type Source struct {
	// Keys is a key ring in ParseKeys's form, or Off.
	Keys string
	// KeyFile is the path of a key file.
	KeyFile string
	// DevKeyFile is the embedded default's key file, used when Keys and
	// KeyFile are empty.
	DevKeyFile string
	// CreateDevKey generates DevKeyFile when it does not exist (the worker
	// of the embedded default does; clients only read it).
	CreateDevKey bool
}

// Load returns the key ring s names and a short description of where it came
// from (never the key material). The ring is nil, with no error, when Keys
// is Off. When nothing is configured it fails with ErrNoKeys; a ring that
// is malformed fails with a one-line error saying what to fix.
func (s Source) Load() (ring *KeyRing, from string, err error) {
	switch {
	case s.Keys == Off:
		return nil, "payload encryption off (" + KeysEnv + "=" + Off + ")", nil
	case s.Keys != "":
		ring, err := ParseKeys(s.Keys)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", KeysEnv, err)
		}
		return ring, describe(ring, KeysEnv), nil
	case s.KeyFile != "":
		ring, err := LoadKeyFile(s.KeyFile)
		if err != nil {
			return nil, "", err
		}
		return ring, describe(ring, s.KeyFile), nil
	case s.DevKeyFile != "" && s.CreateDevKey:
		ring, created, err := LoadOrCreateKeyFile(s.DevKeyFile)
		if err != nil {
			return nil, "", err
		}
		from := describe(ring, s.DevKeyFile)
		if created {
			from += ", generated now"
		}
		return ring, from, nil
	case s.DevKeyFile != "":
		if _, err := os.Stat(s.DevKeyFile); err == nil {
			ring, err := LoadKeyFile(s.DevKeyFile)
			if err != nil {
				return nil, "", err
			}
			return ring, describe(ring, s.DevKeyFile), nil
		}
	}
	return nil, "", fmt.Errorf("%w: set %s (id:base64key,...) or %s, or %s=%s to run without encryption",
		ErrNoKeys, KeysEnv, KeyFileEnv, KeysEnv, Off)
}

func describe(ring *KeyRing, where string) string {
	return fmt.Sprintf("AES-256-GCM, active key %q of %d, from %s", ring.ActiveID(), ring.Len(), where)
}
