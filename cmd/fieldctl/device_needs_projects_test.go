package main

import (
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
)

// show decodes fieldctl device show --json of one record.
func showJSON(t *testing.T, db, id string) deviceItemJSON {
	t.Helper()
	var it deviceItemJSON
	decode(t, ok(t, device(db, "show", id, "--json")...), &it)
	return it
}

func statuses(it deviceItemJSON) string {
	var moves []string
	for _, h := range it.History {
		moves = append(moves, h.From+">"+h.To)
	}
	return strings.Join(moves, " ")
}

// A need raised offline by a member on a visit is taken up, referred and
// resolved by the secretary; the member's phone shows it resolved, with
// its Chinese text byte for byte and the history of its moves.
func TestDeviceNeedRaisedTakenReferredResolvedRoundTrip(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member, sec := enrolled(t, e, testenv.Member), enrolled(t, e, testenv.Secretary)

	// Offline: a household the phone knows is not the member's is refused
	// at once, saying which field.
	r := fieldctl(t, device(member, "need", "raise", "-household", "H004", "-category", "housing", "-summary", "屋顶漏雨")...)
	if r.code != 1 || !strings.Contains(r.stderr, "need.household_id: household H004 is not linked to you") {
		t.Errorf("a need for another member's household: exit %d, stderr %q", r.code, r.stderr)
	}
	r = fieldctl(t, device(member, "need", "raise", "-household", "H001", "-category", "roof", "-summary", "屋顶漏雨")...)
	if r.code != 1 || !strings.Contains(r.stderr, `need.category: "roof" is not allowed: want one of livelihood, medical`) {
		t.Errorf("a need of an unknown category: exit %d, stderr %q", r.code, r.stderr)
	}

	visit := strings.TrimSpace(ok(t, device(member, "visit", "add", "-household", "H001", "-date", "2026-11-20", "-needs", "屋顶漏雨")...))
	summary, detail := "屋顶漏雨，西屋不能住人", "「老人」独居；\n东屋尚可\t(2026年冬)"
	need := strings.TrimSpace(ok(t, device(member, "need", "raise", "-household", "H001", "-visit", visit, "-category", "housing", "-summary", summary, "-detail", detail)...))
	if out := ok(t, device(member, "list", "need")...); !strings.Contains(out, "[待办] 住房: "+summary) {
		t.Errorf("the member's needs, offline:\n%s", out)
	}
	ok(t, device(member, "sync")...)
	ok(t, device(sec, "sync")...)

	// A member may not take a need up: refused offline.
	if r := fieldctl(t, device(member, "need", "take", need)...); r.code != 1 || !strings.Contains(r.stderr, "need.status: a member may not change a need's status") {
		t.Errorf("a member taking a need: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := fieldctl(t, device(sec, "need", "refer", need)...); r.code != 2 || !strings.Contains(r.stderr, "-reason is required") {
		t.Errorf("refer without a reason: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := fieldctl(t, device(sec, "need", "take")...); r.code != 2 || !strings.Contains(r.stderr, "want the record's id") {
		t.Errorf("take without an id: exit %d, stderr %q", r.code, r.stderr)
	}
	ok(t, device(sec, "need", "take", need, "-help", "联系镇民政办申请危房改造")...)
	ok(t, device(sec, "need", "refer", need, "-reason", "危房改造需镇里审批")...)
	ok(t, device(sec, "need", "note", need, "镇里已受理")...)
	if out := ok(t, device(sec, "need", "resolve", need, "-resolution", "已修缮完毕，户主满意")...); !strings.Contains(out, "已办结") {
		t.Errorf("resolve: %q", out)
	}
	ok(t, device(sec, "sync")...)
	ok(t, device(member, "sync")...)

	it := showJSON(t, member, need)
	f := it.Fields
	if it.State != "synced" || f["status"] != "resolved" || f["summary"] != summary || f["detail"] != detail || f["household_id"] != "H001" || f["visit_id"] != visit ||
		f["help"] != "联系镇民政办申请危房改造" || f["referral_reason"] != "危房改造需镇里审批" || f["resolution"] != "已修缮完毕，户主满意" ||
		f["taken_by"] != testenv.Secretary || f["village_id"] != testenv.Village || it.Labels["status"] != "已办结" || it.Labels["category"] != "住房" {
		t.Fatalf("the need on the member's phone: %+v", it)
	}
	if got := statuses(it); got != ">raised raised>taken taken>referred referred>resolved" {
		t.Errorf("history: %s", got)
	}
	for _, h := range it.History {
		if h.AtMs == 0 {
			t.Errorf("a move without the server's time: %+v", h)
		}
	}
	if len(it.Entries) != 1 || it.Entries[0].Text != "镇里已受理" {
		t.Errorf("notes: %+v", it.Entries)
	}
	if out := ok(t, device(member, "-lang", "en", "list", "need")...); !strings.Contains(out, "[resolved] housing: "+summary) {
		t.Errorf("the member's needs in English:\n%s", out)
	}
	if r := fieldctl(t, device(sec, "need", "take", need)...); r.code != 1 || !strings.Contains(r.stderr, "resolved is final") {
		t.Errorf("take a resolved need: exit %d, stderr %q", r.code, r.stderr)
	}
}

// A member's project (they lead it) goes planned -> in progress ->
// completed with progress entries; the secretary's phone shows it, text
// byte for byte; completing without an outcome is refused at once.
func TestDeviceProjectAddProgressCompleteRoundTrip(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member, sec := enrolled(t, e, testenv.Member), enrolled(t, e, testenv.Secretary)
	title := "硬化张家塆通组路（800米）"
	if r := fieldctl(t, device(member, "project", "add", "-title", title, "-leader", testenv.Member2)...); r.code != 1 || !strings.Contains(r.stderr, "project.leader_id: a member starts projects they lead themselves") {
		t.Errorf("a member naming another leader: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := fieldctl(t, device(member, "project", "add", "-title", title, "-planned", "2026-13-01")...); r.code != 1 || !strings.Contains(r.stderr, "project.planned_on") {
		t.Errorf("a bad planned date: exit %d, stderr %q", r.code, r.stderr)
	}
	p := strings.TrimSpace(ok(t, device(member, "project", "add", "-title", title, "-households", "H001,H002", "-planned", "2026-12-31")...))
	ok(t, device(member, "project", "start", p)...)
	ok(t, device(member, "project", "progress", p, "路基平整完成", "，待浇筑")...)
	if r := fieldctl(t, device(member, "project", "complete", p)...); r.code != 2 || !strings.Contains(r.stderr, "-outcome is required") {
		t.Errorf("complete without an outcome: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := fieldctl(t, device(member, "project", "complete", visitOf(t, member), "-outcome", "x")...); r.code != 1 || !strings.Contains(r.stderr, "is a visit, not a project") {
		t.Errorf("complete a visit: exit %d, stderr %q", r.code, r.stderr)
	}
	ok(t, device(member, "project", "complete", p, "-outcome", "通车，受益32户")...)
	ok(t, device(member, "sync")...)
	ok(t, device(sec, "sync")...)
	it := showJSON(t, sec, p)
	if it.Fields["title"] != title || it.Fields["leader_id"] != testenv.Member || it.Fields["households"] != "H001,H002" || it.Fields["status"] != "completed" ||
		it.Fields["outcome"] != "通车，受益32户" || len(it.Entries) != 1 || it.Entries[0].Text != "路基平整完成 ，待浇筑" {
		t.Fatalf("the project on the secretary's phone: %+v", it)
	}
	if got := statuses(it); got != ">planned planned>in_progress in_progress>completed" {
		t.Errorf("history: %s", got)
	}
	if out := ok(t, device(sec, "list", "project")...); !strings.Contains(out, "为民办实事") || !strings.Contains(out, "[已完成] "+title) {
		t.Errorf("the secretary's projects:\n%s", out)
	}
	// The secretary voids it; the member's phone shows it voided.
	ok(t, device(sec, "void", p, "-reason", "与另一项目重复")...)
	ok(t, device(sec, "sync")...)
	ok(t, device(member, "sync")...)
	if it := showJSON(t, member, p); !it.Voided || it.Void.AuthorID != testenv.Secretary {
		t.Errorf("voided by the secretary, on the member's phone: %+v", it)
	}
}

// visitOf records a visit on db and returns its id.
func visitOf(t *testing.T, db string) string {
	t.Helper()
	return strings.TrimSpace(ok(t, device(db, "visit", "add", "-household", "H001", "-date", "2026-11-20")...))
}

// A member reports a hazard seen on a visit; it reaches the village's
// mediators as a new case, which they mediate to agreement (level
// village, the agreed date) and close; the member follows it to the end.
func TestDeviceDisputeReportedByAMemberIsMediatedAndClosed(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member, med := enrolled(t, e, testenv.Member), enrolled(t, e, testenv.Mediator)
	visit := visitOf(t, member)
	d := strings.TrimSpace(ok(t, device(member, "dispute", "report", "-category", "hazard", "-title", "村口危墙可能倒塌", "-household", "H001", "-visit", visit, "-occurred", "2026-11-19")...))
	ok(t, device(member, "sync")...)
	ok(t, device(med, "sync")...)
	ok(t, device(med, "dispute", "status", "-id", d, "-to", "mediating")...)
	if r := fieldctl(t, device(med, "dispute", "status", "-id", d, "-to", "agreed", "-level", "county")...); r.code != 1 || !strings.Contains(r.stderr, `dispute.level: "county" is not allowed: want one of village, town, referred_out`) {
		t.Errorf("a level that does not exist: exit %d, stderr %q", r.code, r.stderr)
	}
	ok(t, device(med, "dispute", "status", "-id", d, "-to", "agreed", "-agreed-on", "2026-11-25", "-agreement", "户主同意拆除危墙")...)
	ok(t, device(med, "dispute", "status", "-id", d, "-to", "closed")...)
	ok(t, device(med, "sync")...)
	ok(t, device(member, "sync")...)
	it := showJSON(t, member, d)
	f := it.Fields
	if f["status"] != "closed" || f["result"] != "agreed" || f["level"] != "village" || f["agreed_on"] != "2026-11-25" || f["occurred_on"] != "2026-11-19" ||
		f["reported_by"] != testenv.Member || f["visit_id"] != visit || f["agreement"] != "户主同意拆除危墙" || !strings.Contains(f["mediators"], testenv.Mediator) {
		t.Fatalf("the reported case on the member's phone: %+v", it)
	}
	if got := statuses(it); got != ">open open>mediating mediating>agreed agreed>closed" {
		t.Errorf("history: %s", got)
	}
	if out := ok(t, device(member, "show", d)...); !strings.Contains(out, "村级化解") || !strings.Contains(out, "已结案") || !strings.Contains(out, "隐患") {
		t.Errorf("the case in Chinese:\n%s", out)
	}
}

// The village secretary links a household to another member from the
// phone; the old member's phone drops it, the new one's gets it.
func TestDeviceSecretaryAssignsAndUnassignsAHousehold(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	m1, m2, sec := enrolled(t, e, testenv.Member), enrolled(t, e, testenv.Member2), enrolled(t, e, testenv.Secretary)
	households := func(db string) string {
		t.Helper()
		ok(t, device(db, "sync")...)
		var items []deviceItemJSON
		decode(t, ok(t, device(db, "list", "household", "--json")...), &items)
		var ids []string
		for _, it := range items {
			ids = append(ids, it.ID)
		}
		return strings.Join(ids, " ")
	}
	if r := fieldctl(t, device(m1, "assign", "H001", testenv.Member2)...); r.code != 1 || !strings.Contains(r.stderr, "household.member_id: a member may not change it") {
		t.Errorf("a member assigning: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := fieldctl(t, device(sec, "assign", "H001")...); r.code != 2 {
		t.Errorf("assign with one argument: exit %d, stderr %q", r.code, r.stderr)
	}
	ok(t, device(sec, "assign", "H001", testenv.Member2)...)
	ok(t, device(sec, "sync")...)
	if got := households(m1); got != "H002 H003" {
		t.Errorf("the old member's households: %s", got)
	}
	if got := households(m2); got != "H001 H004 H005" {
		t.Errorf("the new member's households: %s", got)
	}
	ok(t, device(sec, "unassign", "H001")...)
	ok(t, device(sec, "sync")...)
	if got := households(m2); got != "H004 H005" {
		t.Errorf("after unassign: %s", got)
	}
	if it := showJSON(t, sec, "H001"); it.Fields["member_id"] != "" {
		t.Errorf("H001 on the secretary's phone: %+v", it.Fields)
	}
}
