package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
)

// BuildSyncd builds cmd/syncd into a temporary directory and returns the
// binary, for tests that run syncd as a real process (crash tests, the
// command's own tests, syncbench against an external syncd). It builds with
// the race detector when the test binary has it, so that the build reuses
// the packages the test already compiled. Without a go command it skips,
// except under CI, where it fails: CI must not skip.
func BuildSyncd(t testing.TB) string {
	t.Helper()
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goCmd); err != nil {
		if goCmd, err = exec.LookPath("go"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("no go command to build syncd with, and CI must not skip")
			}
			t.Skip("SKIP: no go command to build syncd with")
		}
	}
	bin := filepath.Join(t.TempDir(), "syncd")
	args := []string{"build", "-o", bin}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	out, err := exec.Command(goCmd, append(args, "github.com/fieldsync/fieldsync/cmd/syncd")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build syncd: %v\n%s", err, out)
	}
	return bin
}
