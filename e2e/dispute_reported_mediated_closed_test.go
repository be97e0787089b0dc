package e2e

import (
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	"github.com/fieldsync/fieldsync/syncer"
)

// A member sees a hazard on a visit and reports it from their phone; the
// report arrives as a new case in the queue of the village's mediators
// (both of them, though the member named none). One mediates and records
// the agreement with its date; the other closes the case. Closing keeps
// the outcome ("agreed") and the level where it was settled; the dates are
// the mediator's, and the history names each step's author at the
// server's time. The member who reported it sees it closed on their phone.
func TestDisputeReportedByMemberMediatedAgreedAndClosed(t *testing.T) {
	w := openWindow()
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member)
	med1 := e.Device(testenv.Mediator)
	med2 := e.Device(testenv.Mediator2)
	sec := e.Device(testenv.Secretary)
	syncAll(t, member, med1, med2, sec)

	visit := must[string](t)(member.Create("visit", syncer.NewFields().Set("household_id", "H002").
		Set("visited_on", "2026-11-18").Set("met", "張小河")))
	report := must[string](t)(member.Create("dispute", syncer.NewFields().Set("category", "hazard").
		Set("title", "鄰居堆放柴草堵住消防通道").Set("parties", "張小河；張大山").Set("occurred_on", "2026-11-17").
		Set("household_id", "H002").Set("visit_id", visit)))
	testenv.Sync(t, member)
	noRejections(t, "the member", member)

	d := serverRecord(t, e, report)
	if got := domain.SplitList(d.GetFields()["mediators"].GetValue()); !slices.Equal(sortedCopy(got), []string{testenv.Mediator, testenv.Mediator2}) {
		t.Fatalf("the report's mediators are %v, want the village's mediators %s and %s", got, testenv.Mediator, testenv.Mediator2)
	}
	if by := d.GetFields()["reported_by"].GetValue(); by != testenv.Member {
		t.Errorf("reported_by = %q, want the member %s", by, testenv.Member)
	}
	// It arrives in each mediator's queue as an open case.
	testenv.Sync(t, med1)
	testenv.Sync(t, med2)
	for _, m := range []*syncer.Device{med1, med2} {
		it, err := m.Get(report)
		if err != nil {
			t.Fatalf("a village mediator did not get the reported case: %v", err)
		}
		if it.Field("status") != "open" {
			t.Errorf("reported case arrives %q, want open", it.Field("status"))
		}
	}

	ok(t, med1.Transition(report, "mediating"))
	ok(t, med1.Append(report, "sessions", "11月22日在村委會調解，雙方到場"))
	testenv.Sync(t, med1)
	ok(t, med1.TransitionWith(report, "agreed", syncer.NewFields().Set("agreed_on", "2026-11-22").
		Set("level", "village").Set("agreement", "張大山三日內清走柴草")))
	testenv.Sync(t, med1)
	testenv.Sync(t, med2)
	ok(t, med2.TransitionWith(report, "closed", syncer.NewFields().Set("outcome", "已回訪，通道暢通")))
	testenv.Sync(t, med2)
	syncAll(t, member, med1, med2, sec)
	w.close()
	noRejections(t, "the first mediator", med1)
	noRejections(t, "the second mediator", med2)

	d = serverRecord(t, e, report)
	for field, want := range map[string]string{
		"status": "closed", "result": "agreed", "level": "village", "category": "hazard",
		"occurred_on": "2026-11-17", "agreed_on": "2026-11-22", "agreement": "張大山三日內清走柴草",
		"outcome": "已回訪，通道暢通", "household_id": "H002", "visit_id": visit, "reported_by": testenv.Member,
		"village_id": testenv.Village,
	} {
		if got := d.GetFields()[field].GetValue(); got != want {
			t.Errorf("dispute.%s = %q, want %q", field, got, want)
		}
	}
	checkHistory(t, d, w,
		move{"", "open", testenv.Member},
		move{"open", "mediating", testenv.Mediator},
		move{"mediating", "agreed", testenv.Mediator},
		move{"agreed", "closed", testenv.Mediator2})

	// Everyone who holds the case holds the server's state of it; the
	// member who reported it sees it closed.
	for _, dev := range []*syncer.Device{member, med1, med2, sec} {
		sameAsServer(t, e, dev, report)
	}
	if it := must[*syncer.Item](t)(member.Get(report)); it.Field("status") != "closed" || it.Field("result") != "agreed" {
		t.Errorf("member's phone shows the case %q (result %q), want closed (agreed)", it.Field("status"), it.Field("result"))
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
