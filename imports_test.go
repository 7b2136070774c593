package companionsync_test

import (
	"go/build"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const modulePath = "github.com/companionsync/companionsync"

// TestImportRules checks the README's layout table against the code: each
// folder imports only the module packages its "what it may import" column
// names, and a folder the column says uses no Temporal imports none. A new
// import across the layers fails here until the table (and the design)
// says it is allowed.
func TestImportRules(t *testing.T) {
	rules := layoutRules(t)
	if len(rules) < 10 {
		t.Fatalf("read %d rows from the README's layout table; want every folder", len(rules))
	}
	checked := 0
	for folder, rule := range rules {
		if rule.testsOnly {
			continue
		}
		dir := strings.TrimSuffix(folder, "/")
		pkg, err := build.Default.ImportDir(dir, 0)
		if err != nil {
			t.Errorf("%s: %v", folder, err)
			continue
		}
		checked++
		for _, imp := range pkg.Imports {
			switch {
			case imp == modulePath || strings.HasPrefix(imp, modulePath+"/"):
				target := strings.TrimPrefix(strings.TrimPrefix(imp, modulePath), "/")
				if target == "" {
					target = "."
				} else {
					target += "/"
				}
				if !slices.Contains(rule.module, target) {
					t.Errorf("%s imports %s, which its row of the README's layout table does not allow", folder, target)
				}
			case rule.noTemporal && strings.HasPrefix(imp, "go.temporal.io/"):
				t.Errorf("%s imports %s, but the README's layout table says it uses no Temporal", folder, imp)
			}
		}
	}
	if checked != len(rules)-1 { // e2e/ holds tests only
		t.Errorf("checked %d of %d folders", checked, len(rules))
	}
}

type layoutRule struct {
	module     []string // module folders it may import: ".", "activities/", …
	noTemporal bool
	testsOnly  bool
}

var backticked = regexp.MustCompile("`([^`]+)`")

// layoutRules reads the README's layout table: folder → what it may import.
func layoutRules(t *testing.T) map[string]layoutRule {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "| folder | what it holds | what it may import |")
	if !ok {
		t.Fatal("README.md has no layout table")
	}
	rules := map[string]layoutRule{}
	for _, line := range strings.Split(table, "\n")[2:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			t.Fatalf("layout row %q: want three cells", line)
		}
		folders := backticked.FindStringSubmatch(cells[1])
		if folders == nil {
			t.Fatalf("layout row %q: no folder", line)
		}
		folder := folders[1]
		may := cells[3]
		var rule layoutRule
		rule.noTemporal = strings.Contains(may, "no Temporal")
		rule.testsOnly = strings.TrimSpace(may) == "tests only"
		for _, m := range backticked.FindAllStringSubmatch(may, -1) {
			rule.module = append(rule.module, m[1])
		}
		if _, err := os.Stat(filepath.Join(".", strings.TrimSuffix(folder, "/"))); err != nil {
			t.Errorf("layout row names %s, which does not exist", folder)
		}
		rules[folder] = rule
	}
	return rules
}

// TestContractIsALeaf: the contract imports the domain package, the
// standard library and the two Temporal packages its keys and statuses are
// typed with; nothing else, so any package may depend on it.
func TestContractIsALeaf(t *testing.T) {
	allowed := map[string]bool{
		modulePath:                    true,
		"go.temporal.io/sdk/temporal": true,
		"go.temporal.io/api/enums/v1": true,
	}
	pkg, err := build.Default.ImportDir("contract", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkg.Imports) == 0 {
		t.Fatal("read no imports of contract/")
	}
	for _, imp := range pkg.Imports {
		if strings.Contains(imp, ".") && !allowed[imp] {
			t.Errorf("contract/ imports %s; it may import only the domain package, the standard library, the SDK's temporal package and the API's enums", imp)
		}
	}
}
