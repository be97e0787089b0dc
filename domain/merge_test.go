package domain_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

const wall0 = int64(1732600000000)

var (
	secretary = domain.Actor{UserID: "sec1", DeviceID: "devS"}
	memberA   = domain.Actor{UserID: "memA", DeviceID: "devA"}
	memberB   = domain.Actor{UserID: "memB", DeviceID: "devB"}
	mediator1 = domain.Actor{UserID: "m1", DeviceID: "devM1"}
	mediator2 = domain.Actor{UserID: "m2", DeviceID: "devM2"}
)

func update(kind pb.Kind, id, at string, fields, base map[string]string) *pb.Mutation {
	m := mutation(kind, pb.Op_OP_UPDATE, id, at, fields)
	m.BaseHlc = base
	return m
}

func transitionOf(at, from, to string) *pb.Mutation {
	m := mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_TRANSITION, disputeID, at, map[string]string{"status": to})
	m.FromStatus = from
	return m
}

// applyStep is one mutation applied by one actor.
type applyStep struct {
	m *pb.Mutation
	a domain.Actor
}

// applyAll applies steps in order and returns the result and the conflict
// flag of each step.
func applyAll(t testing.TB, r *pb.Record, steps ...applyStep) (*pb.Record, []bool) {
	t.Helper()
	var flags []bool
	for _, s := range steps {
		before := proto.Clone(r)
		next, conflict := mustApply(t, r, s.m, s.a)
		if r != nil && !proto.Equal(r, before) {
			t.Fatalf("Apply modified its input record:\n\tgot  %v\n\twant %v", r, before)
		}
		r = next
		flags = append(flags, conflict)
	}
	return r, flags
}

func TestApplyHouseholdConcurrentEdit(t *testing.T) {
	h0 := hlc(wall0, 0, "devS")
	hA := hlc(wall0+1000, 0, "devA")
	hB := hlc(wall0+2000, 0, "devB") // later than hA
	base := newHousehold(t, h0)
	editA := applyStep{update(pb.Kind_KIND_HOUSEHOLD, householdID, hA, map[string]string{"phone": "13811111111"}, map[string]string{"phone": h0}), memberA}
	editB := applyStep{update(pb.Kind_KIND_HOUSEHOLD, householdID, hB, map[string]string{"phone": "13922222222"}, map[string]string{"phone": h0}), memberB}

	tests := []struct {
		name      string
		steps     []applyStep
		wantFlags []bool
	}{
		{"A then B", []applyStep{editA, editB}, []bool{false, true}},
		{"B then A", []applyStep{editB, editA}, []bool{false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, flags := applyAll(t, base, tt.steps...)
			wantFV := &pb.FieldValue{Value: "13922222222", Hlc: hB}
			wantEqual(t, got.GetFields()["phone"], wantFV)
			for i := range flags {
				if flags[i] != tt.wantFlags[i] {
					t.Fatalf("conflict flags = %v, want %v", flags, tt.wantFlags)
				}
			}
			if len(got.GetConflicts()) != 1 {
				t.Fatalf("got %d conflicts %v, want 1", len(got.GetConflicts()), got.GetConflicts())
			}
			c := got.GetConflicts()[0]
			if c.GetField() != "phone" || c.GetValue() != "13811111111" || c.GetHlc() != hA {
				t.Fatalf("conflict = %v, want phone=13811111111 at %s", c, hA)
			}
			if !strings.Contains(c.GetReason(), "concurrent edit") {
				t.Fatalf("conflict reason %q, want it to say concurrent edit", c.GetReason())
			}
			// Untouched fields keep their values and clocks.
			wantEqual(t, got.GetFields()["head"], &pb.FieldValue{Value: "王建国", Hlc: h0})
		})
	}
}

