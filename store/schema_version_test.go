package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/store"
)

// rawPragma runs a statement on the file with no store in between and
// returns the named pragma's value afterwards.
func rawPragma(t *testing.T, path, stmt, pragma string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if stmt != "" {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	var v int
	if err := db.QueryRow("PRAGMA " + pragma).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func newServerDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fieldsync.db")
	s, err := store.OpenServer(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	return path
}

func newDeviceDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "phone.db")
	r, err := store.OpenReplica(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	return path
}

func tryServer(path string) error {
	s, err := store.OpenServer(context.Background(), path)
	if err == nil {
		s.Close()
	}
	return err
}

func tryReplica(path string) error {
	r, err := store.OpenReplica(context.Background(), path)
	if err == nil {
		r.Close()
	}
	return err
}

// A database written by a newer binary (a schema version past the last
// migration this one knows) is refused by name, and left as it was.
func TestNewerSchemaIsRefusedByName(t *testing.T) {
	for _, tt := range []struct {
		name, program string
		create        func(*testing.T) string
		open          func(string) error
	}{
		{"server", "syncd", newServerDB, tryServer},
		{"device", "fieldctl", newDeviceDB, tryReplica},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.create(t)
			known := rawPragma(t, path, "", "user_version")
			newer := known + 3
			rawPragma(t, path, fmt.Sprintf("PRAGMA user_version = %d", newer), "user_version")

			err := tt.open(path)
			var tooNew *store.SchemaTooNewError
			if !errors.As(err, &tooNew) || tooNew.Version != newer || tooNew.Known != known {
				t.Fatalf("open a database of schema %d (known %d): %v", newer, known, err)
			}
			msg := err.Error()
			for _, want := range []string{
				fmt.Sprintf("database %s has schema version %d, this %s (version ", path, newer, tt.program),
				fmt.Sprintf("knows up to %d: run a newer %s, or restore the backup taken before the upgrade", known, tt.program),
			} {
				if !strings.Contains(msg, want) {
					t.Errorf("message lacks %q:\n%s", want, msg)
				}
			}
			if v := rawPragma(t, path, "", "user_version"); v != newer {
				t.Errorf("the refused database's version is now %d, want %d untouched", v, newer)
			}
		})
	}
}

// syncd's database given as a device's, or a device's given to syncd, is
// named for what it is instead of failing on some SQL statement; files made
// before the databases were marked are told apart by their tables.
func TestServerAndDeviceDatabasesAreToldApart(t *testing.T) {
	for _, unmarked := range []bool{false, true} {
		t.Run(fmt.Sprintf("unmarked=%v", unmarked), func(t *testing.T) {
			server, device := newServerDB(t), newDeviceDB(t)
			if unmarked {
				rawPragma(t, server, "PRAGMA application_id = 0", "application_id")
				rawPragma(t, device, "PRAGMA application_id = 0", "application_id")
			}
			var wrong *store.WrongDatabaseError
			err := tryReplica(server)
			if !errors.As(err, &wrong) || !strings.Contains(err.Error(), server+" is syncd's server database, not a device database: ") {
				t.Errorf("server database opened as a device's: %v", err)
			}
			err = tryServer(device)
			if !errors.As(err, &wrong) || !strings.Contains(err.Error(), device+" is a device database, not syncd's server database: ") {
				t.Errorf("device database opened by syncd: %v", err)
			}
			// Each still opens as itself, and is marked from then on.
			if err := tryServer(server); err != nil {
				t.Errorf("server database: %v", err)
			}
			if err := tryReplica(device); err != nil {
				t.Errorf("device database: %v", err)
			}
			if a, b := rawPragma(t, server, "", "application_id"), rawPragma(t, device, "", "application_id"); a == 0 || b == 0 || a == b {
				t.Errorf("application ids: server %#x, device %#x", a, b)
			}
		})
	}
}
