package bindtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// jdk is the JDK the JNI tests use.
type jdk struct {
	javac, java string
	include     string // holds jni.h, and linux/jni_md.h
	jsig        string // libjsig.so, the JVM's signal chaining
}

// findJDK finds javac, java and jni.h ($JAVA_HOME, else the JDK javac
// belongs to), and the C compiler cgo will use, or calls missing.
func findJDK(t testing.TB) jdk {
	t.Helper()
	var j jdk
	j.javac = lookTool(t, "javac", "it compiles the Java that gobind generates")
	j.java = lookTool(t, "java", "it runs the Java driver of the SDK")
	home := os.Getenv("JAVA_HOME")
	if home == "" {
		real, err := filepath.EvalSymlinks(j.javac)
		if err != nil {
			t.Fatal(err)
		}
		home = filepath.Dir(filepath.Dir(real))
	}
	j.include = filepath.Join(home, "include")
	for _, h := range []string{"jni.h", filepath.Join("linux", "jni_md.h")} {
		if _, err := os.Stat(filepath.Join(j.include, h)); err != nil {
			missing(t, "no %s in the JDK at %s (a JRE without headers? set JAVA_HOME to a full JDK): %v", h, home, err)
		}
	}
	// The Go runtime installs its handlers for SIGSEGV and friends when
	// the library loads; HotSpot uses those signals too. libjsig chains
	// them (the JVM's documented way for native code with its own
	// handlers; Android's ART does the same with its libsigchain).
	// Without it -Xcheck:jni reports "SIGSEGV handler modified!".
	for _, p := range []string{filepath.Join(home, "lib", "libjsig.so"), filepath.Join(home, "lib", "server", "libjsig.so"), filepath.Join(home, "jre", "lib", "amd64", "libjsig.so")} {
		if _, err := os.Stat(p); err == nil {
			j.jsig = p
			break
		}
	}
	if j.jsig == "" {
		missing(t, "no libjsig.so in the JDK at %s (lib/ or lib/server/): the JVM and the Go runtime would fight over signal handlers", home)
	}
	out, err := exec.Command(goTool(t), "env", "CC").Output()
	if err != nil {
		t.Fatalf("go env CC: %v", err)
	}
	cc := strings.Fields(string(out))
	if len(cc) == 0 {
		cc = []string{"gcc"}
	}
	lookTool(t, cc[0], "cgo compiles gobind's JNI glue with it (go env CC)")
	return j
}

// run runs a command and fails the test with its output if it fails.
func run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// buildJNILibrary builds gobind's Go output (gen/src/gobind: the JNI glue,
// the package's proxies and the package itself) as libgojni.so, the name
// go/Seq.java loads, for the host. See the package doc for each step.
func buildJNILibrary(t testing.TB, j jdk, gen string) (libDir string) {
	t.Helper()
	root := moduleRoot(t)
	work := t.TempDir()
	mod := filepath.Join(work, "gojni")
	pkg := filepath.Join(mod, "gobind")
	libDir = filepath.Join(work, "lib")
	for _, d := range []string{pkg, libDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A module that is this one's go.mod under another name, requiring
	// this one through replace: the same versions, and go.sum has them all.
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mod, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, mod, []string{"GOFLAGS=", "GOWORK=off"}, goTool(t), "mod", "edit",
		"-module", "fieldsync.test/gojni",
		"-require", "github.com/fieldsync/fieldsync@v0.0.0-00010101000000-000000000000",
		"-replace", "github.com/fieldsync/fieldsync="+root)

	src := filepath.Join(gen, "src", "gobind")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	var renamed int
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.Contains(name, "_darwin") || strings.HasSuffix(name, ".m") || strings.HasSuffix(name, ".objc.h") {
			continue // the Objective-C side: Foundation only exists on Apple's systems
		}
		to := name
		if ext := filepath.Ext(name); ext == ".go" || ext == ".c" {
			// GOOS=android only, by name: the same file under a neutral name.
			if n := strings.Replace(name, "_android", "_jni", 1); n != name {
				to = n
				renamed++
			}
		}
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkg, to), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if renamed < 3 { // seq_android.go, seq_android.c, universe_android.c at least
		t.Fatalf("gobind wrote only %d *_android.go/.c files into %s: its layout changed; this test must learn it", renamed, src)
	}
	// <android/log.h> is a stub; the glue's -llog (liblog.so on Android)
	// finds testdata/lib/liblog.a, an empty archive. Both live in the
	// checkout, not in a temporary directory, and the build is -trimpath:
	// the flags and paths stay the same from run to run, so Go's build
	// cache keeps the compiled glue and only the link is done again.
	stubInclude, err := filepath.Abs(filepath.Join("testdata", "include"))
	if err != nil {
		t.Fatal(err)
	}
	stubLib, err := filepath.Abs(filepath.Join("testdata", "lib"))
	if err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(libDir, "libgojni.so")
	env := []string{
		"GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=1",
		"CGO_CFLAGS=-D__GOBIND_ANDROID__ -Wno-incompatible-pointer-types" +
			" -I" + j.include + " -I" + filepath.Join(j.include, "linux") + " -I" + stubInclude,
		"CGO_LDFLAGS=-L" + stubLib,
	}
	start := time.Now()
	run(t, mod, env, goTool(t), "build", "-buildmode=c-shared", "-trimpath", "-o", lib, "./gobind")
	t.Logf("built %s in %v (go build -buildmode=c-shared -trimpath, host, cgo)", lib, time.Since(start).Round(time.Millisecond))
	return libDir
}

