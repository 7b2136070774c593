package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/contract"
	"github.com/companionsync/companionsync/control"
	"github.com/companionsync/companionsync/internal/testenv"
)

// envRunMain makes the test binary run the worker's real main (see TestMain),
// so a test can send it real signals.
const envRunMain = "COMPANIONSYNC_WORKER_RUN_MAIN"

func TestMain(m *testing.M) {
	if args := os.Getenv(envRunMain); args != "" {
		os.Args = append([]string{"worker"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startMainProcess runs the real main in a child process on dataDir.
func startMainProcess(t *testing.T, dataDir string) (*exec.Cmd, *syncBuffer, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRunMain+"=-data-dir "+dataDir+
		" -dev-frontend 127.0.0.1:0 -dev-ui 127.0.0.1:0 -metrics-addr 127.0.0.1:0 -codec-addr 127.0.0.1:0 -seed-records 2000"+
		" -health-check-interval 1s -metadata-sync-interval 1s -log-level info")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	testenv.Eventually(t, 2*time.Minute, "worker process ready", func() bool { return strings.Contains(out.String(), "ready") })
	m := frontendLine.FindStringSubmatch(out.String())
	require.NotNil(t, m, "frontend address in %q", out.String())
	return cmd, out, m[1]
}

// TestInterruptStopsCleanlyAndRestartContinues sends SIGINT to the real
// worker process: it shuts down in order and exits 0; started again on the
// same data dir, the connection it held is still there and working.
func TestInterruptStopsCleanlyAndRestartContinues(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	ref := control.Ref{Home: "acme", Companion: "acme-emea"}

	cmd, out, frontend := startMainProcess(t, dir)
	c, err := control.Dial(ctx, control.DialOptions{Address: frontend, Keys: devKeys(t, dir)})
	require.NoError(t, err)
	cs := control.New(c)
	_, err = cs.Connect(ctx, ref, contract.Settings{})
	require.NoError(t, err)
	_, err = cs.Share(ctx, ref, "default")
	require.NoError(t, err)
	c.Close()

	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "exit status after SIGINT; output:\n%s", out.String())
	case <-time.After(time.Minute):
		t.Fatalf("worker did not exit within a minute of SIGINT; output:\n%s", out.String())
	}
	assert.Contains(t, out.String(), "shutting down")

	_, _, frontend = startMainProcess(t, dir)
	c, err = control.Dial(ctx, control.DialOptions{Address: frontend, Keys: devKeys(t, dir)})
	require.NoError(t, err)
	defer c.Close()
	cs = control.New(c)
	testenv.Eventually(t, time.Minute, "default Active after the restart", func() bool {
		v, err := cs.Status(ctx, ref)
		return err == nil && len(v.DataSpaces) == 1 && v.DataSpaces[0].InitializationStatus == contract.ShareActive
	})
	v, err := cs.Disconnect(ctx, ref, true)
	require.NoError(t, err)
	assert.Equal(t, contract.Disconnected, v.Status)
}
