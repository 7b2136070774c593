package codec

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// KeySize is the length in bytes of every key: keys are AES-256 keys.
const KeySize = 32

// KeysEnv is the environment variable that conventionally carries a key ring
// spec (see ParseKeys). The package itself never reads the environment.
const KeysEnv = "COMPANIONSYNC_KEYS"

// maxKeyIDLen bounds key IDs: they travel in every payload's metadata.
const maxKeyIDLen = 64

// maxKeyFileSize bounds what LoadKeyFile reads; a key file is a few lines.
const maxKeyFileSize = 1 << 20

// redacted stands in for key material wherever a Key is printed.
const redacted = "REDACTED"

// Key is one AES-256 key and the ID under which payloads name it.
//
// A Key never prints its secret: String, GoString, Format, MarshalJSON,
// MarshalText and LogValue all redact it. The secret is held behind a
// pointer to a string because fmt never follows such a pointer: even
// reflection-based printing of a struct that holds a Key in an unexported
// field (where fmt cannot call Key's methods) shows an address, not the
// bytes, with every verb. The zero Key has no secret and is not usable; make
// keys with NewKey, GenerateKey or by parsing.
type Key struct {
	// ID names the key in payload metadata (encryption-key-id). It is not
	// secret.
	ID string

	secret *string // exactly KeySize bytes
}

// NewKey returns a Key with the given ID and a copy of secret, which must be
// exactly KeySize bytes. The ID may use letters, digits, '.', '_' and '-'
// (at most 64 characters).
func NewKey(id string, secret []byte) (Key, error) {
	if err := checkKeyID(id); err != nil {
		return Key{}, err
	}
	if len(secret) != KeySize {
		return Key{}, fmt.Errorf("key %q is %d bytes, want %d", id, len(secret), KeySize)
	}
	s := string(secret)
	return Key{ID: id, secret: &s}, nil
}

// GenerateKey returns a new random key. When id is empty it gets a fresh ID of
// the form k<UTC date>-<UTC time>-<4 hex digits>, for example
// k20260102-150405-9f3a, which sorts by creation time.
func GenerateKey(id string) (Key, error) {
	var s [KeySize]byte
	if _, err := io.ReadFull(rand.Reader, s[:]); err != nil {
		return Key{}, fmt.Errorf("generate key: read random bytes: %w", err)
	}
	if id == "" {
		var suffix [2]byte
		if _, err := io.ReadFull(rand.Reader, suffix[:]); err != nil {
			return Key{}, fmt.Errorf("generate key: read random bytes: %w", err)
		}
		id = "k" + time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(suffix[:])
	}
	return NewKey(id, s[:])
}

// SecretSpec returns the key in the "id:base64key" form that ParseKeys and
// LoadKeyFile read. It REVEALS THE SECRET: use it only to write a key file or
// to print a freshly generated key for an operator, never in logs or errors.
func (k Key) SecretSpec() string {
	if k.secret == nil {
		return k.ID + ":"
	}
	return k.ID + ":" + base64.StdEncoding.EncodeToString([]byte(*k.secret))
}

// valid reports whether k carries key material.
func (k Key) valid() bool { return k.secret != nil }

// equal reports whether a and b have the same ID and secret.
func (k Key) equal(o Key) bool {
	if k.ID != o.ID || k.secret == nil || o.secret == nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(*k.secret), []byte(*o.secret)) == 1
}

// String returns the key's ID with its secret redacted.
func (k Key) String() string { return "codec.Key{ID: " + quote(k.ID) + ", secret: " + redacted + "}" }

// GoString is String: %#v never shows the secret either.
func (k Key) GoString() string { return k.String() }

// Format implements fmt.Formatter so that every verb (%v, %+v, %#v, %s, %x,
// %q, ...) prints the redacted form.
func (k Key) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// MarshalJSON encodes only the key's ID: {"id":"k1","secret":"REDACTED"}.
func (k Key) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}{k.ID, redacted})
}

