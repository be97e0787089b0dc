package e2e

import (
	"testing"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Review (session 8): one import moves grid G1 (V1, T1) to V3 in town T2
// and gives H1 (in G1) grid G2 (V2, T1). The move's re-filing ran before
// the import's households and wrote H1 and its visit to V3/T2, then
// putHousehold wrote them again to V2/T1: H1 never lay in T2 in a
// committed state, yet the changelog carried its whole body (head, phone,
// address) under region T2, and records_moved counted VH1 twice. The
// re-filing now runs after the households: each record is written once,
// to where it now lies.
func TestReviewHouseholdAndItsGridMovedInOneImport(t *testing.T) {
	f := newScopeFixture(t)
	e := f.e
	before := len(waitStream(t, e))
	resp := importOrg(t, e, &pb.ImportOrgRequest{
		Units: []*pb.Unit{{Id: "G1", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "V3", Name: "張家塆"}},
		Households: []*pb.Household{{Id: "H1", GridId: "G2", Head: "歐陽翠花", Address: "彭店村張家塆一組18號",
			Phone: "13800000001", Members: "4"}},
	})
	if m := recordPlace(t, e, "H1"); m.VillageID != "V2" || m.TownID != "T1" {
		t.Fatalf("H1 lies in %s/%s, want V2/T1", m.VillageID, m.TownID)
	}
	// Moved along: VH1 (with H1, an imported household, to V2/T1), and H2
	// and VH2 (with their grid, to V3/T2). H1 itself counts as a household.
	if got, hh := resp.GetRecordsMoved(), resp.GetHouseholds(); got != 3 || hh != 1 {
		t.Errorf("records_moved %d, households %d; want 3 (VH1, H2, VH2, each written once) and 1", got, hh)
	}
	for id, want := range map[string]string{f.id(t, "VH1"): "V2/T1", "H2": "V3/T2", f.id(t, "VH2"): "V3/T2"} {
		if m := recordPlace(t, e, id); m.VillageID+"/"+m.TownID != want {
			t.Errorf("%s lies in %s/%s, want %s", id, m.VillageID, m.TownID, want)
		}
	}
	changes := waitStream(t, e)[before:]
	for _, c := range changes {
		id := c.GetRecord().GetId()
		if (id == "H1" || id == f.id(t, "VH1")) && c.GetRegion() == "T2" {
			t.Errorf("change %d publishes %s (head %q) under region T2, where it never lay", c.GetSeq(), id,
				c.GetRecord().GetFields()["head"].GetValue())
		}
	}
}