func TestApplyNonConcurrentEditSettlesConflicts(t *testing.T) {
	h0 := hlc(wall0, 0, "devS")
	hA := hlc(wall0+1000, 0, "devA")
	hB := hlc(wall0+2000, 0, "devB")
	hC := hlc(wall0+3000, 0, "devA")
	hD := hlc(wall0+4000, 0, "devS")
	conflicted, flags := applyAll(t, newHousehold(t, h0),
		applyStep{update(pb.Kind_KIND_HOUSEHOLD, householdID, hA, map[string]string{"phone": "A", "tags": "低保户"}, map[string]string{"phone": h0}), memberA},
		applyStep{update(pb.Kind_KIND_HOUSEHOLD, householdID, hB, map[string]string{"phone": "B", "tags": "五保户"}, map[string]string{"phone": h0}), memberB},
	)
	if got, want := len(conflicted.GetConflicts()), 2; got != want || !flags[1] {
		t.Fatalf("setup: %d conflicts (flags %v), want %d: %v", got, flags, want, conflicted.GetConflicts())
	}

	tests := []struct {
		name          string
		m             *pb.Mutation
		wantPhone     *pb.FieldValue
		wantConflict  bool
		wantConflicts []string // field=value of the conflicts left
	}{
		{
			name:          "edit made seeing the current value settles that field only",
			m:             update(pb.Kind_KIND_HOUSEHOLD, householdID, hC, map[string]string{"phone": "C"}, map[string]string{"phone": hB}),
			wantPhone:     &pb.FieldValue{Value: "C", Hlc: hC},
			wantConflicts: []string{"tags=低保户"},
		},
		{
			name:          "confirming the current value settles the field",
			m:             update(pb.Kind_KIND_HOUSEHOLD, householdID, hC, map[string]string{"phone": "B"}, map[string]string{"phone": hB}),
			wantPhone:     &pb.FieldValue{Value: "B", Hlc: hC},
			wantConflicts: []string{"tags=低保户"},
		},
		{
			// The device never saw B: its write agrees with the winner by
			// chance, and the losing A still waits for a person.
			name:          "a concurrent edit to the winning value settles nothing",
			m:             update(pb.Kind_KIND_HOUSEHOLD, householdID, hD, map[string]string{"phone": "B"}, map[string]string{"phone": h0}),
			wantPhone:     &pb.FieldValue{Value: "B", Hlc: hD},
			wantConflicts: []string{"phone=A", "tags=低保户"},
		},
		{
			name:          "a third concurrent value adds a conflict",
			m:             update(pb.Kind_KIND_HOUSEHOLD, householdID, hD, map[string]string{"phone": "D"}, map[string]string{"phone": hA}),
			wantPhone:     &pb.FieldValue{Value: "D", Hlc: hD},
			wantConflict:  true,
			wantConflicts: []string{"phone=A", "tags=低保户", "phone=B"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, flags := applyAll(t, conflicted, applyStep{tt.m, secretary})
			if flags[0] != tt.wantConflict {
				t.Fatalf("conflict = %v, want %v", flags[0], tt.wantConflict)
			}
			wantEqual(t, got.GetFields()["phone"], tt.wantPhone)
			var gotConflicts []string
			for _, c := range got.GetConflicts() {
				gotConflicts = append(gotConflicts, c.GetField()+"="+c.GetValue())
			}
			if strings.Join(gotConflicts, " ") != strings.Join(tt.wantConflicts, " ") {
				t.Fatalf("conflicts = %v, want %v", gotConflicts, tt.wantConflicts)
			}
		})
	}
}

