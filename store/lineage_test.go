package store_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// TestRebase: a new lineage prefixes the change ids written after it, and
// survives reopening.
func TestRebase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := store.OpenServer(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	put := func(id string) *pb.Change {
		t.Helper()
		if err := s.Write(ctx, func(tx *store.Tx) error {
			r := &pb.Record{Id: id, Kind: pb.Kind_KIND_EVENT}
			_, err := tx.PutRecord(nil, r, store.RecordMeta{VillageID: "v1", TownID: "t1"}, store.ChangeInfo{DeviceID: "d1", UserID: "U1"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		last, err := s.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := s.ChangesAfter(ctx, last-1, 1)
		if err != nil || len(rows) != 1 {
			t.Fatalf("changes: %v %v", rows, err)
		}
		c := &pb.Change{}
		if err := proto.Unmarshal(rows[0].Body, c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := s.Instance()
	if c := put("r1"); c.GetChangeId() != first+"-1" {
		t.Fatalf("change id %q, want %q", c.GetChangeId(), first+"-1")
	}
	l, err := s.Rebase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.ID == first || l.After != 1 || l.Prev != first || s.Instance() != l.ID {
		t.Fatalf("lineage %+v, instance %q; want a new id after 1 with prev %q", l, s.Instance(), first)
	}
	if c := put("r2"); c.GetChangeId() != l.ID+"-2" {
		t.Fatalf("change id %q, want %q", c.GetChangeId(), l.ID+"-2")
	}
	s.Close()
	s, err = store.OpenServer(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Lineage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got != l || strings.Contains(got.ID, "-") {
		t.Fatalf("after reopen: %+v, want %+v", got, l)
	}
}
