package e2e

import (
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// Two mediators end one case offline: one records a failure, the other an
// agreement with its text and date. The failure reaches the server first,
// so the agreement is a status conflict; but the agreement's text and date
// travelled with the losing move, were acknowledged, and must stay in the
// record (as conflicts a person settles) for the mediators to see what the
// other wrote: nothing acknowledged is lost (DESIGN.md, invariant 1).
func TestLosingStatusMoveKeepsTheTextItCarried(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	med1 := e.Device(testenv.Mediator)
	med2 := e.Device(testenv.Mediator2)
	syncAll(t, med1, med2)
	dispute := must[string](t)(med1.Create("dispute", syncer.NewFields().Set("category", "dispute").
		Set("title", "承包地界樁被移").Set("mediators", testenv.Mediator2)))
	ok(t, med1.Transition(dispute, "mediating"))
	syncAll(t, med1, med2)

	ok(t, med1.TransitionWith(dispute, "failed", syncer.NewFields().Set("outcome", "雙方各執一詞")))
	const agreement, agreedOn = "重新埋設界樁，費用各擔一半", "2026-11-24"
	ok(t, med2.TransitionWith(dispute, "agreed", syncer.NewFields().Set("agreement", agreement).Set("agreed_on", agreedOn)))
	testenv.Sync(t, med1)
	testenv.Sync(t, med2)
	syncAll(t, med1, med2)
	noRejections(t, "the second mediator", med2)

	d := serverRecord(t, e, dispute)
	if d.GetFields()["status"].GetValue() != "failed" {
		t.Fatalf("status %q, want failed (it reached the server first)", d.GetFields()["status"].GetValue())
	}
	for field, want := range map[string]string{"agreement": agreement, "agreed_on": agreedOn} {
		if !keeps(d, field, want) {
			t.Errorf("the losing move's %s %q is nowhere in the record (fields %v, conflicts %v)", field, want, d.GetFields(), d.GetConflicts())
		}
	}
	sameAsServer(t, e, med1, dispute)
	sameAsServer(t, e, med2, dispute)
}

// keeps says whether the record holds value for field, standing or as a
// conflict.
func keeps(r *pb.Record, field, value string) bool {
	if r.GetFields()[field].GetValue() == value {
		return true
	}
	for _, c := range r.GetConflicts() {
		if c.GetField() == field && c.GetValue() == value {
			return true
		}
	}
	return false
}
