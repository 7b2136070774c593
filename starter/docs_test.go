package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/companionsync/companionsync/contract"
)

// The docs tests keep README.md and docs/*.md honest about the CLI: the
// README's quick tour runs as written, and every starter command and flag
// the docs name exists.

// tourStep is one command of the README's quick tour with the output lines
// the README shows under it.
type tourStep struct {
	args []string
	want []string
}

// readmeTour returns the steps of the code blocks under the README's
// "## Quick tour" heading: each "$ go run ./starter ARGS" line starts a
// step, and the lines up to the next one are the output it shows (lines
// starting with "# " are comments for the reader).
func readmeTour(t *testing.T) []tourStep {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(b), "\n## Quick tour\n")
	require.True(t, ok, `README.md has no "## Quick tour" section`)
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	var steps []tourStep
	for _, block := range fencedBlocks(section) {
		for _, line := range strings.Split(block, "\n") {
			if cmd, ok := strings.CutPrefix(line, "$ go run ./starter "); ok {
				steps = append(steps, tourStep{args: strings.Fields(cmd)})
				continue
			}
			if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "# ") {
				continue // a blank line or a comment for the reader
			}
			require.NotEmpty(t, steps, "output line before any command in the quick tour: %q", line)
			steps[len(steps)-1].want = append(steps[len(steps)-1].want, line)
		}
	}
	return steps
}

// fencedBlocks returns the contents of the ``` blocks of markdown text.
func fencedBlocks(text string) []string {
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			if in {
				blocks = append(blocks, strings.Join(cur, "\n"))
				cur = nil
			}
			in = !in
			continue
		}
		if in {
			cur = append(cur, line)
		}
	}
	return blocks
}

// squash collapses runs of spaces, so that a README line matches the
// output whatever the column widths.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

// TestReadmeQuickTour runs the README's quick tour, command by command,
// against a test server with the seeded demo orgs. A step passes when its
// exit code is the one the README implies (1 when it shows a line starting
// with "starter:", the one-line refusal, else 0) and every line the README
// shows under it appears in its output, spaces squashed. status and list
// read state that settles in the background (the copy, the first metadata
// round, visibility), so they are run again until their lines appear, as a
// reader would run them again; every other step runs once. watch runs until
// Ctrl-C, so it is skipped here, and the tour shows no output for it.
func TestReadmeQuickTour(t *testing.T) {
	steps := readmeTour(t)
	require.GreaterOrEqual(t, len(steps), 5, "quick tour steps")
	c := newCLI(t)
	var ran, lines int
	for _, s := range steps {
		cmd := strings.Join(s.args, " ")
		if s.args[0] == "watch" {
			require.Empty(t, s.want, "watch never returns; the tour shows no output for it")
			t.Logf("skipped (runs until Ctrl-C): starter %s", cmd)
			continue
		}
		wantCode := 0
		for _, w := range s.want {
			if strings.HasPrefix(w, "starter:") {
				wantCode = 1
			}
		}
		again := s.args[0] == "status" || s.args[0] == "list"
		deadline := time.Now().Add(time.Minute)
		for {
			r := c.run(s.args...)
			out := squash(r.stdout + "\n" + r.stderr)
			var missing []string
			for _, w := range s.want {
				if !strings.Contains(out, squash(w)) {
					missing = append(missing, w)
				}
			}
			if again && len(missing) > 0 && time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			assert.Equal(t, wantCode, r.code, "starter %s: exit code; stdout %q stderr %q", cmd, r.stdout, r.stderr)
			assert.Empty(t, missing, "starter %s: lines the README shows are missing from its output:\n%s%s", cmd, r.stdout, r.stderr)
			break
		}
		ran++
		lines += len(s.want)
	}
	assert.Greater(t, ran, 0)
	assert.Greater(t, lines, 0)
	t.Logf("ran %d quick tour commands, checked %d output lines", ran, lines)
}

// TestReadmeTourStatusNames checks the tour shows status names as the
// workflows spell them: every "Status" line of the tour names one of them.
func TestReadmeTourStatusNames(t *testing.T) {
	names := map[string]bool{}
	for _, s := range []contract.ConnectionStatus{contract.Connecting, contract.Incomplete, contract.Active, contract.Inactive, contract.Disconnected} {
		names[string(s)] = true
	}
	var checked int
	for _, s := range readmeTour(t) {
		for _, w := range s.want {
			if v, ok := strings.CutPrefix(w, "Status "); ok {
				assert.True(t, names[strings.TrimSpace(v)], "README tour: %q is not a connection status name", w)
				checked++
			}
		}
	}
	assert.Greater(t, checked, 0, "the tour shows no Status line")
}

// cliHelp is what the CLI's own help says exists: its commands (demo
// subcommands as "demo NAME") and each command's flags.
type cliHelp map[string]map[string]bool

