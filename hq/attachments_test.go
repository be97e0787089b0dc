package hq

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// The model keeps a record's attachments as references (hash, size, type,
// caption, author), in the record's order and scope, follows the record's
// later versions, ignores an older one replayed, and never holds bytes:
// the changelog carries none, and the table has no column for them.
func TestAttachmentsAreReferences(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "model.db")
	m := openModel(t, path)
	photo := bytes.Repeat([]byte("\xff\xd8\xff\xe0 a signed agreement, photographed "), 400)
	sum := sha256.Sum256(photo)
	sha := hex.EncodeToString(sum[:])
	pdf := sha256.Sum256([]byte("%PDF-1.7 scan"))
	ref := func(sha string, size int64, typ, caption string) *pb.Attachment {
		return &pb.Attachment{Sha256: sha, Size: size, MediaType: typ, Caption: caption, Hlc: "0000000001-0000-dev-1", AuthorId: "u-med"}
	}
	dispute := func(version uint64, atts ...*pb.Attachment) *pb.Change {
		return &pb.Change{Seq: version, ChangeId: "L-x", CommittedMs: 1000 + int64(version), DeviceId: "dev-1", UserId: "u-med",
			Record: &pb.Record{Id: "D1", Kind: pb.Kind_KIND_DISPUTE, Version: version, AuthorId: "u-med",
				Buckets:     []string{"d:D1", "v:V1", "t:T1"},
				Fields:      map[string]*pb.FieldValue{"village_id": {Value: "V1"}, "title": {Value: "宅基地纠纷"}},
				Attachments: atts}}
	}
	one := ref(sha, int64(len(photo)), "image/jpeg", "人民調解協議書（簽字頁）")
	two := ref(hex.EncodeToString(pdf[:]), 13, "application/pdf", "scan")
	applyAll(t, m, "L", []*pb.Change{dispute(1), dispute(2, one), dispute(4, one, two), dispute(3, one)})

	rows, err := m.DB().QueryContext(ctx, "SELECT record_id, sha256, n, kind, size, media_type, caption, author_id, village_id, town_id FROM attachments ORDER BY n")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type row struct {
		rec, sha      string
		n             int
		kind          string
		size          int64
		typ, caption  string
		author        string
		village, town string
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.rec, &r.sha, &r.n, &r.kind, &r.size, &r.typ, &r.caption, &r.author, &r.village, &r.town); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	want := []row{
		{"D1", sha, 0, "dispute", int64(len(photo)), "image/jpeg", "人民調解協議書（簽字頁）", "u-med", "V1", "T1"},
		{"D1", hex.EncodeToString(pdf[:]), 1, "dispute", 13, "application/pdf", "scan", "u-med", "V1", "T1"},
	}
	if len(got) != len(want) {
		t.Fatalf("attachments rows %+v, want %+v (version 4's two files; the replayed version 3 changes nothing)", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, got[i], want[i])
		}
	}

	// No column can hold bytes, and the file holds none of the photo.
	cols, err := m.DB().QueryContext(ctx, "SELECT name, type FROM pragma_table_info('attachments')")
	if err != nil {
		t.Fatal(err)
	}
	for cols.Next() {
		var name, typ string
		cols.Scan(&name, &typ)
		if typ == "BLOB" || typ == "" {
			t.Errorf("attachments.%s is %q: the model keeps references only", name, typ)
		}
	}
	cols.Close()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal"} {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, photo[:64]) {
			t.Errorf("%s holds the photo's bytes", f)
		}
	}

	// Reset empties it with the rest.
	m = openModel(t, path)
	if err := m.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	m.DB().QueryRow("SELECT count(*) FROM attachments").Scan(&n)
	if n != 0 {
		t.Errorf("%d attachments rows after Reset", n)
	}
}
