// Package codec encrypts companionsync's Temporal payloads.
//
// Everything a workflow or activity hands to Temporal (inputs, results,
// signals, queries, memos, heartbeat details, failure details, and with the
// failure converter of this package also failure messages and stack traces)
// passes through a converter.PayloadCodec before it leaves the process. The
// Codec here serializes each whole payload (data and metadata), compresses it
// when that pays, and seals it with AES-256-GCM under the active key of a
// KeyRing. The Temporal server, its database and its Web UI only ever see
// ciphertext; the UI and the temporal CLI can show plaintext through the
// codec server that NewHandler serves.
//
// Keys come from COMPANIONSYNC_KEYS (ParseKeys), a key file (LoadKeyFile), or
// in dev mode a generated key file (LoadOrCreateKeyFile). Every encrypted
// payload names its key, so rotation is: put a new key first (it becomes
// active) and keep the old ones after it for as long as histories that use
// them are read (retention plus any replay tests).
//
// Not encrypted, because the server must read them: workflow and activity
// IDs and type names, task queues, search attributes, failure types, and
// timestamps. Each key may seal about 2^32 payloads before random nonces
// risk repeating; rotate well before that.
//
// Wiring: client.Options.DataConverter = NewDataConverter(ring) and
// client.Options.FailureConverter = NewFailureConverter(dc); the same pair
// goes into worker.WorkflowReplayerOptions for replay tests.
package codec

import (
	"bytes"
	"compress/flate"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

// Metadata of an encrypted payload. The encoding value is the conventional
// one of Temporal's encryption samples, so tools recognize the payloads as
// encrypted.
const (
	// MetadataEncoding is the metadata key of a payload's encoding
	// ("encoding", the same as converter.MetadataEncoding).
	MetadataEncoding = converter.MetadataEncoding
	// MetadataEncodingEncrypted is the encoding of payloads this codec wrote.
	MetadataEncodingEncrypted = "binary/encrypted"
	// MetadataEncryptionKeyID is the metadata key naming the key a payload is
	// encrypted under.
	MetadataEncryptionKeyID = "encryption-key-id"
	// MetadataEncryptionCompression is the metadata key that is present, with
	// value CompressionDeflate, when the plaintext was compressed before
	// encryption.
	MetadataEncryptionCompression = "encryption-compression"
	// CompressionDeflate marks plaintext compressed with DEFLATE (RFC 1951).
	CompressionDeflate = "deflate"
)

// CompressThreshold is the serialized payload size in bytes above which the
// codec tries compression; it keeps the compressed form only when smaller.
const CompressThreshold = 256

// maxDecompressedSize bounds what one payload may inflate to. Temporal limits
// payloads to a few MiB, so anything bigger is not a payload of ours.
const maxDecompressedSize = 128 << 20

// ErrUnknownKey is wrapped by decode errors for payloads encrypted under a key
// that is not in the ring; use errors.As with *UnknownKeyError for its ID.
var ErrUnknownKey = errors.New("key is not in the key ring")

// ErrCorrupt is wrapped by decode errors for encrypted payloads that fail
// authentication or do not parse: they were tampered with, truncated, or
// encrypted under a different key that has the same ID.
var ErrCorrupt = errors.New("encrypted payload is corrupt")

// UnknownKeyError reports a payload encrypted under a key the ring lacks.
type UnknownKeyError struct {
	// KeyID is the key ID the payload names.
	KeyID string
	// Known lists the IDs the ring has.
	Known []string
}

// Error names the missing key and the ones the ring has.
func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("key %q is not in the key ring (it has %s): add that key to the ring", e.KeyID, strings.Join(e.Known, ", "))
}

// Is makes errors.Is(err, ErrUnknownKey) true.
func (e *UnknownKeyError) Is(target error) bool { return target == ErrUnknownKey }

// Codec is a converter.PayloadCodec that encrypts payloads with AES-256-GCM.
// It is safe for concurrent use.
//
// Encode replaces each payload with one whose data is
//
//	nonce (12 bytes) || GCM ciphertext of proto(payload), maybe deflated || tag (16 bytes)
//
// and whose metadata is encoding=binary/encrypted, encryption-key-id=<id>
// and, when compressed, encryption-compression=deflate. The key ID and the
// compression marker are GCM additional data, so neither can be altered
// without decryption failing. Decode reverses that; payloads of any other
// encoding pass through unchanged, so histories written before encryption
// was turned on still read.
type Codec struct {
	ring  *KeyRing
	aeads map[string]cipher.AEAD
	err   error // set when the ring could not be turned into ciphers
}

var _ converter.PayloadCodec = (*Codec)(nil)

// NewCodec returns a Codec that encrypts under ring's active key and
// decrypts with any key of ring. A nil ring yields a codec whose Encode and
// Decode of encrypted payloads fail.
func NewCodec(ring *KeyRing) *Codec {
	c := &Codec{ring: ring, aeads: make(map[string]cipher.AEAD, ring.Len())}
	if ring == nil {
		c.err = errors.New("codec has no key ring")
		return c
	}
	for id, k := range ring.keys {
		block, err := aes.NewCipher([]byte(*k.secret))
		if err != nil {
			c.err = fmt.Errorf("key %q: %w", id, err)
			return c
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			c.err = fmt.Errorf("key %q: %w", id, err)
			return c
		}
		c.aeads[id] = aead
	}
	return c
}

