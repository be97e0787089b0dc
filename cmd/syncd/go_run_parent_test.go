//go:build linux

package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
)

// underParent is a syncd started, as by go run, by a parent process: a
// copy of /bin/sh named name that runs syncd in the background and waits.
type underParent struct {
	parent *exec.Cmd
	pid    int    // syncd's
	addr   string // syncd's gRPC address
	out    string // the file holding what syncd printed
}

func startUnderParent(t *testing.T, syncd, name string) *underParent {
	t.Helper()
	sh, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatalf("a shell to stand in for the parent: %v", err)
	}
	parent := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(parent, sh, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	u := &underParent{out: filepath.Join(t.TempDir(), "syncd.out")}
	out, err := os.Create(u.out)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	script := `"$0" -data "$1" -listen 127.0.0.1:0 -nats-listen 127.0.0.1:-1 & echo "pid $!"; wait`
	u.parent = exec.Command(parent, "-c", script, syncd, data)
	u.parent.Stdout, u.parent.Stderr = out, out
	if err := u.parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if u.pid != 0 && alive(u.pid) {
			syscall.Kill(u.pid, syscall.SIGKILL)
		}
		u.parent.Process.Kill()
		u.parent.Wait()
	})
	testenv.WaitFor(t, 60*time.Second, "syncd under "+name+" to listen", func() bool {
		for _, line := range u.lines() {
			if p, ok := strings.CutPrefix(line, "pid "); ok {
				u.pid, _ = strconv.Atoi(p)
			}
			if a, ok := strings.CutPrefix(line, "syncd: listening on "); ok {
				u.addr = a
			}
		}
		return u.pid != 0 && u.addr != ""
	})
	return u
}

func (u *underParent) lines() []string {
	b, _ := os.ReadFile(u.out)
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// killParent kills the parent with SIGKILL (go run dies on SIGTERM the
// same way, without passing the signal on) and reaps it.
func (u *underParent) killParent(t *testing.T) {
	t.Helper()
	if err := u.parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	u.parent.Wait()
}

// alive says whether pid runs (a zombie, exited but not yet reaped by
// whoever adopted it, does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func portFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// A syncd started by go run stops cleanly when the go command goes (killed
// by SIGTERM, which it does not pass on), freeing its port; a syncd whose
// parent is anything else keeps running when its parent goes, as a daemon
// started from a shell, nohup or a service manager must.
func TestSyncdStopsWhenGoRunGoes(t *testing.T) {
	bin := testenv.BuildSyncd(t)
	goRun := startUnderParent(t, bin, "go")
	shell := startUnderParent(t, bin, "sh")

	goRun.killParent(t)
	shell.killParent(t)
	testenv.WaitFor(t, 30*time.Second, "syncd to stop once go run has gone", func() bool { return !alive(goRun.pid) })
	testenv.WaitFor(t, 30*time.Second, "syncd's port to be free", func() bool { return portFree(goRun.addr) })
	out := strings.Join(goRun.lines(), "\n")
	if !strings.Contains(out, "the go command that started it (go run, pid ") || !strings.Contains(out, "syncd: stopped cleanly") {
		t.Errorf("syncd after go run went: not a clean stop\n%s", out)
	}

	// The other syncd, whose parent went at the same time, still serves.
	if !alive(shell.pid) {
		t.Fatalf("syncd under a parent not named go stopped with it:\n%s", strings.Join(shell.lines(), "\n"))
	}
	if conn, err := net.Dial("tcp", shell.addr); err != nil {
		t.Errorf("syncd under sh no longer listens: %v", err)
	} else {
		conn.Close()
	}
	if err := syscall.Kill(shell.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "syncd under sh to stop on SIGTERM", func() bool { return !alive(shell.pid) })
}