var (
	// overviewLine is a command line of 'starter help' or 'starter demo'.
	overviewLine = regexp.MustCompile(`^  ([a-z][a-z-]*)\s{2,}`)
	// flagLine is a flag line of 'starter COMMAND -h'.
	flagLine = regexp.MustCompile(`^  -([a-z][a-z-]*)\b`)
)

// helpOf runs starter with args and returns its standard output.
func helpOf(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr)
	require.Contains(t, []int{0, 2}, code, "starter %v: stderr %q", args, stderr.String())
	return stdout.String() + stderr.String()
}

// readHelp builds cliHelp from 'starter help', 'starter demo' and
// 'starter COMMAND -h'.
func readHelp(t *testing.T) cliHelp {
	t.Helper()
	h := cliHelp{"help": {}}
	commands := func(args ...string) []string {
		var names []string
		for _, line := range strings.Split(helpOf(t, args...), "\n") {
			if m := overviewLine.FindStringSubmatch(line); m != nil {
				names = append(names, m[1])
			}
		}
		require.NotEmpty(t, names, "starter %v lists no command", args)
		return names
	}
	flags := func(args ...string) map[string]bool {
		set := map[string]bool{"h": true, "help": true}
		for _, line := range strings.Split(helpOf(t, append(args, "-h")...), "\n") {
			if m := flagLine.FindStringSubmatch(line); m != nil {
				set[m[1]] = true
			}
		}
		require.Greater(t, len(set), 2, "starter %v -h lists no flag", args)
		return set
	}
	for _, name := range commands("help") {
		if name == "demo" {
			h["demo"] = map[string]bool{}
			for _, sub := range commands("demo") {
				h["demo "+sub] = flags("demo", sub)
			}
			continue
		}
		h[name] = flags(name)
	}
	return h
}

// starterCall finds "starter WORD" in a line of code: the CLI binary, run
// as 'starter', './starter' or 'go run ./starter'.
var starterCall = regexp.MustCompile(`(?:^|[\s'"(/])starter ([a-z][a-z-]*)(.*)`)

// subcommand is a word that names a demo subcommand (not "…" or a flag).
var subcommand = regexp.MustCompile(`^[a-z][a-z-]*$`)

// flagWord is a flag of a command line: -name or --name, before any "=".
var flagWord = regexp.MustCompile(`^--?([a-z][a-z-]*)(?:=.*)?$`)

// codeOf returns the code in markdown text: the lines of fenced blocks and
// the contents of inline `code` spans.
func codeOf(text string) []string {
	code := fencedBlocks(text)
	var prose []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			continue
		}
		if !in {
			prose = append(prose, line)
		}
	}
	spans := regexp.MustCompile("`([^`]+)`")
	for _, m := range spans.FindAllStringSubmatch(strings.Join(prose, "\n"), -1) {
		code = append(code, m[1])
	}
	var lines []string
	for _, c := range code {
		lines = append(lines, strings.Split(c, "\n")...)
	}
	return lines
}

// TestDocsNameRealCommandsAndFlags checks every starter command and flag
// that README.md and docs/*.md name in code (a block or a `span`) against
// the CLI's own help: 'starter help', 'starter demo' and each command's -h.
// A flag counts as named when it follows "starter COMMAND" on the same code
// line, up to the end of the line or a shell separator.
func TestDocsNameRealCommandsAndFlags(t *testing.T) {
	help := readHelp(t)
	files, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	require.NoError(t, err)
	files = append([]string{filepath.Join("..", "README.md")}, files...)
	var checks int
	var bad []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, line := range codeOf(string(b)) {
			for _, m := range starterCall.FindAllStringSubmatch(line, -1) {
				name, rest := m[1], m[2]
				words := strings.Fields(rest)
				if name == "demo" && len(words) > 0 && subcommand.MatchString(words[0]) {
					name, words = "demo "+words[0], words[1:]
				}
				checks++
				flags, ok := help[name]
				if !ok {
					bad = append(bad, fmt.Sprintf("%s: starter %s: no such command (%q)", filepath.Base(f), name, line))
					continue
				}
				for _, w := range words {
					if strings.ContainsAny(w, "|;&>`'") || w == "#" {
						break // the end of this command on the line
					}
					fm := flagWord.FindStringSubmatch(w)
					if fm == nil {
						continue
					}
					checks++
					if !flags[fm[1]] {
						bad = append(bad, fmt.Sprintf("%s: starter %s has no flag %s (%q)", filepath.Base(f), name, w, line))
					}
				}
			}
		}
	}
	assert.Empty(t, bad, "commands and flags the docs name that the CLI does not have")
	assert.Greater(t, checks, 0, "no starter command found in the docs")
	t.Logf("checked %d starter commands and flags in %d files", checks, len(files))
}
