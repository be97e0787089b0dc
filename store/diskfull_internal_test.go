//go:build linux

package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountSmallDisk mounts a tmpfs of size (e.g. "8m") on a new directory and
// returns it; it is unmounted when the test ends. The test is skipped, with
// the reason, where mounting is not allowed.
func mountSmallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("SKIPPED: a full disk needs a small real filesystem, and mounting a tmpfs of %s on %s failed (needs root, or CAP_SYS_ADMIN): %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes path until the filesystem is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
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

// bigText is n bytes of hex that no page shares with another.
func bigText(n int) string {
	b := make([]byte, n/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// A group commit on a full disk: more than the page cache holds, so SQLite
// spills in the middle of a job, fails with SQLITE_FULL and rolls the whole
// transaction back itself. Every job is answered ErrDiskFull (never the
// writer's own "rollback to savepoint: no such savepoint"), nothing is
// half-applied, and once space is freed the same jobs commit, each once.
func TestGroupCommitOnAFullDisk(t *testing.T) {
	ctx := context.Background()
	dir := mountSmallDisk(t, "8m")
	s, err := OpenServer(ctx, filepath.Join(dir, "fieldsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Write(ctx, func(tx *Tx) error { return tx.Audit(AuditAdmin, AuditImportOrg, "org", "{}") }); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)

	const jobs = 40 // 40 x 100 KB: past the 2 MiB page cache
	run := func(todo []int) map[int]error {
		hold, held := make(chan struct{}), make(chan struct{})
		holder := make(chan error, 1)
		go func() {
			holder <- s.Write(ctx, func(tx *Tx) error { close(held); <-hold; return nil })
		}()
		<-held
		results := make(map[int]chan error, len(todo))
		for n, i := range todo {
			res := make(chan error, 1)
			results[i] = res
			go func() {
				res <- s.Write(ctx, func(tx *Tx) error {
					return tx.Audit(fmt.Sprintf("job%d", i), AuditEnrollDevice, "U1", bigText(100<<10))
				})
			}()
			deadline := time.Now().Add(10 * time.Second)
			for len(s.jobs) != n+1 {
				if time.Now().After(deadline) {
					t.Fatalf("job %d never queued", i)
				}
				time.Sleep(time.Millisecond)
			}
		}
		close(hold)
		if err := <-holder; err != nil && !errors.Is(err, ErrDiskFull) {
			t.Errorf("the holding job: %v", err)
		}
		out := map[int]error{}
		for _, i := range todo {
			out[i] = <-results[i]
		}
		return out
	}
	all := make([]int, jobs)
	for i := range all {
		all[i] = i
	}
	var failed []int
	for i, err := range run(all) {
		switch {
		case err == nil:
		case errors.Is(err, ErrDiskFull):
			failed = append(failed, i)
		default:
			t.Errorf("job %d on a full disk: %v, want ErrDiskFull", i, err)
		}
		if err != nil && strings.Contains(err.Error(), "savepoint") {
			t.Errorf("job %d: %v: the writer's own confusion, not the disk's", i, err)
		}
	}
	if len(failed) == 0 {
		t.Fatalf("no job failed on a full disk: the disk was not full")
	}
	if err := s.Write(ctx, func(tx *Tx) error { return tx.Audit(AuditAdmin, AuditImportOrg, "org", "{}") }); !errors.Is(err, ErrDiskFull) {
		t.Errorf("a small write on a full disk: %v, want ErrDiskFull", err)
	}

	// Space returns: the failed jobs, run again, commit once each.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for i, err := range run(failed) {
		if err != nil {
			t.Errorf("job %d after space returned: %v", i, err)
		}
	}
	es, err := s.AuditLog(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range es {
		seen[e.Actor]++
	}
	for i := range jobs {
		if n := seen[fmt.Sprintf("job%d", i)]; n != 1 {
			t.Errorf("job%d is in the log %d times, want once", i, n)
		}
	}
	if _, err := s.VerifyAudit(ctx); err != nil {
		t.Errorf("VerifyAudit: %v", err)
	}
	var check string
	if err := s.db.W.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check: %q, %v", check, err)
	}
}
