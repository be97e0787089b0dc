package bindtest

import (
	"fmt"
	"go/ast"
	"go/build"
	"go/doc"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// requireEnv is the variable CI sets so that a missing JDK or C compiler
// fails the JNI tests instead of skipping them.
const requireEnv = "FIELDSYNC_REQUIRE_JVM"

// moduleRoot is the fieldsync checkout the tests run in.
func moduleRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("the module root %s has no go.mod: %v", root, err)
	}
	return root
}

// goTool is the go command that runs this test (for gobind and the
// library build).
func goTool(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(build.Default.GOROOT, "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no go command on PATH nor at %s", p)
	}
	return p
}

// missing skips the test saying what is missing and why it matters, or
// fails it when FIELDSYNC_REQUIRE_JVM=1.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("%s, and %s=1 says this test must run (CI installs a JDK with .ci/run)", msg, requireEnv)
	}
	t.Skipf("SKIPPED, NOT PASSED: %s; install a JDK (Debian: apt-get install default-jdk-headless) and gcc, or run .ci/run (%s=1 turns this skip into a failure)", msg, requireEnv)
}

// lookTool finds a command on PATH or calls missing.
func lookTool(t testing.TB, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "%s is not on PATH (%s)", name, why)
	}
	return p
}

// javaPkg is the Java package prefix the README's `gomobile bind` command
// gives (-javapkg=org.fieldsync): the SDK's classes are
// org.fieldsync.fieldsync.Fieldsync, Client and Listener, as its Kotlin
// imports them. gobind's own classes stay in package go.
const javaPkg = "org.fieldsync"

// gobind runs `go tool gobind -lang=go,java,objc` on a package into a new
// directory and returns the directory and gobind's output.
func gobind(t testing.TB, importPath string) (outdir, output string) {
	t.Helper()
	outdir = filepath.Join(t.TempDir(), "gobind")
	output, err := gobindInto(goTool(t), moduleRoot(t), importPath, outdir)
	if err != nil {
		t.Fatal(err)
	}
	return outdir, output
}

// gobindInto runs gobind from the module root into outdir.
func gobindInto(goCmd, root, importPath, outdir string) (string, error) {
	cmd := exec.Command(goCmd, "tool", "gobind", "-lang=go,java,objc", "-javapkg="+javaPkg, "-outdir", outdir, importPath)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("go tool gobind %s: %v\n%s", importPath, err, out)
	}
	return string(out), nil
}

// skipNotices finds what gobind says when it leaves something out: its
// own output ("unsupported ...") and the comments it writes into the
// generated sources ("// skipped method Client.X with unsupported
// parameter or return types"). The package's doc comments, which gobind
// copies into Javadoc and Objective-C comments (lines starting with "*"),
// are not gobind's notices: a doc that says "unsupported kind" is no skip.
var (
	skipNotice = regexp.MustCompile(`(?i)skipped|unsupported`)
	docLine    = regexp.MustCompile(`^\s*(/\*\*|\*)`)
)

func skipNotices(output, outdir string) []string {
	var found []string
	for i, line := range strings.Split(output, "\n") {
		if skipNotice.MatchString(line) {
			found = append(found, fmt.Sprintf("gobind output line %d: %s", i+1, strings.TrimSpace(line)))
		}
	}
	filepath.WalkDir(outdir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			found = append(found, fmt.Sprintf("walk %s: %v", path, err))
			return nil
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			found = append(found, fmt.Sprintf("read %s: %v", path, err))
			return nil
		}
		rel, _ := filepath.Rel(outdir, path)
		for i, line := range strings.Split(string(b), "\n") {
			if skipNotice.MatchString(line) && !docLine.MatchString(line) {
				found = append(found, fmt.Sprintf("%s:%d: %s", rel, i+1, strings.TrimSpace(line)))
			}
		}
		return nil
	})
	return found
}

// export is one exported name of a Go package, as gobind should bind it.
type export struct {
	kind string // func, const, var, type, interface, method, field
	typ  string // the type of a method or field
	name string
}

func (e export) String() string {
	if e.typ != "" {
		return e.kind + " " + e.typ + "." + e.name
	}
	return e.kind + " " + e.name
}

