package companionsync_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// TestDocsLinksResolve: every relative link in README.md and docs/*.md
// names a file of the repository and, into a Markdown file, one of its
// headings.
func TestDocsLinksResolve(t *testing.T) {
	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "README.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	checked := 0
	for _, file := range files {
		text := readFile(t, file)
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			resolved := file
			if path != "" {
				resolved = filepath.Join(filepath.Dir(file), path)
			}
			checked++
			if _, err := os.Stat(resolved); err != nil {
				t.Errorf("%s: link %s: no file %s", file, target, resolved)
				continue
			}
			if anchor != "" && strings.HasSuffix(resolved, ".md") && !headingAnchors(readFile(t, resolved))[anchor] {
				t.Errorf("%s: link %s: %s has no heading #%s", file, target, resolved, anchor)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d relative links found: the link pattern no longer matches the docs", checked)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// headingAnchors returns the anchors a Markdown renderer gives the headings
// of text outside code blocks: lower case, spaces to hyphens, other
// punctuation dropped.
func headingAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	inCode := false
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
			continue
		}
		heading, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if inCode || !strings.HasPrefix(line, "#") || !ok {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(heading) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		anchors[b.String()] = true
	}
	return anchors
}
