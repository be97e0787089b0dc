package domain_test

import (
	"testing"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// A move made on a phone whose clock is behind the one that made the move
// before still sets the fields it derives: they follow the moves in the
// order the server applied them, as the status does, and never turn into
// a conflict (a derived field cannot be settled: such a conflict would
// stay for good, and the derived value would be the older move's).
func TestDerivedFieldsFollowMovesMadeOnASlowClock(t *testing.T) {
	t.Run("need taken again after a referral", func(t *testing.T) {
		r := npNew(t, pb.Kind_KIND_NEED)
		r, _ = mustApply(t, r, npMove(pb.Kind_KIND_NEED, hlc(wall0+10, 0, "devB"), "raised", "taken"), memberB)
		r, _ = mustApply(t, r, npMove(pb.Kind_KIND_NEED, hlc(wall0+11, 0, "devB"), "taken", "referred"), memberB)
		r, conflict := mustApply(t, r, npMove(pb.Kind_KIND_NEED, hlc(wall0+5, 0, "devA"), "referred", "taken"), memberA)
		if got := fieldValue(r, "taken_by"); got != "memA" || conflict || len(r.GetConflicts()) != 0 {
			t.Fatalf("taken_by %q, conflict %v %v: want memA, who took it last, and no conflict", got, conflict, r.GetConflicts())
		}
	})
	t.Run("dispute failed then referred", func(t *testing.T) {
		r := newDispute(t, hlc(wall0, 0, "devM1"))
		r, _ = mustApply(t, r, transitionOf(hlc(wall0+1, 0, "devM1"), "open", "mediating"), mediator1)
		r, _ = mustApply(t, r, transitionOf(hlc(wall0+10, 0, "devM2"), "mediating", "failed"), mediator2)
		r, conflict := mustApply(t, r, transitionOf(hlc(wall0+5, 0, "devM1"), "failed", "referred"), mediator1)
		if fieldValue(r, "result") != "referred" || fieldValue(r, "level") != "referred_out" || conflict || len(r.GetConflicts()) != 0 {
			t.Fatalf("result %q level %q, conflict %v %v: want referred, referred_out, no conflict", fieldValue(r, "result"), fieldValue(r, "level"), conflict, r.GetConflicts())
		}
	})
}

// A move carries fields (a need's help): when one of them was changed
// since by a later edit, the move's value is kept as a conflict, and the
// move says so, as an update's would.
func TestMoveReportsTheConflictOfAFieldItCarries(t *testing.T) {
	r := npNew(t, pb.Kind_KIND_NEED)
	r, _ = mustApply(t, r, update(pb.Kind_KIND_NEED, npNeedID, hlc(wall0+10, 0, "devS"), map[string]string{"help": "送米送油"}, nil), secretary)
	m := npMove(pb.Kind_KIND_NEED, hlc(wall0+5, 0, "devA"), "raised", "taken")
	m.Fields["help"] = "联系医保"
	r, conflict := mustApply(t, r, m, memberA)
	if fieldValue(r, "status") != "taken" || fieldValue(r, "help") != "送米送油" {
		t.Fatalf("status %q help %q", fieldValue(r, "status"), fieldValue(r, "help"))
	}
	if !conflict || len(r.GetConflicts()) != 1 || r.GetConflicts()[0].GetField() != "help" || r.GetConflicts()[0].GetValue() != "联系医保" {
		t.Fatalf("conflict %v %v: want the move's help kept as a conflict, and reported", conflict, r.GetConflicts())
	}
}