// MarshalText encodes the redacted form, so text encoders never see the secret.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// LogValue implements slog.LogValuer: a logged Key shows only its ID.
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", k.ID), slog.String("secret", redacted))
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// checkKeyID reports whether id is usable as a key ID. Its error never quotes
// an invalid ID: a mangled entry may have put key material where the ID goes.
func checkKeyID(id string) error {
	if id == "" {
		return errors.New("key id is empty: write entries as id:base64key, e.g. k1:<44 base64 characters>")
	}
	if len(id) > maxKeyIDLen {
		return fmt.Errorf("key id is %d characters long, want at most %d", len(id), maxKeyIDLen)
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return errors.New("key id has a character other than letters, digits, '.', '_' or '-': write entries as id:base64key")
		}
	}
	return nil
}

// KeyRing is an immutable set of keys with one active key. The codec encrypts
// new payloads under the active key and decrypts with whichever key a
// payload names. Rotation adds a key and makes it active while the old keys
// stay to read old histories: see WithActive and Add. A KeyRing is safe for
// concurrent use; its methods return new rings rather than changing it.
type KeyRing struct {
	active string
	keys   map[string]Key
	order  []string // IDs in the order they were added; active is not moved
}

// NewKeyRing returns a ring whose active key is active and which also holds
// others (old keys kept for decryption). IDs must be unique; adding the very
// same key twice is allowed.
func NewKeyRing(active Key, others ...Key) (*KeyRing, error) {
	r := &KeyRing{keys: make(map[string]Key, 1+len(others))}
	for _, k := range append([]Key{active}, others...) {
		if err := r.add(k); err != nil {
			return nil, err
		}
	}
	r.active = active.ID
	return r, nil
}

// add inserts k into r in place; only constructors call it on a new ring.
func (r *KeyRing) add(k Key) error {
	if err := checkKeyID(k.ID); err != nil {
		return err
	}
	if !k.valid() {
		return fmt.Errorf("key %q has no key material: make keys with NewKey, GenerateKey or ParseKeys", k.ID)
	}
	if old, ok := r.keys[k.ID]; ok {
		if old.equal(k) {
			return nil
		}
		return fmt.Errorf("duplicate key id %q with different key material: give each key its own id", k.ID)
	}
	r.keys[k.ID] = k
	r.order = append(r.order, k.ID)
	return nil
}

// clone returns a copy of r that can be changed without affecting r.
func (r *KeyRing) clone() *KeyRing {
	c := &KeyRing{active: r.active, keys: make(map[string]Key, len(r.keys)+1), order: append([]string(nil), r.order...)}
	for id, k := range r.keys {
		c.keys[id] = k
	}
	return c
}

// Add returns a new ring that also holds k, keeping the active key. It fails
// when the ring already has a different key under k's ID.
func (r *KeyRing) Add(k Key) (*KeyRing, error) {
	if r == nil {
		return nil, errors.New("add key: nil key ring")
	}
	c := r.clone()
	if err := c.add(k); err != nil {
		return nil, fmt.Errorf("add key: %w", err)
	}
	return c, nil
}

// WithActive returns a new ring that holds k (added if missing) and uses it as
// the active key; all other keys stay for decryption. This is the rotation
// step: payloads written afterwards name k.ID, older ones still decrypt.
func (r *KeyRing) WithActive(k Key) (*KeyRing, error) {
	if r == nil {
		return NewKeyRing(k)
	}
	c := r.clone()
	if err := c.add(k); err != nil {
		return nil, fmt.Errorf("activate key: %w", err)
	}
	c.active = k.ID
	return c, nil
}

// ActiveID returns the ID of the key new payloads are encrypted under.
func (r *KeyRing) ActiveID() string {
	if r == nil {
		return ""
	}
	return r.active
}

// IDs returns the IDs of all keys, the active one first, then the others in
// the order they were added.
func (r *KeyRing) IDs() []string {
	if r == nil {
		return nil
	}
	ids := make([]string, 0, len(r.order))
	ids = append(ids, r.active)
	for _, id := range r.order {
		if id != r.active {
			ids = append(ids, id)
		}
	}
	return ids
}

