package domain_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// wantRule is one row of the table in permissions.go's doc comment.
type wantRule struct {
	create, transition, append, void bool
	update                           []string
}

// wantPermissions is the write side of that table, written out
// independently of the code.
//
//	role       kind       create  update                                                      transition append void
//	member     household  -       phone, members, tags, needs                                 -          -      -
//	member     visit      yes     visited_on, met, needs, help, follow_up (own visits only)   -          -      yes
//	member     event      yes     - (append-only)                                             -          -      yes
//	member     dispute    report  -                                                           -          -      -
//	member     need       yes     summary, detail                                             -          yes    yes
//	member     project    yes     title, detail, households, planned_on, outcome              yes        yes    yes
//	mediator   dispute    yes     title, category, parties, agreement, outcome, mediators,    yes        yes    -
//	                              level, occurred_on, agreed_on
//	mediator   event      yes     -                                                           -          -      yes
//	secretary  household  -       head, address, phone, members, tags, needs, member_id       -          -      -
//	secretary  visit      -       -                                                           -          -      yes
//	secretary  event      yes     -                                                           -          -      yes
//	secretary  need       yes     category, summary, detail, help, resolution                 yes        yes    yes
//	secretary  project    yes     title, detail, households, planned_on, outcome              yes        yes    yes
//	hq         any        -       -                                                           -          -      -
var wantPermissions = map[pb.Role]map[pb.Kind]wantRule{
	pb.Role_ROLE_MEMBER: {
		pb.Kind_KIND_HOUSEHOLD: {update: []string{"phone", "members", "tags", "needs"}},
		pb.Kind_KIND_VISIT:     {create: true, void: true, update: []string{"met", "needs", "help", "follow_up", "visited_on"}},
		pb.Kind_KIND_EVENT:     {create: true, void: true},
		pb.Kind_KIND_DISPUTE:   {create: true},
		pb.Kind_KIND_NEED:      {create: true, append: true, void: true, update: []string{"summary", "detail"}},
		pb.Kind_KIND_PROJECT: {create: true, transition: true, append: true, void: true,
			update: []string{"title", "detail", "households", "planned_on", "outcome"}},
	},
	pb.Role_ROLE_MEDIATOR: {
		pb.Kind_KIND_DISPUTE: {create: true, transition: true, append: true,
			update: []string{"title", "category", "parties", "agreement", "outcome", "mediators", "level", "occurred_on", "agreed_on"}},
		pb.Kind_KIND_EVENT: {create: true, void: true},
	},
	pb.Role_ROLE_SECRETARY: {
		pb.Kind_KIND_HOUSEHOLD: {update: []string{"head", "address", "phone", "members", "tags", "needs", "member_id"}},
		pb.Kind_KIND_VISIT:     {void: true},
		pb.Kind_KIND_EVENT:     {create: true, void: true},
		pb.Kind_KIND_NEED: {create: true, transition: true, append: true, void: true,
			update: []string{"category", "summary", "detail", "help", "resolution"}},
		pb.Kind_KIND_PROJECT: {create: true, transition: true, append: true, void: true,
			update: []string{"title", "detail", "households", "planned_on", "outcome"}},
	},
	pb.Role_ROLE_HQ: {},
}

// carried are the fields a status move may carry (domain/dispute.go).
var carried = map[string]bool{
	"dispute.level": true, "dispute.agreed_on": true, "dispute.agreement": true, "dispute.outcome": true,
	"need.help": true, "need.referral_reason": true, "need.resolution": true,
	"project.outcome": true,
}

var allKinds = []pb.Kind{pb.Kind_KIND_HOUSEHOLD, pb.Kind_KIND_VISIT, pb.Kind_KIND_DISPUTE, pb.Kind_KIND_EVENT, pb.Kind_KIND_NEED, pb.Kind_KIND_PROJECT}

