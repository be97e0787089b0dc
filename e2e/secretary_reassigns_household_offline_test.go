package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// The village secretary, with the server out of reach, hands household
// H001 from one member to another (household.member_id on their phone).
// After the sync the server links H001 to the new member; the old member's
// phone purges the household with its visits and needs, the new member's
// phone pulls them (a visit the old member recorded meanwhile is refused
// and kept on their phone), and the audit log names the secretary as the one who
// moved it, from whom to whom.
func TestSecretaryReassignsHouseholdOffline(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	from := e.Device(testenv.Member)
	to := e.Device(testenv.Member2)
	sec := e.Device(testenv.Secretary)
	syncAll(t, from, to, sec)
	visit := must[string](t)(from.Create("visit", syncer.NewFields().Set("household_id", "H001").
		Set("visited_on", "2026-11-15").Set("met", "張大山").Set("needs", "孫子上學路遠")))
	need := must[string](t)(from.Create("need", syncer.NewFields().Set("village_id", testenv.Village).
		Set("household_id", "H001").Set("visit_id", visit).Set("category", "education").Set("summary", "孫子上學路遠")))
	syncAll(t, from, to, sec)
	noRejections(t, "the old member", from)
	holds(t, e, from, "H001", visit, need)
	lacks(t, to, "H001", visit, need)
	if it := must[*syncer.Item](t)(sec.Get("H001")); it.Field("member_id") != testenv.Member {
		t.Errorf("before: the secretary's phone shows H001 linked to %q, want %s (the import's assignment)", it.Field("member_id"), testenv.Member)
	}
	auditBefore := len(must[[]store.AuditEntry](t)(e.Store.AuditLog(t.Context(), 0, 1000)))

	e.Stop()
	ok(t, sec.Update("H001", syncer.NewFields().Set("member_id", testenv.Member2)))
	if it := must[*syncer.Item](t)(sec.Get("H001")); it.State != "pending" || it.Field("member_id") != testenv.Member2 {
		t.Fatalf("secretary's phone shows H001 %s, member_id %q; want pending, %s", it.State, it.Field("member_id"), testenv.Member2)
	}
	// Not knowing yet, the old member records another visit to H001.
	late := must[string](t)(from.Create("visit", syncer.NewFields().Set("household_id", "H001").
		Set("visited_on", "2026-11-21").Set("met", "張大山").Set("help", "送去入學申請表")))
	e = restart(t, e)
	testenv.Sync(t, sec)
	syncAll(t, from, to, sec)
	noRejections(t, "the secretary", sec)

	ctx := context.Background()
	if got := serverRecord(t, e, "H001").GetFields()["member_id"].GetValue(); got != testenv.Member2 {
		t.Errorf("server's H001.member_id = %q, want %s", got, testenv.Member2)
	}
	if linked := must[[]string](t)(e.Store.LinkedHouseholds(ctx, testenv.Member2)); !slices.Contains(linked, "H001") {
		t.Errorf("links of %s: %v, want H001 among them", testenv.Member2, linked)
	}
	if linked := must[[]string](t)(e.Store.LinkedHouseholds(ctx, testenv.Member)); slices.Contains(linked, "H001") {
		t.Errorf("links of %s still hold H001: %v", testenv.Member, linked)
	}
	// Both phones converge: the old one holds nothing of H001, the new one
	// all of it; each keeps its own households.
	lacks(t, from, "H001", visit, need)
	// The old member's late visit reached the server after the household
	// left them: refused, and kept on their phone with its text and why.
	if r := rejection(t, from, late, "create"); r.Code != domain.CodePermissionDenied || r.Field != "visit.household_id" {
		t.Errorf("the late visit's rejection: %+v, want permission_denied on visit.household_id", r)
	}
	if it := must[*syncer.Item](t)(from.Get(late)); it.State != "rejected" || it.Field("help") != "送去入學申請表" {
		t.Errorf("the late visit shows %s with help %q, want rejected and its text kept", it.State, it.Field("help"))
	}
	if _, in := must[map[string]uint64](t)(from.Cursors())[domain.HouseholdBucket("H001")]; in {
		t.Errorf("the old member's phone keeps a cursor on h:H001")
	}
	holds(t, e, from, "H002", "H003")
	holds(t, e, to, "H001", visit, need, "H004", "H005")
	holds(t, e, sec, "H001", visit, need)
	for d, rejected := range map[*syncer.Device]int{from: 1, to: 0, sec: 0} {
		if st := must[*syncer.Status](t)(d.Status()); st.Pending != 0 || st.Rejected != rejected {
			t.Errorf("a phone has %d pending and %d rejected, want none pending and %d rejected", st.Pending, st.Rejected, rejected)
		}
	}

	// The audit log: one new entry, on H001, by the secretary (their device,
	// or their name), saying from whom to whom.
	entries := must[[]store.AuditEntry](t)(e.Store.AuditLog(ctx, 0, 1000))[auditBefore:]
	secDevice := deviceID(t, sec)
	var found []store.AuditEntry
	for _, a := range entries {
		if a.Target == "H001" {
			found = append(found, a)
		}
	}
	if len(found) != 1 {
		t.Fatalf("audit entries on H001 after the secretary's reassignment: %+v, want one", found)
	}
	a := found[0]
	var detail map[string]string
	if err := json.Unmarshal([]byte(a.Detail), &detail); err != nil {
		t.Fatalf("audit entry's detail %q: %v", a.Detail, err)
	}
	if a.Action != store.AuditAssignHousehold || a.Actor != "secretary:"+testenv.Secretary || detail["by"] != "周書記" ||
		detail["device_id"] != secDevice || detail["previous_member_id"] != testenv.Member || detail["member_id"] != testenv.Member2 {
		t.Errorf("audit entry %s by %s, detail %s; want %s by secretary:%s (周書記, device %s) from %s to %s",
			a.Action, a.Actor, a.Detail, store.AuditAssignHousehold, testenv.Secretary, secDevice, testenv.Member, testenv.Member2)
	}
	if _, err := e.Store.VerifyAudit(ctx); err != nil {
		t.Errorf("audit chain: %v", err)
	}
}