func TestApplyVisit(t *testing.T) {
	h0 := hlc(wall0, 0, "devA")
	create := mutation(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, visitID, h0, map[string]string{
		"household_id": householdID, "visited_on": "2024-11-26", "help": "送米面油",
	})
	visit, _ := applyAll(t, nil, applyStep{create, memberA})
	if visit.GetAuthorId() != "memA" || visit.GetOriginDeviceId() != "devA" {
		t.Fatalf("author %q device %q, want memA devA", visit.GetAuthorId(), visit.GetOriginDeviceId())
	}

	t.Run("a non-author is refused", func(t *testing.T) {
		m := update(pb.Kind_KIND_VISIT, visitID, hlc(wall0+1000, 0, "devB"), map[string]string{"help": "改了"}, map[string]string{"help": h0})
		next, conflict, rej := domain.Apply(visit, m, memberB)
		wantRejection(t, rej, domain.CodePermissionDenied, "visit")
		if next != nil || conflict {
			t.Fatalf("Apply() = %v, %v with a rejection, want nil, false", next, conflict)
		}
		if !strings.Contains(rej.Reason, "memA") {
			t.Fatalf("reason %q, want it to name the author memA", rej.Reason)
		}
	})
	t.Run("the author amends, the later amendment wins", func(t *testing.T) {
		h1 := hlc(wall0+1000, 0, "devA")
		h2 := hlc(wall0+2000, 0, "devA2") // the author's second phone
		got, flags := applyAll(t, visit,
			applyStep{update(pb.Kind_KIND_VISIT, visitID, h2, map[string]string{"help": "第二次"}, nil), domain.Actor{UserID: "memA", DeviceID: "devA2"}},
			applyStep{update(pb.Kind_KIND_VISIT, visitID, h1, map[string]string{"help": "第一次"}, map[string]string{"help": h0}), memberA},
		)
		wantEqual(t, got.GetFields()["help"], &pb.FieldValue{Value: "第二次", Hlc: h2})
		if flags[0] || !flags[1] {
			t.Fatalf("conflict flags = %v, want [false true] (the older amendment is kept)", flags)
		}
	})
}

func TestApplyDisputeTransitions(t *testing.T) {
	h0 := hlc(wall0, 0, "devM1")
	h1 := hlc(wall0+1000, 0, "devM1")
	h2 := hlc(wall0+2000, 0, "devM2")
	open := newDispute(t, h0)

	t.Run("from the current status it applies", func(t *testing.T) {
		got, flags := applyAll(t, open, applyStep{transitionOf(h1, "open", "mediating"), mediator1})
		wantEqual(t, got.GetFields()["status"], &pb.FieldValue{Value: "mediating", Hlc: h1})
		if flags[0] || len(got.GetConflicts()) != 0 {
			t.Fatalf("conflict %v, conflicts %v; want none", flags[0], got.GetConflicts())
		}
	})
	t.Run("concurrent transitions: the second is a conflict", func(t *testing.T) {
		got, flags := applyAll(t, open,
			applyStep{transitionOf(h1, "open", "mediating"), mediator1},
			applyStep{transitionOf(h2, "open", "withdrawn"), mediator2},
		)
		wantEqual(t, got.GetFields()["status"], &pb.FieldValue{Value: "mediating", Hlc: h1})
		if flags[0] || !flags[1] {
			t.Fatalf("conflict flags = %v, want [false true]", flags)
		}
		if len(got.GetConflicts()) != 1 {
			t.Fatalf("conflicts = %v, want 1", got.GetConflicts())
		}
		c := got.GetConflicts()[0]
		want := &pb.Conflict{Field: "status", Value: "withdrawn", Hlc: h2, AuthorId: "m2",
			Reason: "transition open -> withdrawn made while the status was already mediating"}
		wantEqual(t, c, want)
	})
	t.Run("the same transition twice is one outcome", func(t *testing.T) {
		once, _ := applyAll(t, open, applyStep{transitionOf(h1, "open", "mediating"), mediator1})
		twice, flags := applyAll(t, once, applyStep{transitionOf(h2, "open", "mediating"), mediator2})
		if flags[0] {
			t.Fatalf("repeated transition reported a conflict")
		}
		wantEqual(t, twice, once)
	})
	t.Run("a chain of transitions", func(t *testing.T) {
		got, flags := applyAll(t, open,
			applyStep{transitionOf(h1, "open", "mediating"), mediator1},
			applyStep{transitionOf(hlc(wall0+3000, 0, "devM1"), "mediating", "agreed"), mediator1},
			applyStep{transitionOf(hlc(wall0+4000, 0, "devM1"), "agreed", "closed"), mediator1},
		)
		if got := fieldValue(got, "status"); got != "closed" {
			t.Fatalf("status = %q, want closed", got)
		}
		for i, f := range flags {
			if f {
				t.Fatalf("step %d reported a conflict", i)
			}
		}
	})
}

