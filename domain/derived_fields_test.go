package domain_test

import (
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// A settle carries the status alone, so it cannot carry what a move must:
// settling a need to "referred" with no referral reason (or a project to
// "completed" with no outcome) would make a record the machine forbids.
func TestSettleStatusRefusesAMoveMissingItsRequiredField(t *testing.T) {
	for _, tc := range []struct {
		kind          pb.Kind
		to, required  string
		setBeforehand bool
	}{
		{pb.Kind_KIND_NEED, "referred", "referral_reason", false},
		{pb.Kind_KIND_PROJECT, "completed", "outcome", false},
		{pb.Kind_KIND_PROJECT, "completed", "outcome", true},
	} {
		name := domain.KindName(tc.kind) + " to " + tc.to
		if tc.setBeforehand {
			name += " with the field already set"
		}
		t.Run(name, func(t *testing.T) {
			r := npNew(t, tc.kind)
			if tc.setBeforehand {
				r, _ = mustApply(t, r, update(tc.kind, npID(tc.kind), hlc(wall0+1, 0, "devS"), map[string]string{tc.required: "修好了"}, nil), secretary)
			}
			m := mutation(tc.kind, pb.Op_OP_SETTLE, npID(tc.kind), hlc(wall0+5, 0, "devS"), map[string]string{"status": tc.to})
			if rej := domain.ValidateMutation(m); rej != nil {
				t.Fatalf("ValidateMutation: %v", rej)
			}
			next, _, rej := domain.Apply(r, m, secretary)
			if tc.setBeforehand {
				if rej != nil || fieldValue(next, "status") != tc.to {
					t.Fatalf("settle to %s with %s set: %v, status %q", tc.to, tc.required, rej, fieldValue(next, "status"))
				}
				return
			}
			wantRejection(t, rej, domain.CodeInvalidField, domain.KindName(tc.kind)+"."+tc.required)
		})
	}
}

// The derived fields: set by Apply from the move or the create, never by
// a mutation.
func TestDerivedFields(t *testing.T) {
	t.Run("need.taken_by is whoever took it, again after a referral", func(t *testing.T) {
		r := npNew(t, pb.Kind_KIND_NEED)
		r, _ = mustApply(t, r, npMove(pb.Kind_KIND_NEED, hlc(wall0+1, 0, "devS"), "raised", "taken"), secretary)
		if got := fieldValue(r, "taken_by"); got != "sec1" {
			t.Fatalf("taken_by %q, want sec1", got)
		}
		r, _ = mustApply(t, r, npMove(pb.Kind_KIND_NEED, hlc(wall0+2, 0, "devS"), "taken", "referred"), secretary)
		r, _ = mustApply(t, r, npMove(pb.Kind_KIND_NEED, hlc(wall0+3, 0, "devM2"), "referred", "taken"), mediator2)
		if got := fieldValue(r, "taken_by"); got != "m2" {
			t.Fatalf("taken_by %q after the town took it, want m2", got)
		}
	})
	t.Run("dispute result and level: agreed then closed keeps agreed, village", func(t *testing.T) {
		r := newDispute(t, hlc(wall0, 0, "devM1"))
		for i, to := range []string{"mediating", "agreed", "closed"} {
			r, _ = mustApply(t, r, transitionOf(hlc(wall0+1+int64(i), 0, "devM1"), fieldValue(r, "status"), to), mediator1)
		}
		if fieldValue(r, "result") != "agreed" || fieldValue(r, "level") != "village" {
			t.Fatalf("result %q level %q, want agreed village", fieldValue(r, "result"), fieldValue(r, "level"))
		}
	})
	t.Run("dispute level set by the mediator on agreed is kept", func(t *testing.T) {
		r := newDispute(t, hlc(wall0, 0, "devM1"))
		r, _ = mustApply(t, r, transitionOf(hlc(wall0+1, 0, "devM1"), "open", "mediating"), mediator1)
		m := transitionOf(hlc(wall0+2, 0, "devM1"), "mediating", "agreed")
		m.Fields["level"], m.Fields["agreed_on"] = "town", "2024-11-27"
		r, _ = mustApply(t, r, m, mediator1)
		if fieldValue(r, "level") != "town" || fieldValue(r, "agreed_on") != "2024-11-27" {
			t.Fatalf("level %q agreed_on %q, want town 2024-11-27", fieldValue(r, "level"), fieldValue(r, "agreed_on"))
		}
	})
	t.Run("dispute referred: result referred, level referred_out", func(t *testing.T) {
		r := newDispute(t, hlc(wall0, 0, "devM1"))
		for i, to := range []string{"mediating", "failed", "referred", "closed"} {
			r, _ = mustApply(t, r, transitionOf(hlc(wall0+1+int64(i), 0, "devM1"), fieldValue(r, "status"), to), mediator1)
		}
		if fieldValue(r, "result") != "referred" || fieldValue(r, "level") != "referred_out" {
			t.Fatalf("result %q level %q, want referred referred_out", fieldValue(r, "result"), fieldValue(r, "level"))
		}
	})
	t.Run("dispute withdrawn: result withdrawn, no level", func(t *testing.T) {
		r := newDispute(t, hlc(wall0, 0, "devM1"))
		for i, to := range []string{"withdrawn", "closed"} {
			r, _ = mustApply(t, r, transitionOf(hlc(wall0+1+int64(i), 0, "devM1"), fieldValue(r, "status"), to), mediator1)
		}
		if fieldValue(r, "result") != "withdrawn" || fieldValue(r, "level") != "" {
			t.Fatalf("result %q level %q, want withdrawn and no level", fieldValue(r, "result"), fieldValue(r, "level"))
		}
	})
	t.Run("a member's dispute is a report: reported_by, no mediator", func(t *testing.T) {
		m := mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_CREATE, disputeID, hlc(wall0, 0, "devA"), map[string]string{
			"village_id": "v-01", "category": "hazard", "title": "桥栏杆松动", "household_id": householdID, "visit_id": visitID})
		a := memberA
		a.Role = pb.Role_ROLE_MEMBER
		r, _ := mustApply(t, nil, m, a)
		if fieldValue(r, "reported_by") != "memA" || fieldValue(r, "mediators") != "" || fieldValue(r, "status") != "open" {
			t.Fatalf("reported_by %q mediators %q status %q, want memA, none, open", fieldValue(r, "reported_by"), fieldValue(r, "mediators"), fieldValue(r, "status"))
		}
		if b := domain.RecordBuckets(r, "v-01", "t-01"); !contains(b, "u:memA") || !contains(b, "d:"+disputeID) {
			t.Fatalf("buckets %v, want the case's d: and the reporter's u:", b)
		}
	})
	t.Run("a member's project is led by them; not for someone else", func(t *testing.T) {
		a := memberA
		a.Role = pb.Role_ROLE_MEMBER
		m := mutation(pb.Kind_KIND_PROJECT, pb.Op_OP_CREATE, npProjectID, hlc(wall0, 0, "devA"), map[string]string{"village_id": "v-01", "title": "修村道"})
		r, _ := mustApply(t, nil, m, a)
		if fieldValue(r, "leader_id") != "memA" {
			t.Fatalf("leader_id %q, want memA", fieldValue(r, "leader_id"))
		}
		if b := domain.RecordBuckets(r, "v-01", ""); b[0] != "u:memA" {
			t.Fatalf("buckets %v, want u:memA first", b)
		}
		m.Fields["leader_id"] = "memB"
		_, _, rej := domain.Apply(nil, m, a)
		wantRejection(t, rej, domain.CodePermissionDenied, "project.leader_id")
	})
	t.Run("no mutation sets a derived field", func(t *testing.T) {
		for _, c := range []struct {
			kind  pb.Kind
			field string
		}{{pb.Kind_KIND_NEED, "taken_by"}, {pb.Kind_KIND_DISPUTE, "result"}, {pb.Kind_KIND_DISPUTE, "reported_by"}} {
			for _, op := range []pb.Op{pb.Op_OP_CREATE, pb.Op_OP_UPDATE, pb.Op_OP_SETTLE} {
				m := mutation(c.kind, op, npID(c.kind), hlc(wall0, 0, "devA"), map[string]string{c.field: "memA"})
				if c.field == "result" {
					m.Fields[c.field] = "agreed"
				}
				wantRejection(t, domain.ValidateMutation(m), domain.CodeInvalidField, domain.KindName(c.kind)+"."+c.field)
			}
		}
	})
}

