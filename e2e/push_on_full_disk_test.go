//go:build linux

package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncer"
)

// lockedBuffer is a log sink the server writes from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The server's database lies on a small real filesystem (a tmpfs) that is
// full: a push fails with a clear, retryable "out of disk space" (not
// "server unreachable"), logged once; the device keeps its work. Once space
// is freed, with syncd never restarted, the next sync lands everything
// exactly once, the changelog has each change once, and the database is
// intact. (The embedded JetStream's store stays on an ordinary directory:
// its own full disk is another test's.)
func TestPushOnAFullDiskIsKeptAndLandsWhenSpaceReturns(t *testing.T) {
	disk := t.TempDir()
	if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("SKIPPED: a full disk needs a small real filesystem, and mounting a 4 MB tmpfs on %s failed (needs root, or CAP_SYS_ADMIN): %v", disk, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(disk, 0); err != nil {
			t.Errorf("unmount %s: %v", disk, err)
		}
	})
	// The server's files on an ordinary directory, but its database (and
	// so its -wal and -shm, which SQLite makes beside the link's target)
	// on the small disk.
	dir := t.TempDir()
	dbPath := filepath.Join(disk, "fieldsync.db")
	ok(t, os.Symlink(dbPath, filepath.Join(dir, "fieldsync.db")))
	logs := &lockedBuffer{}
	e := testenv.Start(t, testenv.WithDir(dir), testenv.WithServerConfig(func(c *server.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}))
	t.Cleanup(e.Stop) // before the unmount (cleanups run last first)
	e.ImportSample()
	member := e.Device(testenv.Member)
	testenv.Sync(t, member)
	if _, err := os.Stat(dbPath + "-wal"); err != nil {
		t.Fatalf("the database's log is not on the small disk: %v", err)
	}

	filler := filepath.Join(disk, "filler")
	fillDisk(t, filler)
	var visits []string
	for range 5 {
		visits = append(visits, must[string](t)(member.Create("visit", syncer.NewFields().Set("household_id", "H001").
			Set("visited_on", "2026-11-20").Set("met", "張大山").Set("needs", strings.Repeat("屋頂漏水，需要修繕。", 100)))))
	}
	for try := range 2 {
		_, err := member.Sync(context.Background())
		var re *syncer.RetryError
		if !errors.As(err, &re) {
			t.Fatalf("push %d on a full disk: %v, want a RetryError", try, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "out of disk space") || !strings.Contains(msg, "kept on the device") || strings.Contains(msg, "unreachable") {
			t.Fatalf("push %d on a full disk: %q, want it to say the server is out of disk space and the work is kept", try, msg)
		}
		if re.After != server.DiskFullRetry {
			t.Errorf("asked to wait %v, want %v", re.After, server.DiskFullRetry)
		}
	}
	if st := must[*syncer.Status](t)(member.Status()); st.Pending != len(visits) {
		t.Fatalf("the device holds %d pending mutations after the failed pushes, want %d", st.Pending, len(visits))
	}
	for _, id := range visits {
		if it := must[*syncer.Item](t)(member.Get(id)); it.State != "pending" {
			t.Fatalf("visit %s is %s on the device, want pending", id, it.State)
		}
	}
	// An administrator's import on the full disk: the same kind of answer.
	admin, actx := e.Admin()
	_, err := admin.ImportOrg(actx, testenv.SampleOrg())
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "out of disk space") {
		t.Errorf("import on a full disk: %v, want ResourceExhausted saying the server is out of disk space", err)
	}
	if n := strings.Count(logs.String(), `msg="out of disk space`); n != 1 {
		t.Errorf("the full disk was logged %d times for three failed writes a moment apart, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("the full disk was not logged at error level:\n%s", logs.String())
	}

	// Space returns; syncd runs on.
	ok(t, os.Remove(filler))
	rep := testenv.Sync(t, member)
	if rep.Applied != len(visits) {
		t.Errorf("the sync after space returned applied %d, want %d", rep.Applied, len(visits))
	}
	if st := must[*syncer.Status](t)(member.Status()); st.Pending != 0 {
		t.Errorf("%d mutations still pending", st.Pending)
	}
	for _, id := range visits {
		sameAsServer(t, e, member, id)
	}
	changes := waitStream(t, e)
	per := map[string]int{}
	for _, c := range changes {
		per[c.GetRecord().GetId()]++
	}
	for _, id := range visits {
		if per[id] != 1 {
			t.Errorf("visit %s has %d changes, want exactly one", id, per[id])
		}
	}
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	ok(t, err)
	defer db.Close()
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check: %q, %v", check, err)
	}
}

// fillDisk writes path until its filesystem is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	ok(t, err)
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("fill %s: %v", path, err)
		}
	}
}