func TestApplyAppendSortsEntries(t *testing.T) {
	open := newDispute(t, hlc(wall0, 0, "devM1"))
	h1 := hlc(wall0+1000, 0, "devM1")
	h2 := hlc(wall0+1000, 0, "devM2") // same millisecond, later node
	h3 := hlc(wall0+3000, 0, "devM1")
	appendNote := func(at, field, text string, a domain.Actor) applyStep {
		return applyStep{mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_APPEND, disputeID, at, map[string]string{field: text}), a}
	}
	got, flags := applyAll(t, open,
		appendNote(h3, "notes", "第三条", mediator1),
		appendNote(h1, "sessions", "第一次调解", mediator1),
		appendNote(h2, "notes", "第二条", mediator2),
	)
	want := []*pb.Entry{
		{Field: "sessions", Text: "第一次调解", Hlc: h1, AuthorId: "m1"},
		{Field: "notes", Text: "第二条", Hlc: h2, AuthorId: "m2"},
		{Field: "notes", Text: "第三条", Hlc: h3, AuthorId: "m1"},
	}
	if len(got.GetEntries()) != len(want) {
		t.Fatalf("entries = %v, want %v", got.GetEntries(), want)
	}
	for i := range want {
		wantEqual(t, got.GetEntries()[i], want[i])
	}
	for i, f := range flags {
		if f {
			t.Fatalf("append %d reported a conflict", i)
		}
	}
	if len(got.GetFields()) != len(open.GetFields()) {
		t.Fatalf("append changed the fields: %v", got.GetFields())
	}
}

func TestApplyCreate(t *testing.T) {
	at := hlc(wall0, 0, "devA")
	create := mutation(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, visitID, at, map[string]string{
		"household_id": householdID, "visited_on": "2024-11-26",
	})
	existing, _ := applyAll(t, nil, applyStep{create, memberA})

	t.Run("the same device again is idempotent", func(t *testing.T) {
		got, conflict, rej := domain.Apply(existing, create, memberA)
		if rej != nil || conflict {
			t.Fatalf("Apply() = %v, %v; want no rejection, no conflict", rej, conflict)
		}
		wantEqual(t, got, existing)
		if got == existing {
			t.Fatalf("Apply returned its input, want a copy")
		}
	})
	t.Run("another device is refused", func(t *testing.T) {
		_, _, rej := domain.Apply(existing, create, domain.Actor{UserID: "memA", DeviceID: "devOther"})
		wantRejection(t, rej, domain.CodeAlreadyExists, "mutation.record_id")
	})
	t.Run("a device without id is refused", func(t *testing.T) {
		noDevice, _ := applyAll(t, nil, applyStep{create, domain.Actor{UserID: "memA"}})
		_, _, rej := domain.Apply(noDevice, create, domain.Actor{UserID: "memA"})
		wantRejection(t, rej, domain.CodeAlreadyExists, "mutation.record_id")
	})
	t.Run("another kind under the same id is refused", func(t *testing.T) {
		m := mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_CREATE, visitID, at, map[string]string{"village_id": "v-01", "category": "case", "title": "t"})
		_, _, rej := domain.Apply(existing, m, memberA)
		wantRejection(t, rej, domain.CodeAlreadyExists, "mutation.record_id")
	})
	t.Run("update of a missing record", func(t *testing.T) {
		m := update(pb.Kind_KIND_VISIT, visitID, at, map[string]string{"help": "x"}, nil)
		_, _, rej := domain.Apply(nil, m, memberA)
		wantRejection(t, rej, domain.CodeNotFound, "mutation.record_id")
	})
	t.Run("update with the wrong kind", func(t *testing.T) {
		m := update(pb.Kind_KIND_HOUSEHOLD, visitID, at, map[string]string{"phone": "1"}, nil)
		_, _, rej := domain.Apply(existing, m, memberA)
		wantRejection(t, rej, domain.CodeInvalidField, "mutation.kind")
	})
}

