package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
)

// A group's flags (-server, -token-file, -db ...) work after the command's
// name too, where people put them; a flag of another group says where it
// belongs instead of only "not defined".
func TestGroupFlagsAfterTheCommand(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	tok := tokenFile(t, e)

	var devs []deviceJSON
	decode(t, ok(t, "admin", "devices", "-server", e.Addr, "--json", "-token-file="+tok, "-ca-file", caFile(e)), &devs)

	db := filepath.Join(t.TempDir(), "phone.db")
	ok(t, "device", "enroll", e.Code(testenv.Member), "-db", db)
	visit := strings.TrimSpace(ok(t, "device", "visit", "add", "-household", "H001", "-db", db, "-date", "2026-11-20"))
	var items []recordJSON
	decode(t, ok(t, "device", "list", "visit", "--json", "-db", db), &items)
	if len(items) != 1 || items[0].ID != visit {
		t.Errorf("the visit recorded with -db after the command: %+v", items)
	}

	r := fieldctl(t, "device", "sync", "-db", db, "-server", e.Addr)
	want := "fieldctl: device sync: -server is a flag of fieldctl admin and fieldctl hq commands, not of this one: a device syncs with the server its enrollment code named"
	if r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Errorf("device sync -server: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	r = fieldctl(t, "admin", "devices", "-server")
	if r.code != 2 || !strings.Contains(r.stderr, "flag needs an argument: -server") {
		t.Errorf("admin devices -server with no value: exit %d, stderr %q", r.code, r.stderr)
	}
}
