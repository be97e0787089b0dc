package server_test

import (
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// TestImportRetiresAHousehold: an import row with `retired` voids the
// household (reason, the administrator, the server's time); a later
// import without it leaves it retired; it then refuses new visits,
// needs, reports and projects naming it (code voided) and its own edits;
// a retirement reason is checked like any name.
func TestImportRetiresAHousehold(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	admin, ctx := e.Admin()
	h := testenv.SampleOrg().GetHouseholds()[0] // H001, linked to Member
	imp := func(h *pb.Household) *pb.ImportOrgResponse {
		t.Helper()
		resp, err := admin.ImportOrg(ctx, &pb.ImportOrgRequest{Households: []*pb.Household{h}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	bad := &pb.Household{Id: h.GetId(), GridId: h.GetGridId(), Head: h.GetHead(), Retired: "搬走\x1b[2J"}
	if resp := imp(bad); len(resp.GetErrors()) != 1 || resp.GetErrors()[0].GetField() != "retired" {
		t.Fatalf("a retirement reason with an escape: %v, want refused naming retired", resp.GetErrors())
	}
	if stored(t, e, "H001").GetVoid() != nil {
		t.Fatal("a refused row retired the household")
	}

	retired := &pb.Household{Id: h.GetId(), GridId: h.GetGridId(), Head: h.GetHead(), Address: h.GetAddress(), Phone: h.GetPhone(), Members: h.GetMembers(), Retired: "全家搬走"}
	if resp := imp(retired); len(resp.GetErrors()) != 0 {
		t.Fatal(resp.GetErrors())
	}
	v := stored(t, e, "H001").GetVoid()
	if v.GetReason() != "全家搬走" || v.GetAtMs() == 0 || v.GetAuthorId() == "" || v.GetHlc() == "" {
		t.Fatalf("void %v: want the reason, the administrator and the time", v)
	}
	again := &pb.Household{Id: h.GetId(), GridId: h.GetGridId(), Head: h.GetHead(), Address: h.GetAddress(), Phone: h.GetPhone(), Members: h.GetMembers()}
	imp(again)
	if got := stored(t, e, "H001").GetVoid(); got.GetReason() != "全家搬走" {
		t.Fatalf("after an import without retired: void %v, want it kept", got)
	}

	member, sec := newRawPhone(t, e, testenv.Member), newRawPhone(t, e, testenv.Secretary)
	member.mustRefuse("visit", create(newID(), pb.Kind_KIND_VISIT, map[string]string{"household_id": "H001", "visited_on": "2026-12-01"}), domain.CodeVoided, "visit.household_id")
	member.mustRefuse("need", create(newID(), pb.Kind_KIND_NEED, map[string]string{"village_id": testenv.Village, "category": "other", "summary": "x", "household_id": "H001"}), domain.CodeVoided, "need.household_id")
	member.mustRefuse("report", create(newID(), pb.Kind_KIND_DISPUTE, map[string]string{"village_id": testenv.Village, "category": "hazard", "title": "x", "household_id": "H001"}), domain.CodeVoided, "dispute.household_id")
	sec.mustRefuse("project", create(newID(), pb.Kind_KIND_PROJECT, map[string]string{"village_id": testenv.Village, "title": "x", "households": "H002,H001"}), domain.CodeVoided, "project.households")
	member.mustRefuse("edit", op("H001", pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_UPDATE, map[string]string{"phone": "1"}), domain.CodeVoided, "household")
	// The member still reads it, marked.
	if got := member.read("H001"); got.GetVoid() == nil {
		t.Errorf("the member reads %v, want it marked retired", got)
	}
	member.mustApply("a visit to another household", create(newID(), pb.Kind_KIND_VISIT, map[string]string{"household_id": "H002", "visited_on": "2026-12-01"}))
}