// History and void carry the server's time, and a device's own view 0.
func TestHistoryAndVoidStampedWithServerTime(t *testing.T) {
	r := npNew(t, pb.Kind_KIND_NEED)
	a := secretary
	a.Now = timeAt(5000)
	r, _ = mustApply(t, r, npMove(pb.Kind_KIND_NEED, hlc(wall0+1, 0, "devS"), "raised", "resolved"), a)
	h := r.GetHistory()
	if len(h) != 2 || h[1].GetFrom() != "raised" || h[1].GetTo() != "resolved" || h[1].GetAtMs() != wall0+5000 || h[1].GetAuthorId() != "sec1" {
		t.Fatalf("history %v, want raised -> resolved by sec1 at %d", h, wall0+5000)
	}
	dev, _ := mustApply(t, npNew(t, pb.Kind_KIND_NEED), mutation(pb.Kind_KIND_NEED, pb.Op_OP_VOID, npNeedID, hlc(wall0+2, 0, "devA"), map[string]string{"reason": "重复"}), memberA)
	if v := dev.GetVoid(); v.GetAtMs() != 0 || v.GetAuthorId() != "memA" || v.GetReason() != "重复" {
		t.Fatalf("device's void %v, want at 0 by memA", v)
	}
	a.Now = timeAt(9000)
	srv, _ := mustApply(t, r, mutation(pb.Kind_KIND_NEED, pb.Op_OP_VOID, npNeedID, hlc(wall0+2, 0, "devS"), map[string]string{"reason": "重复"}), a)
	if srv.GetVoid().GetAtMs() != wall0+9000 {
		t.Fatalf("server's void %v, want at %d", srv.GetVoid(), wall0+9000)
	}
}