// Ring returns the key ring the codec uses.
func (c *Codec) Ring() *KeyRing { return c.ring }

// additionalData binds a ciphertext to its key ID and compression marker.
func additionalData(keyID, compression string) []byte {
	return []byte("companionsync-codec-v1\x00" + keyID + "\x00" + compression)
}

// Encode encrypts each payload under the active key. It returns new payloads
// and leaves the input untouched.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if c.err != nil {
		return nil, fmt.Errorf("encrypt payload: %w", c.err)
	}
	keyID := c.ring.ActiveID()
	aead, ok := c.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("encrypt payload: active key %q is not in the key ring", keyID)
	}
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if p == nil {
			return nil, fmt.Errorf("encrypt payload %d: payload is nil", i)
		}
		plain, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encrypt payload %d: marshal: %w", i, err)
		}
		compression := ""
		if len(plain) > CompressThreshold {
			z, err := deflate(plain)
			if err != nil {
				return nil, fmt.Errorf("encrypt payload %d: %w", i, err)
			}
			if len(z) < len(plain) {
				plain, compression = z, CompressionDeflate
			}
		}
		md := map[string][]byte{
			MetadataEncoding:        []byte(MetadataEncodingEncrypted),
			MetadataEncryptionKeyID: []byte(keyID),
		}
		if compression != "" {
			md[MetadataEncryptionCompression] = []byte(compression)
		}
		out[i] = &commonpb.Payload{
			Metadata: md,
			Data:     aead.Seal(nil, nil, plain, additionalData(keyID, compression)),
		}
	}
	return out, nil
}

// Decode decrypts the payloads this codec encrypted and passes every other
// payload through unchanged. It fails, naming the payload's position and
// key ID, on an encrypted payload whose key is not in the ring
// (ErrUnknownKey) or that does not authenticate (ErrCorrupt); it never
// returns a partial or empty payload in place of one it could not decrypt.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if p == nil || string(p.GetMetadata()[MetadataEncoding]) != MetadataEncodingEncrypted {
			out[i] = p
			continue
		}
		d, err := c.decrypt(p)
		if err != nil {
			if len(payloads) > 1 {
				return nil, fmt.Errorf("decrypt payload %d: %w", i, err)
			}
			return nil, fmt.Errorf("decrypt payload: %w", err)
		}
		out[i] = d
	}
	return out, nil
}

// decrypt opens one encrypted payload.
func (c *Codec) decrypt(p *commonpb.Payload) (*commonpb.Payload, error) {
	idBytes, ok := p.Metadata[MetadataEncryptionKeyID]
	if !ok || len(idBytes) == 0 {
		return nil, fmt.Errorf("%w: no %s metadata", ErrCorrupt, MetadataEncryptionKeyID)
	}
	keyID := string(idBytes)
	if c.err != nil {
		return nil, fmt.Errorf("key %q: %w", keyID, c.err)
	}
	aead, ok := c.aeads[keyID]
	if !ok {
		return nil, &UnknownKeyError{KeyID: keyID, Known: c.ring.IDs()}
	}
	compression := string(p.Metadata[MetadataEncryptionCompression])
	if compression != "" && compression != CompressionDeflate {
		return nil, fmt.Errorf("%w: key %q: unknown compression %q", ErrCorrupt, keyID, compression)
	}
	plain, err := aead.Open(nil, nil, p.Data, additionalData(keyID, compression))
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: authentication failed (tampered, truncated, or encrypted under another key with this id)", ErrCorrupt, keyID)
	}
	if compression == CompressionDeflate {
		plain, err = inflate(plain)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %w", ErrCorrupt, keyID, err)
		}
	}
	var d commonpb.Payload
	if err := proto.Unmarshal(plain, &d); err != nil {
		return nil, fmt.Errorf("%w: key %q: unmarshal: %w", ErrCorrupt, keyID, err)
	}
	return &d, nil
}

// deflate compresses b.
func deflate(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(b) / 2)
	w := deflaters.Get().(*flate.Writer)
	defer deflaters.Put(w)
	w.Reset(&buf)
	if _, err := w.Write(b); err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	return buf.Bytes(), nil
}

// deflaters and inflaters are reused: a new flate writer allocates about
// 800 KiB of tables, which cost more than compressing a payload. The
// fastest level leaves JSON payloads at about a third of their size.
var (
	deflaters = sync.Pool{New: func() any {
		w, err := flate.NewWriter(nil, flate.BestSpeed)
		if err != nil {
			panic(err) // only for a level out of range
		}
		return w
	}}
	inflaters = sync.Pool{New: func() any { return flate.NewReader(nil) }}
)

// inflate decompresses b, refusing output beyond maxDecompressedSize.
func inflate(b []byte) ([]byte, error) {
	r := inflaters.Get().(io.ReadCloser)
	defer inflaters.Put(r)
	if err := r.(flate.Resetter).Reset(bytes.NewReader(b), nil); err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(r, maxDecompressedSize+1))
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if len(out) > maxDecompressedSize {
		return nil, fmt.Errorf("decompress: more than %d bytes", maxDecompressedSize)
	}
	return slices.Clip(out), nil
}