// exports lists every exported name of the package in dir, read with
// go/build (the files the host build takes, no tests) and go/doc, so the
// list follows the package and is never written by hand.
func exports(t testing.TB, dir, importPath string) (pkgName string, list []export) {
	t.Helper()
	bp, err := build.ImportDir(dir, 0)
	if err != nil {
		t.Fatalf("read package %s: %v", dir, err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range bp.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	p, err := doc.NewFromFiles(fset, files, importPath)
	if err != nil {
		t.Fatal(err)
	}
	values := func(kind string, vs []*doc.Value) {
		for _, v := range vs {
			for _, n := range v.Names {
				if ast.IsExported(n) {
					list = append(list, export{kind: kind, name: n})
				}
			}
		}
	}
	values("const", p.Consts)
	values("var", p.Vars)
	for _, f := range p.Funcs {
		list = append(list, export{kind: "func", name: f.Name})
	}
	for _, ty := range p.Types {
		values("const", ty.Consts)
		values("var", ty.Vars)
		for _, f := range ty.Funcs { // go/doc files NewX and friends under X
			list = append(list, export{kind: "func", name: f.Name})
		}
		spec := ty.Decl.Specs[0].(*ast.TypeSpec)
		for _, s := range ty.Decl.Specs {
			if ts := s.(*ast.TypeSpec); ts.Name.Name == ty.Name {
				spec = ts
			}
		}
		switch u := spec.Type.(type) {
		case *ast.InterfaceType:
			list = append(list, export{kind: "interface", name: ty.Name})
			for _, m := range u.Methods.List {
				for _, n := range m.Names {
					if ast.IsExported(n.Name) {
						list = append(list, export{kind: "method", typ: ty.Name, name: n.Name})
					}
				}
			}
		case *ast.StructType:
			list = append(list, export{kind: "type", name: ty.Name})
			for _, f := range u.Fields.List {
				for _, n := range f.Names {
					if ast.IsExported(n.Name) {
						list = append(list, export{kind: "field", typ: ty.Name, name: n.Name})
					}
				}
			}
		default:
			// A named basic type, slice, map...: gobind binds none of
			// them; its methods and typed constants would be skipped.
			list = append(list, export{kind: "type", name: ty.Name})
		}
		for _, m := range ty.Methods {
			list = append(list, export{kind: "method", typ: ty.Name, name: m.Name})
		}
	}
	return bp.Name, list
}

// lowerFirst is gobind's own (golang.org/x/mobile/bind/gen.go): the leading
// run of capitals lowered, but the last one kept if more follow (URLFor →
// urlFor, ID → id, Open → open).
func lowerFirst(s string) string {
	if s == "" {
		return ""
	}
	var conv []rune
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if !unicode.IsUpper(r) {
			if l := len(conv); l > 1 {
				conv[l-1] = unicode.ToUpper(conv[l-1])
			}
			return string(conv) + s
		}
		conv = append(conv, unicode.ToLower(r))
		s = s[n:]
	}
	return string(conv)
}

// title is the class name gobind gives a package (strings.Title of its
// name: fieldsync → Fieldsync).
func title(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}

// javaDir is where gobind writes a package's Java classes.
func javaDir(outdir, pkgName string) string {
	return filepath.Join(append([]string{outdir, "java"}, append(strings.Split(javaPkg, "."), pkgName)...)...)
}

// missingNames checks that the generated Java (javaDir/*.java) and
// Objective-C (src/gobind/<Pkg>.objc.h) name every export, under the names
// gobind gives them: a skipped member leaves a hole here even when no
// comment says so. A reserved word gets a trailing underscore (new_).
func missingNames(t testing.TB, outdir, pkgName string, list []export) []string {
	t.Helper()
	class := title(pkgName)
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			return ""
		}
		return string(b)
	}
	jdir := javaDir(outdir, pkgName)
	jrel, _ := filepath.Rel(outdir, jdir)
	javaFile := func(name string) string { return read(filepath.Join(jdir, name+".java")) }
	objc := read(filepath.Join(outdir, "src", "gobind", class+".objc.h"))
	var problems []string
	if javaFile(class) == "" {
		problems = append(problems, fmt.Sprintf("no %s/%s.java", jrel, class))
	}
	if objc == "" {
		problems = append(problems, fmt.Sprintf("no src/gobind/%s.objc.h", class))
	}
	has := func(text, pattern string) bool { return regexp.MustCompile(pattern).MatchString(text) }
	q := regexp.QuoteMeta
	for _, e := range list {
		var java, javaWhere, objcPat string
		switch e.kind {
		case "func":
			java, javaWhere = javaFile(class), class+".java"
			if has(java, `\b`+q(lowerFirst(e.name))+`_?\(`) {
				java = "ok"
			}
			objcPat = `\b` + q(class+e.name) + `\(`
		case "const":
			java, javaWhere = javaFile(class), class+".java"
			if has(java, `\b`+q(e.name)+`\s*=`) {
				java = "ok"
			}
			objcPat = `\b` + q(class+e.name) + `\b`
		case "var":
			java, javaWhere = javaFile(class), class+".java"
			if has(java, `\b[gs]et`+q(e.name)+`\(`) {
				java = "ok"
			}
			objcPat = `\)\s*` + q(lowerFirst(e.name)) + `_?;`
		case "type":
			java, javaWhere = javaFile(e.name), e.name+".java"
			if has(java, `\bclass\s+`+q(e.name)+`\b`) {
				java = "ok"
			}
			objcPat = `@interface\s+` + q(class+e.name) + `\b`
		case "interface":
			java, javaWhere = javaFile(e.name), e.name+".java"
			if has(java, `\binterface\s+`+q(e.name)+`\b`) {
				java = "ok"
			}
			objcPat = `@protocol\s+` + q(class+e.name) + `\s*<`
		case "method":
			java, javaWhere = javaFile(e.typ), e.typ+".java"
			if has(java, `\b`+q(lowerFirst(e.name))+`_?\(`) {
				java = "ok"
			}
			objcPat = `\)\s*` + q(lowerFirst(e.name)) + `_?[:;]`
		case "field":
			java, javaWhere = javaFile(e.typ), e.typ+".java"
			if has(java, `\bget`+q(e.name)+`\(`) && has(java, `\bset`+q(e.name)+`\(`) {
				java = "ok"
			}
			objcPat = `@property\s*\([^)]*\)[^;]*\b` + q(lowerFirst(e.name)) + `_?;`
		}
		if java != "ok" {
			problems = append(problems, fmt.Sprintf("%s: not in %s/%s", e, jrel, javaWhere))
		}
		if !has(objc, objcPat) {
			problems = append(problems, fmt.Sprintf("%s: not in src/gobind/%s.objc.h (looked for /%s/)", e, class, objcPat))
		}
	}
	sort.Strings(problems)
	return problems
}

