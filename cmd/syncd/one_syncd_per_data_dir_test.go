package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/syncd"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Two syncd processes on one data directory with different ports: the
// second exits at once, saying which directory, which lock and which pid,
// and the first keeps serving. syncd restore refuses too. Once the first
// has stopped, or was killed, the directory can be used again.
func TestSecondSyncdOnOneDataDirRefuses(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SKIP: stops syncd with SIGINT, which Windows processes cannot receive")
	}
	bin := testenv.BuildSyncd(t)
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"-data", data, "-listen", "127.0.0.1:0", "-nats-listen", "127.0.0.1:-1"}
	first := testenv.StartSyncd(t, bin, args...)
	lock := filepath.Join(data, "syncd.lock")
	pid := "pid " + strconv.Itoa(first.Cmd.Process.Pid)

	for _, cmd := range [][]string{args, {"restore", "-data", data, "-force"}} {
		p := startProc(t, bin, cmd...)
		if code := p.wait(t); code != 1 {
			t.Fatalf("syncd %s beside a running syncd: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", strings.Join(cmd, " "), code, p.stdout.String(), p.stderr.String())
		}
		msg := p.stderr.String()
		for _, want := range []string{"data directory " + data + " is in use by another syncd", pid, "lock " + lock, "stop it first"} {
			if !strings.Contains(msg, want) {
				t.Errorf("syncd %s beside a running syncd says %q, want it to say %q", strings.Join(cmd, " "), msg, want)
			}
		}
		if strings.Contains(p.stdout.String(), "listening") || strings.Contains(p.stdout.String(), "restoring") {
			t.Errorf("syncd %s went on beside a running syncd:\n%s", strings.Join(cmd, " "), p.stdout.String())
		}
	}

	// The first still serves.
	token, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	admin := dialAdmin(t, first.Addr, data)
	if _, err := admin.ListDevices(withToken(strings.TrimSpace(string(token))), &pb.ListDevicesRequest{}); err != nil {
		t.Fatalf("the first syncd no longer answers: %v", err)
	}
	if got, _ := os.ReadFile(lock); strings.TrimSpace(string(got)) != strconv.Itoa(first.Cmd.Process.Pid) {
		t.Errorf("%s holds %q, want the first syncd's pid %d", lock, got, first.Cmd.Process.Pid)
	}

	// Stopped cleanly, then killed: neither leaves the directory locked.
	first.Stop(t, os.Interrupt)
	second := testenv.StartSyncd(t, bin, args...)
	second.Kill9(t)
	third := testenv.StartSyncd(t, bin, args...)
	third.Stop(t, os.Interrupt)
}

// In one process, a second lock on the directory fails too (flock locks
// belong to open files, not processes), naming the holder.
func TestLockDataDir(t *testing.T) {
	dir := t.TempDir()
	l, err := syncd.LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = syncd.LockDataDir(dir)
	if !errors.Is(err, syncd.ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v, want syncd.ErrLocked naming pid %d", err, os.Getpid())
	}
	var out bytes.Buffer
	err = run(context.Background(), []string{"-data", dir, "-listen", "127.0.0.1:0", "-nats-listen", "127.0.0.1:-1"}, &out, &out)
	if !errors.Is(err, syncd.ErrLocked) {
		t.Fatalf("syncd on a locked directory: %v, want syncd.ErrLocked", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "fieldsync.db")); err == nil {
		t.Error("syncd created the database in a directory another syncd holds")
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l, err = syncd.LockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	l.Unlock()
}
