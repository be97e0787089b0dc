package e2e

import (
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// Two mediators settle the same conflict on a case's parties at once,
// offline, each with a value of their own. A settle is an edit made with
// the base its phone saw, so the two settles meet as a new conflict: both
// phones and the server converge on the later value with the other kept
// as one conflict, and nothing either typed is lost.
func TestTwoSettlesOfOneFieldAtOnceConverge(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	med1 := e.Device(testenv.Mediator)
	med2 := e.Device(testenv.Mediator2)
	all := []*syncer.Device{med1, med2}
	syncAll(t, all...)
	dispute := must[string](t)(med1.Create("dispute", syncer.NewFields().Set("category", "quarrel").
		Set("title", "院牆排水糾紛").Set("mediators", testenv.Mediator2)))
	syncAll(t, all...)
	ok(t, med1.Update(dispute, syncer.NewFields().Set("parties", "張大山；趙春梅")))
	ok(t, med2.Update(dispute, syncer.NewFields().Set("parties", "張大山；趙春梅；張小河")))
	syncAll(t, all...)
	if !inboxHas(t, med1, dispute, "parties") || !inboxHas(t, med2, dispute, "parties") {
		t.Fatalf("the parties conflict is not in both inboxes: %v", serverRecord(t, e, dispute).GetConflicts())
	}

	const v1, v2 = "張大山；趙春梅（戶主）", "張大山；趙春梅；張小河（證人）"
	ok(t, med1.Settle(dispute, "parties", v1))
	ok(t, med2.Settle(dispute, "parties", v2))
	testenv.Sync(t, med1)
	testenv.Sync(t, med2)
	syncAll(t, all...)
	noRejections(t, "the first mediator", med1)
	noRejections(t, "the second mediator", med2)

	d := serverRecord(t, e, dispute)
	got := d.GetFields()["parties"].GetValue()
	lost := map[string]string{v1: v2, v2: v1}[got]
	if lost == "" {
		t.Fatalf("parties = %q, want one of the two settles", got)
	}
	var partyConflicts []string
	for _, c := range d.GetConflicts() {
		if c.GetField() == "parties" {
			partyConflicts = append(partyConflicts, c.GetValue())
		}
	}
	if len(partyConflicts) != 1 || partyConflicts[0] != lost {
		t.Errorf("parties conflicts %q, want only the other settle's %q", partyConflicts, lost)
	}
	for _, dev := range all {
		sameAsServer(t, e, dev, dispute)
		if !inboxHas(t, dev, dispute, "parties") {
			t.Errorf("a phone's inbox does not list the new parties conflict")
		}
	}
}

// Two mediators' moves met on a case (agreed stood, failed became a
// status conflict). The second mediator dismisses their move from the
// inbox (take theirs: keep agreed) while the first, offline, closes the
// agreed case. The dismissal meant "my move is void, keep what stands";
// it must clear the status conflict even though the status moved on
// meanwhile, on every phone. (Today the server judges the settle as a move
// closed -> agreed and refuses it: invalid_transition, the conflict stays.)
func TestStatusDismissalClearsConflictAfterCaseMovedOn(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	med1 := e.Device(testenv.Mediator)
	med2 := e.Device(testenv.Mediator2)
	sec := e.Device(testenv.Secretary)
	all := []*syncer.Device{med1, med2, sec}
	syncAll(t, all...)
	dispute := must[string](t)(med1.Create("dispute", syncer.NewFields().Set("category", "quarrel").
		Set("title", "鄰里噪音糾紛").Set("mediators", testenv.Mediator2)))
	ok(t, med1.Transition(dispute, "mediating"))
	syncAll(t, all...)
	ok(t, med1.Transition(dispute, "agreed"))
	ok(t, med2.Transition(dispute, "failed"))
	testenv.Sync(t, med1)
	testenv.Sync(t, med2)
	syncAll(t, all...)
	if !inboxHas(t, med2, dispute, "status") {
		t.Fatalf("no status conflict to dismiss: %v", serverRecord(t, e, dispute).GetConflicts())
	}

	ok(t, med1.Transition(dispute, "closed"))
	ok(t, med2.TakeTheirs(dispute, "status"))
	testenv.Sync(t, med1)
	testenv.Sync(t, med2)
	syncAll(t, all...)
	noRejections(t, "the second mediator", med2)
	d := serverRecord(t, e, dispute)
	if d.GetFields()["status"].GetValue() != "closed" || d.GetFields()["result"].GetValue() != "agreed" {
		t.Errorf("status %q result %q, want closed, agreed", d.GetFields()["status"].GetValue(), d.GetFields()["result"].GetValue())
	}
	for _, dev := range all {
		cleared(t, e, dev, dispute)
	}
}
