package server_test

import (
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// extraPeople adds a secretary of the other village to the sample org.
func extraPeople(t *testing.T, e *testenv.Env) {
	t.Helper()
	admin, ctx := e.Admin()
	resp, err := admin.ImportOrg(ctx, &pb.ImportOrgRequest{Users: []*pb.User{
		{Id: "U-sec2", Name: "吳書記", Role: pb.Role_ROLE_SECRETARY, UnitId: testenv.Village2},
	}})
	if err != nil || len(resp.GetErrors()) > 0 {
		t.Fatalf("import: %v %v", resp.GetErrors(), err)
	}
}

// TestNewNeedsAndProjectsLieInTheWritersVillage: a need or project is
// filed in the writer's own village; a need's household must lie there
// (and, from a member, be linked to them), its visit be a visit of that
// household; a project's leader and households must be of its village.
func TestNewNeedsAndProjectsLieInTheWritersVillage(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member, sec := newRawPhone(t, e, testenv.Member), newRawPhone(t, e, testenv.Secretary)
	const N, P = pb.Kind_KIND_NEED, pb.Kind_KIND_PROJECT
	need := func(extra map[string]string) map[string]string {
		f := map[string]string{"village_id": testenv.Village, "category": "medical", "summary": "藥費困難"}
		for k, v := range extra {
			f[k] = v
		}
		return f
	}

	visit := newID()
	member.mustApply("visit to H001", create(visit, pb.Kind_KIND_VISIT, map[string]string{"household_id": "H001", "visited_on": "2026-12-01"}))

	// Refused.
	member.mustRefuse("need in the other village", create(newID(), N, need(map[string]string{"village_id": testenv.Village2})), domain.CodePermissionDenied, "need.village_id")
	member.mustRefuse("need of an unknown village", create(newID(), N, need(map[string]string{"village_id": "V99"})), domain.CodeNotFound, "need.village_id")
	member.mustRefuse("need of a household not linked to the member", create(newID(), N, need(map[string]string{"household_id": "H004"})), domain.CodePermissionDenied, "need.household_id")
	member.mustRefuse("need of an unknown household", create(newID(), N, need(map[string]string{"household_id": "H999"})), domain.CodeNotFound, "need.household_id")
	sec.mustRefuse("need of a household of another village", create(newID(), N, need(map[string]string{"household_id": "H006"})), domain.CodeInvalidField, "need.household_id")
	member.mustRefuse("need naming a visit of another household", create(newID(), N, need(map[string]string{"household_id": "H002", "visit_id": visit})), domain.CodeInvalidField, "need.visit_id")
	member.mustRefuse("need naming an unknown visit", create(newID(), N, need(map[string]string{"household_id": "H001", "visit_id": newID()})), domain.CodeNotFound, "need.visit_id")
	member.mustRefuse("need naming a visit but no household", create(newID(), N, need(map[string]string{"visit_id": visit})), domain.CodeInvalidField, "need.visit_id")
	sec.mustRefuse("project led by a member of another village", create(newID(), P, map[string]string{"village_id": testenv.Village, "title": "修路", "leader_id": testenv.Outsider}), domain.CodeInvalidField, "project.leader_id")
	sec.mustRefuse("project led by a mediator", create(newID(), P, map[string]string{"village_id": testenv.Village, "title": "修路", "leader_id": testenv.Mediator}), domain.CodeInvalidField, "project.leader_id")
	sec.mustRefuse("project for a household of another village", create(newID(), P, map[string]string{"village_id": testenv.Village, "title": "修路", "households": "H001,H006"}), domain.CodeInvalidField, "project.households")
	sec.mustRefuse("project in the other village", create(newID(), P, map[string]string{"village_id": testenv.Village2, "title": "修路"}), domain.CodePermissionDenied, "project.village_id")
	member.mustRefuse("member's project in the other village", create(newID(), P, map[string]string{"village_id": testenv.Village2, "title": "修路"}), domain.CodePermissionDenied, "project.village_id")

	// Allowed.
	member.mustApply("member's need from a visit", create(newID(), N, need(map[string]string{"household_id": "H001", "visit_id": visit})))
	member.mustApply("member's need without a household", create(newID(), N, need(nil)))
	sec.mustApply("secretary's need of any household of the village", create(newID(), N, need(map[string]string{"household_id": "H004"})))
	sec.mustApply("secretary's project led by a member", create(newID(), P, map[string]string{"village_id": testenv.Village, "title": "修路", "leader_id": testenv.Member2, "households": "H004,H005"}))
	proj := newID()
	member.mustApply("member's own project", create(proj, P, map[string]string{"village_id": testenv.Village, "title": "安路燈", "households": "H001"}))
	if got := stored(t, e, proj).GetFields()["leader_id"].GetValue(); got != testenv.Member {
		t.Errorf("member's project led by %q, want the member", got)
	}
	// A change of its households adds only households of the village.
	member.mustRefuse("adding a household of another village", op(proj, P, pb.Op_OP_UPDATE, map[string]string{"households": "H001,H006"}), domain.CodeInvalidField, "project.households")
	member.mustApply("adding a household of the village", op(proj, P, pb.Op_OP_UPDATE, map[string]string{"households": "H001,H002"}))
}