func TestApplyCreateDispute(t *testing.T) {
	at := hlc(wall0, 0, "devM1")
	tests := []struct {
		name          string
		fields        map[string]string
		actor         domain.Actor
		wantMediators string
	}{
		{"no mediators given", map[string]string{}, mediator1, "m1"},
		{"others given", map[string]string{"mediators": "m2, m3"}, mediator1, "m1,m2,m3"},
		{"creator given", map[string]string{"mediators": "m2,m1"}, mediator1, "m2,m1"},
		{"status open given", map[string]string{"status": "open", "mediators": "m1"}, mediator1, "m1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields := map[string]string{"village_id": "v-01", "category": "quarrel", "title": "邻里噪音"}
			for k, v := range tt.fields {
				fields[k] = v
			}
			got, _ := applyAll(t, nil, applyStep{mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_CREATE, disputeID, at, fields), tt.actor})
			wantEqual(t, got.GetFields()["status"], &pb.FieldValue{Value: "open", Hlc: at})
			wantEqual(t, got.GetFields()["mediators"], &pb.FieldValue{Value: tt.wantMediators, Hlc: at})
			if !strings.Contains(","+fieldValue(got, "mediators")+",", ","+tt.actor.UserID+",") {
				t.Fatalf("mediators %q lack the creator %s", fieldValue(got, "mediators"), tt.actor.UserID)
			}
		})
	}
	t.Run("a new dispute cannot start closed", func(t *testing.T) {
		m := mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_CREATE, disputeID, at, map[string]string{"village_id": "v-01", "category": "case", "title": "t", "status": "closed"})
		wantRejection(t, domain.ValidateMutation(m), domain.CodeInvalidTransition, "dispute.status")
	})
}

func TestChineseTextRoundTrip(t *testing.T) {
	at := hlc(wall0, 0, "devS")
	texts := map[string]string{
		"grid_id": "g-01",
		"head":    "阿依古丽·买买提",
		"address": "四川省凉山彝族自治州昭觉县支尔莫乡阿土列尔村（悬崖村）三组",
		"tags":    "低保户\t留守老人\t🏠",
		"needs":   "屋顶漏雨，需修缮。\n冬季取暖困难；孙子上学需资助。\n𠀀𪚥（扩展区汉字）",
	}
	m := mutation(pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_CREATE, householdID, at, texts)
	r, _ := applyAll(t, nil, applyStep{m, secretary})
	note := "调解记录：双方同意以村委会2019年测绘为准。"
	r, _ = applyAll(t, r, applyStep{update(pb.Kind_KIND_HOUSEHOLD, householdID, hlc(wall0+1, 0, "devS"), map[string]string{"members": "5"}, nil), secretary})

	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	var back pb.Record
	if err := proto.Unmarshal(b, &back); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	for k, want := range texts {
		if got := fieldValue(&back, k); got != want {
			t.Fatalf("%s = %q (% x), want %q (% x)", k, got, got, want, want)
		}
	}
	wantEqual(t, &back, r)

	d := newDispute(t, at)
	d, _ = applyAll(t, d, applyStep{mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_APPEND, disputeID, hlc(wall0+5, 0, "devM1"), map[string]string{"notes": note}), mediator1})
	b, err = proto.Marshal(d)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	var dback pb.Record
	if err := proto.Unmarshal(b, &dback); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if got := dback.GetEntries()[0].GetText(); got != note {
		t.Fatalf("note = %q, want %q", got, note)
	}
	if got, want := fieldValue(&dback, "title"), "宅基地边界纠纷"; got != want {
		t.Fatalf("title = %q, want %q", got, want)
	}
}
