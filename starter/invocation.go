package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/companionsync/companionsync/codec"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/orgstore"
)

// invocation is one run of the CLI: its environment and outputs, and the
// Temporal client or org store it opened (at most one of each, closed at
// the end).
type invocation struct {
	getenv         func(string) string
	stdout, stderr io.Writer

	temporal client.Client
	// keys is the key ring temporal was dialled with (nil: plaintext).
	keys  *codec.KeyRing
	store *orgstore.Store
}

func (inv *invocation) close() {
	if inv.temporal != nil {
		inv.temporal.Close()
	}
	if inv.store != nil {
		_ = inv.store.Close()
	}
}

// flagSet is the flag set of one subcommand; its errors are usage errors.
type flagSet struct {
	*flag.FlagSet
	inv      *invocation
	name     string
	synopsis string
	summary  string
	required []string
}

// flags starts the flag set of the subcommand name (e.g. "share" or
// "demo conflict"); synopsis and summary make its -h text.
func (inv *invocation) flags(name, synopsis, summary string) *flagSet {
	fs := flag.NewFlagSet("starter "+name, flag.ContinueOnError)
	// Parse errors are reported on one line by parse; -h prints the usage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, inv: inv, name: name, synopsis: synopsis, summary: summary}
}

// printUsage prints the -h text of the subcommand.
func (fs *flagSet) printUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: starter %s %s\n%s\n\nflags:\n", fs.name, fs.synopsis, fs.summary)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// require marks flags that must be set.
func (fs *flagSet) require(names ...string) { fs.required = append(fs.required, names...) }

// parse parses args and checks required flags and stray arguments.
func (fs *flagSet) parse(args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.printUsage(fs.inv.stdout)
			return err
		}
		return usageError{err: fmt.Errorf("starter %s: %w; run 'starter %s -h' for usage", fs.name, err, fs.name)}
	}
	if fs.NArg() > 0 {
		return usageError{err: fmt.Errorf("starter %s: unexpected argument %q; run 'starter %s -h' for usage", fs.name, fs.Arg(0), fs.name)}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, name := range fs.required {
		if !set[name] || fs.Lookup(name).Value.String() == "" {
			return usageError{err: fmt.Errorf("starter %s: --%s is required; run 'starter %s -h' for usage", fs.name, name, fs.name)}
		}
	}
	return nil
}

// connection adds the required --connection HOME/COMPANION flag.
func (fs *flagSet) connection() *control.Ref {
	r := &refFlag{}
	fs.Var(r, "connection", "the connection, `HOME/COMPANION` (e.g. acme/acme-emea)")
	fs.require("connection")
	return &r.ref
}

// refFlag is a --connection value, checked when parsed.
type refFlag struct{ ref control.Ref }

func (r *refFlag) String() string {
	if r == nil || r.ref.Home == "" {
		return ""
	}
	return r.ref.String()
}

func (r *refFlag) Set(s string) error {
	ref, err := control.ParseRef(s)
	if err != nil {
		return errors.New("want HOME/COMPANION, e.g. acme/acme-emea")
	}
	r.ref = ref
	return nil
}