// compileJava compiles gobind's Java, the Android stubs of testdata/java
// and the given sources into a new class directory.
func compileJava(t testing.TB, j jdk, gen string, sources ...string) (classes string) {
	t.Helper()
	classes = filepath.Join(t.TempDir(), "classes")
	var files []string
	for _, dir := range []string{filepath.Join(gen, "java"), filepath.Join("testdata", "java")} {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".java") {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	files = append(files, sources...)
	argfile := filepath.Join(t.TempDir(), "sources")
	if err := os.WriteFile(argfile, []byte(strings.Join(files, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, "", nil, j.javac, "-encoding", "UTF-8", "-Werror", "-d", classes, "@"+argfile)
	if strings.TrimSpace(out) != "" {
		t.Logf("javac:\n%s", out)
	}
	return classes
}

// runJava runs a Java main class with the library and returns its standard
// output and error; -Xcheck:jni makes the JVM check every JNI call the glue
// makes.
func runJava(t testing.TB, j jdk, classes, libDir string, timeout time.Duration, main string, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, j.java, append([]string{
		"-Xcheck:jni", "-Dfile.encoding=UTF-8", "-Dstdout.encoding=UTF-8",
		"-Djava.library.path=" + libDir, "-cp", classes, main,
	}, args...)...)
	cmd.Env = append(os.Environ(), "LD_PRELOAD="+j.jsig)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if stderr.Len() > 0 {
		t.Logf("%s's standard error:\n%s", main, stderr.String())
	}
	if err != nil {
		t.Fatalf("java %s: %v (timeout %v)\nstandard output:\n%s", main, err, timeout, stdout.String())
	}
	return stdout.String(), stderr.String()
}

// TestHostJNIToolchain proves the toolchain on testdata/badpkg, apart from
// the SDK: gobind, javac, the host c-shared build, and a call from Java into
// Go and back (testdata/Toy.java). If the SDK's test fails and this one
// passes, the SDK or its driver is at fault, not the toolchain.
func TestHostJNIToolchain(t *testing.T) {
	j := findJDK(t)
	gen, _ := gobind(t, "github.com/fieldsync/fieldsync/mobile/bindtest/testdata/badpkg")
	classes := compileJava(t, j, gen, filepath.Join("testdata", "Toy.java"))
	lib := buildJNILibrary(t, j, gen)
	out, _ := runJava(t, j, classes, lib, time.Minute, "Toy")
	if !strings.Contains("\n"+out, "\nsum 42\n") {
		t.Fatalf("Toy printed %q, want a line \"sum 42\"", out)
	}
}
