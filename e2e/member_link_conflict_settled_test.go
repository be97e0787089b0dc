package e2e

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// The village secretary unlinks H001 on their phone (offline: the family
// moved in with relatives) just before an administrator, at the server,
// reassigns it to another member. The administrator's link is the later
// write and stands; the secretary's unlink is a conflict on member_id in
// the inbox, and the server's links follow what stands, not the loser.
// The secretary keeps their own value from the inbox: the server unlinks
// the household, audits it with the secretary's name, and after a sync
// neither member's phone holds it.
func TestSecretaryUnlinkMeetsAdminReassignSettledFromInbox(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	m1 := e.Device(testenv.Member)
	m2 := e.Device(testenv.Member2)
	sec := e.Device(testenv.Secretary)
	all := []*syncer.Device{m1, m2, sec}
	syncAll(t, all...)
	ctx := t.Context()
	linked := func(member string) bool {
		return slices.Contains(must[[]string](t)(e.Store.LinkedHouseholds(ctx, member)), "H001")
	}

	ok(t, sec.Update("H001", syncer.NewFields().Set("member_id", "")))
	admin, actx := e.Admin()
	must[*pb.AssignHouseholdResponse](t)(admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: "H001", MemberId: testenv.Member2}))
	syncAll(t, all...)
	noRejections(t, "the secretary", sec)
	h := serverRecord(t, e, "H001")
	if h.GetFields()["member_id"].GetValue() != testenv.Member2 || !keeps(h, "member_id", "") {
		t.Fatalf("member_id %q, conflicts %v; want %s standing and the unlink as a conflict", h.GetFields()["member_id"].GetValue(), h.GetConflicts(), testenv.Member2)
	}
	if !linked(testenv.Member2) || linked(testenv.Member) {
		t.Errorf("links do not follow the value that stands (%s)", testenv.Member2)
	}
	holds(t, e, m2, "H001")
	lacks(t, m1, "H001")
	if !inboxHas(t, sec, "H001", "member_id") {
		t.Fatalf("the secretary's inbox does not list the member_id conflict")
	}

	audited := len(must[[]store.AuditEntry](t)(e.Store.AuditLog(ctx, 0, 1000)))
	ok(t, sec.KeepMine("H001", "member_id"))
	syncAll(t, all...)
	noRejections(t, "the secretary", sec)
	h = serverRecord(t, e, "H001")
	if h.GetFields()["member_id"].GetValue() != "" || len(h.GetConflicts()) != 0 {
		t.Errorf("after the settle: member_id %q, conflicts %v; want unlinked, none", h.GetFields()["member_id"].GetValue(), h.GetConflicts())
	}
	if linked(testenv.Member2) || linked(testenv.Member) {
		t.Errorf("H001 is still linked after the secretary's unlink")
	}
	lacks(t, m1, "H001")
	lacks(t, m2, "H001")
	cleared(t, e, sec, "H001")

	entries := must[[]store.AuditEntry](t)(e.Store.AuditLog(ctx, 0, 1000))[audited:]
	if len(entries) != 1 {
		t.Fatalf("audit entries of the settle: %+v, want one", entries)
	}
	var detail map[string]string
	ok(t, json.Unmarshal([]byte(entries[0].Detail), &detail))
	if a := entries[0]; a.Action != store.AuditAssignHousehold || a.Target != "H001" || a.Actor != "secretary:"+testenv.Secretary ||
		detail["member_id"] != "" || detail["previous_member_id"] != testenv.Member2 {
		t.Errorf("audit entry %s %s by %s, detail %s; want the secretary unlinking H001 from %s", a.Action, a.Target, a.Actor, a.Detail, testenv.Member2)
	}
}
