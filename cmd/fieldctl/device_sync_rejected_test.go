package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
)

// A sync in which the server refused work exits with status 3 and lists
// the refused changes with their reasons, so that a script or a person
// does not take it for a clean sync.
func TestDeviceSyncWithRejectedWorkExits3AndListsIt(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	db := filepath.Join(t.TempDir(), "phone.db")
	ok(t, device(db, "enroll", e.Code(testenv.Member))...)
	// Before its first sync the device knows no links: H004 (another
	// member's) is accepted here and refused by the server.
	stray := strings.TrimSpace(ok(t, device(db, "visit", "add", "-household", "H004", "-date", "2026-11-20")...))
	ok(t, device(db, "visit", "add", "-household", "H001", "-date", "2026-11-20")...)

	r := fieldctl(t, device(db, "sync")...)
	if r.code != 3 {
		t.Fatalf("sync with a refused visit: exit %d, want 3\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "synced: sent 2 (applied 1, conflicts 0, rejected 1)") {
		t.Errorf("stdout: %q", r.stdout)
	}
	for _, want := range []string{stray, "permission_denied", "visit.household_id", "household H004 is not linked to you", "exit status 3", "rejections"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}

	// The next sync has nothing new refused: 0, and no list.
	r = fieldctl(t, device(db, "sync")...)
	if r.code != 0 || strings.Contains(r.stderr, stray) {
		t.Errorf("a later clean sync: exit %d\nstderr: %s", r.code, r.stderr)
	}
	if r := fieldctl(t, device(db, "sync", "-h")...); !strings.Contains(r.stderr, "3 synced, but the server refused some changes") {
		t.Errorf("sync -h does not document status 3:\n%s", r.stderr)
	}
}
