package e2e

import (
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// The member and the village secretary change a household's phone number
// at the same time, offline. The edit that lost is kept as a conflict and
// shows in the inbox of both phones; the secretary settles it from the
// inbox with a new value, and after a sync no phone that holds the
// household (the member's, the secretary's, HQ's) shows a conflict. Then
// the same on the household's size, where the member keeps their own
// value.
func TestSettleHouseholdFieldConflictFromInbox(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	sec := e.Device(testenv.Secretary)
	hq := e.Device(testenv.HQ)
	all := []*syncer.Device{member, sec, hq}
	syncAll(t, all...)

	ok(t, member.Update("H001", syncer.NewFields().Set("phone", "13900000001")))
	ok(t, sec.Update("H001", syncer.NewFields().Set("phone", "13700000001")))
	syncAll(t, all...)
	h := serverRecord(t, e, "H001")
	if len(h.GetConflicts()) != 1 || h.GetConflicts()[0].GetField() != "phone" {
		t.Fatalf("conflicts %v, want one on phone: the test shows nothing", h.GetConflicts())
	}
	for _, d := range all {
		if !inboxHas(t, d, "H001", "phone") {
			t.Fatalf("a phone holding H001 does not list its phone conflict in the inbox")
		}
	}

	// Neither number: the secretary called and entered the right one.
	ok(t, sec.Settle("H001", "phone", "13600000001"))
	if inboxHas(t, sec, "H001", "phone") {
		t.Errorf("the settling phone still lists the conflict before it syncs")
	}
	syncAll(t, all...)
	noRejections(t, "the secretary", sec)
	h = serverRecord(t, e, "H001")
	if got := h.GetFields()["phone"].GetValue(); got != "13600000001" || len(h.GetConflicts()) != 0 {
		t.Errorf("after the settle: phone %q, conflicts %v; want 13600000001 and none", got, h.GetConflicts())
	}
	for _, d := range all {
		cleared(t, e, d, "H001")
	}

	// Again on the household's size; this time the member, whose edit
	// lost, keeps theirs from the inbox.
	ok(t, member.Update("H001", syncer.NewFields().Set("members", "5")))
	ok(t, sec.Update("H001", syncer.NewFields().Set("members", "6")))
	testenv.Sync(t, member)
	testenv.Sync(t, sec)
	syncAll(t, all...)
	if !inboxHas(t, member, "H001", "members") {
		t.Fatalf("the member's inbox does not list the conflict on members: %v", serverRecord(t, e, "H001").GetConflicts())
	}
	ok(t, member.KeepMine("H001", "members"))
	syncAll(t, all...)
	noRejections(t, "the member", member)
	h = serverRecord(t, e, "H001")
	if got := h.GetFields()["members"].GetValue(); got != "5" || len(h.GetConflicts()) != 0 {
		t.Errorf("after the member kept theirs: members %q, conflicts %v; want 5 and none", got, h.GetConflicts())
	}
	for _, d := range all {
		cleared(t, e, d, "H001")
	}
}

// Two mediators of one case move it on from mediating offline, one to
// agreed and one to failed. The first to sync stands; the other move is a
// status conflict in the inbox of everyone holding the case. The second
// mediator, seeing the agreement, dismisses their own move from the inbox
// (settles the status to the one that stands); after a sync the conflict
// is gone on every phone, the status and history are as the agreement left
// them, and the case moves on.
func TestSettleDisputeStatusConflictFromInbox(t *testing.T) {
	w := openWindow()
	e := testenv.Start(t)
	e.ImportSample()
	med1 := e.Device(testenv.Mediator)
	med2 := e.Device(testenv.Mediator2)
	sec := e.Device(testenv.Secretary)
	hq := e.Device(testenv.HQ)
	all := []*syncer.Device{med1, med2, sec, hq}
	syncAll(t, all...)
	dispute := must[string](t)(med1.Create("dispute", syncer.NewFields().Set("category", "quarrel").
		Set("title", "宅基地邊界爭吵").Set("parties", "張大山；趙春梅").Set("mediators", testenv.Mediator2)))
	ok(t, med1.Transition(dispute, "mediating"))
	syncAll(t, all...)

	ok(t, med1.TransitionWith(dispute, "agreed", syncer.NewFields().Set("agreed_on", "2026-11-23")))
	// The losing move carries no text: what becomes of text a losing move
	// carries is TestLosingStatusMoveKeepsTheTextItCarried's.
	ok(t, med2.Transition(dispute, "failed"))
	testenv.Sync(t, med1)
	testenv.Sync(t, med2)
	syncAll(t, all...)
	d := serverRecord(t, e, dispute)
	if d.GetFields()["status"].GetValue() != "agreed" || len(d.GetConflicts()) != 1 || d.GetConflicts()[0].GetField() != "status" ||
		d.GetConflicts()[0].GetValue() != "failed" {
		t.Fatalf("status %q, conflicts %v; want agreed with failed as a status conflict", d.GetFields()["status"].GetValue(), d.GetConflicts())
	}
	for _, dev := range all {
		if !inboxHas(t, dev, dispute, "status") {
			t.Fatalf("a phone holding the case does not list its status conflict in the inbox")
		}
	}

	ok(t, med2.Settle(dispute, "status", "agreed"))
	syncAll(t, all...)
	noRejections(t, "the second mediator", med2)
	for _, dev := range all {
		cleared(t, e, dev, dispute)
	}
	ok(t, med2.Transition(dispute, "closed"))
	syncAll(t, all...)
	w.close()
	d = serverRecord(t, e, dispute)
	if d.GetFields()["status"].GetValue() != "closed" || d.GetFields()["result"].GetValue() != "agreed" || d.GetFields()["level"].GetValue() != "village" {
		t.Errorf("after the settle and closing: status %q result %q level %q; want closed, agreed, village",
			d.GetFields()["status"].GetValue(), d.GetFields()["result"].GetValue(), d.GetFields()["level"].GetValue())
	}
	// Dismissing a move is no move: the history has no trace of failed.
	checkHistory(t, d, w,
		move{"", "open", testenv.Mediator},
		move{"open", "mediating", testenv.Mediator},
		move{"mediating", "agreed", testenv.Mediator},
		move{"agreed", "closed", testenv.Mediator2})
	for _, dev := range all {
		cleared(t, e, dev, dispute)
	}
}

// A practical project led by a member: the member starts the work while
// the village secretary, offline, abandons it. The member's move stands;
// the secretary, seeing it under way, settles the status conflict from the
// inbox by moving it on (abandoned after all, now from in_progress). The
// settle is a move of its own in the history, by the secretary, and every
// phone holding the project clears the conflict.
func TestSettleProjectStatusConflictByMovingOn(t *testing.T) {
	w := openWindow()
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	sec := e.Device(testenv.Secretary)
	hq := e.Device(testenv.HQ)
	all := []*syncer.Device{member, sec, hq}
	syncAll(t, all...)
	project := must[string](t)(member.Create("project", syncer.NewFields().Set("title", "修通張家塆到村委會的便道").
		Set("households", "H001,H002").Set("planned_on", "2026-12-20")))
	syncAll(t, all...)
	noRejections(t, "the member", member)
	if got := serverRecord(t, e, project).GetFields()["leader_id"].GetValue(); got != testenv.Member {
		t.Fatalf("project's leader %q, want the member who started it", got)
	}

	ok(t, member.Transition(project, "in_progress"))
	ok(t, sec.Transition(project, "abandoned"))
	testenv.Sync(t, member)
	testenv.Sync(t, sec)
	syncAll(t, all...)
	p := serverRecord(t, e, project)
	if p.GetFields()["status"].GetValue() != "in_progress" || len(p.GetConflicts()) != 1 || p.GetConflicts()[0].GetValue() != "abandoned" {
		t.Fatalf("status %q, conflicts %v; want in_progress with abandoned as a status conflict", p.GetFields()["status"].GetValue(), p.GetConflicts())
	}
	for _, d := range all {
		if !inboxHas(t, d, project, "status") {
			t.Fatalf("a phone holding the project does not list its status conflict in the inbox")
		}
	}

	ok(t, sec.Settle(project, "status", "abandoned"))
	syncAll(t, all...)
	w.close()
	noRejections(t, "the secretary", sec)
	p = serverRecord(t, e, project)
	if got := p.GetFields()["status"].GetValue(); got != "abandoned" {
		t.Errorf("after the settle: status %q, want abandoned", got)
	}
	checkHistory(t, p, w,
		move{"", "planned", testenv.Member},
		move{"planned", "in_progress", testenv.Member},
		move{"in_progress", "abandoned", testenv.Secretary})
	for _, d := range all {
		cleared(t, e, d, project)
	}
}
