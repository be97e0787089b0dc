package server_test

import (
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// TestTownSecretaryWorksInEveryVillageOfTheTown: a town secretary files
// needs and projects in any village of the town, voids there, and links
// a household only to a member of the household's own village.
func TestTownSecretaryWorksInEveryVillageOfTheTown(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	admin, ctx := e.Admin()
	resp, err := admin.ImportOrg(ctx, &pb.ImportOrgRequest{
		Units: []*pb.Unit{{Id: "T02", Kind: pb.UnitKind_UNIT_KIND_TOWN, Name: "岐亭鎮"}, {Id: "V03", Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: "T02", Name: "杏花村"}},
		Users: []*pb.User{{Id: "U-tsec", Name: "鎮書記", Role: pb.Role_ROLE_SECRETARY, UnitId: testenv.Town}},
	})
	if err != nil || len(resp.GetErrors()) > 0 {
		t.Fatalf("import: %v %v", resp.GetErrors(), err)
	}
	tsec, m1 := newRawPhone(t, e, "U-tsec"), newRawPhone(t, e, testenv.Member)

	tsec.mustApply("need in village 2", create(newID(), pb.Kind_KIND_NEED, map[string]string{"village_id": testenv.Village2, "category": "other", "summary": "x", "household_id": "H006"}))
	tsec.mustApply("project in village 1", create(newID(), pb.Kind_KIND_PROJECT, map[string]string{"village_id": testenv.Village, "title": "x", "leader_id": testenv.Member}))
	tsec.mustRefuse("need in another town", create(newID(), pb.Kind_KIND_NEED, map[string]string{"village_id": "V03", "category": "other", "summary": "x"}), domain.CodePermissionDenied, "need.village_id")

	v := newID()
	m1.mustApply("visit", create(v, pb.Kind_KIND_VISIT, map[string]string{"household_id": "H001", "visited_on": "2026-12-01"}))
	tsec.mustApply("void a visit of the town", void(v, pb.Kind_KIND_VISIT))

	base := stored(t, e, "H006").GetFields()["member_id"].GetHlc()
	link := &pb.Mutation{RecordId: "H006", Kind: pb.Kind_KIND_HOUSEHOLD, Op: pb.Op_OP_UPDATE, Fields: map[string]string{"member_id": testenv.Member}, BaseHlc: map[string]string{"member_id": base}}
	tsec.mustRefuse("link H006 (village 2) to a member of village 1", link, domain.CodeInvalidField, "household.member_id")
	link.Fields["member_id"] = ""
	tsec.mustApply("unlink H006", link)
	if hs := linkedTo(t, e, testenv.Outsider); len(hs) != 0 {
		t.Errorf("outsider still links %v", hs)
	}
}
