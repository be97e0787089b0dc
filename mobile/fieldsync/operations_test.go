package fieldsync

import (
	"slices"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/mobile/fieldsync/schema"
)

// ids lists the ids of a page's records.
func ids(rs []schema.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// A member's day through the SDK, against a real syncd and encrypted
// replicas: enroll from the scanned code, the households due this month,
// a visit written offline then synced, an edit, a report of a dispute
// that a mediator then works (transition, notes, sessions, a transition
// with fields), a need a secretary refers, an event voided, lists with
// filters and paging, and one record with its history and entries. Every
// answer parses into its documented struct and nothing more.
func TestMemberDayEveryOperation(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := phone(t, e, testenv.Member)
	mediator := phone(t, e, testenv.Mediator)
	sec := phone(t, e, testenv.Secretary)

	id := decode[schema.Identity](t, must[string](t)(member.Identity()))
	if id.UserID != testenv.Member || id.Role != "member" || id.VillageID != testenv.Village || id.UserName != "張國華" || id.DeviceID == "" {
		t.Fatalf("identity %+v", id)
	}
	if rep := syncOnce(t, member); rep.Pulled != 3 || !rep.Changed {
		t.Fatalf("first sync %+v: want the member's 3 households", rep)
	}
	syncOnce(t, mediator)
	syncOnce(t, sec)

	month := time.Now().Format("2006-01")
	today := time.Now().Format("2006-01-02")
	hh := decode[schema.Page[schema.Household]](t, must[string](t)(member.MyHouseholds(month, 0, 0)))
	if hh.Total != 3 || len(hh.Items) != 3 || hh.More {
		t.Fatalf("my households: %+v, want H001-H003", hh)
	}
	for _, h := range hh.Items {
		if !h.Due || h.VisitsInMonth != 0 || h.Fields["grid_id"] != testenv.Grid {
			t.Fatalf("household %+v before any visit: want due", h)
		}
	}

	// A visit, offline (no sync yet): readable at once, pending.
	visit := must[string](t)(member.RecordVisit("H001", today, "張大山夫婦", "屋頂漏水", "", "下週再看"))
	v := get(t, member, visit)
	if v.Kind != "visit" || v.State != "pending" || v.Fields["met"] != "張大山夫婦" || v.Fields["household_id"] != "H001" || v.Version != 0 {
		t.Fatalf("visit before sync: %+v", v)
	}
	if _, has := v.Fields["help"]; has {
		t.Fatalf("an empty field is sent: %+v", v.Fields)
	}
	if st := status(t, member); st.Pending != 1 || !st.Enrolled || st.Identity == nil || st.Identity.UserID != testenv.Member {
		t.Fatalf("status %+v: want 1 pending", st)
	}
	hh = decode[schema.Page[schema.Household]](t, must[string](t)(member.MyHouseholds("", 0, 2)))
	if hh.Total != 3 || len(hh.Items) != 2 || !hh.More || hh.Items[0].ID != "H002" || hh.Items[1].ID != "H003" {
		t.Fatalf("due households first, 2 a page: %+v", hh)
	}
	hh = decode[schema.Page[schema.Household]](t, must[string](t)(member.MyHouseholds("", 2, 2)))
	if len(hh.Items) != 1 || hh.More || hh.Items[0].ID != "H001" || hh.Items[0].Due || hh.Items[0].VisitsInMonth != 1 || hh.Items[0].LastVisitOn != today {
		t.Fatalf("visited household on the second page: %+v", hh)
	}
	if rep := syncOnce(t, member); rep.Pushed != 1 || rep.Applied != 1 || !rep.Changed || rep.Calls < 1 {
		t.Fatalf("sync of the visit: %+v", rep)
	}
	if v = get(t, member, visit); v.State != "synced" || v.Version == 0 || v.AuthorID != testenv.Member || v.CreatedMs == 0 {
		t.Fatalf("visit after sync: %+v", v)
	}
	ok(t, member.Update(visit, `{"help":"送了防水布"}`))
	if v = get(t, member, visit); v.Fields["help"] != "送了防水布" || v.State != "pending" {
		t.Fatalf("visit after update: %+v", v)
	}

	// A member reports a dispute; the village's mediators get it.
	dispute := must[string](t)(member.OpenDispute("quarrel", "鄰里糾紛：排水溝", "張大山、張小河", today))
	need := must[string](t)(member.RaiseNeed("H001", "housing", "屋頂漏水", "雨季前要修"))
	event := must[string](t)(member.LogEvent("meeting", today, "黨員大會", "學習"))
	if ev := get(t, member, event); len(ev.Fields["hash"]) != 64 {
		t.Fatalf("event without its hash: %+v", ev)
	}
	syncOnce(t, member)
	syncOnce(t, mediator)
	cases := decode[schema.Page[schema.Case]](t, must[string](t)(mediator.MyOpenCases(0, 0)))
	if cases.Total != 1 || cases.Items[0].ID != dispute || cases.Items[0].Status != "open" || cases.Items[0].AgeDays != 0 {
		t.Fatalf("mediator's open cases: %+v", cases)
	}
	if mine := decode[schema.Page[schema.Case]](t, must[string](t)(member.MyOpenCases(0, 10))); mine.Total != 1 || mine.Items[0].ID != dispute {
		t.Fatalf("reporter's open cases: %+v", mine)
	}
	ok(t, mediator.Transition(dispute, "mediating", ""))
	ok(t, mediator.AddNote(dispute, "雙方同意下週見面"))
	ok(t, mediator.Append(dispute, "sessions", "第一次調解：在村委會"))
	syncOnce(t, mediator)
	d := get(t, mediator, dispute)
	if d.Status != "mediating" || len(d.History) != 2 || d.History[0].To != "open" || d.History[1].From != "open" || d.History[1].To != "mediating" || d.History[1].AtMs == 0 {
		t.Fatalf("dispute history: %+v", d)
	}
	if len(d.Entries) != 2 || d.Entries[0].Field != "notes" || d.Entries[1].Text != "第一次調解：在村委會" || d.Entries[1].AuthorID != testenv.Mediator {
		t.Fatalf("dispute entries: %+v", d.Entries)
	}
	ok(t, mediator.Transition(dispute, "failed", `{"level":"village","outcome":"未達成協議"}`))
	if d = get(t, mediator, dispute); d.Status != "failed" || d.Fields["outcome"] != "未達成協議" {
		t.Fatalf("dispute failed with its outcome: %+v", d)
	}
	if cases = decode[schema.Page[schema.Case]](t, must[string](t)(mediator.MyOpenCases(0, 0))); cases.Total != 0 || cases.Items == nil {
		t.Fatalf("a failed dispute is no open case: %+v", cases)
	}

	// The secretary sees the village's open need and refers it.
	syncOnce(t, sec)
	needs := decode[schema.Page[schema.Record]](t, must[string](t)(sec.VillageNeeds(0, 0)))
	if needs.Total != 1 || needs.Items[0].ID != need || needs.Items[0].Status != "raised" || needs.Items[0].Entries != nil {
		t.Fatalf("village needs: %+v", needs)
	}
	ok(t, sec.Transition(need, "referred", `{"referral_reason":"轉鎮民政辦"}`))
	syncOnce(t, sec)
	syncOnce(t, member)
	if n := get(t, member, need); n.Status != "referred" || n.Fields["referral_reason"] != "轉鎮民政辦" {
		t.Fatalf("need on the member's phone: %+v", n)
	}

	// Void, and the voided filter.
	ok(t, member.VoidRecord(event, "重複登記"))
	if ev := get(t, member, event); !ev.Voided || ev.Void == nil || ev.Void.Reason != "重複登記" || ev.Void.AuthorID != testenv.Member {
		t.Fatalf("voided event: %+v", ev)
	}
	if p := decode[schema.Page[schema.Record]](t, must[string](t)(member.List(`{"kind":"event"}`))); p.Total != 0 {
		t.Fatalf("voided events are left out by default: %+v", p)
	}
	if p := decode[schema.Page[schema.Record]](t, must[string](t)(member.List(`{"kind":"event","voided":"only"}`))); p.Total != 1 || p.Items[0].ID != event {
		t.Fatalf("voided only: %+v", p)
	}
	// Filters by field and by state, and paging.
	if p := decode[schema.Page[schema.Record]](t, must[string](t)(member.List(`{"kind":"visit","fields":{"household_id":"H001"}}`))); !slices.Equal(ids(p.Items), []string{visit}) {
		t.Fatalf("visits of H001: %+v", p)
	}
	if p := decode[schema.Page[schema.Record]](t, must[string](t)(member.List(`{"state":"pending","voided":"include"}`))); !slices.Equal(ids(p.Items), []string{event}) {
		t.Fatalf("pending records: %v", ids(p.Items))
	}
	all := decode[schema.Page[schema.Record]](t, must[string](t)(member.List("")))
	p1 := decode[schema.Page[schema.Record]](t, must[string](t)(member.List(`{"limit":2}`)))
	p2 := decode[schema.Page[schema.Record]](t, must[string](t)(member.List(`{"limit":2,"offset":2}`)))
	if !p1.More || p1.Total != all.Total || !slices.Equal(append(ids(p1.Items), ids(p2.Items)...), ids(all.Items)[:len(p1.Items)+len(p2.Items)]) {
		t.Fatalf("pages %v + %v, want the start of %v", ids(p1.Items), ids(p2.Items), ids(all.Items))
	}
	if p := decode[schema.Page[schema.Record]](t, must[string](t)(member.List(`{"kind":"household","fields":{"head":"趙春梅"}}`))); !slices.Equal(ids(p.Items), []string{"H003"}) {
		t.Fatalf("household by head (Chinese text byte for byte): %v", ids(p.Items))
	}

	// The secretary assigns H003 to the other member.
	ok(t, sec.Assign("H003", testenv.Member2))
	syncOnce(t, sec)
	if h := get(t, sec, "H003"); h.Fields["member_id"] != testenv.Member2 || h.State != "synced" {
		t.Fatalf("assigned household: %+v", h)
	}
	syncOnce(t, member)
	hh = decode[schema.Page[schema.Household]](t, must[string](t)(member.MyHouseholds("", 0, 0)))
	if hh.Total != 2 {
		t.Fatalf("member after H003 went to another member: %+v", hh)
	}
}

// Conflicts and the three ways to settle them, through the SDK: the
// inbox shows each field with the standing and losing values and the
// member's own; keep mine, take theirs and a new value each clear it, and
// the secretary's phone ends with the settled values.
func TestConflictInboxAndSettle(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member, sec := phone(t, e, testenv.Member), phone(t, e, testenv.Secretary)
	syncOnce(t, member)
	syncOnce(t, sec)
	ok(t, member.Update("H001", `{"phone":"13900000001","tags":"低保","needs":"修屋頂"}`))
	ok(t, sec.Update("H001", `{"phone":"13700000001","tags":"五保","needs":"修路"}`))
	syncOnce(t, member)
	syncOnce(t, sec)
	syncOnce(t, member)
	inbox := decode[[]schema.ConflictItem](t, must[string](t)(member.Conflicts()))
	fields := map[string]schema.ConflictItem{}
	for _, c := range inbox {
		if c.RecordID != "H001" || c.Kind != "household" || len(c.Losing) != 1 || !c.HasMine {
			t.Fatalf("inbox item %+v", c)
		}
		fields[c.Field] = c
	}
	if len(fields) != 3 || fields["phone"].Mine != "13900000001" || fields["tags"].Mine != "低保" {
		t.Fatalf("inbox %+v: want phone, tags, needs with the member's values", inbox)
	}
	if h := get(t, member, "H001"); h.State != "conflict" || len(h.Conflicts) != 3 || h.ConflictCount != 3 {
		t.Fatalf("record in conflict: %+v", h)
	}
	standingTags := fields["tags"].Standing.Value
	ok(t, member.KeepMine("H001", "phone"))
	ok(t, member.TakeTheirs("H001", "tags"))
	ok(t, member.Settle("H001", "needs", "修屋頂和路"))
	if left := decode[[]schema.ConflictItem](t, must[string](t)(member.Conflicts())); len(left) != 0 {
		t.Fatalf("inbox after settling: %+v", left)
	}
	syncOnce(t, member)
	syncOnce(t, sec)
	h := get(t, sec, "H001")
	if h.Fields["phone"] != "13900000001" || h.Fields["tags"] != standingTags || h.Fields["needs"] != "修屋頂和路" || h.ConflictCount != 0 {
		t.Fatalf("secretary's H001 after the settle: %+v", h)
	}
}

// A write the server refuses for good (an edit of a visit the secretary
// voided meanwhile: the phone could not know) is kept and listed by
// Rejections with its code, field and reason; its record shows it.
func TestRejectionsListed(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member, sec := phone(t, e, testenv.Member), phone(t, e, testenv.Secretary)
	syncOnce(t, member)
	visit := must[string](t)(member.RecordVisit("H001", time.Now().Format("2006-01-02"), "張大山", "", "", ""))
	syncOnce(t, member)
	syncOnce(t, sec)
	ok(t, sec.VoidRecord(visit, "重複"))
	syncOnce(t, sec)
	ok(t, member.Update(visit, `{"needs":"要低保"}`))
	if rep := syncOnce(t, member); rep.Rejected != 1 {
		t.Fatalf("sync: %+v, want 1 rejected", rep)
	}
	rs := decode[[]schema.Rejection](t, must[string](t)(member.Rejections()))
	if len(rs) != 1 || rs[0].RecordID != visit || rs[0].Op != "update" || rs[0].Kind != "visit" || rs[0].Code == "" || rs[0].Reason == "" || rs[0].Seq != 2 {
		t.Fatalf("rejections %+v", rs)
	}
	if v := get(t, member, visit); v.State != "rejected" || !v.Voided {
		t.Fatalf("visit %+v: want voided, its edit rejected", v)
	}
	if st := status(t, member); st.Rejected != 1 || st.Pending != 0 {
		t.Fatalf("status %+v", st)
	}
}
