package domain_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

func FuzzParseHLC(f *testing.F) {
	for _, s := range []string{
		"0193692d6e000003@dev-7",
		"0000000000000000@a",
		"ffffffffffffffff@" + "z0123456789_:-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvw",
		"0193692D6E000003@a",
		"0193692d6e000003@",
		"0193692d6e000003a",
		"+193692d6e000003@a",
		"0x93692d6e000003@a",
		"0193692d6e00_003@a",
		"0193692d6e000003@设备",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := domain.ParseHLC(s)
		if err != nil {
			if h != (domain.HLC{}) {
				t.Fatalf("ParseHLC(%q) = %+v with error %v, want the zero HLC", s, h, err)
			}
			return
		}
		// The string form is canonical: one reading, one string.
		if got := h.String(); got != s {
			t.Fatalf("ParseHLC(%q).String() = %q", s, got)
		}
		back, err := domain.ParseHLC(h.String())
		if err != nil {
			t.Fatalf("ParseHLC(%q) of its own String(): %v", h.String(), err)
		}
		if back != h {
			t.Fatalf("round trip %+v -> %q -> %+v", h, h.String(), back)
		}
		if h.Wall < 0 || h.Wall >= 1<<48 || !domain.IsOrgID(h.Node) {
			t.Fatalf("ParseHLC(%q) = %+v: out of range", s, h)
		}
	})
}

// fuzzBases are existing records of each kind, for non-create mutations.
func fuzzBases(t testing.TB) map[pb.Kind]*pb.Record {
	t.Helper()
	at := hlc(wall0, 0, "devA")
	visit, _ := mustApply(t, nil, mutation(pb.Kind_KIND_VISIT, pb.Op_OP_CREATE, visitID, at, map[string]string{
		"household_id": householdID, "visited_on": "2024-11-26"}), memberA)
	event, _ := mustApply(t, nil, mutation(pb.Kind_KIND_EVENT, pb.Op_OP_CREATE, eventID, at, eventFields()), memberA)
	return map[pb.Kind]*pb.Record{
		pb.Kind_KIND_HOUSEHOLD: newHousehold(t, at),
		pb.Kind_KIND_VISIT:     visit,
		pb.Kind_KIND_DISPUTE:   newDispute(t, at),
		pb.Kind_KIND_EVENT:     event,
	}
}

var knownCodes = map[string]bool{
	domain.CodeInvalidField: true, domain.CodeNotFound: true, domain.CodePermissionDenied: true,
	domain.CodeInvalidTransition: true, domain.CodeAlreadyExists: true,
}

func FuzzValidateMutation(f *testing.F) {
	at := hlc(wall0, 0, "devA")
	ev := eventFields()
	type seed struct {
		fill                uint8
		seq                 uint64
		id                  string
		kind, op            int32
		hlc                 string
		k1, v1, k2, v2      string
		baseKey, base, from string
	}
	for _, s := range []seed{
		{0, 1, visitID, 2, 1, at, "household_id", householdID, "visited_on", "2024-11-26", "", "", ""},
		{0, 1, householdID, 1, 1, at, "grid_id", "g-01", "head", "王建国", "", "", ""},
		{0, 1, "H-1", 1, 2, at, "phone", "138", "needs", "屋顶漏雨\n", "phone", at, ""},
		{1, 1, disputeID, 3, 1, at, "mediators", "m2, m3", "status", "open", "", "", ""},
		{1, 1, disputeID, 3, 1, at, "category", "case", "status", "closed", "", "", ""},
		{0, 1, disputeID, 3, 3, at, "status", "mediating", "status", "mediating", "", "", "open"},
		{0, 1, disputeID, 3, 3, at, "status", "agreed", "status", "agreed", "", "", "mediating"},
		{0, 1, disputeID, 3, 4, at, "notes", cjk(1333) + "a", "notes", cjk(1333) + "a", "", "", ""},
		{0, 1, disputeID, 3, 2, at, "title", "新标题", "parties", "张三、李四", "title", "", ""},
		{3, 1, eventID, 4, 1, at, "subject", "代办", "prev_hash", ev["hash"], "", "", ""},
		{1, 1, eventID, 4, 1, at, "subject", ev["subject"], "hash", ev["hash"], "", "", ""},
		{0, 0, "not-a-uuid!!", 9, 7, "bad", "\xff", "\x00", "", "", "x", "y", "z"},
	} {
		f.Add(s.fill, s.seq, s.id, s.kind, s.op, s.hlc, s.k1, s.v1, s.k2, s.v2, s.baseKey, s.base, s.from)
	}
	bases := fuzzBases(f)
	roles := []pb.Role{pb.Role_ROLE_UNSPECIFIED, pb.Role_ROLE_MEMBER, pb.Role_ROLE_MEDIATOR, pb.Role_ROLE_SECRETARY, pb.Role_ROLE_HQ}
	// Valid values of the required fields, so that fuzzed creates of kinds
	// with more than two required fields reach Apply.
	required := map[pb.Kind]map[string]string{
		pb.Kind_KIND_HOUSEHOLD: {"grid_id": "g-01", "head": "王建国"},
		pb.Kind_KIND_VISIT:     {"household_id": householdID, "visited_on": "2024-11-26"},
		pb.Kind_KIND_DISPUTE:   {"village_id": "v-01", "category": "dispute", "title": "纠纷"},
		pb.Kind_KIND_EVENT:     {"type": "meeting", "village_id": "v-01", "occurred_on": "2024-11-26", "subject": "会议", "hash": ""},
	}
	f.Fuzz(func(t *testing.T, fill uint8, seq uint64, id string, kind, op int32, at, k1, v1, k2, v2, baseKey, base, from string) {
		fields := map[string]string{}
		if fill&1 != 0 {
			for k, v := range required[pb.Kind(kind)] {
				fields[k] = v
			}
		}
		fields[k1], fields[k2] = v1, v2
		if fill&2 != 0 {
			fields["hash"] = domain.EventHash(fields)
		}
		m := &pb.Mutation{Seq: seq, RecordId: id, Kind: pb.Kind(kind), Op: pb.Op(op), Hlc: at,
			Fields: fields, FromStatus: from}
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
		for _, r := range roles {
			if got := domain.CheckWrite(r, m); got != nil && got.Code != domain.CodePermissionDenied {
				t.Fatalf("CheckWrite(%v) code %s, want %s", r, got.Code, domain.CodePermissionDenied)
			}
		}
		a := domain.Actor{UserID: "u1", DeviceID: "d1"}
		if m.GetOp() != pb.Op_OP_CREATE {
			cur := proto.Clone(bases[m.GetKind()]).(*pb.Record)
			next, _, rej := domain.Apply(cur, m, a)
			if rej == nil && next.GetId() != cur.GetId() {
				t.Fatalf("Apply changed the record id to %q", next.GetId())
			}
			return
		}
		next, conflict, rej := domain.Apply(nil, m, a)
		if rej != nil {
			if !knownCodes[rej.Code] {
				t.Fatalf("Apply() = %+v: unknown code", rej)
			}
			return
		}
		if conflict || next.GetId() != id || next.GetKind() != m.GetKind() || next.GetAuthorId() != "u1" || next.GetOriginDeviceId() != "d1" {
			t.Fatalf("Apply(create) = %v, %v", next, conflict)
		}
		for k, v := range m.GetFields() {
			if k == "mediators" {
				continue // normalised, and holds the creator
			}
			if got := fieldValue(next, k); got != v {
				t.Fatalf("field %q = %q, want %q", k, got, v)
			}
		}
		if m.GetKind() == pb.Kind_KIND_DISPUTE && fieldValue(next, "status") != "open" {
			t.Fatalf("new dispute status %q, want open", fieldValue(next, "status"))
		}
		// The same create again, from the same device, changes nothing.
		again, _, rej := domain.Apply(next, m, a)
		if rej != nil || !proto.Equal(again, next) {
			t.Fatalf("repeated create = %v, %v; want %v", again, rej, next)
		}
	})
}

