package fieldsync

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/syncer"
)

// ErrorCode and RetryAfterMillis read what the SDK writes, and nothing
// else.
func TestErrorCodeParsesMessages(t *testing.T) {
	for msg, want := range map[string]string{
		"retry_later: retry after 1500 ms: server busy": CodeRetryLater,
		"out_of_space: database or disk is full":        CodeOutOfSpace,
		"invalid: visit.visited_on: want YYYY-MM-DD":    CodeInvalid,
		"internal: something":                           CodeInternal,
		"nonsense: not ours":                            "",
		"":                                              "",
		"retry_later":                                   "",
	} {
		if got := ErrorCode(msg); got != want {
			t.Errorf("ErrorCode(%q) = %q, want %q", msg, got, want)
		}
	}
	for msg, want := range map[string]int64{
		"retry_later: retry after 1500 ms: server busy": 1500,
		"retry_later: retry after 0 ms: x":              0,
		"invalid: retry after 1500 ms":                  0,
		"retry_later: retry after soon":                 0,
	} {
		if got := RetryAfterMillis(msg); got != want {
			t.Errorf("RetryAfterMillis(%q) = %d, want %d", msg, got, want)
		}
	}
	for _, c := range allCodes {
		if got := ErrorCode(codef(c, "x").Error()); got != c {
			t.Errorf("code %q reads back as %q", c, got)
		}
	}
}

