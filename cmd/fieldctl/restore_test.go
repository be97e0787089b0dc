package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
)

// copyFile copies a closed database file (fieldctl closes it after each
// command) and drops a stale write-ahead log beside dst.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	for _, sfx := range []string{"-wal", "-shm"} {
		os.Remove(dst + sfx)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// A phone restored from an older copy of its database: device status shows
// the notice, and admin devices says when it was restored and how often.
func TestRestoredPhoneIsShown(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	tok := tokenFile(t, e)
	db := filepath.Join(t.TempDir(), "phone.db")
	ok(t, device(db, "enroll", "-name", "phone", e.Code(testenv.Member))...)
	add := func(needs string) {
		t.Helper()
		ok(t, device(db, "visit", "add", "-household", "H001", "-date", "2026-11-20", "-needs", needs)...)
	}
	add("before the copy")
	ok(t, device(db, "sync")...)
	copyFile(t, db, db+".copy")
	add("after the copy")
	ok(t, device(db, "sync")...)
	copyFile(t, db+".copy", db)
	add("after the restore")
	ok(t, device(db, "sync")...)

	out := ok(t, device(db, "status")...)
	if !strings.Contains(out, "notice") || !strings.Contains(out, "this phone's data was restored from an older copy: 1 unsent changes") {
		t.Errorf("device status lacks the notice:\n%s", out)
	}
	var st statusJSON
	decode(t, ok(t, device(db, "status", "--json")...), &st)
	if st.Pending != 0 || !strings.Contains(st.Notice, "restored from an older copy") || st.Stopped != "" {
		t.Errorf("device status --json: %+v", st)
	}
	table := ok(t, admin(e, tok, "devices")...)
	if !strings.Contains(table, "RESTORED") || !strings.Contains(table, "(1x)") {
		t.Errorf("admin devices does not show the restore:\n%s", table)
	}
	var devs []deviceJSON
	decode(t, ok(t, admin(e, tok, "devices", "--json")...), &devs)
	if len(devs) != 1 || devs[0].Restores != 1 || devs[0].RestoredMs == 0 || devs[0].LastSeq != 3 {
		t.Errorf("admin devices --json: %+v", devs)
	}
}
