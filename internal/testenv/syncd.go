package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

// SyncdProc is a real syncd process started by StartSyncd.
type SyncdProc struct {
	Cmd  *exec.Cmd
	Addr string // the gRPC address it printed
	mu   sync.Mutex
	out  strings.Builder // stdout and stderr
	done chan error
}

// StartSyncd runs bin with args and waits until it prints the address it
// listens on. Whatever happens, the process is killed when the test ends.
// A syncd restarted on its old address may find the port held for a while
// by another process's outgoing connection (an ephemeral port the kernel
// handed out once the first syncd let it go): it exits at once, having
// touched nothing, and is started again, for up to a minute.
func StartSyncd(t testing.TB, bin string, args ...string) *SyncdProc {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		p, err := startSyncd(t, bin, args)
		if err == nil {
			return p
		}
		if p == nil || !strings.Contains(p.Output(), "address already in use") || time.Now().After(deadline) {
			out := ""
			if p != nil {
				out = p.Output()
			}
			t.Fatalf("%v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func startSyncd(t testing.TB, bin string, args []string) (*SyncdProc, error) {
	p := &SyncdProc{Cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	stdout, err := p.Cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.Cmd.Stderr = p.Cmd.Stdout
	if err := p.Cmd.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if p.Cmd.ProcessState == nil {
			p.Cmd.Process.Kill()
			<-p.done
		}
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if a, ok := strings.CutPrefix(sc.Text(), "syncd: listening on "); ok {
				ready <- a
			}
		}
		io.Copy(io.Discard, stdout)
		p.done <- p.Cmd.Wait()
	}()
	select {
	case p.Addr = <-ready:
		return p, nil
	case err := <-p.done:
		p.done <- err
		return p, fmt.Errorf("syncd exited before listening: %v", err)
	case <-time.After(60 * time.Second):
		return p, errors.New("syncd not listening after 60s")
	}
}

// Output is what the process printed so far.
func (p *SyncdProc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Stop sends sig and waits for the process to exit, failing the test if
// it exits with an error or not within 20 s.
func (p *SyncdProc) Stop(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("syncd exited with %v after %v:\n%s", err, sig, p.Output())
		}
	case <-time.After(20 * time.Second):
		p.Cmd.Process.Kill()
		<-p.done
		t.Errorf("syncd did not stop within 20s of %v: killed\n%s", sig, p.Output())
	}
}

// Kill9 kills the process with SIGKILL and waits for it.
func (p *SyncdProc) Kill9(t testing.TB) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}
