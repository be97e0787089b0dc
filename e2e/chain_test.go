package e2e

import (
	"context"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// A member's grid moves to another village while their phone is offline;
// the phone still files its next event in the old village, and the server
// refuses it, but the phone chains its following event on the refused one.
// The stored chain then has a gap; the server keeps the refused event's
// link beside its result (store.RefusedLinks), and with it the chain
// verifies. Without the links it would look like a deleted event.
func TestRefusedEventKeepsItsChainLink(t *testing.T) {
	f := newScopeFixture(t)
	e := f.e
	ctx := context.Background()
	m1 := f.raw["M1"]
	first := serverRecord(t, e, f.id(t, "E_M1"))
	dev := first.GetOriginDeviceId()

	importOrg(t, e, &pb.ImportOrgRequest{Units: []*pb.Unit{{Id: "G1", Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: "V2", Name: "張家塆"}}})
	stale := mkEvent("V1", "代辦醫保報銷", "prev_hash", first.GetFields()["hash"].GetValue())
	next := mkEvent("V2", "入戶走訪", "prev_hash", stale.GetFields()["hash"])
	res := m1.push(stale, next)
	if res[0].GetStatus() != pb.MutationStatus_MUTATION_STATUS_REJECTED || res[1].GetStatus() != pb.MutationStatus_MUTATION_STATUS_APPLIED {
		t.Fatalf("events in the old and the new village: %v; want the first refused, the second applied", res)
	}

	var stored []*pb.Record
	for _, id := range []string{first.GetId(), next.GetRecordId()} {
		stored = append(stored, serverRecord(t, e, id))
	}
	if err := domain.VerifyChain(stored); err == nil {
		t.Fatal("the stored chain verifies without the refused event: the test shows nothing")
	}
	links, err := e.Store.RefusedLinks(ctx)
	ok(t, err)
	want := domain.ChainLink{Prev: first.GetFields()["hash"].GetValue(), Hash: stale.GetFields()["hash"]}
	if len(links[dev]) != 1 || links[dev][0] != want {
		t.Fatalf("refused links of %s: %v, want [%v]", dev, links[dev], want)
	}
	if err := domain.VerifyChain(stored, links[dev]...); err != nil {
		t.Errorf("with the refused event's link: %v", err)
	}
}
