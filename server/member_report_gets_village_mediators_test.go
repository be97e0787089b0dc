package server_test

import (
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// TestMemberReportGoesToTheVillagesMediators: a member's dispute (a
// report) is given every mediator of the village, who read it in their
// queue; the member reads it back but cannot write to it; a report in a
// village with no mediator is kept, with none, for the secretary.
func TestMemberReportGoesToTheVillagesMediators(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member, mediator := newRawPhone(t, e, testenv.Member), newRawPhone(t, e, testenv.Mediator2)
	const D = pb.Kind_KIND_DISPUTE

	visit := newID()
	member.mustApply("visit", create(visit, pb.Kind_KIND_VISIT, map[string]string{"household_id": "H001", "visited_on": "2026-12-01"}))
	id := newID()
	member.mustApply("report", create(id, D, map[string]string{"village_id": testenv.Village, "category": "hazard",
		"title": "危房", "household_id": "H001", "visit_id": visit, "occurred_on": "2026-11-30"}))
	d := stored(t, e, id)
	if got := d.GetFields()["mediators"].GetValue(); got != testenv.Mediator+","+testenv.Mediator2 {
		t.Errorf("report's mediators %q, want the village's two mediators", got)
	}
	if got := d.GetFields()["reported_by"].GetValue(); got != testenv.Member {
		t.Errorf("reported_by %q", got)
	}
	if !slices.Contains(d.GetBuckets(), domain.DisputeBucket(id)) || !slices.Contains(d.GetBuckets(), domain.UserBucket(testenv.Member)) {
		t.Errorf("buckets %v: want the case's own and the reporter's", d.GetBuckets())
	}
	if got := mediator.read(id); got == nil || got.GetFields()["status"].GetValue() != "open" {
		t.Fatalf("the mediator's queue has %v, want the open case", got)
	}
	if got := member.read(id); got == nil || got.GetFields()["mediators"].GetValue() == "" {
		t.Fatalf("the member reads back %v", got)
	}
	// The mediator takes it up; the reporter cannot write to it.
	mediator.mustApply("mediate", &pb.Mutation{RecordId: id, Kind: D, Op: pb.Op_OP_TRANSITION, FromStatus: "open", Fields: map[string]string{"status": "mediating"}})
	member.mustRefuse("reporter's note", op(id, D, pb.Op_OP_APPEND, map[string]string{"notes": "還在漏水"}), domain.CodePermissionDenied, "dispute")

	// A report naming a household of another village is refused.
	member.mustRefuse("report about a household elsewhere", create(newID(), D, map[string]string{"village_id": testenv.Village, "category": "hazard",
		"title": "危房", "household_id": "H006"}), domain.CodeInvalidField, "dispute.household_id")

	// The other village has no mediator: the report is kept, with none.
	outsider := newRawPhone(t, e, testenv.Outsider)
	lone := newID()
	outsider.mustApply("report with no mediator in the village", create(lone, D, map[string]string{"village_id": testenv.Village2, "category": "quarrel", "title": "吵架"}))
	if got := stored(t, e, lone).GetFields()["mediators"].GetValue(); got != "" {
		t.Errorf("mediators %q, want none", got)
	}
	if got := outsider.read(lone); got == nil {
		t.Error("the reporter does not read their report")
	}
}
