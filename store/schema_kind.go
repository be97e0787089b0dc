package store

import (
	"context"
	"database/sql"
	"fmt"
	"runtime/debug"
)

// dbKind tells syncd's server database from a device's: each is marked
// with its own PRAGMA application_id (in the file's header, readable
// without knowing the schema); a file made before the mark is known by a
// table only its kind has.
type dbKind struct {
	name    string // in messages: "syncd's server database"
	program string // the program that opens it: "syncd"
	appID   int32
	table   string // a table only this kind has
	other   *dbKind
}

var (
	serverDB = &dbKind{name: "syncd's server database", program: "syncd", appID: 0x46535356, table: "units"} // "FSSV"
	deviceDB = &dbKind{name: "a device database", program: "fieldctl", appID: 0x46534456, table: "outbox"}   // "FSDV"
)

func init() { serverDB.other, deviceDB.other = deviceDB, serverDB }

// WrongDatabaseError is a database of the other kind: a device's file
// given to syncd, or syncd's given as a device's.
type WrongDatabaseError struct {
	Path     string
	Is, Want string // "syncd's server database", "a device database"
	hint     string
}

func (e *WrongDatabaseError) Error() string {
	return fmt.Sprintf("%s is %s, not %s: %s", e.Path, e.Is, e.Want, e.hint)
}

// SchemaTooNewError is a database written by a newer program: its schema
// version is past the last migration this binary knows. Opening it would
// let an older binary misread or damage it.
type SchemaTooNewError struct {
	Path           string
	Version, Known int
	Program        string // "syncd", "fieldctl"
}

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("database %s has schema version %d, this %s (version %s) knows up to %d: run a newer %s, or restore the backup taken before the upgrade",
		e.Path, e.Version, e.Program, buildVersion(), e.Known, e.Program)
}

// checkSchema refuses, before any write, a database of the other kind and
// one whose schema is newer than the known migrations.
// It returns the database's application_id.
func checkSchema(ctx context.Context, db *sql.DB, path string, k *dbKind, known int) (appID int32, err error) {
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	if k != nil && version > 0 {
		is, err := kindOf(ctx, db, appID)
		if err != nil {
			return 0, fmt.Errorf("open %s: %w", path, err)
		}
		if is == k.other {
			hint := "point fieldctl device -db at the device's own file (the one enroll created, default ./phone.db)"
			if k == serverDB {
				hint = "give syncd its own data directory (-data); a device database is fieldctl's or a phone's"
			}
			return 0, &WrongDatabaseError{Path: path, Is: is.name, Want: k.name, hint: hint}
		}
	}
	if version > known && (known > 0 || k != nil) {
		program := "program"
		if k != nil {
			program = k.program
		}
		return 0, &SchemaTooNewError{Path: path, Version: version, Known: known, Program: program}
	}
	return appID, nil
}

// kindOf tells which kind a database is by its mark, else by its tables
// (nil: neither).
func kindOf(ctx context.Context, db *sql.DB, appID int32) (*dbKind, error) {
	for _, k := range []*dbKind{serverDB, deviceDB} {
		if appID == k.appID {
			return k, nil
		}
	}
	has := map[string]bool{}
	for _, k := range []*dbKind{serverDB, deviceDB} {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", k.table).Scan(&n); err != nil {
			return nil, err
		}
		has[k.table] = n > 0
	}
	for _, k := range []*dbKind{serverDB, deviceDB} {
		if has[k.table] && !has[k.other.table] {
			return k, nil
		}
	}
	return nil, nil
}

// buildVersion is this binary's version from its build information: the
// module version, else the VCS revision, else "devel".
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	return "devel"
}
