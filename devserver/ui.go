package devserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
)

// webUI runs the Temporal Web UI (embedded assets) in a goroutine, because
// uiserver.Server.Start blocks until Stop.
type webUI struct {
	srv  *uiserver.Server
	url  string
	done chan struct{}
}

// startUI serves the UI on at, talking gRPC to frontend. The port must have been
// checked free: on a bind failure the UI server calls log.Fatal and the whole
// process exits.
func startUI(at endpoint, frontend, namespace, codecEndpoint string) *webUI {
	srv := uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
		TemporalGRPCAddress: frontend,
		Host:                at.host,
		Port:                at.port,
		EnableUI:            true, // assets embedded in the ui-server module
		DefaultNamespace:    namespace,
		// Plain HTTP on loopback: the CSRF cookie must not require HTTPS.
		CORS:             uiconfig.CORS{CookieInsecure: true},
		DisableNewsFetch: true, // no outbound calls from a local tool
		HideLogs:         true, // no request log or banner on stdout
		// The browser calls the codec server itself, with no credentials:
		// the embedded default's codec server needs no token.
		Codec: uiconfig.Codec{Endpoint: codecEndpoint},
	}))
	ui := &webUI{srv: srv, url: "http://" + hostPort(at.dialHost(), at.port), done: make(chan struct{})}
	go func() {
		defer close(ui.done)
		_ = srv.Start() // returns nil once Stop closes it
	}()
	return ui
}

// waitReady polls "/" until it answers 200.
func (ui *webUI) waitReady(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ui.url+"/", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET / answered %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("web UI at %s not ready: %w (last error: %v)", ui.url, ctx.Err(), last)
		case <-ui.done:
			return fmt.Errorf("web UI at %s stopped before it was ready", ui.url)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop closes the UI listener and waits for its goroutine.
func (ui *webUI) stop() {
	ui.srv.Stop()
	<-ui.done
}
