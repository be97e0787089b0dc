package domain_test

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// FuzzMachineCheck: Check accepts exactly the edges of the machine, and
// refuses anything else naming <kind>.status with a known code, a reason,
// and no more than a clipped copy of what it was given.
func FuzzMachineCheck(f *testing.F) {
	for _, s := range [][3]string{
		{"need", "raised", "taken"}, {"need", "resolved", "taken"}, {"need", "taken", "taken"},
		{"project", "planned", "completed"}, {"project", "completed", "in_progress"},
		{"dispute", "failed", "referred"}, {"need", "", "raised"}, {"project", "planned", "已完成"},
		{"need", strings.Repeat("r", 300), "taken"}, {"dispute", "open", "\xff"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, kind, from, to string) {
		k, ok := domain.ParseKind(kind)
		m := domain.MachineOf(k)
		if !ok || m == nil {
			return
		}
		rej := m.Check(from, to)
		edge := slices.Contains(m.Next[from], to)
		if edge != (rej == nil) {
			t.Fatalf("%s: Check(%q, %q) = %v, edge %v", kind, from, to, rej, edge)
		}
		if rej == nil {
			return
		}
		if rej.Field != kind+".status" || rej.Reason == "" || (rej.Code != domain.CodeInvalidTransition && rej.Code != domain.CodeInvalidField) {
			t.Fatalf("Check(%q, %q) = %+v", from, to, rej)
		}
		if len(rej.Reason) > 600 {
			t.Fatalf("reason of %d bytes: a long value is not clipped", len(rej.Reason))
		}
	})
}

