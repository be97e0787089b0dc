package domain_test

import (
	"testing"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// A device's own successive edits of one field: the later one wins even
// when its clock is not later (the server cut a clock that ran ahead to the
// same limit, or the phone's clock jumped back), and no conflict is made.
func TestOwnSuccessiveEditsWinWhateverTheClock(t *testing.T) {
	for _, tc := range []struct {
		name         string
		first, again string // the two edits' clocks
	}{
		{"equal clocks (both cut to the limit)", hlc(wall0+10, 0, "devA"), hlc(wall0+10, 0, "devA")},
		{"clock jumped back", hlc(wall0+10, 0, "devA"), hlc(wall0+5, 0, "devA")},
		{"ordinary", hlc(wall0+10, 0, "devA"), hlc(wall0+11, 0, "devA")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newHousehold(t, hlc(wall0, 0, "devS"))
			a := memberA
			m1 := update(pb.Kind_KIND_HOUSEHOLD, householdID, tc.first, map[string]string{"phone": "1"}, map[string]string{"phone": hlc(wall0, 0, "devS")})
			r, c1 := mustApply(t, r, m1, a)
			// The second edit's base is the first's clock as the device made
			// it, which the server may have cut.
			m2 := update(pb.Kind_KIND_HOUSEHOLD, householdID, tc.again, map[string]string{"phone": "2"}, map[string]string{"phone": hlc(wall0+99, 0, "devA")})
			r, c2 := mustApply(t, r, m2, a)
			if c1 || c2 || len(r.GetConflicts()) != 0 {
				t.Fatalf("conflicts %v (reported %v %v), want none", r.GetConflicts(), c1, c2)
			}
			if got := fieldValue(r, "phone"); got != "2" {
				t.Fatalf("phone = %q, want the later edit 2", got)
			}
			if got := r.GetFields()["phone"].GetHlc(); got < tc.first {
				t.Fatalf("the field's clock went back to %s from %s", got, tc.first)
			}
		})
	}
	// Another device's edit made without seeing the first is still a
	// conflict.
	r := newHousehold(t, hlc(wall0, 0, "devS"))
	r, _ = mustApply(t, r, update(pb.Kind_KIND_HOUSEHOLD, householdID, hlc(wall0+10, 0, "devA"), map[string]string{"phone": "1"}, map[string]string{"phone": hlc(wall0, 0, "devS")}), memberA)
	r, c := mustApply(t, r, update(pb.Kind_KIND_HOUSEHOLD, householdID, hlc(wall0+20, 0, "devB"), map[string]string{"phone": "2"}, map[string]string{"phone": hlc(wall0, 0, "devS")}), memberB)
	if !c || len(r.GetConflicts()) != 1 {
		t.Fatalf("a concurrent edit by another device: conflict %v, conflicts %v", c, r.GetConflicts())
	}
}