func TestCheckWriteTable(t *testing.T) {
	at := hlc(wall0, 0, "dev")
	roles := []pb.Role{pb.Role_ROLE_MEMBER, pb.Role_ROLE_MEDIATOR, pb.Role_ROLE_SECRETARY, pb.Role_ROLE_HQ, pb.Role_ROLE_UNSPECIFIED}
	type check struct {
		op        string
		m         *pb.Mutation
		allowed   bool
		wantField string // on a denial
	}
	for _, role := range roles {
		for _, kind := range allKinds {
			rule, hasRule := wantPermissions[role][kind]
			kn := domain.KindName(kind)
			denied := func(f string) string {
				if !hasRule {
					return kn // no row at all: the whole kind is refused
				}
				return f
			}
			checks := []check{
				{"create", mutation(kind, pb.Op_OP_CREATE, visitID, at, map[string]string{"title": "y"}), rule.create, denied(kn)},
				{"transition", mutation(kind, pb.Op_OP_TRANSITION, visitID, at, map[string]string{"status": "mediating"}), rule.transition, denied(kn + ".status")},
				{"append", mutation(kind, pb.Op_OP_APPEND, visitID, at, map[string]string{"notes": "n"}), rule.append, denied(kn)},
				{"void", mutation(kind, pb.Op_OP_VOID, visitID, at, map[string]string{"reason": "r"}), rule.void, denied(kn)},
			}
			for _, f := range domain.SpecOf(kind).Fields {
				checks = append(checks, check{"update " + f.Name,
					mutation(kind, pb.Op_OP_UPDATE, visitID, at, map[string]string{f.Name: "v"}),
					slices.Contains(rule.update, f.Name), denied(kn + "." + f.Name)})
				// A field a status move carries is left in conflict when the
				// move loses: those who move the status settle it.
				settleAllowed, settleField := slices.Contains(rule.update, f.Name) || rule.transition && carried[kn+"."+f.Name], kn+"."+f.Name
				if f.Name == "status" && domain.MachineOf(kind) != nil {
					settleAllowed, settleField = rule.transition, kn+".status"
				}
				checks = append(checks, check{"settle " + f.Name,
					mutation(kind, pb.Op_OP_SETTLE, visitID, at, map[string]string{f.Name: "v"}),
					settleAllowed, denied(settleField)})
			}
			for _, c := range checks {
				t.Run(domain.RoleName(role)+"/"+kn+"/"+c.op, func(t *testing.T) {
					got := domain.CheckWrite(role, c.m)
					if c.allowed {
						if got != nil {
							t.Fatalf("CheckWrite() = %v, want allowed", got)
						}
						return
					}
					wantRejection(t, got, domain.CodePermissionDenied, c.wantField)
					if !strings.Contains(got.Reason, "a "+domain.RoleName(role)+" may not") {
						t.Fatalf("reason %q, want it to name the role %s", got.Reason, domain.RoleName(role))
					}
				})
			}
		}
	}
}

func TestMemberReportNamesNoMediators(t *testing.T) {
	m := mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_CREATE, disputeID, hlc(wall0, 0, "dev"),
		map[string]string{"village_id": "v-01", "category": "hazard", "title": "t", "mediators": "med-01"})
	wantRejection(t, domain.CheckWrite(pb.Role_ROLE_MEMBER, m), domain.CodePermissionDenied, "dispute.mediators")
	delete(m.Fields, "mediators")
	if r := domain.CheckWrite(pb.Role_ROLE_MEMBER, m); r != nil {
		t.Fatalf("a member's report without mediators: %v, want allowed", r)
	}
}

func TestCheckWriteUpdateReason(t *testing.T) {
	at := hlc(wall0, 0, "dev")
	tests := []struct {
		name   string
		role   pb.Role
		fields map[string]string
		field  string
		reason string
	}{
		{"member may change some household fields", pb.Role_ROLE_MEMBER, map[string]string{"head": "x"},
			"household.head", "a member may not change it: may change phone, members, tags, needs"},
		{"one refused field refuses the whole update", pb.Role_ROLE_MEMBER, map[string]string{"phone": "1", "address": "x"},
			"household.address", "may change phone, members, tags, needs"},
		{"secretary may not move a household to another grid", pb.Role_ROLE_SECRETARY, map[string]string{"grid_id": "g-02"},
			"household.grid_id", "may change head, address, phone, members, tags, needs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := domain.CheckWrite(tt.role, mutation(pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_UPDATE, householdID, at, tt.fields))
			wantRejection(t, got, domain.CodePermissionDenied, tt.field)
			if !strings.Contains(got.Reason, tt.reason) {
				t.Fatalf("reason %q, want it to contain %q", got.Reason, tt.reason)
			}
		})
	}
	t.Run("member event update lists no fields", func(t *testing.T) {
		got := domain.CheckWrite(pb.Role_ROLE_MEMBER, mutation(pb.Kind_KIND_EVENT, pb.Op_OP_UPDATE, eventID, at, map[string]string{"detail": "x"}))
		wantRejection(t, got, domain.CodePermissionDenied, "event.detail")
		if !strings.Contains(got.Reason, "may change no fields") {
			t.Fatalf("reason %q, want it to say no fields", got.Reason)
		}
	})
}

func TestRoleNames(t *testing.T) {
	for _, name := range []string{"member", "mediator", "secretary", "hq"} {
		r, ok := domain.ParseRole(name)
		if !ok || domain.RoleName(r) != name {
			t.Fatalf("ParseRole(%q) = %v, %v; RoleName back = %q", name, r, ok, domain.RoleName(r))
		}
	}
	if r, ok := domain.ParseRole("unknown"); ok || r != pb.Role_ROLE_UNSPECIFIED {
		t.Fatalf(`ParseRole("unknown") = %v, %v; want unspecified, false`, r, ok)
	}
}