// TestTheChecksCatchASkip binds testdata/badpkg, which has a function and
// a method gobind cannot bind, and expects both checks to report both: the
// skip notices and the missing names. Without it, a check that had stopped
// matching would pass the SDK in silence.
func TestTheChecksCatchASkip(t *testing.T) {
	const pkg = "github.com/fieldsync/fieldsync/mobile/bindtest/testdata/badpkg"
	out, output := gobind(t, pkg)
	notices := strings.Join(skipNotices(output, out), "\n")
	for _, want := range []string{"Tally", "Counter.Ticks"} {
		if !strings.Contains(notices, want) {
			t.Errorf("the skip notices do not mention %s; they are:\n%s", want, notices)
		}
	}
	if strings.Contains(notices, "Kind") {
		t.Errorf("the skip notices count Kind's doc comment as a notice:\n%s", notices)
	}
	name, list := exports(t, filepath.Join(moduleRoot(t), "mobile", "bindtest", "testdata", "badpkg"), pkg)
	if name != "badpkg" || len(list) != 6 {
		t.Fatalf("exports of badpkg: package %q, %v; want badpkg with 6 (Counter, NewCounter, Add, Ticks, Tally, Kind)", name, list)
	}
	problems := strings.Join(missingNames(t, out, name, list), "\n")
	for _, want := range []string{
		"func Tally: not in java", "func Tally: not in src/gobind",
		"method Counter.Ticks: not in java", "method Counter.Ticks: not in src/gobind",
	} {
		if !strings.Contains(problems, want) {
			t.Errorf("the name check does not report %q; it reports:\n%s", want, problems)
		}
	}
	for _, bound := range []string{"NewCounter", "Counter.Add", "type Counter", "func Kind"} {
		if strings.Contains(problems, bound+":") {
			t.Errorf("the name check reports %s, which gobind binds:\n%s", bound, problems)
		}
	}
}