// Void: only the voidable kinds, exactly one non-blank reason; a voided
// record takes no settle or transition either.
func TestVoidEdges(t *testing.T) {
	void := func(k pb.Kind, fields map[string]string) *pb.Mutation {
		return mutation(k, pb.Op_OP_VOID, npID(k), hlc(wall0+1, 0, "devS"), fields)
	}
	for _, k := range []pb.Kind{pb.Kind_KIND_DISPUTE, pb.Kind_KIND_HOUSEHOLD} {
		m := void(k, map[string]string{"reason": "x"})
		m.RecordId = householdID
		wantRejection(t, domain.ValidateMutation(m), domain.CodeInvalidField, "mutation.op")
	}
	for _, fields := range []map[string]string{{"reason": " \t\n"}, {"reason": "x", "summary": "y"}, {"why": "x"}} {
		wantRejection(t, domain.ValidateMutation(void(pb.Kind_KIND_NEED, fields)), domain.CodeInvalidField, "need.void.reason")
	}
	wantRejection(t, domain.ValidateMutation(void(pb.Kind_KIND_NEED, map[string]string{"reason": "a\x00b"})), domain.CodeInvalidField, "need.void.reason")

	r := npNew(t, pb.Kind_KIND_NEED)
	r, _ = mustApply(t, r, npMove(pb.Kind_KIND_NEED, hlc(wall0+1, 0, "devS"), "raised", "taken"), secretary)
	r, _ = mustApply(t, r, npMove(pb.Kind_KIND_NEED, hlc(wall0+1, 0, "devB"), "raised", "resolved"), memberB)
	r, _ = mustApply(t, r, void(pb.Kind_KIND_NEED, map[string]string{"reason": "录错了"}), secretary)
	for _, m := range []*pb.Mutation{
		mutation(pb.Kind_KIND_NEED, pb.Op_OP_SETTLE, npNeedID, hlc(wall0+3, 0, "devS"), map[string]string{"status": "taken"}),
		npMove(pb.Kind_KIND_NEED, hlc(wall0+3, 0, "devS"), "taken", "resolved"),
		mutation(pb.Kind_KIND_NEED, pb.Op_OP_APPEND, npNeedID, hlc(wall0+3, 0, "devS"), map[string]string{"notes": "x"}),
	} {
		_, _, rej := domain.Apply(r, m, secretary)
		wantRejection(t, rej, domain.CodeVoided, "need")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
