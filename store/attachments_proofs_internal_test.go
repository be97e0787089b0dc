package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// A file completed before proofs were kept (attachments.db at its first
// schema) stays open to every record that names it: who uploaded it
// through which record was not kept, and the phones that fetched it
// before must still fetch it. A file completed after the migration is
// open only to its proven records.
func TestFilesCompletedBeforeProofsStayOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "attachments.db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, filesMigrations[0]); err != nil {
		t.Fatal(err)
	}
	const sha = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	for _, q := range []string{
		"PRAGMA user_version = 1",
		fmt.Sprintf("PRAGMA application_id = %d", filesAppID),
		"INSERT INTO files (sha256, size, media_type, stored, complete, created_ms, completed_ms) VALUES ('" + sha + "', 3, 'image/png', 3, 1, 1, 2)",
		"INSERT INTO files (sha256, size, media_type, stored, complete, created_ms) VALUES ('" + sha[:63] + "b', 3, 'image/png', 1, 0, 1)",
	} {
		if _, err := old.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	old.Close()
	f, err := OpenFiles(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ok, err := f.Proven(ctx, sha, "any-record"); err != nil || !ok {
		t.Fatalf("a file complete before proofs: proven %v %v, want open to every record", ok, err)
	}
	if ok, err := f.Proven(ctx, sha[:63]+"b", "any-record"); err != nil || ok {
		t.Fatalf("a file unfinished before proofs: proven %v %v, want closed", ok, err)
	}
}
