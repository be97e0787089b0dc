package domain_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// users is the server's device-to-user table, as Actor.UserOf sees it.
func users(dev string) string {
	return map[string]string{"devS": "sec1", "devA": "memA", "devB": "memB"}[dev]
}

// Two concurrent edits of one field: whichever order they reach the
// server in, the record ends the same, and the conflict names the user
// who wrote the losing value, with its value and clock. Before, the
// losing value that was already in place (pushed into the conflicts by a
// later edit) had no author, and the one arriving second had one.
func TestConflictNamesItsAuthorWhateverTheOrder(t *testing.T) {
	h0 := hlc(wall0, 0, "devS")
	base := newHousehold(t, h0)
	withUsers := func(a domain.Actor) domain.Actor { a.UserOf = users; return a }
	for _, tc := range []struct {
		name        string
		hA, hB      string // the clocks of the two edits
		winner      string
		loser       string // the losing value
		loserAuthor string
	}{
		{"B later", hlc(wall0+1000, 0, "devA"), hlc(wall0+2000, 0, "devB"), "B", "A", "memA"},
		{"A later", hlc(wall0+3000, 0, "devA"), hlc(wall0+2000, 0, "devB"), "A", "B", "memB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			editA := applyStep{update(pb.Kind_KIND_HOUSEHOLD, householdID, tc.hA, map[string]string{"phone": "A"}, map[string]string{"phone": h0}), withUsers(memberA)}
			editB := applyStep{update(pb.Kind_KIND_HOUSEHOLD, householdID, tc.hB, map[string]string{"phone": "B"}, map[string]string{"phone": h0}), withUsers(memberB)}
			ab, _ := applyAll(t, base, editA, editB)
			ba, _ := applyAll(t, base, editB, editA)
			if !proto.Equal(ab, ba) {
				t.Fatalf("the order of the edits shows in the record:\n\tA then B %v\n\tB then A %v", ab, ba)
			}
			if got := fieldValue(ab, "phone"); got != tc.winner {
				t.Fatalf("phone = %q, want %q", got, tc.winner)
			}
			if len(ab.GetConflicts()) != 1 {
				t.Fatalf("conflicts %v, want one", ab.GetConflicts())
			}
			c := ab.GetConflicts()[0]
			if c.GetValue() != tc.loser || c.GetAuthorId() != tc.loserAuthor || c.GetField() != "phone" {
				t.Fatalf("conflict %v, want phone = %q by %s", c, tc.loser, tc.loserAuthor)
			}
		})
	}
}

// A value pushed into the conflicts names the user of the device that
// wrote it (the node of its clock), found through Actor.UserOf; a value
// written by a device nobody knows keeps an empty author rather than a
// wrong one.
func TestDisplacedValueAuthorComesFromItsClock(t *testing.T) {
	h0 := hlc(wall0, 0, "devS")
	r := newHousehold(t, h0)
	// devX is no device the server knows.
	r, _ = mustApply(t, r, update(pb.Kind_KIND_HOUSEHOLD, householdID, hlc(wall0+10, 0, "devX"), map[string]string{"phone": "X"}, map[string]string{"phone": h0}), domain.Actor{UserID: "memX", DeviceID: "devX"})
	b := memberB
	b.UserOf = users
	r, c := mustApply(t, r, update(pb.Kind_KIND_HOUSEHOLD, householdID, hlc(wall0+20, 0, "devB"), map[string]string{"phone": "B"}, map[string]string{"phone": h0}), b)
	if !c || len(r.GetConflicts()) != 1 || r.GetConflicts()[0].GetAuthorId() != "" || r.GetConflicts()[0].GetValue() != "X" {
		t.Fatalf("conflict %v (reported %v), want X with no author", r.GetConflicts(), c)
	}
	r, c = mustApply(t, r, update(pb.Kind_KIND_HOUSEHOLD, householdID, hlc(wall0+30, 0, "devA"), map[string]string{"phone": "A"}, map[string]string{"phone": h0}), domain.Actor{UserID: "memA", DeviceID: "devA", UserOf: users})
	if !c || len(r.GetConflicts()) != 2 || r.GetConflicts()[1].GetAuthorId() != "memB" || r.GetConflicts()[1].GetValue() != "B" {
		t.Fatalf("conflicts %v (reported %v), want B by memB after X", r.GetConflicts(), c)
	}
}

// An offline edit stamped three days ahead against a later edit made in
// real time, as the server applies them (it cuts the clock to its own
// time plus MaxFutureSkew): the stamped-ahead edit wins when the real-time
// edit was made before it reached the server (or within MaxFutureSkew
// after), whichever syncs first, and the real-time edit is kept as a
// conflict with its author. ARCHITECTURE.md states this outcome.
func TestEditStampedInTheFutureAgainstALaterRealTimeEdit(t *testing.T) {
	t0 := time.UnixMilli(wall0)
	h0 := hlc(wall0, 0, "devS")
	base := newHousehold(t, h0)
	ahead := domain.HLC{Wall: t0.Add(time.Minute + 72*time.Hour).UnixMilli(), Node: "devA"} // made at t0+1m, three days ahead
	inTime := hlc(t0.Add(2*time.Minute).UnixMilli(), 0, "devB")                             // made at t0+2m, in real time
	// As the server stamps them: each cut at the time it is applied.
	apply := func(r *pb.Record, at time.Time, who string) *pb.Record {
		if who == "A" {
			m := update(pb.Kind_KIND_HOUSEHOLD, householdID, domain.ClampFuture(ahead, at).String(), map[string]string{"phone": "A"}, map[string]string{"phone": h0})
			r, _ = mustApply(t, r, m, domain.Actor{UserID: "memA", DeviceID: "devA", UserOf: users})
			return r
		}
		m := update(pb.Kind_KIND_HOUSEHOLD, householdID, domain.ClampFuture(mustParseHLC(t, inTime), at).String(), map[string]string{"phone": "B"}, map[string]string{"phone": h0})
		r, _ = mustApply(t, r, m, domain.Actor{UserID: "memB", DeviceID: "devB", UserOf: users})
		return r
	}
	aFirst := apply(apply(base, t0.Add(3*time.Minute), "A"), t0.Add(4*time.Minute), "B")
	bFirst := apply(apply(base, t0.Add(3*time.Minute), "B"), t0.Add(4*time.Minute), "A")
	for name, r := range map[string]*pb.Record{"A syncs first": aFirst, "B syncs first": bFirst} {
		if got := fieldValue(r, "phone"); got != "A" {
			t.Errorf("%s: phone = %q, want the edit stamped ahead (A)", name, got)
		}
		cs := r.GetConflicts()
		if len(cs) != 1 || cs[0].GetValue() != "B" || cs[0].GetAuthorId() != "memB" || cs[0].GetHlc() != inTime {
			t.Errorf("%s: conflicts %v, want B by memB at %s", name, cs, inTime)
		}
		// Cut to at most the server's time plus the tolerance.
		if h := mustParseHLC(t, r.GetFields()["phone"].GetHlc()); h.Wall > t0.Add(4*time.Minute+domain.MaxFutureSkew).UnixMilli() {
			t.Errorf("%s: the winning clock %v lies beyond the tolerance", name, h)
		}
	}
}