// dialer adds the Temporal connection flags, with defaults from the
// environment like the worker's, and returns what dials with them.
func (fs *flagSet) dialer() *dialer {
	env := fs.inv.getenv
	d := &dialer{inv: fs.inv}
	fs.StringVar(&d.opts.Address, "address", or(env("TEMPORAL_ADDRESS"), control.DefaultAddress), "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	fs.StringVar(&d.opts.Namespace, "namespace", or(env("TEMPORAL_NAMESPACE"), control.DefaultNamespace), "Temporal namespace (env TEMPORAL_NAMESPACE)")
	fs.StringVar(&d.opts.APIKey, "api-key", env("TEMPORAL_API_KEY"), "API key, e.g. for Temporal Cloud (env TEMPORAL_API_KEY)")
	fs.StringVar(&d.opts.TLSCert, "tls-cert", env("TEMPORAL_TLS_CERT"), "client certificate file for mTLS (env TEMPORAL_TLS_CERT)")
	fs.StringVar(&d.opts.TLSKey, "tls-key", env("TEMPORAL_TLS_KEY"), "client key file for mTLS (env TEMPORAL_TLS_KEY)")
	fs.StringVar(&d.opts.TLSCA, "tls-ca", env("TEMPORAL_TLS_CA"), "CA certificate file of the server (env TEMPORAL_TLS_CA)")
	fs.StringVar(&d.keys.KeyFile, "key-file", env(codec.KeyFileEnv), "payload key file of the workers (env COMPANIONSYNC_KEY_FILE; keys inline: env COMPANIONSYNC_KEYS; default DATA_DIR/codec.keys of the embedded default)")
	d.keys.Keys = env(codec.KeysEnv)
	fs.StringVar(&d.opts.Actor, "as", or(env("COMPANIONSYNC_ACTOR"), control.DefaultActor()), "who is asking, for the audit trail (env COMPANIONSYNC_ACTOR; default USER@HOST)")
	d.queryTimeout = control.DefaultQueryTimeout
	if v := env("COMPANIONSYNC_QUERY_TIMEOUT"); v != "" {
		t, err := time.ParseDuration(v)
		if err != nil || t <= 0 {
			d.badEnv = fmt.Errorf("starter: COMPANIONSYNC_QUERY_TIMEOUT=%q: want a positive duration such as 750ms or 5s", v)
		}
		d.queryTimeout = t
	}
	fs.DurationVar(&d.queryTimeout, "query-timeout", d.queryTimeout, "how long status waits for a worker before it shows the last published state (env COMPANIONSYNC_QUERY_TIMEOUT)")
	d.keys.DevKeyFile = filepath.Join(or(env("COMPANIONSYNC_DATA_DIR"), ".data"), "codec.keys")
	return d
}

// dialer dials Temporal once per invocation.
type dialer struct {
	inv  *invocation
	opts control.DialOptions
	keys codec.Source
	// queryTimeout bounds the wait for a worker's answer to a status query.
	queryTimeout time.Duration
	// badEnv is a malformed environment setting, reported by check.
	badEnv error
}

// check reports bad connection settings as a usage error, before anything
// is dialled.
func (d *dialer) check() error {
	if d.badEnv != nil {
		return usageError{err: d.badEnv}
	}
	if d.queryTimeout <= 0 {
		return usageError{err: errors.New("starter: --query-timeout (COMPANIONSYNC_QUERY_TIMEOUT) must be positive")}
	}
	if d.opts.Namespace == "" {
		return usageError{err: errors.New("starter: --namespace (TEMPORAL_NAMESPACE) is empty")}
	}
	if err := d.opts.Validate(); err != nil {
		return usageError{err: fmt.Errorf("starter: %w", err)}
	}
	return nil
}

// client dials Temporal and returns the typed client over it.
func (d *dialer) client(ctx context.Context) (*control.Client, error) {
	if d.inv.temporal == nil {
		d.opts.Logger = slog.New(slog.NewTextHandler(d.inv.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		// The workers' key ring; without one, payloads go as plaintext,
		// which a worker of an encrypted cluster cannot read.
		ring, _, err := d.keys.Load()
		if err != nil && !errors.Is(err, codec.ErrNoKeys) {
			return nil, err
		}
		d.opts.Keys = ring
		c, err := control.Dial(ctx, d.opts)
		if err != nil {
			return nil, err
		}
		d.inv.temporal, d.inv.keys = c, ring
	}
	return control.New(d.inv.temporal).WithQueryTimeout(d.queryTimeout).WithKeys(d.inv.keys), nil
}

// orgStore adds the --org-store flag: the worker's org store, by default
// $COMPANIONSYNC_ORG_STORE, else $COMPANIONSYNC_DATA_DIR/orgs.db, else
// .data/orgs.db.
func (fs *flagSet) orgStore() *string {
	env := fs.inv.getenv
	def := env("COMPANIONSYNC_ORG_STORE")
	if def == "" {
		def = filepath.Join(or(env("COMPANIONSYNC_DATA_DIR"), ".data"), "orgs.db")
	}
	return fs.String("org-store", def, "org store of the worker: a postgres:// URL or a SQLite file (env COMPANIONSYNC_ORG_STORE; default DATA_DIR/orgs.db with COMPANIONSYNC_DATA_DIR)")
}

// openStore opens the worker's org store; it refuses to create a new one.
func (inv *invocation) openStore(ctx context.Context, path string) (*orgstore.Store, error) {
	// A missing SQLite file means the worker never ran here; a PostgreSQL
	// database that cannot be reached is reported by Open.
	if !orgstore.IsURL(path) {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("org store %s does not exist: start the worker first (go run ./worker) or point --org-store (COMPANIONSYNC_ORG_STORE) at its orgs.db", path)
		}
	}
	s, err := orgstore.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	inv.store = s
	return s, nil
}

func or(v, def string) string {
	if strings.TrimSpace(v) == "" {
		return def
	}
	return v
}