// FuzzValidateNewKinds fuzzes the mutations of needs and projects, voids,
// settles and transitions with extra fields. Whatever passes validation
// applies to an existing record without an unknown code, keeps the
// record's id, never writes a derived field from the mutation, and moves
// the status only along the machine.
func FuzzValidateNewKinds(f *testing.F) {
	at := hlc(wall0+1, 0, "devA")
	type seed struct {
		kind, op         int32
		id, k1, v1       string
		k2, v2, from     string
		baseKey, base    string
		fillRequired     bool
		voidedBeforehand bool
	}
	for _, s := range []seed{
		{5, 1, npNeedID, "summary", "看病难", "household_id", householdID, "", "", "", true, false},
		{5, 1, npNeedID, "status", "taken", "", "", "", "", "", true, false},
		{6, 1, npProjectID, "households", "h1, h2", "planned_on", "2025-01-31", "", "", "", true, false},
		{5, 3, npNeedID, "status", "referred", "referral_reason", "需镇里协调", "raised", "", "", false, false},
		{5, 3, npNeedID, "status", "referred", "help", "x", "raised", "", "", false, false},
		{5, 3, npNeedID, "status", "taken", "taken_by", "memA", "raised", "", "", false, false},
		{6, 3, npProjectID, "status", "completed", "outcome", "已修好", "planned", "", "", false, false},
		{6, 3, npProjectID, "status", "completed", "", "", "in_progress", "", "", false, false},
		{3, 3, disputeID, "status", "agreed", "level", "town", "mediating", "", "", false, false},
		{5, 5, npNeedID, "reason", "重复录入", "", "", "", "", "", false, false},
		{6, 5, npProjectID, "reason", "录错了", "", "", "", "", "", false, true},
		{3, 5, disputeID, "reason", "x", "", "", "", "", "", false, false},
		{5, 5, npNeedID, "reason", " ", "detail", "x", "", "", "", false, false},
		{5, 6, npNeedID, "status", "resolved", "", "", "", "", "", false, false},
		{5, 6, npNeedID, "detail", "新的", "", "", "", "detail", at, false, false},
		{6, 6, npProjectID, "progress", "x", "", "", "", "", "", false, false},
		{3, 6, disputeID, "level", "village", "title", "y", "", "level", "bad", false, false},
		{6, 4, npProjectID, "progress", "完成一半", "", "", "", "", "", false, false},
		{5, 2, npNeedID, "help", "送药", "", "", "", "help", "", false, false},
	} {
		f.Add(s.kind, s.op, s.id, s.k1, s.v1, s.k2, s.v2, s.from, s.baseKey, s.base, s.fillRequired, s.voidedBeforehand)
	}
	required := map[pb.Kind]map[string]string{
		pb.Kind_KIND_NEED:    {"village_id": "v-01", "category": "medical", "summary": "看病难"},
		pb.Kind_KIND_PROJECT: {"village_id": "v-01", "title": "修村道"},
		pb.Kind_KIND_DISPUTE: {"village_id": "v-01", "category": "dispute", "title": "纠纷"},
	}
	codes := map[string]bool{domain.CodeVoided: true}
	for c := range knownCodes {
		codes[c] = true
	}
	f.Fuzz(func(t *testing.T, kind, op int32, id, k1, v1, k2, v2, from, baseKey, base string, fillRequired, voided bool) {
		k := pb.Kind(kind)
		if k != pb.Kind_KIND_NEED && k != pb.Kind_KIND_PROJECT && k != pb.Kind_KIND_DISPUTE {
			return // the old kinds have FuzzValidateMutation
		}
		fields := map[string]string{}
		if fillRequired {
			for name, v := range required[k] {
				fields[name] = v
			}
		}
		fields[k1] = v1
		if k2 != "" {
			fields[k2] = v2
		}
		m := &pb.Mutation{Seq: 1, RecordId: id, Kind: k, Op: pb.Op(op), Hlc: at, Fields: fields, FromStatus: from}
		if baseKey != "" {
			m.BaseHlc = map[string]string{baseKey: base}
		}
		rej := domain.ValidateMutation(m)
		if rej != nil {
			if !knownCodes[rej.Code] || rej.Field == "" || rej.Reason == "" {
				t.Fatalf("ValidateMutation() = %+v: want a known code, a field and a reason", rej)
			}
			return
		}
		spec := domain.SpecOf(k)
		for name := range fields {
			if m.GetOp() == pb.Op_OP_VOID {
				break
			}
			if spec.Field(name) == nil || spec.Field(name).Derived {
				t.Fatalf("%s passed with field %q", m.GetOp(), name)
			}
		}
		a := domain.Actor{UserID: "u1", DeviceID: "d1", Role: pb.Role_ROLE_SECRETARY}
		if voided && !domain.Voidable(k) {
			return
		}
		var cur *pb.Record
		if m.GetOp() != pb.Op_OP_CREATE {
			cur = npNew(t, k)
			if m.GetRecordId() != cur.GetId() {
				cur.Id = m.GetRecordId()
			}
			if voided {
				cur, _ = npApply(t, cur, mutation(k, pb.Op_OP_VOID, npID(k), hlc(wall0, 1, "devS"), map[string]string{"reason": "重复"}), secretary)
			}
		}
		next, _, rej := domain.Apply(cur, m, a)
		if rej != nil {
			if !codes[rej.Code] || rej.Field == "" || rej.Reason == "" {
				t.Fatalf("Apply() = %+v: want a known code, a field and a reason", rej)
			}
			if cur.GetVoid() != nil && m.GetOp() != pb.Op_OP_VOID && rej.Code != domain.CodeVoided {
				t.Fatalf("a change to a voided record refused with %s, want %s", rej.Code, domain.CodeVoided)
			}
			return
		}
		if cur != nil && cur.GetVoid() != nil && (m.GetOp() != pb.Op_OP_VOID || !proto.Equal(next, cur)) {
			t.Fatalf("%v changed a voided record", m.GetOp())
		}
		if next.GetId() != id || next.GetKind() != k {
			t.Fatalf("Apply made %s %v of %s %v", next.GetId(), next.GetKind(), id, k)
		}
		machine := domain.MachineOf(k)
		st := fieldValue(next, "status")
		if !slices.Contains(machine.Statuses, st) {
			t.Fatalf("status %q is not a status", st)
		}
		if old := fieldValue(cur, "status"); cur != nil && st != old && machine.Check(old, st) != nil {
			t.Fatalf("status %s -> %s, off the machine", old, st)
		}
		for _, name := range machine.Require[st] {
			if st != fieldValue(cur, "status") && fieldValue(next, name) == "" {
				t.Fatalf("moved to %s without %s", st, name)
			}
		}
		if h := next.GetHistory(); len(h) == 0 || h[len(h)-1].GetTo() != st {
			t.Fatalf("history %v does not end at the status %s", h, st)
		}
	})
}
