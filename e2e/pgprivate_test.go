//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// privatePostgres is a PostgreSQL server of the test's own: a data
// directory made by initdb in a temporary directory, trust authentication
// on loopback, a free port. A test may restart it; the machine's server,
// which other packages' tests use at the same time, is never touched.
type privatePostgres struct {
	bin, dir string
	port     int
	// Admin is the URL of its maintenance database, as a superuser.
	Admin string
	// asUser runs a PostgreSQL program: as the postgres account when the
	// test runs as root (initdb and the server refuse root).
	asUser []string
}

// startPrivatePostgres starts a private server, stopped and removed when
// the test ends. It returns an error, and starts nothing, on a machine
// without PostgreSQL's programs.
func startPrivatePostgres(t testing.TB) (*privatePostgres, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("", "companionsync-pg-")
	if err != nil {
		return nil, err
	}
	p := &privatePostgres{bin: bin, dir: filepath.Join(root, "data"), port: ports[0]}
	p.Admin = fmt.Sprintf("postgres://root@127.0.0.1:%d/postgres?sslmode=disable", p.port)
	if os.Geteuid() == 0 {
		account, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(root)
			return nil, fmt.Errorf("running as root and no postgres account to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(account.Uid)
		gid, _ := strconv.Atoi(account.Gid)
		if err := os.Chown(root, uid, gid); err != nil {
			os.RemoveAll(root)
			return nil, err
		}
		p.asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	t.Cleanup(func() {
		_ = p.run("pg_ctl", "stop", "-D", p.dir, "-m", "immediate", "-w")
		os.RemoveAll(root)
	})
	if err := p.run("initdb", "-D", p.dir, "-U", "root", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, err
	}
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

// postgresBinDir finds PostgreSQL's programs: pg_config's bindir, or the
// newest of Debian's /usr/lib/postgresql/*/bin.
func postgresBinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("no PostgreSQL programs (initdb, pg_ctl) on this machine")
}

func (p *privatePostgres) run(program string, args ...string) error {
	argv := append(append(slices.Clone(p.asUser), filepath.Join(p.bin, program)), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", program, err, tailLines(string(out), 5))
	}
	return nil
}

// start starts the server and waits until it accepts connections.
func (p *privatePostgres) start() error {
	opts := strings.Join([]string{
		"-p", strconv.Itoa(p.port), "-k", filepath.Dir(p.dir),
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=400",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
	}, " ")
	if err := p.run("pg_ctl", "start", "-D", p.dir, "-w", "-t", "60", "-l", filepath.Join(filepath.Dir(p.dir), "postgres.log"), "-o", opts); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, p.Admin)
		if err == nil {
			return conn.Close(ctx)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("private PostgreSQL on port %d: %w", p.port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Restart stops the server the way an operator's restart does (fast
// shutdown: every session is ended), keeps it down for down, and starts it
// again.
func (p *privatePostgres) Restart(down time.Duration) error {
	if err := p.run("pg_ctl", "stop", "-D", p.dir, "-m", "fast", "-w", "-t", "60"); err != nil {
		return err
	}
	time.Sleep(down) // the outage itself: nothing to await
	return p.start()
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
