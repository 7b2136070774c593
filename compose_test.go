package companionsync_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// composeFile is the part of docker-compose.yml the checks below read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	Build       any            `yaml:"build"`
	Environment any            `yaml:"environment"` // map or list of KEY=VALUE
	DependsOn   any            `yaml:"depends_on"`  // list or map
	Healthcheck map[string]any `yaml:"healthcheck"`
	Entrypoint  any            `yaml:"entrypoint"`
	Command     any            `yaml:"command"`
	Ports       []any          `yaml:"ports"`
	Volumes     []string       `yaml:"volumes"`
}

func (s composeService) env() map[string]string {
	out := map[string]string{}
	switch e := s.Environment.(type) {
	case map[string]any:
		for k, v := range e {
			if v != nil {
				out[k] = fmt.Sprint(v)
			}
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(fmt.Sprint(kv), "=")
			out[k] = v
		}
	}
	return out
}

// dependsOn maps each dependency to its condition; the short (list) syntax
// means service_started.
func (s composeService) dependsOn() map[string]string {
	out := map[string]string{}
	switch d := s.DependsOn.(type) {
	case []any:
		for _, name := range d {
			out[fmt.Sprint(name)] = "service_started"
		}
	case map[string]any:
		for name, v := range d {
			cond := "service_started"
			if m, ok := v.(map[string]any); ok && m["condition"] != nil {
				cond = fmt.Sprint(m["condition"])
			}
			out[name] = cond
		}
	}
	return out
}

// script is the service's entrypoint and command as one string.
func (s composeService) script() string {
	var parts []string
	for _, v := range []any{s.Entrypoint, s.Command} {
		switch c := v.(type) {
		case string:
			parts = append(parts, c)
		case []any:
			for _, p := range c {
				parts = append(parts, fmt.Sprint(p))
			}
		}
	}
	return strings.Join(parts, " ")
}

// splitImage splits "repo:tag"; a missing tag is "latest".
func splitImage(image string) (repo, tag string) {
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i], image[i+1:]
	}
	return image, "latest"
}

// moduleVersions reads the versions go.mod requires of the given modules.
func moduleVersions(t *testing.T, paths ...string) map[string]string {
	t.Helper()
	data, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, p := range paths {
		want[p] = true
	}
	out := map[string]string{}
	inRequire := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "//")
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			continue
		case f[0] == "require" && len(f) == 2 && f[1] == "(":
			inRequire = true
			continue
		case inRequire && f[0] == ")":
			inRequire = false
			continue
		case f[0] == "replace" && len(f) > 1 && want[f[1]]:
			t.Fatalf("go.mod replaces %s; the image tags cannot follow a replacement", f[1])
		case f[0] == "require" && len(f) == 3:
			f = f[1:]
		case !inRequire:
			continue
		}
		if len(f) >= 2 && want[f[0]] {
			out[f[0]] = f[1]
		}
	}
	for _, p := range paths {
		if out[p] == "" {
			t.Fatalf("go.mod does not require %s", p)
		}
	}
	return out
}

// contractSearchAttributes finds the temporal.NewSearchAttributeKey<Type>("Name")
// calls in the non-test files of workflows/.
func contractSearchAttributes(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("contract", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 1 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			typ, ok := strings.CutPrefix(sel.Sel.Name, "NewSearchAttributeKey")
			if !ok || typ == "" {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: %s with a non-literal name", fset.Position(call.Pos()), sel.Sel.Name)
				return true
			}
			attr, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			out[attr] = typ
			return true
		})
	}
	if len(out) == 0 {
		t.Fatal("no NewSearchAttributeKey* calls found in contract/")
	}
	return out
}

// readCompose parses docker-compose.yml.
func readCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(data, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return cf
}