// Every error code, made to happen for real: a real syncd, real
// encrypted replicas, a real full disk.
func TestEveryErrorCodeHappens(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	today := time.Now().Format("2006-01-02")

	t.Run("invalid", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Open(filepath.Join(dir, "a.db"), make([]byte, 16), "")
		wantCode(t, "a 16-byte key", err, CodeInvalid)
		if !strings.Contains(err.Error(), "key: 16 bytes: want 32") {
			t.Errorf("message %q does not name the key and what is allowed", err)
		}
		_, err = Open(filepath.Join(dir, "a.db"), nil, `{"page_size":-1}`)
		wantCode(t, "a negative page size", err, CodeInvalid)
		_, err = Open(filepath.Join(dir, "a.db"), nil, `{"pagesize":10}`)
		wantCode(t, "an unknown option", err, CodeInvalid)
		member := phone(t, e, testenv.Member)
		syncOnce(t, member)
		_, err = member.RecordVisit("H001", "昨天", "", "", "", "")
		wantCode(t, "a visit dated 昨天", err, CodeInvalid)
		if !strings.Contains(err.Error(), "visited_on") {
			t.Errorf("message %q does not name the field", err)
		}
		_, err = member.Create("household", `{"head":"x"}`)
		wantCode(t, "a household from a phone", err, CodeInvalid)
		_, err = member.Create("visit", `{"household_id":1}`)
		wantCode(t, "a number for a string", err, CodeInvalid)
		_, err = member.List(`{"kind":"visits"}`)
		wantCode(t, "an unknown kind", err, CodeInvalid)
		_, err = member.List(`{"kind":"visit","fields":{"colour":"red"}}`)
		wantCode(t, "an unknown field", err, CodeInvalid)
		_, err = member.MyHouseholds("12/2026", 0, 0)
		wantCode(t, "a month as 12/2026", err, CodeInvalid)
		_, err = member.MyOpenCases(0, 501)
		wantCode(t, "a limit of 501", err, CodeInvalid)
		_, err = member.SyncOnce(-1)
		wantCode(t, "a negative time limit", err, CodeInvalid)
		err = member.Transition("H001", "open", "")
		wantCode(t, "a transition of a household", err, CodeInvalid)
		err = member.KeepMine("H001", "phone")
		wantCode(t, "keep mine with no conflict", err, CodeInvalid)
	})

	t.Run("not_found", func(t *testing.T) {
		member := phone(t, e, testenv.Member)
		_, err := member.Get("V-nope")
		wantCode(t, "get of an unknown record", err, CodeNotFound)
		wantCode(t, "update of an unknown record", member.Update("V-nope", `{"met":"x"}`), CodeNotFound)
	})

	t.Run("not_allowed", func(t *testing.T) {
		member := phone(t, e, testenv.Member)
		syncOnce(t, member)
		wantCode(t, "a member assigning a household", member.Assign("H001", testenv.Member2), CodeNotAllowed)
		_, err := member.RecordVisit("H006", today, "", "", "", "")
		wantCode(t, "a visit to another member's household", err, CodeNotAllowed)
		wantCode(t, "enrolling an enrolled phone", member.Enroll(e.Code(testenv.Member), "again", 5000), CodeNotAllowed)
	})

	t.Run("reenroll", func(t *testing.T) {
		c := openClient(t, filepath.Join(t.TempDir(), "new.db"), newKey(t))
		_, err := c.RecordVisit("H001", today, "", "", "", "")
		wantCode(t, "a write before enrolling", err, CodeReenroll)
		_, err = c.SyncOnce(1000)
		wantCode(t, "a sync before enrolling", err, CodeReenroll)
		_, err = c.Identity()
		wantCode(t, "identity before enrolling", err, CodeReenroll)
		wantCode(t, "foreground before enrolling", c.StartForeground(), CodeReenroll)
		if st := status(t, c); st.Enrolled || st.Identity != nil {
			t.Fatalf("status of a new phone: %+v", st)
		}
	})

	t.Run("bad_code", func(t *testing.T) {
		c := openClient(t, filepath.Join(t.TempDir(), "a.db"), newKey(t))
		wantCode(t, "a scanned text that is no code", c.Enroll("https://example.com/x", "phone", 5000), CodeBadCode)
		code := e.Code(testenv.Member2)
		ok(t, c.Enroll(code, "phone", 10000))
		other := openClient(t, filepath.Join(t.TempDir(), "b.db"), newKey(t))
		wantCode(t, "a used code", other.Enroll(code, "phone", 10000), CodeBadCode)
	})

	t.Run("wrong_server", func(t *testing.T) {
		other := testenv.Start(t)
		c := openClient(t, filepath.Join(t.TempDir(), "a.db"), newKey(t))
		// The code names this server but carries another server's CA.
		err := c.Enroll(syncer.FormatEnrollment(e.Addr, e.Secret(testenv.Member), other.CAFingerprint), "phone", 5000)
		wantCode(t, "a server whose CA is not the pinned one", err, CodeWrongServer)
	})

	t.Run("wrong_key", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "phone.db")
		c := openClient(t, path, newKey(t))
		ok(t, c.Enroll(e.Code(testenv.Member), "phone", 10000))
		ok(t, c.Close())
		_, err := Open(path, newKey(t), "")
		wantCode(t, "another key", err, CodeWrongKey)
		_, err = Open(path, nil, "")
		wantCode(t, "no key", err, CodeWrongKey)
	})

	t.Run("revoked_wiped", func(t *testing.T) {
		member := phone(t, e, testenv.Member)
		syncOnce(t, member)
		must[string](t)(member.RecordVisit("H001", today, "張大山", "", "", ""))
		admin, ctx := e.Admin()
		id := status(t, member).Identity.DeviceID
		if _, err := admin.RevokeDevice(ctx, &pb.RevokeDeviceRequest{DeviceId: id}); err != nil {
			t.Fatal(err)
		}
		_, err := member.SyncOnce(10000)
		wantCode(t, "a sync of a revoked phone", err, CodeRevokedWiped)
		if st := status(t, member); st.Enrolled || st.Records != 0 {
			t.Fatalf("revoked phone's status %+v: want wiped", st)
		}
		ok(t, member.Enroll(e.Code(testenv.Member), "phone, new code", 10000))
		if rep := syncOnce(t, member); rep.Pulled != 3 {
			t.Fatalf("sync after enrolling again: %+v", rep)
		}
	})

	t.Run("restored_copy", func(t *testing.T) {
		dir := t.TempDir()
		key := newKey(t)
		pathA, pathB := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
		a := openClient(t, pathA, key)
		ok(t, a.Enroll(e.Code(testenv.Member), "phone", 10000))
		must[string](t)(a.RecordVisit("H001", today, "first", "", "", ""))
		syncOnce(t, a)
		ok(t, a.Close())
		copyDB(t, pathA, pathB)
		a, b := openClient(t, pathA, key), openClient(t, pathB, key)
		must[string](t)(a.RecordVisit("H001", today, "phone a", "", "", ""))
		syncOnce(t, a)
		must[string](t)(b.RecordVisit("H002", today, "phone b", "", "", ""))
		syncOnce(t, b)
		must[string](t)(a.RecordVisit("H003", today, "phone a, stopped", "", "", ""))
		_, err := a.SyncOnce(10000)
		wantCode(t, "a sync of the second copy", err, CodeRestoredCopy)
		if st := status(t, a); st.Stopped != "cloned" || st.Pending != 1 || st.LastErrorCode != CodeRestoredCopy {
			t.Fatalf("stopped copy's status %+v", st)
		}
		// Enrolled again with a new code, the stopped copy sends its work.
		ok(t, a.Enroll(e.Code(testenv.Member), "phone again", 10000))
		if rep := syncOnce(t, a); rep.Applied != 1 {
			t.Fatalf("sync after enrolling again: %+v, want the kept visit applied", rep)
		}
		if st := status(t, a); st.Stopped != "" || st.Pending != 0 {
			t.Fatalf("status after enrolling again: %+v", st)
		}
	})

	t.Run("retry_later_unreachable", func(t *testing.T) {
		gone := testenv.Start(t)
		gone.ImportSample()
		c := openClient(t, filepath.Join(t.TempDir(), "a.db"), newKey(t))
		code := gone.Code(testenv.Member)
		ok(t, c.Enroll(code, "phone", 10000))
		gone.Stop()
		must[string](t)(c.RecordVisit("H001", today, "offline", "", "", ""))
		_, err := c.SyncOnce(5000)
		wantCode(t, "a sync with the server gone", err, CodeRetryLater)
		if ms := RetryAfterMillis(err.Error()); ms != unreachableWait.Milliseconds() {
			t.Errorf("retry after %d ms, want %d", ms, unreachableWait.Milliseconds())
		}
		if st := status(t, c); st.Pending != 1 || st.LastErrorCode != CodeRetryLater {
			t.Fatalf("status %+v: want the visit kept and the error's code", st)
		}
		fresh := openClient(t, filepath.Join(t.TempDir(), "b.db"), newKey(t))
		wantCode(t, "an enrollment with the server gone", fresh.Enroll(code, "phone", 5000), CodeRetryLater)
	})

	t.Run("retry_later_busy", func(t *testing.T) {
		busy := testenv.Start(t, testenv.WithServerConfig(func(c *server.Config) {
			c.DeviceLimit = server.RateLimit{PerSecond: 0.2, Burst: 1}
		}))
		busy.ImportSample()
		c := phone(t, busy, testenv.Member)
		syncOnce(t, c)
		_, err := c.SyncOnce(5000)
		wantCode(t, "a sync over the device's rate limit", err, CodeRetryLater)
		if ms := RetryAfterMillis(err.Error()); ms <= 0 || ms > 10000 {
			t.Errorf("retry after %d ms: want the server's wait (about 5 s)", ms)
		}
	})

	t.Run("retry_later_quota", func(t *testing.T) {
		q := testenv.Start(t, testenv.WithServerConfig(func(c *server.Config) {
			c.DeviceQuota = server.Quota{Records: 1}
		}))
		q.ImportSample()
		c := phone(t, q, testenv.Member)
		syncOnce(t, c)
		for i := range 3 {
			must[string](t)(c.RecordVisit("H001", today, fmt.Sprintf("visit %d", i), "", "", ""))
		}
		_, err := c.SyncOnce(10000)
		wantCode(t, "a push over the device's daily quota", err, CodeRetryLater)
		if ms := RetryAfterMillis(err.Error()); ms <= 0 {
			t.Errorf("retry after %d ms: want the wait until the quota day ends", ms)
		}
		if st := status(t, c); st.Pending == 0 || st.LastErrorCode != CodeRetryLater {
			t.Fatalf("status %+v: want the work kept and the code", st)
		}
	})

	t.Run("closed", func(t *testing.T) {
		c := openClient(t, filepath.Join(t.TempDir(), "a.db"), newKey(t))
		ok(t, c.Close())
		ok(t, c.Close())
		_, err := c.Get("H001")
		wantCode(t, "a read after Close", err, CodeClosed)
		_, err = c.RecordVisit("H001", today, "", "", "", "")
		wantCode(t, "a write after Close", err, CodeClosed)
		_, err = (&Client{}).Status()
		wantCode(t, "a Client not made by Open", err, CodeClosed)
	})

	t.Run("internal", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "garbage.db")
		ok(t, os.WriteFile(path, []byte(strings.Repeat("not a database ", 500)), 0o600))
		_, err := Open(path, nil, "")
		wantCode(t, "a damaged file", err, CodeInternal)
	})
}