// Has reports whether the ring holds a key with the given ID.
func (r *KeyRing) Has(id string) bool {
	if r == nil {
		return false
	}
	_, ok := r.keys[id]
	return ok
}

// Len returns the number of keys in the ring.
func (r *KeyRing) Len() int {
	if r == nil {
		return 0
	}
	return len(r.keys)
}

// key returns the key with the given ID.
func (r *KeyRing) key(id string) (Key, bool) {
	if r == nil {
		return Key{}, false
	}
	k, ok := r.keys[id]
	return k, ok
}

// SecretSpec returns the whole ring in ParseKeys form, active key first. It
// REVEALS EVERY SECRET: use it only to write a key file.
func (r *KeyRing) SecretSpec() string {
	var b strings.Builder
	for i, id := range r.IDs() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.keys[id].SecretSpec())
	}
	return b.String()
}

// String describes the ring by its key IDs; it never shows key material.
func (r *KeyRing) String() string {
	if r == nil {
		return "codec.KeyRing(nil)"
	}
	return fmt.Sprintf("codec.KeyRing{active: %q, ids: %q}", r.active, r.IDs())
}

// GoString is String.
func (r *KeyRing) GoString() string { return r.String() }

// Format implements fmt.Formatter: every verb prints String.
func (r *KeyRing) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, r.String()) }

// MarshalJSON encodes the ring's key IDs only: {"active":"k2","ids":["k2","k1"]}.
func (r *KeyRing) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Active string   `json:"active"`
		IDs    []string `json:"ids"`
	}{r.ActiveID(), r.IDs()})
}

// LogValue implements slog.LogValuer: a logged ring shows its key IDs only.
func (r *KeyRing) LogValue() slog.Value {
	return slog.GroupValue(slog.String("active", r.ActiveID()), slog.Any("ids", r.IDs()))
}

// ParseKeys parses a key ring spec, the format of COMPANIONSYNC_KEYS:
//
//	id:base64key[,id:base64key...]
//
// Each base64key is standard base64 (with padding) of exactly 32 random
// bytes, for example the output of `openssl rand -base64 32`. THE FIRST ENTRY
// IS THE ACTIVE KEY, the one new payloads are encrypted under; the others are
// kept to decrypt payloads written before a rotation. To rotate, put the new
// key first and keep the old ones after it. Spaces around entries are
// ignored, and so are empty entries (a trailing comma).
//
// Errors say what to fix in one line and never contain key material.
func ParseKeys(spec string) (*KeyRing, error) {
	var entries []entry
	for i, e := range strings.Split(spec, ",") {
		entries = append(entries, entry{text: e, where: fmt.Sprintf("entry %d", i+1)})
	}
	ring, err := parseEntries(entries)
	if err != nil {
		return nil, fmt.Errorf("parse keys: %w", err)
	}
	return ring, nil
}

// entry is one id:base64key item with where it came from, for errors.
type entry struct {
	text  string
	where string
}

// parseEntries builds a ring from entries; the first non-empty one is active.
func parseEntries(entries []entry) (*KeyRing, error) {
	r := &KeyRing{keys: make(map[string]Key)}
	for _, e := range entries {
		text := strings.TrimSpace(e.text)
		if text == "" {
			continue
		}
		id, b64, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("%s has no ':': write each key as id:base64key", e.where)
		}
		id, b64 = strings.TrimSpace(id), strings.TrimSpace(b64)
		if err := checkKeyID(id); err != nil {
			return nil, fmt.Errorf("%s: %w", e.where, err)
		}
		if b64 == "" {
			return nil, fmt.Errorf("key %q (%s) has no key after ':': append the base64 of 32 random bytes (openssl rand -base64 32)", id, e.where)
		}
		secret, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("key %q (%s) is not valid standard base64: regenerate it with openssl rand -base64 32", id, e.where)
		}
		if len(secret) != KeySize {
			return nil, fmt.Errorf("key %q is %d bytes, want %d: generate one with openssl rand -base64 32", id, len(secret), KeySize)
		}
		if _, dup := r.keys[id]; dup {
			return nil, fmt.Errorf("duplicate key id %q (%s): give each key its own id", id, e.where)
		}
		k, err := NewKey(id, secret)
		clear(secret)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.where, err)
		}
		if err := r.add(k); err != nil {
			return nil, fmt.Errorf("%s: %w", e.where, err)
		}
		if r.active == "" {
			r.active = id
		}
	}
	if r.active == "" {
		return nil, errors.New("no keys: give at least one id:base64key entry (the first entry is the active key)")
	}
	return r, nil
}

