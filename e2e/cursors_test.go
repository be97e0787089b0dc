package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// A device that sets changed_cursors_only gets back only the cursors that
// moved or that it did not send, and the buckets it sent that left its
// scope in left_buckets, and the answer says so (an older server would
// not); without the flag every cursor of the scope comes back, as before.
func TestSyncChangedCursorsOnly(t *testing.T) {
	f := newScopeFixture(t)
	e := f.e
	call := func(r *rawUser, cursors []*pb.Cursor, changedOnly bool) *pb.SyncResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		defer cancel()
		resp, err := r.client.Sync(ctx, &pb.SyncRequest{Cursors: cursors, ChangedCursorsOnly: changedOnly})
		if err != nil {
			t.Fatalf("sync as %s: %v", r.userID, err)
		}
		if resp.GetMore() {
			t.Fatalf("sync as %s: more pages, the test expects one", r.userID)
		}
		if resp.GetChangedCursorsOnly() != changedOnly {
			t.Fatalf("sync as %s asking changed_cursors_only=%v: the answer says %v", r.userID, changedOnly, resp.GetChangedCursorsOnly())
		}
		return resp
	}
	show := func(cs []*pb.Cursor) string {
		var out []string
		for _, c := range cs {
			out = append(out, fmt.Sprintf("%s@%d", c.GetBucket(), c.GetSeq()))
		}
		return fmt.Sprint(out)
	}
	s1, m1 := f.raw["S1"], f.raw["M1"]
	_, resps := s1.pullAll()
	cursors := resps[len(resps)-1].GetCursors()
	if len(cursors) < 2 {
		t.Fatalf("S1's scope: %s; want its village and its own bucket at least", show(cursors))
	}

	// Caught up: nothing comes back but the flag's empty lists.
	if resp := call(s1, cursors, true); len(resp.GetCursors()) != 0 || len(resp.GetLeftBuckets()) != 0 || len(resp.GetRecords()) != 0 {
		t.Errorf("caught up: cursors %s, left %v, %d records; want none", show(resp.GetCursors()), resp.GetLeftBuckets(), len(resp.GetRecords()))
	}
	if resp := call(s1, cursors, false); show(resp.GetCursors()) != show(cursors) {
		t.Errorf("without the flag: cursors %s, want every one: %s", show(resp.GetCursors()), show(cursors))
	}

	// M1 visits H1 in V1: S1's answer moves only v:V1, to the visit.
	visit := mkVisit("H1", "2026-11-21", "met", "戶主", "needs", "冬季取暖")
	m1.mustApply(visit)
	resp := call(s1, cursors, true)
	if len(resp.GetRecords()) != 1 || resp.GetRecords()[0].GetId() != visit.GetRecordId() {
		t.Fatalf("after M1's visit S1 got %d records, want the visit", len(resp.GetRecords()))
	}
	want := []*pb.Cursor{{Bucket: "v:V1", Seq: resp.GetRecords()[0].GetVersion()}}
	if show(resp.GetCursors()) != show(want) || len(resp.GetLeftBuckets()) != 0 {
		t.Errorf("after M1's visit: cursors %s, left %v; want %s and nothing left", show(resp.GetCursors()), resp.GetLeftBuckets(), show(want))
	}

	// A bucket of the scope the request left out comes back, even where
	// its cursor is 0; a bucket outside the scope is named as left.
	var without []*pb.Cursor
	var dropped *pb.Cursor
	for _, c := range cursors {
		if c.GetBucket() != "v:V1" && dropped == nil {
			dropped = c
			continue
		}
		without = append(without, c)
	}
	resp = call(s1, append(without, &pb.Cursor{Bucket: "v:V2", Seq: 1}), true)
	if !slices.ContainsFunc(resp.GetCursors(), func(c *pb.Cursor) bool { return c.GetBucket() == dropped.GetBucket() }) {
		t.Errorf("%s left out of the request: cursors %s, want it listed", dropped.GetBucket(), show(resp.GetCursors()))
	}
	if fmt.Sprint(resp.GetLeftBuckets()) != "[v:V2]" {
		t.Errorf("v:V2 sent by S1: left %v, want [v:V2]", resp.GetLeftBuckets())
	}

	// H1 is linked to M2 instead: M1's h:H1 leaves its scope.
	_, resps = m1.pullAll()
	mc := resps[len(resps)-1].GetCursors()
	admin, ctx := e.Admin()
	if _, err := admin.AssignHousehold(ctx, &pb.AssignHouseholdRequest{HouseholdId: "H1", MemberId: "M2"}); err != nil {
		t.Fatal(err)
	}
	resp = call(m1, mc, true)
	if fmt.Sprint(resp.GetLeftBuckets()) != "[h:H1]" {
		t.Errorf("after H1 went to M2, M1's answer: left %v, cursors %s; want h:H1 left", resp.GetLeftBuckets(), show(resp.GetCursors()))
	}
}