// A full disk: the phone's write fails with out_of_space, the work before
// it is kept, and writing works again once space is freed. On a real
// small filesystem (a tmpfs), which needs root or CAP_SYS_ADMIN.
func TestOutOfSpace(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("SKIPPED: a full disk needs a small real filesystem, and mounting a tmpfs on %s failed (needs root, or CAP_SYS_ADMIN): %v; TestSQLiteFullIsOutOfSpace still checks the mapping of SQLite's own SQLITE_FULL", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	c, err := Open(filepath.Join(dir, "phone.db"), newKey(t), "")
	ok(t, err)
	defer c.Close()
	ok(t, c.Enroll(e.Code(testenv.Member), "phone", 10000))
	syncOnce(t, c)
	today := time.Now().Format("2006-01-02")
	first := must[string](t)(c.RecordVisit("H001", today, "before the disk filled", "", "", ""))
	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	var werr error
	for i := 0; i < 200 && werr == nil; i++ {
		_, werr = c.RecordVisit("H001", today, fmt.Sprintf("visit %d", i), strings.Repeat("需要", 600), strings.Repeat("幫助", 600), "")
	}
	wantCode(t, "a write on a full disk", werr, CodeOutOfSpace)
	if v := get(t, c, first); v.Fields["met"] != "before the disk filled" {
		t.Fatalf("the visit before the disk filled: %+v", v)
	}
	ok(t, os.Remove(filler))
	must[string](t)(c.RecordVisit("H001", today, "after space was freed", "", "", ""))
}

// fillDisk writes path until the filesystem is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	ok(t, err)
	defer f.Close()
	chunk := make([]byte, 16<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("fill %s: %v", path, err)
		}
	}
}

