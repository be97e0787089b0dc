package domain_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// hashed returns fields with "hash" set to their EventHash.
func hashed(fields map[string]string) map[string]string {
	out := make(map[string]string, len(fields)+1)
	for k, v := range fields {
		out[k] = v
	}
	out["hash"] = domain.EventHash(fields)
	return out
}

func eventFields() map[string]string {
	return hashed(map[string]string{
		"type":         "service_request",
		"village_id":   "v-01",
		"occurred_on":  "2024-11-26",
		"subject":      "代办低保申请",
		"detail":       "为李大爷代办低保续期材料。\n已提交镇民政办。",
		"service_mode": "proxy",
	})
}

func TestValidMutationsPass(t *testing.T) {
	at := hlc(1732600000000, 0, "phone1")
	note4000 := cjk(1333) + "a"
	if len(note4000) != 4000 || utf8.RuneCountInString(note4000) != 1334 {
		t.Fatalf("note is %d bytes, %d runes; want 4000 bytes, 1334 runes", len(note4000), utf8.RuneCountInString(note4000))
	}
	tests := []struct {
		name string
		m    *pb.Mutation
	}{
		{"create visit", mutation(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, visitID, at, map[string]string{
			"household_id": householdID, "visited_on": "2024-11-26", "met": "户主王建国及其配偶",
			"needs": "屋顶漏雨，需要修缮。\n冬季取暖困难。", "help": "联系村委会", "follow_up": "下周回访",
		})},
		{"create visit of an imported household", mutation(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, visitID, at, map[string]string{
			"household_id": "H-2024-0001", "visited_on": "2024-02-29",
		})},
		{"create dispute", mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_CREATE, disputeID, at, map[string]string{
			"village_id": "v-01", "category": "dispute", "title": "宅基地边界纠纷",
			"parties": "张三、李四", "mediators": "m2, m3", "status": "open",
		})},
		{"create event with its hash", mutation(pb.Kind_KIND_EVENT, pb.Op_OP_CREATE, eventID, at, eventFields())},
		{"create household with an imported id", mutation(pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_CREATE, "H-2024-0001", at, map[string]string{
			"grid_id": "g-01", "head": "王建国", "members": "4", "tags": "低保户\t留守老人",
		})},
		{"update household", &pb.Mutation{Seq: 7, RecordId: householdID, Kind: pb.Kind_KIND_HOUSEHOLD, Op: pb.Op_OP_UPDATE, Hlc: at,
			Fields:  map[string]string{"phone": "13912345678", "members": "0", "needs": ""},
			BaseHlc: map[string]string{"phone": hlc(1732500000000, 2, "server"), "members": ""}}},
		{"transition dispute", &pb.Mutation{Seq: 1, RecordId: disputeID, Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_TRANSITION, Hlc: at,
			Fields: map[string]string{"status": "mediating"}, FromStatus: "open"}},
		{"append a 4000-byte Chinese note", mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_APPEND, disputeID, at, map[string]string{"notes": note4000})},
		{"append a session", mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_APPEND, disputeID, at, map[string]string{"sessions": "第一次调解：双方同意重新丈量。"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := domain.ValidateMutation(tt.m); got != nil {
				t.Fatalf("ValidateMutation() = %v (code %s), want nil", got, got.Code)
			}
		})
	}
}

