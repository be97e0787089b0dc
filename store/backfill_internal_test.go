package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// A database made before the changelog carried the org (its schema one
// migration short, units, people, a link, a device and one record's
// change in it) gets, at its first open with this build, one change per
// unit, person, link and device after its last change, gap-free, on
// their subjects; the next open appends nothing. A new database gets no
// backfill at all.
func TestOrgBackfillRunsOnceOnAnOlderDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fieldsync.db")
	old, err := openDB(ctx, path, serverDB, serverMigrations[:len(serverMigrations)-1], 1)
	if err != nil {
		t.Fatal(err)
	}
	rec := &pb.Record{Id: "H1", Kind: pb.Kind_KIND_HOUSEHOLD, Version: 1}
	recBody, _ := proto.Marshal(rec)
	chBody, _ := proto.Marshal(&pb.Change{Seq: 1, ChangeId: "old-1", Record: rec, DeviceId: "admin", UserId: "admin", Region: "T1"})
	for _, q := range []string{
		"INSERT INTO meta (key, value) VALUES ('instance', 'old')",
		"INSERT INTO units VALUES ('T1', 1, '', '宋埠鎮', '', 'T1'), ('V1', 2, 'T1', '彭店村', 'V1', 'T1'), ('G1', 3, 'V1', '張家塆', 'V1', 'T1')",
		"INSERT INTO users (id, name, role, unit_id, phone, village_id, town_id) VALUES ('U1', '張國華', 1, 'G1', '', 'V1', 'T1'), ('HQ1', '組織部', 4, '', '', '', '')",
		"INSERT INTO links VALUES ('H1', 'U1')",
		"INSERT INTO devices (id, user_id, token_hash, name, app_version, enrolled_ms, pending) VALUES ('d1', 'U1', 'tok', '手機', '1.2.0', 1000, 2)",
	} {
		if _, err := old.W.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := old.W.ExecContext(ctx, "INSERT INTO records VALUES ('H1', 1, 1, 'V1', 'T1', ?)", recBody); err != nil {
		t.Fatal(err)
	}
	if _, err := old.W.ExecContext(ctx, "INSERT INTO changes VALUES (1, 'fieldsync.changes.T1.household', ?)", chBody); err != nil {
		t.Fatal(err)
	}
	old.Close()

	s, err := OpenServer(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.ChangesAfter(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, r := range rows {
		c := &pb.Change{}
		if err := proto.Unmarshal(r.Body, c); err != nil {
			t.Fatal(err)
		}
		if r.Seq != uint64(i+1) || c.GetSeq() != r.Seq || c.GetChangeId() != fmt.Sprintf("old-%d", r.Seq) {
			t.Fatalf("change row %d: seq %d, body %d %s", i, r.Seq, c.GetSeq(), c.GetChangeId())
		}
		var what string
		switch {
		case c.GetRecord() != nil:
			what = "record " + c.GetRecord().GetId()
		case c.GetUnit() != nil:
			what = "unit " + c.GetUnit().GetUnit().GetId() + " " + c.GetUnit().GetUnit().GetName()
		case c.GetPerson() != nil:
			what = "person " + c.GetPerson().GetId() + " " + c.GetPerson().GetName()
		case c.GetLink() != nil:
			what = "link " + c.GetLink().GetHouseholdId() + " " + c.GetLink().GetMemberId() + " " + c.GetLink().GetVillageId()
		case c.GetDevice() != nil:
			d := c.GetDevice()
			what = fmt.Sprintf("device %s %s %s %d", d.GetDeviceId(), d.GetUserId(), d.GetAppVersion(), d.GetPendingCount())
		}
		got = append(got, r.Subject+" "+what)
	}
	want := []string{
		"fieldsync.changes.T1.household record H1",
		"fieldsync.changes.T1.unit unit T1 宋埠鎮",
		"fieldsync.changes.T1.unit unit V1 彭店村",
		"fieldsync.changes.T1.unit unit G1 張家塆",
		"fieldsync.changes.none.person person HQ1 組織部",
		"fieldsync.changes.T1.person person U1 張國華",
		"fieldsync.changes.T1.link link H1 U1 V1",
		"fieldsync.changes.T1.device device d1 U1 1.2.0 2",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("changes after the backfill:\n%v\nwant\n%v", got, want)
	}
	// The writer numbers on after the backfill.
	if err := s.Write(ctx, func(tx *Tx) error {
		return tx.PutUnit(&pb.Unit{Id: "G2", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "V1", Name: "李家塆"}, "V1", "T1")
	}); err != nil {
		t.Fatal(err)
	}
	if last, _ := s.LastSeq(ctx); last != uint64(len(want)+1) {
		t.Fatalf("last change %d after a new unit, want %d", last, len(want)+1)
	}
	s.Close()

	s, err = OpenServer(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if last, _ := s.LastSeq(ctx); last != uint64(len(want)+1) {
		t.Fatalf("a second open appended: last change %d, want %d", last, len(want)+1)
	}
	s.Close()

	// A new database: nothing to backfill, and marked so.
	s, err = OpenServer(ctx, filepath.Join(t.TempDir(), "new.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if last, _ := s.LastSeq(ctx); last != 0 {
		t.Fatalf("a new database has %d changes", last)
	}
	var mark string
	if err := s.db.R.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", metaOrgBackfill).Scan(&mark); err != nil {
		t.Fatalf("a new database is not marked backfilled: %v", err)
	}
}
