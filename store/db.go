package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Errors callers check for.
var (
	// ErrClosed is returned by writes queued after Close.
	ErrClosed = errors.New("store: closed")
	// ErrNotFound is returned when a looked-up row does not exist.
	ErrNotFound = errors.New("store: not found")
)

// DB is one SQLite file opened twice: a single writer connection and a
// pool of readers. SQLite allows one writer at a time; keeping exactly one
// writer connection means writes never wait on SQLITE_BUSY.
type DB struct {
	W *sql.DB
	R *sql.DB
}

// dsn builds the connection string: busy_timeout first, so that even the
// other pragmas wait for a lock instead of failing, then WAL and full
// fsync on commit (durability is the point of the server's database).
func dsn(path string, readOnly bool, pragmas ...string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
		// The server's writer runs each job of a group commit in a
		// savepoint; SQLite keeps a savepoint's original pages in a
		// sub-journal, by default a temporary file: syncbench's storm
		// profile put its pwrites at 5% of syncd's CPU. In memory, it holds
		// the pages one job touches (a large ImportOrg: its whole set).
		q.Add("_pragma", "temp_store(memory)")
		// The page cache stays at SQLite's 2 MiB: 32 MiB saved 5% of
		// syncd's CPU in syncbench's full-city storm and raised its peak
		// RSS from 269 to 343 MB, over the 300 MB budget (BENCHMARKS.md).
	}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	return "file:" + path + "?" + q.Encode()
}

// ServerWriterDSN is the connection string of the server's writer: what
// syncbench measures SQLite alone with, to compare like with like.
func ServerWriterDSN(path string) string { return dsn(path, false) }

// OpenDB opens path (creating it) and applies migrations in order; each
// migration runs once, tracked by PRAGMA user_version. A database whose
// version is newer than len(migrations) is refused (*SchemaTooNewError),
// unless migrations is empty: a plain open, for tools and tests.
func OpenDB(ctx context.Context, path string, migrations []string, readers int) (*DB, error) {
	return openDB(ctx, path, nil, migrations, readers)
}

// openDB is OpenDB for a database of kind k (nil: any), with more pragmas
// for the writer connection. A database of another kind is refused
// (*WrongDatabaseError) before anything is written to it.
func openDB(ctx context.Context, path string, k *dbKind, migrations []string, readers int, writerPragmas ...string) (*DB, error) {
	w, err := sql.Open("sqlite", dsn(path, false, writerPragmas...))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	appID, err := checkSchema(ctx, w, path, k, len(migrations))
	if err != nil {
		w.Close()
		return nil, err
	}
	if err := Migrate(ctx, w, migrations); err != nil {
		w.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	if k != nil && appID != k.appID {
		if _, err := w.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id = %d", k.appID)); err != nil {
			w.Close()
			return nil, fmt.Errorf("mark %s as a %s: %w", path, k.name, err)
		}
	}
	r, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s for reading: %w", path, err)
	}
	if readers < 1 {
		readers = 1
	}
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	return &DB{W: w, R: r}, nil
}

// Close closes both handles.
func (d *DB) Close() error {
	return errors.Join(d.R.Close(), d.W.Close())
}

// Migrate brings db's schema up to date: it runs, each in a transaction of
// its own, the migrations past the database's PRAGMA user_version and
// records each one's number there. syncd's and a device's databases, HQ's
// read model and the HQ page's database all migrate this way.
func Migrate(ctx context.Context, db *sql.DB, migrations []string) error {
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	for i := version; i < len(migrations); i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}
