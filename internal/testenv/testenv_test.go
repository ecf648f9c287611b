package testenv

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// makefileTools reads the Makefile's DEB_TOOLS (command:package pairs), DEB_LAB
// (file:package pairs, the file named as its command) and
// the commands its tools target installs with `go install`.
func makefileTools(t *testing.T) (deb map[string]string, goTools map[string]bool) {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	m := regexp.MustCompile(`(?m)^DEB_TOOLS\s*:?=(.*)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("the Makefile has no DEB_TOOLS line")
	}
	deb = map[string]string{}
	for _, pair := range strings.Fields(m[1]) {
		cmd, pkg, ok := strings.Cut(pair, ":")
		if !ok {
			t.Fatalf("DEB_TOOLS entry %q: want command:package", pair)
		}
		deb[cmd] = pkg
	}
	// DEB_LAB pairs a file each package installs with the package (the
	// lab's services are not all on PATH); the file's name is the command.
	if m := regexp.MustCompile(`(?m)^DEB_LAB\s*:?=(.*)$`).FindStringSubmatch(text); m != nil {
		for _, pair := range strings.Fields(m[1]) {
			file, pkg, ok := strings.Cut(pair, ":")
			if !ok {
				t.Fatalf("DEB_LAB entry %q: want file:package", pair)
			}
			deb[path.Base(file)] = pkg
		}
	}
	goTools = map[string]bool{}
	for _, m := range regexp.MustCompile(`go install (\S+)@`).FindAllStringSubmatch(text, -1) {
		goTools[path.Base(m[1])] = true
	}
	return deb, goTools
}

// Every registered command is installed by make, from the package the
// registry names, and the Makefile installs no command the registry lacks.
func TestToolsAreInstalledByMake(t *testing.T) {
	deb, goTools := makefileTools(t)
	if len(deb) < 5 || !goTools["grpcurl"] {
		t.Fatalf("parsed too little from the Makefile: DEB_TOOLS %v, go tools %v", deb, goTools)
	}
	for _, name := range Names() {
		src := Tools[name]
		switch {
		case src.Base:
			if deb[name] != "" || goTools[name] {
				t.Errorf("%s is marked Base but the Makefile installs it; drop one", name)
			}
		case src.GoTool:
			if !goTools[name] {
				t.Errorf("%s: `make tools` does not go install it; add it to the Makefile's tools target", name)
			}
		case deb[name] != src.Deb:
			t.Errorf("%s: testenv.Tools says Debian package %q, the Makefile's DEB_TOOLS says %q; add %s:%s to DEB_TOOLS",
				name, src.Deb, deb[name], name, src.Deb)
		}
	}
	for cmd, pkg := range deb {
		if src, ok := Tools[cmd]; !ok || src.Deb != pkg {
			t.Errorf("DEB_TOOLS has %s:%s, testenv.Tools has %+v; keep the two equal", cmd, pkg, src)
		}
	}
}

// commandSites finds, in the Go files under dir, every string literal used
// as the command of exec.Command, exec.CommandContext or exec.LookPath, or
// passed where a function forwards one of its parameters to those (found
// to a fixpoint, so run(t, "fio") through runTool through exec counts).
func commandSites(t *testing.T, fset *token.FileSet, files map[string][]*ast.File) map[string][]string {
	t.Helper()
	// wrapper key: package directory's base name + "." + function name.
	wrappers := map[string]int{"exec.Command": 0, "exec.CommandContext": 1, "exec.LookPath": 0}
	callee := func(pkg string, call *ast.CallExpr) string {
		switch f := call.Fun.(type) {
		case *ast.Ident:
			return pkg + "." + f.Name
		case *ast.SelectorExpr:
			if x, ok := f.X.(*ast.Ident); ok {
				return x.Name + "." + f.Sel.Name
			}
		}
		return ""
	}
	for changed := true; changed; {
		changed = false
		for dir, fs := range files {
			pkg := filepath.Base(dir)
			for _, f := range fs {
				for _, d := range f.Decls {
					fn, ok := d.(*ast.FuncDecl)
					if !ok || fn.Body == nil || fn.Recv != nil {
						continue
					}
					key := pkg + "." + fn.Name.Name
					if _, ok := wrappers[key]; ok {
						continue
					}
					var params []string
					for _, field := range fn.Type.Params.List {
						for _, n := range field.Names {
							params = append(params, n.Name)
						}
					}
					ast.Inspect(fn.Body, func(n ast.Node) bool {
						call, ok := n.(*ast.CallExpr)
						if !ok {
							return true
						}
						i, ok := wrappers[callee(pkg, call)]
						if !ok || i >= len(call.Args) {
							return true
						}
						if id, ok := call.Args[i].(*ast.Ident); ok {
							if p := slices.Index(params, id.Name); p >= 0 {
								wrappers[key] = p
								changed = true
								return false
							}
						}
						return true
					})
				}
			}
		}
	}
	sites := map[string][]string{}
	for dir, fs := range files {
		pkg := filepath.Base(dir)
		for _, f := range fs {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				i, ok := wrappers[callee(pkg, call)]
				if !ok || i >= len(call.Args) {
					return true
				}
				if lit, ok := call.Args[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					name, err := strconv.Unquote(lit.Value)
					if err == nil {
						sites[name] = append(sites[name], fset.Position(lit.Pos()).String())
					}
				}
				return true
			})
		}
	}
	return sites
}

func parseTree(t *testing.T, root string) (*token.FileSet, map[string][]*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	files := map[string][]*ast.File{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".pb.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files[filepath.Dir(p)] = append(files[filepath.Dir(p)], f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fset, files
}

// Every command the repository's Go code runs by name is registered, and so
// (TestToolsAreInstalledByMake) installed by make.
func TestSourcesRunOnlyRegisteredTools(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	fset, files := parseTree(t, root)
	sites := commandSites(t, fset, files)
	// The scan must see the commands we know tests run, or it proves nothing.
	for _, known := range []string{"nft", "ip", "qemu-io", "fio", "nbdcopy", "grpcurl", "journalctl", "promtool", "go"} {
		if len(sites[known]) == 0 {
			t.Errorf("the scan found no call running %q; it has gone blind (found %v)", known, sites)
		}
	}
	for name, where := range sites {
		if _, ok := Tools[name]; !ok {
			t.Errorf("%q is run at %s but is not in testenv.Tools; register it and add it to the Makefile's DEB_TOOLS", name, strings.Join(where, ", "))
		}
	}
}

// The scanner follows wrappers: a new command passed through a helper is
// caught, not only a direct exec.Command.
func TestCommandSitesFollowWrappers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pkg")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := `package pkg
import "os/exec"
func runIt(t any, name string, args ...string) { exec.Command(name, args...).Run() }
func mustRun(t any, name string) { runIt(t, name) }
func use() { mustRun(nil, "brand-new-tool"); exec.Command("direct-tool").Run(); exec.LookPath("looked-up") }
`
	if err := os.WriteFile(filepath.Join(dir, "a.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	fset, files := parseTree(t, dir)
	sites := commandSites(t, fset, files)
	for _, want := range []string{"brand-new-tool", "direct-tool", "looked-up"} {
		if len(sites[want]) == 0 {
			t.Errorf("missed %q: %v", want, sites)
		}
	}
}

// Files .gitignore excludes are not tracked: built tools (.bin) belong to
// `make tools`, not to the tree.
func TestNoIgnoredFileIsTracked(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ".git")); err != nil {
		Skip(t, "%s is not a git checkout", root)
	}
	cmd := exec.Command(Tool(t, "git"), "ls-files", "--cached", "--ignored", "--exclude-standard")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Fatalf("tracked files that .gitignore excludes; `git rm --cached` them:\n%s", s)
	}
}

func TestToolRefusesAnUnregisteredCommand(t *testing.T) {
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		name := "no-such-tool-registered" // not a literal at the call, or the source scan would flag it
		Tool(ft, name)
	}()
	<-done
	if !strings.Contains(ft.msg, "not in testenv.Tools") {
		t.Fatalf("Tool on an unregistered command said %q", ft.msg)
	}
}

func TestSkipFailsWhenRequired(t *testing.T) {
	t.Setenv(RequireEnv, "1")
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Skip(ft, "because %s", "reasons")
	}()
	<-done
	if !ft.fatal || ft.skipped || !strings.Contains(ft.msg, "because reasons") {
		t.Fatalf("under %s Skip: fatal %v skipped %v msg %q", RequireEnv, ft.fatal, ft.skipped, ft.msg)
	}
}

// fatalRecorder records Fatal and Skip instead of ending the test; both
// end the calling goroutine as the real ones do.
type fatalRecorder struct {
	testing.TB
	msg            string
	fatal, skipped bool
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.fatal, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fatalRecorder) Skipf(format string, args ...any) {
	f.skipped, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// Every skip goes through Skip (Go) or volrep_support.skip (Python), the
// helpers that fail under `make test`; a direct t.Skip or skipTest would
// hide a missing tool again.
func TestSkipsGoThroughTheHelpers(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	fset, files := parseTree(t, root)
	own := filepath.Join(root, "internal", "testenv")
	found := 0
	for dir, fs := range files {
		for _, f := range fs {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !slices.Contains([]string{"Skip", "Skipf", "SkipNow"}, sel.Sel.Name) {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "testenv" {
					found++
					return true
				}
				if dir != own {
					t.Errorf("%s: %s skips directly; call testenv.Skip, which fails under %s", fset.Position(call.Pos()), sel.Sel.Name, RequireEnv)
				}
				return true
			})
		}
	}
	if found == 0 {
		t.Error("the scan found no testenv.Skip call at all; it has gone blind")
	}
	direct := regexp.MustCompile(`skipTest\(|SkipTest\(|unittest\.skip`)
	pyDir := filepath.Join(root, "deploy", "cinder", "tests")
	entries, err := os.ReadDir(pyDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".py") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(pyDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if direct.MatchString(line) && !(e.Name() == "volrep_support.py" && strings.Contains(line, "raise unittest.SkipTest('SKIPPED: ' + reason)")) {
				t.Errorf("%s:%d skips directly; call volrep_support.skip, which fails under %s", e.Name(), i+1, RequireEnv)
			}
		}
	}
}
