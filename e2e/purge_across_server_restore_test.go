package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// A household leaves a member's scope while the member's phone is offline,
// and the server is rebased (a new lineage, as after syncd restore) before
// the phone syncs again. The phone purges the household and its visit, and
// the visit's acknowledged mutation (kept in case the server goes back)
// goes with them, as it does without the new lineage: a record purged from
// a device leaves no copy of its data in the outbox.
func TestPurgeAcrossNewLineageTakesAcknowledgedMutations(t *testing.T) {
	for _, rebase := range []bool{false, true} {
		t.Run(fmt.Sprintf("rebase=%v", rebase), func(t *testing.T) { purgeAcrossLineage(t, rebase) })
	}
}

func purgeAcrossLineage(t *testing.T, rebase bool) {
	e := testenv.Start(t)
	e.ImportSample()
	m1 := e.Device(testenv.Member)
	v := visits(t, m1, "H001", "needs of a household that leaves", 1)[0]
	testenv.Sync(t, m1)
	if st := must[*syncer.Status](t)(m1.Status()); st.Acked != 1 {
		t.Fatalf("after the first sync the phone keeps %d acknowledged mutations, want 1 (the visit)", st.Acked)
	}
	if rebase {
		e.Stop()
		db := filepath.Join(e.Dir, "fieldsync.db")
		st := must[*store.Server](t)(store.OpenServer(context.Background(), db))
		must[store.Lineage](t)(st.Rebase(context.Background()))
		ok(t, st.Close())
		e = restart(t, e)
	}
	admin, actx := e.Admin()
	must[*pb.AssignHouseholdResponse](t)(admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: "H001", MemberId: testenv.Member2}))
	testenv.Sync(t, m1)
	testenv.Sync(t, m1)
	lacks(t, m1, "H001", v)
	if st := must[*syncer.Status](t)(m1.Status()); st.Acked != 0 {
		t.Fatalf("the phone keeps %d acknowledged mutations after the visit they carry was purged, want 0", st.Acked)
	}
}
