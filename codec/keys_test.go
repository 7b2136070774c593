package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestParseKeys(t *testing.T) {
	s1, s2 := testSecret(0x80), testSecret(0xA0)
	spec := " k2 : " + b64(s2) + " ,k1:" + b64(s1) + ","
	r, err := ParseKeys(spec)
	if err != nil {
		t.Fatalf("ParseKeys: %v", err)
	}
	if got := r.ActiveID(); got != "k2" {
		t.Errorf("ActiveID = %q, want k2 (the first entry)", got)
	}
	if got := r.IDs(); !slices.Equal(got, []string{"k2", "k1"}) {
		t.Errorf("IDs = %q, want [k2 k1]", got)
	}
	k1, _ := r.key("k1")
	if *k1.secret != string(s1) {
		t.Errorf("k1 secret differs from the spec")
	}
	// The spec written back parses to the same ring.
	r2, err := ParseKeys(r.SecretSpec())
	if err != nil || !slices.Equal(r2.IDs(), r.IDs()) {
		t.Errorf("SecretSpec round trip: %v, %v", r2, err)
	}
}

func TestParseKeysErrors(t *testing.T) {
	good := testSecret(0x80)
	other := testSecret(0xA0)
	short := testSecret(0xC0)[:16]
	long := append(testSecret(0xE0), 1, 2, 3)
	urlSafe := bytes.Repeat([]byte{0xfb, 0xff}, 16) // base64 has '+' and '/' in std, '-' and '_' in URL form
	secrets := [][]byte{good, other, short, long, urlSafe}

	tests := []struct {
		name string
		spec string
		want string // substring of the error
	}{
		{"empty", "", "no keys"},
		{"only separators", " , ,", "no keys"},
		{"no colon", b64(good), "entry 1 has no ':'"},
		{"second entry no colon", "k1:" + b64(good) + "," + b64(other), "entry 2 has no ':'"},
		{"empty id", ":" + b64(good), "key id is empty"},
		{"bad id chars", "k 1:" + b64(good), "key id has a character"},
		{"key where id goes", b64(good) + ":" + b64(other), "key id has a character"},
		{"id too long", strings.Repeat("k", 65) + ":" + b64(good), "at most 64"},
		{"no key", "k1:", `key "k1" (entry 1) has no key after ':'`},
		{"bad base64", "k1:" + b64(good)[:20] + "!!" + b64(good)[22:], `key "k1" (entry 1) is not valid standard base64`},
		{"url-safe base64", "k1:" + base64.URLEncoding.EncodeToString(urlSafe), `key "k1" (entry 1) is not valid standard base64`},
		{"unpadded base64", "k1:" + base64.RawStdEncoding.EncodeToString(good), "not valid standard base64"},
		{"too short", "k1:" + b64(short), `key "k1" is 16 bytes, want 32`},
		{"too long", "k1:" + b64(long), `key "k1" is 35 bytes, want 32`},
		{"duplicate id", "k1:" + b64(good) + ",k1:" + b64(other), `duplicate key id "k1" (entry 2)`},
		{"duplicate id same key", "k1:" + b64(good) + ",k1:" + b64(good), `duplicate key id "k1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseKeys(tt.spec)
			if err == nil {
				t.Fatalf("ParseKeys succeeded with %v", r)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not say %q", msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is more than one line: %q", msg)
			}
			assertNoSecret(t, "error", msg, secrets...)
			for _, s := range secrets {
				for _, enc := range []string{b64(s), base64.URLEncoding.EncodeToString(s), base64.RawStdEncoding.EncodeToString(s)} {
					if strings.Contains(msg, enc[:12]) {
						t.Errorf("error %q contains key material", msg)
					}
				}
			}
		})
	}
}

func TestKeyNeverPrints(t *testing.T) {
	secret := testSecret(0xA0)
	k := testKey(t, "k1", 0xA0)
	ring := testRing(t, k, testKey(t, "k0", 0xC0))
	type exported struct{ K Key }
	type unexported struct{ k Key }
	type withRing struct {
		R    KeyRing
		ring *KeyRing
	}
	values := map[string]any{
		"Key": k, "*Key": &k, "[]Key": []Key{k}, "map": map[string]Key{"a": k},
		"exported field": exported{k}, "unexported field": unexported{k},
		"*KeyRing": ring, "KeyRing": *ring, "struct with ring": withRing{*ring, ring},
	}
	for name, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
			out := fmt.Sprintf(verb, v)
			assertNoSecret(t, name+" printed with "+verb, out, secret)
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Errorf("json.Marshal(%s): %v", name, err)
		}
		assertNoSecret(t, name+" as JSON", string(j), secret)
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "v", v)
		slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "v", v)
		assertNoSecret(t, name+" logged", buf.String(), secret)
	}
	text, _ := k.MarshalText()
	for name, out := range map[string]string{"GoString": k.GoString(), "MarshalText": string(text), "LogValue": k.LogValue().String(), "ring LogValue": ring.LogValue().String()} {
		assertNoSecret(t, name, out, secret)
	}
	if s := k.String(); !strings.Contains(s, `"k1"`) || !strings.Contains(s, "REDACTED") {
		t.Errorf("Key.String() = %q, want the ID and REDACTED", s)
	}
	if s := ring.String(); !strings.Contains(s, `"k1"`) || !strings.Contains(s, `"k0"`) {
		t.Errorf("KeyRing.String() = %q, want the key IDs", s)
	}
	// SecretSpec is the one deliberate way out.
	if got, want := k.SecretSpec(), "k1:"+b64(secret); got != want {
		t.Errorf("SecretSpec = %q, want %q", got, want)
	}
}

func TestKeyRingRotationAPI(t *testing.T) {
	k1, k2 := testKey(t, "k1", 0x80), testKey(t, "k2", 0xA0)
	r1 := testRing(t, k1)
	r2, err := r1.WithActive(k2)
	if err != nil {
		t.Fatal(err)
	}
	if r1.ActiveID() != "k1" || r1.Len() != 1 || r1.Has("k2") {
		t.Errorf("WithActive changed the original ring: %v", r1)
	}
	if r2.ActiveID() != "k2" || !slices.Equal(r2.IDs(), []string{"k2", "k1"}) {
		t.Errorf("rotated ring = %v, want active k2 then k1", r2)
	}
	r3, err := r1.Add(k2)
	if err != nil {
		t.Fatal(err)
	}
	if r3.ActiveID() != "k1" || !slices.Equal(r3.IDs(), []string{"k1", "k2"}) {
		t.Errorf("Add: %v, want active k1 with k2", r3)
	}
	if _, err := r3.Add(k2); err != nil {
		t.Errorf("re-adding the same key: %v", err)
	}
	impostor := testKey(t, "k2", 0xC0)
	if _, err := r3.Add(impostor); err == nil || !strings.Contains(err.Error(), `duplicate key id "k2"`) {
		t.Errorf("adding another secret under k2: err = %v, want duplicate key id", err)
	}
	if _, err := r1.WithActive(Key{ID: "k9"}); err == nil {
		t.Errorf("WithActive accepted a zero key")
	}
	if _, err := NewKey("k1", testSecret(0x80)[:31]); err == nil || !strings.Contains(err.Error(), `key "k1" is 31 bytes, want 32`) {
		t.Errorf("NewKey with 31 bytes: %v", err)
	}
	g, err := GenerateKey("")
	if err != nil || !strings.HasPrefix(g.ID, "k") || checkKeyID(g.ID) != nil {
		t.Errorf("GenerateKey: %v %v", g, err)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
}

func TestLoadKeyFile(t *testing.T) {
	s1, s2, s3 := testSecret(0x80), testSecret(0xA0), testSecret(0xC0)
	path := filepath.Join(t.TempDir(), "keys")
	writeFile(t, path, "# rotated 2026-01-02\n\nk3:"+b64(s3)+"  # active\nk2:"+b64(s2)+", k1:"+b64(s1)+"\n", 0o600)
	r, err := LoadKeyFile(path)
	if err != nil {
		t.Fatalf("LoadKeyFile: %v", err)
	}
	if r.ActiveID() != "k3" || !slices.Equal(r.IDs(), []string{"k3", "k2", "k1"}) {
		t.Errorf("ring = %v, want active k3, then k2, k1", r)
	}
	writeFile(t, path, "k1:"+b64(s1)+"\n", 0o400)
	if _, err := LoadKeyFile(path); err != nil {
		t.Errorf("mode 0400 refused: %v", err)
	}
}

func TestLoadKeyFileErrors(t *testing.T) {
	s1 := testSecret(0x80)
	dir := t.TempDir()
	tests := []struct {
		name, content string
		want          string
	}{
		{"empty", "# nothing yet\n", "no keys"},
		{"short key", "k1:" + b64(s1) + "\nk2:" + b64(s1[:20]) + "\n", `key "k2" is 20 bytes, want 32`},
		{"bad line", "k1:" + b64(s1) + "\n\n" + b64(s1) + "\n", "line 3 has no ':'"},
		{"bad entry on a line", "k1:" + b64(s1) + "," + b64(s1) + "\n", "line 1 entry 2 has no ':'"},
		{"duplicate", "k1:" + b64(s1) + "\nk1:" + b64(testSecret(0xA0)) + "\n", `duplicate key id "k1" (line 2)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			writeFile(t, path, tt.content, 0o600)
			_, err := LoadKeyFile(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to say %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			assertNoSecret(t, "error", err.Error(), s1, testSecret(0xA0))
		})
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist", err)
	}
	if _, err := LoadKeyFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: err = %v", err)
	}
}

func TestLoadKeyFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no permission bits on Windows")
	}
	s1 := testSecret(0x80)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o601, 0o610, 0o777} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			writeFile(t, path, "k1:"+b64(s1)+"\n", mode)
			_, err := LoadKeyFile(path)
			if err == nil {
				t.Fatalf("LoadKeyFile accepted mode %04o", mode)
			}
			if want := "run chmod 600 " + path; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			if want := fmt.Sprintf("mode %04o", mode); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			assertNoSecret(t, "error", err.Error(), s1)
		})
	}
}

func TestLoadOrCreateKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "companionsync")
	path := filepath.Join(dir, "dev.keys")
	r1, created, err := LoadOrCreateKeyFile(path)
	if err != nil || !created {
		t.Fatalf("first call: created=%v err=%v, want a new file", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("key file mode = %04o, want 0600", fi.Mode().Perm())
		}
		di, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if di.Mode().Perm() != 0o700 {
			t.Errorf("key dir mode = %04o, want 0700", di.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key file (no temp files left)", len(entries))
	}

	r2, created, err := LoadOrCreateKeyFile(path)
	if err != nil || created {
		t.Fatalf("second call: created=%v err=%v, want the existing file reused", created, err)
	}
	if r1.ActiveID() != r2.ActiveID() {
		t.Errorf("second call active key %q, first %q", r2.ActiveID(), r1.ActiveID())
	}
	k1, _ := r1.key(r1.ActiveID())
	k2, _ := r2.key(r2.ActiveID())
	if !k1.equal(k2) {
		t.Errorf("second call loaded different key material")
	}

	// An existing file with loose permissions is refused, never overwritten.
	if runtime.GOOS != "windows" {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(path)
		if _, _, err := LoadOrCreateKeyFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("loose existing file: err = %v, want chmod advice", err)
		}
		after, _ := os.ReadFile(path)
		if !bytes.Equal(before, after) {
			t.Errorf("LoadOrCreateKeyFile rewrote an existing key file")
		}
	}
}

func TestLoadOrCreateKeyFileConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "dev.keys")
	const n = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[string]int{}
		creates int
	)
	for range n {
		wg.Go(func() {
			r, created, err := LoadOrCreateKeyFile(path)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[r.ActiveID()]++
			if created {
				creates++
			}
		})
	}
	wg.Wait()
	if len(ids) != 1 || creates != 1 {
		t.Errorf("concurrent starts: active ids %v, %d creations; want one id, one creation", ids, creates)
	}
}