// copyDB copies a closed database with its -wal and -shm, as a backup
// restored onto a second phone would.
func copyDB(t *testing.T, src, dst string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		in, err := os.Open(src + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		ok(t, err)
		out, err := os.OpenFile(dst+suffix, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		ok(t, err)
		_, err = io.Copy(out, in)
		in.Close()
		ok(t, err)
		ok(t, out.Close())
	}
}

// SQLite's own SQLITE_FULL (a database held to a few pages by
// max_page_count: the error a full disk gives, made without one) reads as
// out_of_space, wrapped as syncer and store wrap it. Runs where a tmpfs
// cannot be mounted too.
func TestSQLiteFullIsOutOfSpace(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "small.db"))
	ok(t, err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	_, err = db.Exec("PRAGMA max_page_count = 4; CREATE TABLE t (v TEXT)")
	ok(t, err)
	for i := 0; i < 100 && err == nil; i++ {
		_, err = db.Exec("INSERT INTO t VALUES (?)", strings.Repeat("x", 2000))
	}
	if err == nil {
		t.Fatal("a database of 4 pages took 100 rows of 2000 bytes")
	}
	wrapped := fmt.Errorf("queue mutation: %w", err)
	wantCode(t, "SQLITE_FULL", classify("write", wrapped), CodeOutOfSpace)
	wantCode(t, "another SQLite error", classify("write", fmt.Errorf("queue mutation: %w", db.QueryRow("SELECT nope FROM t").Scan(new(string)))), CodeInternal)
}
