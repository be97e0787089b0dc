package domain_test

import (
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// A phone whose clock runs days ahead pushes a dispute's moves together;
// the server cuts each reading to its time plus MaxFutureSkew
// (ClampFuture), so the moves carry one reading. The history still reads
// as the chain of moves made, in the order applied, each move stamped
// after the one before, and the status is the last entry's "to" (found by
// the simulation, seeds 20 and 33: the history sorted by clock put
// agreed -> closed before mediating -> agreed).
func TestHistoryKeepsTheOrderOfMovesWhoseClocksTheServerCutToOneReading(t *testing.T) {
	cut := hlc(1_800_000_000_000, 0, "devM1")
	a := domain.Actor{UserID: "m1", DeviceID: "devM1"}
	r := newDispute(t, cut)
	for _, mv := range [][2]string{{"open", "mediating"}, {"mediating", "agreed"}, {"agreed", "closed"}} {
		m := mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_TRANSITION, disputeID, cut, map[string]string{"status": mv[1]})
		m.FromStatus = mv[0]
		r, _ = mustApply(t, r, m, a)
	}
	h := r.GetHistory()
	want := [][2]string{{"", "open"}, {"open", "mediating"}, {"mediating", "agreed"}, {"agreed", "closed"}}
	if len(h) != len(want) {
		t.Fatalf("history %v, want %d entries", h, len(want))
	}
	for i, c := range h {
		if c.GetFrom() != want[i][0] || c.GetTo() != want[i][1] {
			t.Fatalf("history entry %d is %s -> %s, want %s -> %s: %v", i, c.GetFrom(), c.GetTo(), want[i][0], want[i][1], h)
		}
		if i > 0 && c.GetHlc() <= h[i-1].GetHlc() {
			t.Fatalf("history entry %d is stamped %s, not after the entry before (%s)", i, c.GetHlc(), h[i-1].GetHlc())
		}
	}
	if got := fieldValue(r, "status"); got != "closed" {
		t.Fatalf("status %q, want closed", got)
	}
	// Merged with itself or with an earlier state, the order holds.
	if got := domain.MergeRecords(r, r); !equalHistory(got.GetHistory(), h) {
		t.Fatalf("merged with itself the history reads %v", got.GetHistory())
	}
}

func equalHistory(a, b []*pb.StatusChange) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].GetFrom() != b[i].GetFrom() || a[i].GetTo() != b[i].GetTo() || a[i].GetHlc() != b[i].GetHlc() {
			return false
		}
	}
	return true
}
