package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/companionsync/companionsync/codec"
)

// devKeyFile is the key file the embedded default generates in its data
// directory on the first run.
const devKeyFile = "codec.keys"

// loadKeys reads the payload key ring: COMPANIONSYNC_KEYS, else the key
// file, else, for the embedded default only, DataDir/codec.keys, generated
// on the first run. A worker of a cluster without keys refuses to start.
func (m *Main) loadKeys() error {
	src := codec.Source{Keys: m.cfg.Keys, KeyFile: m.cfg.KeyFile}
	if m.cfg.TemporalAddress == "" {
		src.DevKeyFile, src.CreateDevKey = filepath.Join(m.cfg.DataDir, devKeyFile), true
	}
	ring, from, err := src.Load()
	if err != nil {
		return fmt.Errorf("payload keys: %w", err)
	}
	m.keys, m.KeysFrom = ring, from
	m.logger.Info("payload encryption", "keys", from)
	return nil
}

// codecServer is the worker's codec server: the Web UI (or `temporal
// --codec-endpoint`) posts payloads to it to read them decrypted.
type codecServer struct {
	ln  net.Listener
	srv *http.Server
}

// listenCodec claims the codec server's address, before the dev server
// starts, so the embedded Web UI can be given its URL.
func (m *Main) listenCodec() error {
	if m.cfg.CodecAddr == "" || m.keys == nil {
		return nil
	}
	ln, err := net.Listen("tcp", m.cfg.CodecAddr)
	if err != nil {
		return fmt.Errorf("codec server on %s (codec-addr): %w", m.cfg.CodecAddr, err)
	}
	m.codec = &codecServer{ln: ln}
	m.CodecURL = "http://" + ln.Addr().String()
	return nil
}

// serveCodec serves the codec server on the claimed address, allowing the
// configured origins, or the dev UI's once it runs.
func (m *Main) serveCodec() error {
	if m.codec == nil {
		return nil
	}
	origins := m.cfg.CodecOrigins
	if m.UIURL != "" {
		origins = append(origins, m.UIURL)
	}
	opts := codec.HandlerOptions{
		Codec:      codec.NewCodec(m.keys),
		Namespaces: []string{m.cfg.Namespace},
		Origins:    origins,
		Token:      m.cfg.CodecToken,
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	m.codec.srv = &http.Server{
		Handler:           codec.NewHandler(opts),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
	}
	go func() {
		if err := m.codec.srv.Serve(m.codec.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.logger.Error("codec server stopped", "error", err)
		}
	}()
	return nil
}

func (c *codecServer) close() error {
	if c.srv == nil {
		return c.ln.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.srv.Shutdown(ctx)
}
