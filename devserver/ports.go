package devserver

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// ErrAddrInUse is wrapped by Start's error when a requested frontend or UI
// address is already taken, typically by another dev server or worker.
var ErrAddrInUse = errors.New("address already in use")

const loopback = "127.0.0.1"

// ports are the concrete listen addresses of the server and the UI.
type ports struct {
	frontend endpoint
	ui       *endpoint // nil: no UI
	// frontendHTTP serves the frontend's HTTP API, which Nexus needs; without
	// it the server warns at every start.
	frontendHTTP int
	history      int
	matching     int
	worker       int
}

// endpoint is a listen address split into an IP literal and a port (0 = pick one).
type endpoint struct {
	host string
	port int
}

func (e endpoint) String() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

// dialHost is where a client on this machine reaches a listener bound to e.host.
func (e endpoint) dialHost() string {
	if ip := net.ParseIP(e.host); ip != nil && ip.IsUnspecified() {
		return loopback
	}
	return e.host
}

// parseEndpoint accepts "", "host:port", ":port" and "localhost:port"; the
// server binds to IP literals only, so other host names are refused.
func parseEndpoint(what, addr string) (endpoint, error) {
	if addr == "" {
		return endpoint{host: loopback}, nil
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return endpoint{}, fmt.Errorf("%s address %q: want host:port, e.g. 127.0.0.1:7233: %w", what, addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return endpoint{}, fmt.Errorf("%s address %q: port must be a number from 0 to 65535", what, addr)
	}
	switch {
	case host == "" || host == "localhost":
		host = loopback
	case net.ParseIP(host) == nil:
		return endpoint{}, fmt.Errorf("%s address %q: host must be an IP address or localhost", what, addr)
	}
	return endpoint{host: host, port: port}, nil
}

// claimPorts parses the requested addresses and claims them with free ports
// for the internal services. The claims stay open until release (idempotent)
// so that no two of them get the same port.
func claimPorts(frontendAddr, uiAddr string) (_ ports, _ func(), err error) {
	var held []net.Listener
	release := func() {
		closeAll(held)
		held = nil
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	hold := func(what string, e *endpoint) error {
		l, err := claim(what, e)
		if err != nil {
			return err
		}
		held = append(held, l)
		return nil
	}

	var p ports
	if p.frontend, err = parseEndpoint("frontend", frontendAddr); err != nil {
		return ports{}, nil, err
	}
	if uiAddr != "" {
		ui, err := parseEndpoint("web UI", uiAddr)
		if err != nil {
			return ports{}, nil, err
		}
		p.ui = &ui
	}
	if err := hold("frontend", &p.frontend); err != nil {
		return ports{}, nil, err
	}
	if p.ui != nil {
		if err := hold("web UI", p.ui); err != nil {
			return ports{}, nil, err
		}
	}
	for _, port := range []*int{&p.frontendHTTP, &p.history, &p.matching, &p.worker} {
		e := endpoint{host: loopback}
		if err := hold("internal service", &e); err != nil {
			return ports{}, nil, err
		}
		*port = e.port
	}
	return p, release, nil
}

// claim makes sure e has a usable port: a fixed port must be free now (the UI
// server would otherwise exit the process when it fails to bind), and port 0 is
// replaced by a free one. The returned listener is open so that later claims
// cannot pick the same port; close it just before the real server binds.
func claim(what string, e *endpoint) (net.Listener, error) {
	l, err := net.Listen("tcp", e.String())
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, &addrInUseError{what: what, addr: e.String(), err: err}
		}
		return nil, fmt.Errorf("%s address %s is not usable: %w", what, e, err)
	}
	e.port = l.Addr().(*net.TCPAddr).Port
	return l, nil
}

// addrInUseError says what to do about a taken address; it matches both
// ErrAddrInUse and the listener's own error.
type addrInUseError struct {
	what, addr string
	err        error
}

func (e *addrInUseError) Error() string {
	return fmt.Sprintf("%s address %s is already in use (is another dev server or worker running?): stop that process or choose another address",
		e.what, e.addr)
}

func (e *addrInUseError) Unwrap() []error { return []error{ErrAddrInUse, e.err} }

// closeAll closes the claim listeners.
func closeAll(ls []net.Listener) {
	for _, l := range ls {
		_ = l.Close()
	}
}
