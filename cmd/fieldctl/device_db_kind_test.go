package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
)

// -db given syncd's database says so, instead of an SQL error, and leaves
// that database alone.
func TestDeviceDBGivenSyncdsDatabaseSaysSo(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	serverDB := filepath.Join(e.Dir, "fieldsync.db")
	for _, args := range [][]string{{"status"}, {"list"}, {"sync"}, {"enroll", e.Code(testenv.Member)}} {
		r := fieldctl(t, device(serverDB, args...)...)
		want := serverDB + " is syncd's server database, not a device database: point fieldctl device -db at the device's own file"
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("device %s on syncd's database: exit %d, stderr %q, want %q", args[0], r.code, r.stderr, want)
		}
	}
	// syncd's database still works.
	if _, err := e.Store.LastSeq(t.Context()); err != nil {
		t.Errorf("syncd's database after: %v", err)
	}
}