func TestValidateMutationRejects(t *testing.T) {
	at := hlc(1732600000000, 0, "phone1")
	visit := func(fields map[string]string) *pb.Mutation {
		f := map[string]string{"household_id": householdID, "visited_on": "2024-11-26"}
		for k, v := range fields {
			f[k] = v
		}
		return mutation(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, visitID, at, f)
	}
	householdUpdate := func(fields map[string]string) *pb.Mutation {
		return mutation(pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_UPDATE, householdID, at, fields)
	}
	transition := func(from, to string) *pb.Mutation {
		m := mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_TRANSITION, disputeID, at, map[string]string{"status": to})
		m.FromStatus = from
		return m
	}
	edited := eventFields()
	edited["subject"] = "代办医保申请" // changed after hashing

	tests := []struct {
		name        string
		m           *pb.Mutation
		code, field string
		reason      string // a part of the reason
	}{
		{"seq 0", &pb.Mutation{RecordId: visitID, Kind: pb.Kind_KIND_VISIT, Op: pb.Op_OP_CREATE, Hlc: at, Fields: map[string]string{"met": "x"}},
			domain.CodeInvalidField, "mutation.seq", "1 or more"},
		{"unknown kind", mutation(pb.Kind(9), pb.Op_OP_CREATE, visitID, at, map[string]string{"met": "x"}),
			domain.CodeInvalidField, "mutation.kind", "household, visit, dispute, event"},
		{"unspecified kind", mutation(pb.Kind_KIND_UNSPECIFIED, pb.Op_OP_CREATE, visitID, at, map[string]string{"met": "x"}),
			domain.CodeInvalidField, "mutation.kind", "not a kind"},
		{"malformed record id", mutation(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, "not-a-uuid!!", at, map[string]string{"met": "x"}),
			domain.CodeInvalidField, "mutation.record_id", `"not-a-uuid!!"`},
		{"create of a visit with a UUIDv4", mutation(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, uuidV4, at, map[string]string{"household_id": householdID, "visited_on": "2024-11-26"}),
			domain.CodeInvalidField, "mutation.record_id", "must be a UUIDv7"},
		{"create of a visit with an org id", mutation(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, "V-1", at, map[string]string{"household_id": householdID, "visited_on": "2024-11-26"}),
			domain.CodeInvalidField, "mutation.record_id", "must be a UUIDv7"},
		{"upper-case UUIDv7", mutation(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, strings.ToUpper(visitID), at, map[string]string{"household_id": householdID, "visited_on": "2024-11-26"}),
			domain.CodeInvalidField, "mutation.record_id", "must be a UUIDv7"},
		{"bad hlc", mutation(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, visitID, "yesterday", map[string]string{"met": "x"}),
			domain.CodeInvalidField, "mutation.hlc", "16 hex digits"},
		{"no fields", mutation(pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_UPDATE, householdID, at, nil),
			domain.CodeInvalidField, "mutation.fields", "no fields"},
		{"note of 4001 bytes", mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_APPEND, disputeID, at, map[string]string{"notes": cjk(1333) + "ab"}),
			domain.CodeInvalidField, "dispute.notes", "4001 bytes is too long: at most 4000"},
		{"head of 201 bytes", householdUpdate(map[string]string{"head": cjk(67)}),
			domain.CodeInvalidField, "household.head", "201 bytes"},
		{"invalid UTF-8", householdUpdate(map[string]string{"needs": "王\xff建国"}),
			domain.CodeInvalidField, "household.needs", "UTF-8"},
		{"cut Chinese character", householdUpdate(map[string]string{"head": cjk(2)[:4]}),
			domain.CodeInvalidField, "household.head", "UTF-8"},
		{"newline in a Line field", householdUpdate(map[string]string{"head": "王\n建国"}),
			domain.CodeInvalidField, "household.head", "U+000A"},
		{"NUL in a Line field", householdUpdate(map[string]string{"address": "幸福村\x00三组"}),
			domain.CodeInvalidField, "household.address", "U+0000"},
		{"escape in a Text field", householdUpdate(map[string]string{"needs": "red \x1b[31m"}),
			domain.CodeInvalidField, "household.needs", "U+001B"},
		{"DEL in a Text field", householdUpdate(map[string]string{"needs": "a\x7fb"}),
			domain.CodeInvalidField, "household.needs", "U+007F"},
		{"bad date", visit(map[string]string{"visited_on": "2024-13-01"}),
			domain.CodeInvalidField, "visit.visited_on", "YYYY-MM-DD"},
		{"February 30", visit(map[string]string{"visited_on": "2023-02-29"}),
			domain.CodeInvalidField, "visit.visited_on", "YYYY-MM-DD"},
		{"Chinese date", visit(map[string]string{"visited_on": "2024年11月26日"}),
			domain.CodeInvalidField, "visit.visited_on", "YYYY-MM-DD"},
		{"members out of range", householdUpdate(map[string]string{"members": "100"}),
			domain.CodeInvalidField, "household.members", "from 0 to 99"},
		{"members not a number", householdUpdate(map[string]string{"members": "四"}),
			domain.CodeInvalidField, "household.members", "from 0 to 99"},
		{"enum value not allowed", mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_CREATE, disputeID, at, map[string]string{"village_id": "v-01", "category": "fight", "title": "t"}),
			domain.CodeInvalidField, "dispute.category", "problem, quarrel, dispute, hazard, case"},
		{"malformed id in a list", mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_UPDATE, disputeID, at, map[string]string{"mediators": "m1,m.2"}),
			domain.CodeInvalidField, "dispute.mediators", `"m.2"`},
		{"malformed id field", visit(map[string]string{"household_id": "户-1"}),
			domain.CodeInvalidField, "visit.household_id", "malformed id"},
		{"unknown field name", householdUpdate(map[string]string{"income": "3000"}),
			domain.CodeInvalidField, "household.income", "unknown field: household has grid_id, head"},
		{"missing required field", mutation(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, visitID, at, map[string]string{"household_id": householdID}),
			domain.CodeInvalidField, "visit.visited_on", "required"},
		{"required field empty", mutation(pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_CREATE, householdID, at, map[string]string{"grid_id": "g-01", "head": ""}),
			domain.CodeInvalidField, "household.head", "required"},
		{"list field on create", mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_CREATE, disputeID, at, map[string]string{"village_id": "v-01", "category": "case", "title": "t", "notes": "n"}),
			domain.CodeInvalidField, "dispute.notes", "append"},
		{"update of a Fixed field", mutation(pb.Kind_KIND_VISIT, pb.Op_OP_UPDATE, visitID, at, map[string]string{"household_id": "H-2"}),
			domain.CodeInvalidField, "visit.household_id", "never changed"},
		{"update of a list field", mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_UPDATE, disputeID, at, map[string]string{"notes": "n"}),
			domain.CodeInvalidField, "dispute.notes", "append"},
		{"update of dispute status", mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_UPDATE, disputeID, at, map[string]string{"status": "agreed"}),
			domain.CodeInvalidField, "dispute.status", "transition"},
		{"bad base hlc", &pb.Mutation{Seq: 1, RecordId: householdID, Kind: pb.Kind_KIND_HOUSEHOLD, Op: pb.Op_OP_UPDATE, Hlc: at,
			Fields: map[string]string{"phone": "1"}, BaseHlc: map[string]string{"phone": "0000"}},
			domain.CodeInvalidField, "mutation.base_hlc.phone", "16 hex digits"},
		{"transition closed -> open", transition("closed", "open"),
			domain.CodeInvalidTransition, "dispute.status", "closed -> open not allowed: closed is final"},
		{"transition mediating -> closed", transition("mediating", "closed"),
			domain.CodeInvalidTransition, "dispute.status", "from mediating a dispute may move to agreed, failed, withdrawn"},
		{"transition open -> agreed", transition("open", "agreed"),
			domain.CodeInvalidTransition, "dispute.status", "may move to mediating, withdrawn"},
		{"transition from no status", transition("", "mediating"),
			domain.CodeInvalidTransition, "dispute.status", "not a status"},
		{"transition with another field", &pb.Mutation{Seq: 1, RecordId: disputeID, Kind: pb.Kind_KIND_DISPUTE, Op: pb.Op_OP_TRANSITION, Hlc: at,
			Fields: map[string]string{"status": "mediating", "title": "t"}, FromStatus: "open"},
			domain.CodeInvalidField, "dispute.title", "a move to mediating carries nothing but status"},
		{"transition of a household", mutation(pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_TRANSITION, householdID, at, map[string]string{"head": "x"}),
			domain.CodeInvalidField, "mutation.op", "only dispute, need, project do"},
		{"append to a Text field", mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_APPEND, disputeID, at, map[string]string{"parties": "p"}),
			domain.CodeInvalidField, "dispute.parties", "appends only to notes, sessions"},
		{"append of two fields", mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_APPEND, disputeID, at, map[string]string{"notes": "n", "sessions": "s"}),
			domain.CodeInvalidField, "mutation.fields", "exactly one field"},
		{"append to an event", mutation(pb.Kind_KIND_EVENT, pb.Op_OP_APPEND, eventID, at, map[string]string{"detail": "d"}),
			domain.CodeInvalidField, "event.detail", "appends only to nothing"},
		{"event update", mutation(pb.Kind_KIND_EVENT, pb.Op_OP_UPDATE, eventID, at, map[string]string{"detail": "补充说明"}),
			domain.CodeInvalidField, "mutation.op", "append-only"},
		{"event hash not matching content", mutation(pb.Kind_KIND_EVENT, pb.Op_OP_CREATE, eventID, at, edited),
			domain.CodeInvalidField, "event.hash", "does not match"},
		{"unspecified op", mutation(pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_UNSPECIFIED, householdID, at, map[string]string{"head": "x"}),
			domain.CodeInvalidField, "mutation.op", "not an operation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := domain.ValidateMutation(tt.m)
			wantRejection(t, got, tt.code, tt.field)
			if !strings.Contains(got.Reason, tt.reason) {
				t.Fatalf("reason %q, want it to contain %q", got.Reason, tt.reason)
			}
			if want := tt.field + ": " + got.Reason; got.Error() != want {
				t.Fatalf("Error() = %q, want %q", got.Error(), want)
			}
		})
	}
}

