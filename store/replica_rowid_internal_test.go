package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// A replica made before records became a rowid table keeps its records
// through the migration, and the old table's pages hold no copy of them
// afterwards: a record purged after the migration leaves the file.
func TestRecordsRowidMigrationKeepsRecordsAndLeavesNoCopy(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "device.db")
	old, err := openDB(ctx, path, deviceDB, replicaMigrations[:3], 1)
	if err != nil {
		t.Fatal(err)
	}
	rec := &pb.Record{Id: "H001", Kind: pb.Kind_KIND_HOUSEHOLD, Fields: map[string]*pb.FieldValue{"head": {Value: "歐陽翠花"}}}
	body, _ := proto.Marshal(rec)
	if _, err := old.W.ExecContext(ctx, "INSERT INTO records (id, kind, base, local, state, updated_ms) VALUES ('H001', ?, ?, ?, 0, 1)",
		int(rec.GetKind()), body, body); err != nil {
		t.Fatal(err)
	}
	old.Close()

	r, err := OpenReplica(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var schema string
	if err := r.db.W.QueryRowContext(ctx, "SELECT sql FROM sqlite_schema WHERE name = 'records'").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToUpper(schema), "WITHOUT ROWID") {
		t.Errorf("records after the migration: %s; want a rowid table", schema)
	}
	err = r.Update(ctx, func(tx *RTx) error {
		lr, err := tx.Record("H001")
		if err != nil {
			return err
		}
		if got := lr.Local.GetFields()["head"].GetValue(); got != "歐陽翠花" {
			t.Errorf("H001's head after the migration: %q", got)
		}
		return tx.DeleteRecord("H001")
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("歐陽翠花")) {
		t.Error("the purged record is still in the file (the dropped table's pages were not zeroed)")
	}
}