// TestComposePins checks docker-compose.yml against go.mod and the
// deployment pattern it follows: the Temporal images carry the versions the
// module builds against, no auto-setup image, no tctl, schema job before
// server, workers on the PostgreSQL org store.
func TestComposePins(t *testing.T) {
	cf := readCompose(t)
	if len(cf.Services) == 0 {
		t.Fatal("docker-compose.yml has no services")
	}
	names := make([]string, 0, len(cf.Services))
	for name := range cf.Services {
		names = append(names, name)
	}
	sort.Strings(names)

	const (
		serverModule = "go.temporal.io/server"
		uiModule     = "github.com/temporalio/ui-server/v2"
		serverImage  = "temporalio/server"
		toolsImage   = "temporalio/admin-tools"
		uiImage      = "temporalio/ui"
	)
	mods := moduleVersions(t, serverModule, uiModule)
	wantTag := map[string]string{
		serverImage: strings.TrimPrefix(mods[serverModule], "v"),
		toolsImage:  strings.TrimPrefix(mods[serverModule], "v"),
		uiImage:     strings.TrimPrefix(mods[uiModule], "v"),
	}
	// byImage lists the services of each image repository.
	byImage := map[string][]string{}
	for _, name := range names {
		if img := cf.Services[name].Image; img != "" {
			repo, _ := splitImage(img)
			byImage[repo] = append(byImage[repo], name)
		}
	}

	t.Run("image tags follow go.mod", func(t *testing.T) {
		for repo, tag := range wantTag {
			if len(byImage[repo]) == 0 {
				t.Errorf("no service uses %s (want tag %s)", repo, tag)
			}
		}
		for _, name := range names {
			img := cf.Services[name].Image
			if img == "" {
				continue
			}
			repo, tag := splitImage(img)
			if strings.Contains(repo, "auto-setup") {
				t.Errorf("service %s uses %s: auto-setup is deprecated (not built after 1.29); use temporalio/server with a schema job", name, img)
			}
			if want, ok := wantTag[repo]; ok && tag != want {
				t.Errorf("service %s uses %s, want tag %s (go.mod: %s %s, %s %s)", name, img, want,
					serverModule, mods[serverModule], uiModule, mods[uiModule])
			}
		}
	})

	t.Run("healthchecks do not use tctl", func(t *testing.T) {
		for _, name := range names {
			hc := cf.Services[name].Healthcheck
			if hc == nil {
				continue
			}
			if test := fmt.Sprint(hc["test"]); strings.Contains(test, "tctl") {
				t.Errorf("service %s: healthcheck %s uses tctl, which no current image ships", name, test)
			}
		}
	})

	t.Run("server waits for the schema job", func(t *testing.T) {
		for _, server := range byImage[serverImage] {
			ok := false
			for dep, cond := range cf.Services[server].dependsOn() {
				svc, found := cf.Services[dep]
				if !found {
					t.Errorf("service %s depends on unknown service %s", server, dep)
					continue
				}
				repo, _ := splitImage(svc.Image)
				script := svc.script()
				if repo != toolsImage || !strings.Contains(script, "temporal-sql-tool") || !strings.Contains(script, "update-schema") {
					continue
				}
				if cond != "service_completed_successfully" {
					t.Errorf("service %s depends on schema job %s with condition %s, want service_completed_successfully", server, dep, cond)
				}
				for _, dir := range []string{
					"/etc/temporal/schema/postgresql/v12/temporal/versioned",
					"/etc/temporal/schema/postgresql/v12/visibility/versioned",
				} {
					if !strings.Contains(script, dir) {
						t.Errorf("schema job %s does not update-schema from %s", dep, dir)
					}
				}
				ok = true
			}
			if !ok {
				t.Errorf("service %s does not depend on a %s job that runs temporal-sql-tool update-schema", server, toolsImage)
			}
		}
	})

	t.Run("workers use the PostgreSQL org store", func(t *testing.T) {
		workers := 0
		for _, name := range names {
			svc := cf.Services[name]
			store, set := svc.env()["COMPANIONSYNC_ORG_STORE"]
			if svc.Build == nil && !set {
				continue
			}
			workers++
			u, err := url.Parse(store)
			if !set || err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
				t.Errorf("service %s: COMPANIONSYNC_ORG_STORE=%q, want a postgres:// URL (a path means SQLite)", name, store)
				continue
			}
			if _, ok := cf.Services[u.Hostname()]; !ok {
				t.Errorf("service %s: org store host %q is not a service of the file", name, u.Hostname())
			}
			if strings.Trim(u.Path, "/") == "" {
				t.Errorf("service %s: org store URL %q names no database", name, store)
			}
		}
		if workers == 0 {
			t.Error("no worker service (build: or COMPANIONSYNC_ORG_STORE) found")
		}
	})

	t.Run("namespace job registers the contract's search attributes", func(t *testing.T) {
		attrs := contractSearchAttributes(t)
		for _, name := range names {
			svc := cf.Services[name]
			ns := svc.env()["TEMPORAL_NAMESPACE"]
			if ns == "" {
				continue
			}
			var job string
			for dep, cond := range svc.dependsOn() {
				if cond == "service_completed_successfully" && strings.Contains(cf.Services[dep].script(), "search-attribute create") {
					job = dep
				}
			}
			if job == "" {
				t.Errorf("service %s does not wait for a job that runs search-attribute create", name)
				continue
			}
			script := strings.Join(strings.Fields(strings.ReplaceAll(cf.Services[job].script(), "\\\n", " ")), " ")
			if !strings.Contains(script, "namespace create") || !strings.Contains(script, "--namespace "+ns) {
				t.Errorf("job %s does not create namespace %q of service %s", job, ns, name)
			}
			for attr, typ := range attrs {
				if !strings.Contains(script, "--name "+attr+" --type "+typ) {
					t.Errorf("job %s does not create search attribute %s (%s)", job, attr, typ)
				}
			}
		}
	})

	t.Run("ports are published on loopback only", func(t *testing.T) {
		loopback := regexp.MustCompile(`^(127\.0\.0\.1|\[::1\]):`)
		for _, name := range names {
			for _, p := range cf.Services[name].Ports {
				switch p := p.(type) {
				case map[string]any:
					if ip := fmt.Sprint(p["host_ip"]); ip != "127.0.0.1" && ip != "::1" {
						t.Errorf("service %s publishes %v beyond loopback", name, p)
					}
				default:
					if s := fmt.Sprint(p); !loopback.MatchString(s) {
						t.Errorf("service %s publishes %q beyond loopback", name, s)
					}
				}
			}
		}
	})

	t.Run("docker compose config", func(t *testing.T) {
		docker, err := exec.LookPath("docker")
		if err != nil {
			t.Skip("no docker CLI on PATH")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, docker, "compose", "version").CombinedOutput(); err != nil {
			t.Skipf("docker CLI has no compose plugin: %s", strings.TrimSpace(firstLine(out)))
		}
		out, err := exec.CommandContext(ctx, docker, "compose", "-f", "docker-compose.yml", "config", "-q").CombinedOutput()
		if err != nil {
			t.Errorf("docker compose config -q: %v\n%s", err, out)
		}
	})
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// TestComposeMonitoring: Prometheus and Grafana are provisioned with the
// project's alert rules, scrape configuration and dashboard, and every
// file they mount exists.
func TestComposeMonitoring(t *testing.T) {
	cf := readCompose(t)
	mounted := map[string]bool{}
	for _, name := range []string{"prometheus", "grafana"} {
		svc, ok := cf.Services[name]
		if !ok {
			t.Fatalf("no %s service", name)
		}
		if !strings.Contains(svc.Image, ":") || strings.HasSuffix(svc.Image, ":latest") {
			t.Errorf("%s: image %q is not pinned", name, svc.Image)
		}
		for _, v := range svc.Volumes {
			src := strings.SplitN(v, ":", 2)[0]
			if !strings.HasPrefix(src, "./") {
				continue // a named volume
			}
			if _, err := os.Stat(src); err != nil {
				t.Errorf("%s mounts %s: %v", name, src, err)
			}
			mounted[filepath.Clean(src)] = true
		}
	}
	for _, want := range []string{"deploy/prometheus/alerts.yml", "deploy/prometheus/prometheus.yml", "deploy/grafana/provisioning", "deploy/grafana/dashboards"} {
		if !mounted[want] {
			t.Errorf("%s is not mounted", want)
		}
	}
}
