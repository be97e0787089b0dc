package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// put writes records in one commit, each with its previous state, and
// returns their change numbers.
func put(t *testing.T, s *store.Server, prev []*pb.Record, recs []*pb.Record, meta store.RecordMeta) []uint64 {
	t.Helper()
	var seqs []uint64
	err := s.Write(context.Background(), func(tx *store.Tx) error {
		for i, r := range recs {
			seq, err := tx.PutRecord(prev[i], r, meta, store.ChangeInfo{DeviceID: "dtest", UserID: "U1"})
			if err != nil {
				return err
			}
			seqs = append(seqs, seq)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// TestPullBuckets reads more buckets than one statement takes, with
// cursors and a limit, and the "all" bucket (which has no rows of its own),
// and checks each bucket's answer against what was written.
func TestPullBuckets(t *testing.T) {
	ctx := context.Background()
	s, _ := openServer(t)
	meta := store.RecordMeta{VillageID: "V1", TownID: "T1"}
	const households, visits = 40, 3
	var recs []*pb.Record
	for h := range households {
		for v := range visits {
			r := benchRecord(h*visits+v, fmt.Sprintf("H%03d", h))
			r.Id = fmt.Sprintf("visit-%03d-%d", h, v)
			r.Buckets = domain.RecordBuckets(r, meta.VillageID, meta.TownID)
			recs = append(recs, r)
		}
	}
	seqs := put(t, s, make([]*pb.Record, len(recs)), recs, meta)
	// Want: each household bucket holds its visits at their change numbers.
	want := map[string][]uint64{}
	for i, r := range recs {
		b := domain.HouseholdBucket(r.GetFields()["household_id"].GetValue())
		want[b] = append(want[b], seqs[i])
	}

	var cursors []store.Cursor
	for h := range households {
		b := domain.HouseholdBucket(fmt.Sprintf("H%03d", h))
		cursors = append(cursors, store.Cursor{Bucket: b, After: want[b][h%visits] - 1}) // skip the first 0, 1 or 2
	}
	cursors = append(cursors, store.Cursor{Bucket: domain.AllBucket, After: seqs[9]},
		store.Cursor{Bucket: domain.VillageBucket("V1"), After: 0}, store.Cursor{Bucket: "h:none", After: 0})
	got, err := s.PullBuckets(ctx, cursors, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(cursors) {
		t.Fatalf("%d answers for %d cursors", len(got), len(cursors))
	}
	for i, c := range cursors {
		var w []uint64
		switch c.Bucket {
		case domain.AllBucket:
			w = seqs[10:12]
		case domain.VillageBucket("V1"):
			w = seqs[:2]
		case "h:none":
		default:
			for _, q := range want[c.Bucket] {
				if q > c.After && len(w) < 2 {
					w = append(w, q)
				}
			}
		}
		var g []uint64
		for _, row := range got[i] {
			g = append(g, row.Seq)
			r := &pb.Record{}
			if err := proto.Unmarshal(row.Body, r); err != nil {
				t.Fatal(err)
			}
			if r.GetId() != row.RecordID || r.GetVersion() != row.Seq || row.Gone {
				t.Fatalf("%s: row %+v holds record %s version %d", c.Bucket, row, r.GetId(), r.GetVersion())
			}
		}
		if !slices.Equal(g, w) {
			t.Errorf("%s after %d: change numbers %v, want %v", c.Bucket, c.After, g, w)
		}
	}
}

// TestPutRecordMovesBuckets moves a household to another village: it is
// marked gone in the buckets it left, at the move's change number, and
// filed in the new ones; "all" keeps it.
func TestPutRecordMovesBuckets(t *testing.T) {
	ctx := context.Background()
	s, _ := openServer(t)
	h := &pb.Record{Id: "H1", Kind: pb.Kind_KIND_HOUSEHOLD, Fields: map[string]*pb.FieldValue{"head": {Value: "王芳", Hlc: "x"}}}
	h.Buckets = domain.RecordBuckets(h, "V1", "T1")
	put(t, s, []*pb.Record{nil}, []*pb.Record{h}, store.RecordMeta{VillageID: "V1", TownID: "T1"})

	moved := proto.Clone(h).(*pb.Record)
	moved.Buckets = domain.RecordBuckets(moved, "V2", "T1")
	seq := put(t, s, []*pb.Record{h}, []*pb.Record{moved}, store.RecordMeta{VillageID: "V2", TownID: "T1"})[0]

	for _, c := range []struct {
		bucket string
		gone   bool
	}{{"v:V1", true}, {"v:V2", false}, {"t:T1", false}, {"h:H1", false}, {domain.AllBucket, false}} {
		rows, err := s.Pull(ctx, c.bucket, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].Seq != seq || rows[0].Gone != c.gone || rows[0].RecordID != "H1" {
			t.Errorf("%s: rows %+v, want H1 at %d gone=%v", c.bucket, rows, seq, c.gone)
		}
	}
}

// TestHouseholdVisits reads a household's visits as stored: not the
// household itself, not another household's visits, not a record marked
// gone from its bucket.
func TestHouseholdVisits(t *testing.T) {
	s, _ := openServer(t)
	meta := store.RecordMeta{VillageID: "V1", TownID: "T1"}
	household := func(id string) *pb.Record {
		h := &pb.Record{Id: id, Kind: pb.Kind_KIND_HOUSEHOLD, Fields: map[string]*pb.FieldValue{"head": {Value: "戶主" + id, Hlc: "x"}}}
		h.Buckets = domain.RecordBuckets(h, meta.VillageID, meta.TownID)
		return h
	}
	visit := func(id, household string) *pb.Record {
		r := benchRecord(0, household)
		r.Id = id
		return r
	}
	recs := []*pb.Record{household("H1"), household("H2"), visit("v-3", "H1"), visit("v-1", "H1"), visit("v-2", "H2"), visit("v-4", "H1")}
	put(t, s, make([]*pb.Record, len(recs)), recs, meta)
	// v-4 leaves h:H1 (no device can do that: a visit's household is
	// fixed; the store does not check it): its row there is marked gone.
	left := proto.Clone(recs[5]).(*pb.Record)
	left.Fields["household_id"].Value = "H2"
	left.Buckets = domain.RecordBuckets(left, meta.VillageID, meta.TownID)
	put(t, s, []*pb.Record{recs[5]}, []*pb.Record{left}, meta)

	var got []*pb.Record
	err := s.Write(context.Background(), func(tx *store.Tx) error {
		var err error
		got, err = tx.HouseholdVisits("H1")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []*pb.Record{recs[3], recs[2]} // v-1, v-3: by record id
	if len(got) != len(want) {
		t.Fatalf("got %d visits, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("visit %d:\ngot  %v\nwant %v", i, got[i], want[i])
		}
	}
}

// TestPullSeesEveryCommit checks the in-memory bucket heads that let a pull
// skip unchanged buckets: a pull right after a commit sees it, a job that
// failed leaves no trace, and a reopened database starts from the heads on
// disk.
func TestPullSeesEveryCommit(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fieldsync.db")
	s, err := store.OpenServer(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	meta := store.RecordMeta{VillageID: "V1", TownID: "T1"}
	visit := func(i int) *pb.Record {
		r := benchRecord(i, "H1")
		r.Buckets = domain.RecordBuckets(r, meta.VillageID, meta.TownID)
		return r
	}
	pullOne := func(s *store.Server, bucket string, after uint64) []uint64 {
		t.Helper()
		rows, err := s.Pull(ctx, bucket, after, 100)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, r := range rows {
			seqs = append(seqs, r.Seq)
		}
		return seqs
	}
	var last uint64
	for i := range 5 {
		last = put(t, s, []*pb.Record{nil}, []*pb.Record{visit(i)}, meta)[0]
		for _, b := range []string{"h:H1", "v:V1", "t:T1", domain.AllBucket} {
			if got := pullOne(s, b, last-1); !slices.Equal(got, []uint64{last}) {
				t.Fatalf("pull of %s after %d, right after the commit of %d: %v", b, last-1, last, got)
			}
			if got := pullOne(s, b, last); len(got) != 0 {
				t.Fatalf("pull of %s after its head %d: %v", b, last, got)
			}
		}
	}
	// A job that fails after filing a record in a new bucket: the bucket
	// stays empty, and a later change to it is seen.
	failed := errors.New("job fails")
	err = s.Write(ctx, func(tx *store.Tx) error {
		r := visit(99)
		r.Buckets = domain.RecordBuckets(r, "V9", "T9")
		if _, err := tx.PutRecord(nil, r, store.RecordMeta{VillageID: "V9", TownID: "T9"}, store.ChangeInfo{DeviceID: "d", UserID: "u"}); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("write: %v", err)
	}
	if got := pullOne(s, "v:V9", 0); len(got) != 0 {
		t.Fatalf("v:V9 after a failed job: %v", got)
	}
	r := visit(100)
	r.Buckets = domain.RecordBuckets(r, "V9", "T9")
	seq := put(t, s, []*pb.Record{nil}, []*pb.Record{r}, store.RecordMeta{VillageID: "V9", TownID: "T9"})[0]
	if got := pullOne(s, "v:V9", 0); !slices.Equal(got, []uint64{seq}) {
		t.Fatalf("v:V9: %v, want [%d]", got, seq)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened: the heads come from the file.
	s, err = store.OpenServer(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := pullOne(s, "h:H1", last-1); !slices.Equal(got, []uint64{last, seq}) {
		t.Fatalf("h:H1 after reopening: %v, want [%d %d]", got, last, seq)
	}
	if got := pullOne(s, "v:V9", seq); len(got) != 0 {
		t.Fatalf("v:V9 after its head %d, reopened: %v", seq, got)
	}
	if got := pullOne(s, domain.AllBucket, seq-1); !slices.Equal(got, []uint64{seq}) {
		t.Fatalf("all after reopening: %v, want [%d]", got, seq)
	}
}

// TestLinkedHouseholdsAfterRelink reads a member's households (remembered),
// relinks one, and reads again as soon as the write returns.
func TestLinkedHouseholdsAfterRelink(t *testing.T) {
	ctx := context.Background()
	s, _ := openServer(t)
	link := func(h, m string) {
		t.Helper()
		if err := s.Write(ctx, func(tx *store.Tx) error { _, err := tx.Link(h, m, store.AdminChange, "admin:test"); return err }); err != nil {
			t.Fatal(err)
		}
	}
	linked := func(m string) []string {
		t.Helper()
		hs, err := s.LinkedHouseholds(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return hs
	}
	link("H1", "M1")
	link("H2", "M1")
	for range 2 { // the second answer comes from the cache
		if got := linked("M1"); !slices.Equal(got, []string{"H1", "H2"}) {
			t.Fatalf("M1: %v", got)
		}
	}
	if got := linked("M2"); len(got) != 0 {
		t.Fatalf("M2: %v", got)
	}
	link("H2", "M2")
	if got := linked("M1"); !slices.Equal(got, []string{"H1"}) {
		t.Fatalf("M1 after H2 moved to M2: %v", got)
	}
	if got := linked("M2"); !slices.Equal(got, []string{"H2"}) {
		t.Fatalf("M2 after H2 moved to it: %v", got)
	}
}

// TestVerifyMemory: the store's memory agrees with its database after
// writes and relinks, and VerifyMemory reports a change made behind the
// store's back (another process writing the file).
func TestVerifyMemory(t *testing.T) {
	ctx := context.Background()
	s, path := openServer(t)
	meta := store.RecordMeta{VillageID: "V1", TownID: "T1"}
	r := benchRecord(1, "H1")
	r.Buckets = domain.RecordBuckets(r, meta.VillageID, meta.TownID)
	put(t, s, []*pb.Record{nil}, []*pb.Record{r}, meta)
	if err := s.Write(ctx, func(tx *store.Tx) error { _, err := tx.Link("H1", "M1", store.AdminChange, "admin:test"); return err }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LinkedHouseholds(ctx, "M1"); err != nil { // remembered
		t.Fatal(err)
	}
	if err := s.VerifyMemory(ctx); err != nil {
		t.Fatalf("after writes: %v", err)
	}
	tamper(t, path, "UPDATE record_buckets SET seq = seq + 100 WHERE bucket = 'v:V1'")
	if err := s.VerifyMemory(ctx); err == nil || !strings.Contains(err.Error(), "v:V1") {
		t.Fatalf("a head changed behind the store's back: %v", err)
	}
	tamper(t, path, "UPDATE record_buckets SET seq = seq - 100 WHERE bucket = 'v:V1'", "UPDATE links SET member_id = 'M2'")
	if err := s.VerifyMemory(ctx); err == nil || !strings.Contains(err.Error(), "member M1") {
		t.Fatalf("a link changed behind the store's back: %v", err)
	}
}