func TestCheckValueLimitsCountBytes(t *testing.T) {
	s := domain.SpecOf(pb.Kind_KIND_HOUSEHOLD)
	head := s.Field("head") // 200 bytes
	tests := []struct {
		name  string
		value string
		ok    bool
	}{
		{"66 CJK + 2 ASCII = 200 bytes", cjk(66) + "ab", true},
		{"66 CJK + 3 ASCII = 201 bytes", cjk(66) + "abc", false},
		{"67 CJK = 201 bytes", cjk(67), false},
		{"tab in a Line field", "王\t建国", true},
		{"empty", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.CheckValue(head, tt.value)
			if (got == nil) != tt.ok {
				t.Fatalf("CheckValue(%d bytes) = %v, want ok=%v", len(tt.value), got, tt.ok)
			}
		})
	}
}

func TestKindNames(t *testing.T) {
	for _, name := range domain.KindNames() {
		k, ok := domain.ParseKind(name)
		if !ok {
			t.Fatalf("ParseKind(%q) not ok", name)
		}
		if got := domain.KindName(k); got != name {
			t.Fatalf("KindName(ParseKind(%q)) = %q", name, got)
		}
		if domain.SpecOf(k) == nil || domain.SpecOf(k).Name != name {
			t.Fatalf("SpecOf(%v) = %+v, want the spec of %s", k, domain.SpecOf(k), name)
		}
	}
	if _, ok := domain.ParseKind("unknown"); ok {
		t.Fatalf(`ParseKind("unknown") ok, want not ok`)
	}
	if got := domain.KindName(pb.Kind(42)); got != "unknown" {
		t.Fatalf("KindName(42) = %q, want unknown", got)
	}
}