// LoadKeyFile reads a key ring from a file in the ParseKeys format, with
// entries separated by commas or newlines; '#' starts a comment that runs to
// the end of the line. The first entry in the file is the active key.
//
// The file must not be accessible to group or others (mode 0600 or
// stricter); otherwise LoadKeyFile refuses it and says which chmod to run.
// (The mode check is skipped on Windows, which has no such bits.)
func LoadKeyFile(path string) (*KeyRing, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load key file %s: not a regular file", path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load key file %s: mode %04o lets group or others access the keys: run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("load key file %s: larger than %d bytes; a key file holds id:base64key lines", path, maxKeyFileSize)
	}
	defer clear(data)
	ring, err := parseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("load key file %s: %w", path, err)
	}
	return ring, nil
}

// parseKeyFile splits a key file into entries, dropping comments.
func parseKeyFile(data []byte) (*KeyRing, error) {
	var entries []entry
	for n, line := range bytes.Split(data, []byte("\n")) {
		text := string(line)
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		for j, e := range strings.Split(text, ",") {
			where := fmt.Sprintf("line %d", n+1)
			if strings.Contains(text, ",") {
				where = fmt.Sprintf("line %d entry %d", n+1, j+1)
			}
			entries = append(entries, entry{text: e, where: where})
		}
	}
	return parseEntries(entries)
}

// LoadOrCreateKeyFile is for dev mode: it loads the key file at path, or,
// when there is none, generates a random key (see GenerateKey for its ID),
// writes it there with mode 0600 and returns a ring holding it, with created
// set. The directory is created with mode 0700 when missing. The write is
// atomic (a temporary file in the same directory, then a link or rename), and
// when another process creates the file first, its keys are loaded instead,
// so concurrent starts agree on one key.
func LoadOrCreateKeyFile(path string) (ring *KeyRing, created bool, err error) {
	ring, err = LoadKeyFile(path)
	if err == nil {
		return ring, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create key file: %w", err)
	}
	k, err := GenerateKey("")
	if err != nil {
		return nil, false, fmt.Errorf("create key file: %w", err)
	}
	ring, err = NewKeyRing(k)
	if err != nil {
		return nil, false, fmt.Errorf("create key file: %w", err)
	}
	content := "# companionsync payload encryption keys (dev mode), generated " + time.Now().UTC().Format(time.RFC3339) + ".\n" +
		"# Format: one id:base64key per line; the first entry is the active key. Keep this file secret (mode 0600).\n" +
		k.SecretSpec() + "\n"
	won, err := writeNewFile(path, []byte(content))
	if err != nil {
		return nil, false, fmt.Errorf("create key file: %w", err)
	}
	if !won {
		// Someone else created the file between our load and our write.
		ring, err = LoadKeyFile(path)
		if err != nil {
			return nil, false, err
		}
		return ring, false, nil
	}
	return ring, true, nil
}

// writeNewFile atomically creates path with data and mode 0600. It reports
// false, without error, when path already exists (it never replaces a file,
// except on file systems without hard links, where it falls back to rename).
func writeNewFile(path string, data []byte) (bool, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, err
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // after a link the temp name is just a second name
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		// No hard links here: fall back to rename unless the file appeared.
		if _, statErr := os.Lstat(path); statErr == nil {
			return false, nil
		}
		if err := os.Rename(tmpName, path); err != nil {
			return false, err
		}
	}
	syncDir(dir)
	return true, nil
}

// syncDir makes a new directory entry durable; failures are not fatal (some
// platforms cannot fsync a directory).
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
