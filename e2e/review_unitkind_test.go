package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Review (session 8): re-importing village V1 as a grid of V2 counted as V1
// "moving" into V2, and its people were given village V2: S1, still a
// village secretary, then read every household, visit, dispute and event
// of V2, whose secretary is S2. A unit's kind cannot change any more: the
// row is refused, naming the field, and nothing moves.
func TestReviewUnitKindChangeLeaksScope(t *testing.T) {
	f := newScopeFixture(t)
	e := f.e
	s1 := e.Device("S1")
	testenv.Sync(t, s1)
	v2 := []string{"H3", f.id(t, "VH3"), f.id(t, "X3"), f.id(t, "E_M3")}
	lacks(t, s1, v2...)

	admin, ctx := e.Admin()
	resp, err := admin.ImportOrg(ctx, &pb.ImportOrgRequest{Units: []*pb.Unit{
		{Id: "V1", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "V2", Name: "彭店村"}}})
	ok(t, err)
	if len(resp.GetErrors()) != 1 || resp.GetErrors()[0].GetField() != "kind" ||
		!strings.Contains(resp.GetErrors()[0].GetMessage(), "V1 is a village, and a unit's kind cannot change") {
		t.Errorf("import of V1 as a grid: %v, want the kind refused", resp.GetErrors())
	}
	if resp.GetUnits() != 0 || resp.GetRecordsMoved() != 0 {
		t.Errorf("import of V1 as a grid: %d units stored, %d records moved; want none", resp.GetUnits(), resp.GetRecordsMoved())
	}
	u, err := e.Store.User(context.Background(), "S1")
	ok(t, err)
	if u.VillageID != "V1" || u.TownID != "T1" {
		t.Errorf("S1 (secretary of V1) now works in %s/%s, want V1/T1", u.VillageID, u.TownID)
	}
	testenv.Sync(t, s1)
	lacks(t, s1, v2...)
}