// The read side of the table: the buckets of each role's scope, written
// out by hand.
func TestScopeBuckets(t *testing.T) {
	tests := []struct {
		name string
		r    domain.Reader
		want []string
	}{
		{"member: linked households and own events", domain.Reader{Role: pb.Role_ROLE_MEMBER, UserID: "m1", VillageID: "V1", TownID: "T1",
			Linked: []string{"H2", "H1"}}, []string{"h:H1", "h:H2", "u:m1"}},
		{"member with no households", domain.Reader{Role: pb.Role_ROLE_MEMBER, UserID: "m1", VillageID: "V1"}, []string{"u:m1"}},
		{"mediator: the cases naming them", domain.Reader{Role: pb.Role_ROLE_MEDIATOR, UserID: "d1", VillageID: "V1", TownID: "T1",
			Mediates: []string{"X1", "X2"}, Linked: []string{"H1"}}, []string{"d:X1", "d:X2", "u:d1"}},
		{"village secretary: the village, not the town", domain.Reader{Role: pb.Role_ROLE_SECRETARY, UserID: "s1", VillageID: "V1", TownID: "T1"},
			[]string{"u:s1", "v:V1"}},
		{"town secretary: the town", domain.Reader{Role: pb.Role_ROLE_SECRETARY, UserID: "s2", TownID: "T1"}, []string{"t:T1", "u:s2"}},
		{"secretary with no unit: own events only", domain.Reader{Role: pb.Role_ROLE_SECRETARY, UserID: "s3"}, []string{"u:s3"}},
		{"hq: everything", domain.Reader{Role: pb.Role_ROLE_HQ, UserID: "hq", Linked: []string{"H1"}}, []string{"all"}},
		{"unknown role: own events only", domain.Reader{Role: pb.Role_ROLE_UNSPECIFIED, UserID: "x", VillageID: "V1"}, []string{"u:x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := domain.ScopeBuckets(tt.r); !slices.Equal(got, tt.want) {
				t.Fatalf("ScopeBuckets() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRecordBuckets(t *testing.T) {
	f := func(kv ...string) map[string]*pb.FieldValue {
		m := map[string]*pb.FieldValue{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = &pb.FieldValue{Value: kv[i+1]}
		}
		return m
	}
	tests := []struct {
		name string
		r    *pb.Record
		want []string
	}{
		{"household", &pb.Record{Id: "H1", Kind: pb.Kind_KIND_HOUSEHOLD, Fields: f("grid_id", "G1")}, []string{"h:H1", "v:V1", "t:T1", "all"}},
		{"visit: its household's bucket", &pb.Record{Id: visitID, Kind: pb.Kind_KIND_VISIT, Fields: f("household_id", "H1"), AuthorId: "m1"},
			[]string{"h:H1", "v:V1", "t:T1", "all"}},
		{"dispute", &pb.Record{Id: disputeID, Kind: pb.Kind_KIND_DISPUTE, Fields: f("mediators", "d1")}, []string{"d:" + disputeID, "v:V1", "t:T1", "all"}},
		{"event: its author's bucket", &pb.Record{Id: eventID, Kind: pb.Kind_KIND_EVENT, AuthorId: "s1"}, []string{"u:s1", "v:V1", "t:T1", "all"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := domain.RecordBuckets(tt.r, "V1", "T1"); !slices.Equal(got, tt.want) {
				t.Fatalf("RecordBuckets() = %q, want %q", got, tt.want)
			}
		})
	}
}

// Every record is read by exactly the users the table says: a record and a
// user meet when one of the record's buckets is in the user's scope.
func TestScopeMeetsRecordBuckets(t *testing.T) {
	visit := &pb.Record{Id: visitID, Kind: pb.Kind_KIND_VISIT, AuthorId: "m2", Fields: map[string]*pb.FieldValue{"household_id": {Value: "H1"}}}
	buckets := domain.RecordBuckets(visit, "V1", "T1")
	readers := []struct {
		r    domain.Reader
		want bool
	}{
		{domain.Reader{Role: pb.Role_ROLE_MEMBER, UserID: "m1", Linked: []string{"H1"}}, true},  // linked now, though another wrote it
		{domain.Reader{Role: pb.Role_ROLE_MEMBER, UserID: "m2", Linked: []string{"H2"}}, false}, // its author, no longer linked
		{domain.Reader{Role: pb.Role_ROLE_MEDIATOR, UserID: "d1", VillageID: "V1"}, false},
		{domain.Reader{Role: pb.Role_ROLE_SECRETARY, UserID: "s1", VillageID: "V1", TownID: "T1"}, true},
		{domain.Reader{Role: pb.Role_ROLE_SECRETARY, UserID: "s2", VillageID: "V2", TownID: "T1"}, false},
		{domain.Reader{Role: pb.Role_ROLE_SECRETARY, UserID: "s3", TownID: "T1"}, true},
		{domain.Reader{Role: pb.Role_ROLE_SECRETARY, UserID: "s4", TownID: "T2"}, false},
		{domain.Reader{Role: pb.Role_ROLE_HQ, UserID: "hq"}, true},
	}
	for _, rd := range readers {
		got := false
		for _, b := range domain.ScopeBuckets(rd.r) {
			got = got || slices.Contains(buckets, b)
		}
		if got != rd.want {
			t.Errorf("%s %s reads the visit: %v, want %v", domain.RoleName(rd.r.Role), rd.r.UserID, got, rd.want)
		}
	}
}
