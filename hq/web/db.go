package web

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/fieldsync/fieldsync/store"
)

// webMigrations build the web's own database: one-time sign-in codes and
// sessions (both stored only as SHA-256 hashes), failed sign-in attempts
// (for the rate limit) and the audit. It is apart from the read model so
// that a model rebuild keeps sessions and the audit.
var webMigrations = []string{`
CREATE TABLE codes (
	hash TEXT PRIMARY KEY, person_id TEXT NOT NULL, issued_ms INTEGER NOT NULL,
	expires_ms INTEGER NOT NULL, used_ms INTEGER NOT NULL, by TEXT NOT NULL);
CREATE TABLE sessions (
	hash TEXT PRIMARY KEY, person_id TEXT NOT NULL, csrf TEXT NOT NULL,
	created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
CREATE INDEX sessions_person ON sessions (person_id);
CREATE TABLE failures (at_ms INTEGER NOT NULL, person_id TEXT NOT NULL, remote TEXT NOT NULL);
CREATE INDEX failures_at ON failures (at_ms);
CREATE TABLE audit (
	id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, person_id TEXT NOT NULL,
	action TEXT NOT NULL, detail TEXT NOT NULL, remote TEXT NOT NULL);
`}

// openWebDB opens (creating and migrating) the web database. One
// connection: the page's writes are few, and SQLite has one writer anyway;
// busy_timeout lets fieldctl (another process) issue codes meanwhile.
func openWebDB(ctx context.Context, path string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("web: WebDB: the web database's path is empty")
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open web database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if err := migrateWeb(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate web database %s: %w", path, err)
	}
	return db, nil
}

func migrateWeb(ctx context.Context, db *sql.DB) error {
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	if version > len(webMigrations) {
		return fmt.Errorf("schema version %d is newer than this program's %d", version, len(webMigrations))
	}
	return store.Migrate(ctx, db, webMigrations)
}

// AuditEntry is one line of the web audit.
type AuditEntry struct {
	ID       int64  `json:"id"`
	AtMs     int64  `json:"at_ms"`
	PersonID string `json:"person_id"`
	// Action: signin (detail "ok (scope)" or "failed: why"), signout,
	// refused (a page or download outside the person's town), download
	// (page, table, format, query), code (a sign-in code issued, by whom).
	Action string `json:"action"`
	Detail string `json:"detail"`
	Remote string `json:"remote"`
}

// Audit lists the web audit of the database at webDB, oldest first: the
// entries with an id greater than after (0: from the start), at most limit
// of them (limit <= 0: all).
func Audit(ctx context.Context, webDB string, after int64, limit int) ([]AuditEntry, error) {
	if _, err := os.Stat(webDB); err != nil {
		return nil, fmt.Errorf("web audit: %w", err)
	}
	db, err := openWebDB(ctx, webDB)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if limit <= 0 {
		limit = -1
	}
	rows, err := db.QueryContext(ctx, `SELECT id, at_ms, person_id, action, detail, remote FROM audit
		WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("web audit: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		if err := rows.Scan(&e.ID, &e.AtMs, &e.PersonID, &e.Action, &e.Detail, &e.Remote); err != nil {
			return nil, fmt.Errorf("web audit: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func audit(ctx context.Context, db *sql.DB, atMs int64, person, action, detail, remote string) error {
	_, err := db.ExecContext(ctx, `INSERT INTO audit (at_ms, person_id, action, detail, remote) VALUES (?, ?, ?, ?, ?)`,
		atMs, clip(person, 64), action, clip(detail, 1000), remote)
	if err != nil {
		return fmt.Errorf("write web audit: %w", err)
	}
	return nil
}

// clip keeps at most n bytes of s, cut on a rune boundary: what a stranger
// typed is stored, but not without bound.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