func FuzzMergeRecords(f *testing.F) {
	bases := fuzzBases(f)
	d := proto.Clone(bases[pb.Kind_KIND_DISPUTE]).(*pb.Record)
	d.Version = 3
	d.Entries = []*pb.Entry{{Field: "notes", Text: "第一次调解", Hlc: hlc(wall0+1, 0, "devB"), AuthorId: "m2"}}
	d.Conflicts = []*pb.Conflict{{Field: "status", Value: "withdrawn", Hlc: hlc(wall0+2, 0, "devB"), AuthorId: "m2", Reason: "transition"}}
	d.Buckets = []string{"d:" + disputeID, "v:v-01"}
	d2 := proto.Clone(d).(*pb.Record)
	d2.Fields["title"] = &pb.FieldValue{Value: "新标题", Hlc: hlc(wall0+5, 0, "devA")}
	d2.AuthorId = "m9"
	marshal := func(r *pb.Record) []byte {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatalf("Marshal: %v", err)
		}
		return b
	}
	f.Add(marshal(d), marshal(d2))
	f.Add(marshal(d), marshal(bases[pb.Kind_KIND_DISPUTE]))
	f.Add(marshal(bases[pb.Kind_KIND_HOUSEHOLD]), marshal(bases[pb.Kind_KIND_EVENT]))
	f.Add([]byte{}, marshal(d))
	f.Add([]byte{}, []byte{})
	f.Add([]byte("\x0a\x03abc\x10\x01\x18\x05"), []byte("\x22\x00\x2a\x00\x32\x00"))

	f.Fuzz(func(t *testing.T, ab, bb []byte) {
		// Unknown fields are dropped: a well-formed state carries only the
		// fields of this schema.
		opts := proto.UnmarshalOptions{DiscardUnknown: true}
		var a, b pb.Record
		if opts.Unmarshal(ab, &a) != nil || opts.Unmarshal(bb, &b) != nil {
			return
		}
		a0, b0 := proto.Clone(&a), proto.Clone(&b)
		x := domain.MergeRecords(&a, &b)
		y := domain.MergeRecords(&b, &a)
		if !proto.Equal(&a, a0) || !proto.Equal(&b, b0) {
			t.Fatalf("MergeRecords modified its inputs")
		}
		if !proto.Equal(x, y) {
			t.Fatalf("a⊔b != b⊔a:\n\ta⊔b %v\n\tb⊔a %v", x, y)
		}
		if got := domain.MergeRecords(x, &b); !proto.Equal(got, x) {
			t.Fatalf("(a⊔b)⊔b != a⊔b:\n\tgot  %v\n\twant %v", got, x)
		}
		if got := domain.MergeRecords(x, x); !proto.Equal(got, x) {
			t.Fatalf("(a⊔b)⊔(a⊔b) != a⊔b:\n\tgot  %v\n\twant %v", got, x)
		}
	})
}
