package e2e

import (
	"errors"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

func visitTo(household string) *syncer.Fields {
	return syncer.NewFields().Set("household_id", household).Set("visited_on", "2026-11-20")
}

// A device that knows its member's links (from its last sync) refuses,
// offline, a visit to a household not linked to the member, with the
// server's rule and words; one that never synced accepts it as before and
// the server refuses it.
func TestVisitToUnlinkedHouseholdRefusedOfflineOnceLinksAreKnown(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	d := e.Device(testenv.Member)

	// Never synced: the device cannot tell, the server does.
	early, err := d.Create("visit", visitTo("H004"))
	if err != nil {
		t.Fatalf("a visit before any sync: %v", err)
	}
	rep := testenv.Sync(t, d)
	if rep.Rejected != 1 {
		t.Fatalf("first sync rejected %d, want the early visit", rep.Rejected)
	}
	rejs, err := d.Rejections()
	if err != nil || len(rejs) != 1 || rejs[0].RecordID != early {
		t.Fatalf("rejections: %+v, %v", rejs, err)
	}
	serverSays := rejs[0].Field + ": " + rejs[0].Reason

	// Synced: the device knows H004 is linked to another member.
	_, err = d.Create("visit", visitTo("H004"))
	var r *domain.Rejection
	if !errors.As(err, &r) || r.Code != domain.CodePermissionDenied || r.Field != "visit.household_id" ||
		!strings.HasPrefix(r.Error(), serverSays) || !strings.Contains(r.Reason, "sync first") {
		t.Fatalf("offline visit to an unlinked household: %v, want a rejection starting %q", err, serverSays)
	}
	st, err := d.Status()
	if err != nil || st.Pending != 0 {
		t.Errorf("the refused visit was queued: %+v, %v", st, err)
	}
	// Its own households are still open to visits.
	if _, err := d.Create("visit", visitTo("H001")); err != nil {
		t.Errorf("a visit to a linked household: %v", err)
	}
	if rep := testenv.Sync(t, d); rep.Applied != 1 || rep.Rejected != 0 {
		t.Errorf("sync of the linked visit: %+v", rep)
	}
}
