package server_test

import (
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// hashed gives an event's fields their hash (each phone's first event).
func hashed(f map[string]string) map[string]string {
	f["hash"] = domain.EventHash(f)
	return f
}

func void(id string, k pb.Kind) *pb.Mutation {
	return op(id, k, pb.Op_OP_VOID, map[string]string{"reason": "重複"})
}

// TestVoidIsForTheAuthorOrTheCoveringSecretary: a visit, event, need or
// project is voided by its author or by the secretary of its village;
// anyone else is refused, and a voided record takes no more changes.
func TestVoidIsForTheAuthorOrTheCoveringSecretary(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	extraPeople(t, e)
	m1, m2 := newRawPhone(t, e, testenv.Member), newRawPhone(t, e, testenv.Member2)
	sec, sec2, med := newRawPhone(t, e, testenv.Secretary), newRawPhone(t, e, "U-sec2"), newRawPhone(t, e, testenv.Mediator)
	const V, E, N, P = pb.Kind_KIND_VISIT, pb.Kind_KIND_EVENT, pb.Kind_KIND_NEED, pb.Kind_KIND_PROJECT

	v1, v2 := newID(), newID()
	m1.mustApply("visit 1", create(v1, V, map[string]string{"household_id": "H001", "visited_on": "2026-12-01"}))
	m1.mustApply("visit 2", create(v2, V, map[string]string{"household_id": "H001", "visited_on": "2026-12-01"}))
	m2.mustRefuse("another member voids a visit", void(v1, V), domain.CodePermissionDenied, "visit")
	sec2.mustRefuse("another village's secretary voids a visit", void(v1, V), domain.CodePermissionDenied, "visit")
	med.mustRefuse("a mediator voids a visit", void(v1, V), domain.CodePermissionDenied, "visit")
	m1.mustApply("the author voids a visit", void(v1, V))
	sec.mustApply("the village secretary voids a visit", void(v2, V))
	if got := stored(t, e, v2).GetVoid(); got.GetAuthorId() != testenv.Secretary || got.GetAtMs() == 0 {
		t.Errorf("void %v: want the secretary's, stamped", got)
	}
	m1.mustRefuse("an edit of a voided visit", op(v1, V, pb.Op_OP_UPDATE, map[string]string{"met": "x"}), domain.CodeVoided, "visit")

	ev := newID()
	m1.mustApply("event", create(ev, E, hashed(map[string]string{"type": "meeting", "village_id": testenv.Village, "occurred_on": "2026-12-01",
		"subject": "黨員大會"})))
	med.mustRefuse("a mediator voids another's event", void(ev, E), domain.CodePermissionDenied, "event")
	sec2.mustRefuse("another village's secretary voids an event", void(ev, E), domain.CodePermissionDenied, "event")
	sec.mustApply("the village secretary voids an event", void(ev, E))
	ev2 := newID()
	med.mustApply("mediator's event", create(ev2, E, hashed(map[string]string{"type": "meeting", "village_id": testenv.Village, "occurred_on": "2026-12-01",
		"subject": "調解會"})))
	med.mustApply("the author voids their event", void(ev2, E))

	n := newID()
	m1.mustApply("need", create(n, N, map[string]string{"village_id": testenv.Village, "category": "medical", "summary": "藥費", "household_id": "H001"}))
	m2.mustRefuse("another member voids a need", void(n, N), domain.CodePermissionDenied, "need")
	sec2.mustRefuse("another village's secretary voids a need", void(n, N), domain.CodePermissionDenied, "need")
	sec.mustApply("the village secretary voids a need", void(n, N))
	m1.mustRefuse("a note on a voided need", op(n, N, pb.Op_OP_APPEND, map[string]string{"notes": "x"}), domain.CodeVoided, "need")
	n2 := newID()
	m1.mustApply("need 2", create(n2, N, map[string]string{"village_id": testenv.Village, "category": "medical", "summary": "藥費"}))
	m1.mustApply("the author voids a need", void(n2, N))

	p := newID()
	sec.mustApply("project led by member2", create(p, P, map[string]string{"village_id": testenv.Village, "title": "修路", "leader_id": testenv.Member2}))
	m2.mustRefuse("the leader (not the author) voids a project", void(p, P), domain.CodePermissionDenied, "project")
	m1.mustRefuse("a member voids another's project", void(p, P), domain.CodePermissionDenied, "project")
	sec.mustApply("the secretary voids a project", void(p, P))
	p2 := newID()
	m1.mustApply("member's project", create(p2, P, map[string]string{"village_id": testenv.Village, "title": "安路燈"}))
	m1.mustApply("the author voids their project", void(p2, P))
}

// TestNeedsAndProjectsAreWrittenByWhomTheTableSays: a member changes and
// settles only needs they raised, adds notes to needs of their linked
// households, and writes only projects they lead or made; settling a
// field takes the right to update it (a dispute's: a mediator it names).
func TestNeedsAndProjectsAreWrittenByWhomTheTableSays(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	extraPeople(t, e)
	m1, m2 := newRawPhone(t, e, testenv.Member), newRawPhone(t, e, testenv.Member2)
	sec, sec2 := newRawPhone(t, e, testenv.Secretary), newRawPhone(t, e, "U-sec2")
	med1, med2 := newRawPhone(t, e, testenv.Mediator), newRawPhone(t, e, testenv.Mediator2)
	const N, P, D, H = pb.Kind_KIND_NEED, pb.Kind_KIND_PROJECT, pb.Kind_KIND_DISPUTE, pb.Kind_KIND_HOUSEHOLD
	settle := func(id string, k pb.Kind, f, v string) *pb.Mutation {
		return op(id, k, pb.Op_OP_SETTLE, map[string]string{f: v})
	}

	own, secs := newID(), newID()
	m1.mustApply("member's need", create(own, N, map[string]string{"village_id": testenv.Village, "category": "elderly", "summary": "獨居", "household_id": "H002"}))
	sec.mustApply("secretary's need of H003", create(secs, N, map[string]string{"village_id": testenv.Village, "category": "housing", "summary": "漏雨", "household_id": "H003"}))
	m1.mustApply("member edits own need", op(own, N, pb.Op_OP_UPDATE, map[string]string{"detail": "需要送餐"}))
	m1.mustApply("member settles own need's summary", settle(own, N, "summary", "獨居老人"))
	m2.mustRefuse("another member settles it", settle(own, N, "summary", "x"), domain.CodePermissionDenied, "need")
	m1.mustRefuse("member edits the secretary's need", op(secs, N, pb.Op_OP_UPDATE, map[string]string{"detail": "x"}), domain.CodePermissionDenied, "need")
	m1.mustApply("member's note on a need of a linked household", op(secs, N, pb.Op_OP_APPEND, map[string]string{"notes": "已看過"}))
	m2.mustRefuse("a note on a need of another's household", op(secs, N, pb.Op_OP_APPEND, map[string]string{"notes": "x"}), domain.CodePermissionDenied, "need")
	sec.mustApply("secretary takes it up", &pb.Mutation{RecordId: own, Kind: N, Op: pb.Op_OP_TRANSITION, FromStatus: "raised", Fields: map[string]string{"status": "taken"}})
	sec2.mustRefuse("another village's secretary", settle(own, N, "status", "taken"), domain.CodePermissionDenied, "need")
	sec.mustApply("secretary settles the status", settle(own, N, "status", "resolved"))
	if got := m1.read(own); got.GetFields()["status"].GetValue() != "resolved" {
		t.Errorf("member reads status %q, want resolved", got.GetFields()["status"].GetValue())
	}

	p := newID()
	sec.mustApply("project led by member2", create(p, P, map[string]string{"village_id": testenv.Village, "title": "修路", "leader_id": testenv.Member2}))
	m2.mustApply("the leader starts it", &pb.Mutation{RecordId: p, Kind: P, Op: pb.Op_OP_TRANSITION, FromStatus: "planned", Fields: map[string]string{"status": "in_progress"}})
	m2.mustApply("the leader logs progress", op(p, P, pb.Op_OP_APPEND, map[string]string{"progress": "完成一半"}))
	m2.mustApply("the leader settles a field", settle(p, P, "title", "修村路"))
	m1.mustRefuse("another member logs progress", op(p, P, pb.Op_OP_APPEND, map[string]string{"progress": "x"}), domain.CodePermissionDenied, "project")
	m1.mustRefuse("another member settles", settle(p, P, "title", "x"), domain.CodePermissionDenied, "project")
	sec2.mustRefuse("another village's secretary", op(p, P, pb.Op_OP_UPDATE, map[string]string{"detail": "x"}), domain.CodePermissionDenied, "project")

	d := newID()
	med1.mustApply("case", create(d, D, map[string]string{"village_id": testenv.Village, "category": "quarrel", "title": "爭地"}))
	med2.mustRefuse("a mediator the case does not name settles", settle(d, D, "title", "x"), domain.CodePermissionDenied, "dispute")
	med1.mustApply("its mediator settles", settle(d, D, "status", "open"))

	m1.mustApply("linked member settles a household field", settle("H001", H, "phone", "13900000000"))
	m2.mustRefuse("another member settles it", settle("H001", H, "phone", "x"), domain.CodePermissionDenied, "household")
}
