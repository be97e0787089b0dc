package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// scopeOrg is the org of the scope tests: two towns, three villages, one
// grid each, a member per household, two mediators in the first village,
// a secretary per village, a secretary per town and HQ. Household heads and
// addresses are distinctive, so that a byte search finds nothing by chance.
//
//	T1 宋埠鎮   V1 彭店村  G1 張家塆  H1 歐陽翠花 (M1)  H2 司馬長風 (M2)  D1 D2  S1
//	            V2 龜山村  G2 李家塆  H3 諸葛明月 (M3)                    D3     S2
//	T2 岐亭鎮   V3 杏花村  G3 王家塆  H4 上官飛燕 (M4)                    D4     S3
//	town secretaries TS1 (T1), TS2 (T2); HQ
func scopeOrg() *pb.ImportOrgRequest {
	town := pb.UnitKind_UNIT_KIND_TOWN
	village := pb.UnitKind_UNIT_KIND_VILLAGE
	grid := pb.UnitKind_UNIT_KIND_GRID
	member, mediator, secretary := pb.Role_ROLE_MEMBER, pb.Role_ROLE_MEDIATOR, pb.Role_ROLE_SECRETARY
	return &pb.ImportOrgRequest{
		Units: []*pb.Unit{
			{Id: "T1", Kind: town, Name: "宋埠鎮"}, {Id: "T2", Kind: town, Name: "岐亭鎮"},
			{Id: "V1", Kind: village, ParentId: "T1", Name: "彭店村"}, {Id: "V2", Kind: village, ParentId: "T1", Name: "龜山村"},
			{Id: "V3", Kind: village, ParentId: "T2", Name: "杏花村"},
			{Id: "G1", Kind: grid, ParentId: "V1", Name: "張家塆"}, {Id: "G2", Kind: grid, ParentId: "V2", Name: "李家塆"},
			{Id: "G3", Kind: grid, ParentId: "V3", Name: "王家塆"},
		},
		Users: []*pb.User{
			{Id: "M1", Name: "張國華", Role: member, UnitId: "G1"}, {Id: "M2", Name: "李秀英", Role: member, UnitId: "G1"},
			{Id: "M3", Name: "王德明", Role: member, UnitId: "G2"}, {Id: "M4", Name: "趙子龍", Role: member, UnitId: "G3"},
			{Id: "D1", Name: "陳調解", Role: mediator, UnitId: "V1"}, {Id: "D2", Name: "劉和平", Role: mediator, UnitId: "V1"},
			{Id: "D3", Name: "黃公正", Role: mediator, UnitId: "V2"}, {Id: "D4", Name: "吳以和", Role: mediator, UnitId: "V3"},
			{Id: "S1", Name: "周書記", Role: secretary, UnitId: "V1"}, {Id: "S2", Name: "鄭書記", Role: secretary, UnitId: "V2"},
			{Id: "S3", Name: "馮書記", Role: secretary, UnitId: "V3"},
			{Id: "HQ", Name: "組織部", Role: pb.Role_ROLE_HQ},
		},
		Households: []*pb.Household{
			{Id: "H1", GridId: "G1", Head: "歐陽翠花", Address: "彭店村張家塆一組18號", Phone: "13800000001", Members: "4"},
			{Id: "H2", GridId: "G1", Head: "司馬長風", Address: "彭店村張家塆二組7號", Members: "3"},
			{Id: "H3", GridId: "G2", Head: "諸葛明月", Address: "龜山村李家塆三組5號", Members: "2"},
			{Id: "H4", GridId: "G3", Head: "上官飛燕", Address: "杏花村王家塆四組9號", Members: "5"},
		},
		Assignments: []*pb.Assignment{
			{HouseholdId: "H1", MemberId: "M1"}, {HouseholdId: "H2", MemberId: "M2"},
			{HouseholdId: "H3", MemberId: "M3"}, {HouseholdId: "H4", MemberId: "M4"},
		},
	}
}

// scopeFixture is a running server with scopeOrg and records made through
// the real Sync RPC: a visit per household by its member (VH1-VH4), a
// dispute per mediator in their village (X1-X4, each mediated by its
// creator alone), and events (E_M1 ... by M1 in V1, and so on).
type scopeFixture struct {
	e   *testenv.Env
	ids map[string]string   // record name -> id (households are their own names)
	raw map[string]*rawUser // user -> raw credential
}

func newScopeFixture(t testing.TB) *scopeFixture {
	t.Helper()
	e := testenv.Start(t)
	importOrg(t, e, scopeOrg())
	putTownSecretary(t, e, "TS1", "宋鎮書記", "T1")
	putTownSecretary(t, e, "TS2", "岐鎮書記", "T2")
	f := &scopeFixture{e: e, ids: map[string]string{"H1": "H1", "H2": "H2", "H3": "H3", "H4": "H4"}, raw: map[string]*rawUser{}}
	for _, u := range []string{"M1", "M2", "M3", "M4", "D1", "D2", "D3", "D4", "S1", "S2", "S3", "TS1", "TS2", "HQ"} {
		f.raw[u] = newRaw(t, e, u)
	}
	make1 := func(user, name string, m *pb.Mutation) {
		f.raw[user].mustApply(m)
		f.ids[name] = m.GetRecordId()
	}
	for i, m := range []string{"M1", "M2", "M3", "M4"} {
		h := fmt.Sprintf("H%d", i+1)
		make1(m, "V"+h, mkVisit(h, "2026-11-01", "met", "戶主", "needs", "春耕缺化肥"))
	}
	village := map[string]string{"M1": "V1", "M2": "V1", "M3": "V2", "M4": "V3", "D1": "V1", "D2": "V1", "D3": "V2", "D4": "V3"}
	for i, d := range []string{"D1", "D2", "D3", "D4"} {
		make1(d, fmt.Sprintf("X%d", i+1), mkDispute(village[d], "宅基地邊界糾紛", "parties", "兩戶鄰居"))
	}
	for _, u := range []string{"M1", "M2", "M3", "M4", "D1", "D2"} {
		make1(u, "E_"+u, mkEvent(village[u], "三會一課：黨員大會"))
	}
	return f
}

// id returns the record id of a fixture name, failing on an unknown name.
func (f *scopeFixture) id(t testing.TB, name string) string {
	t.Helper()
	id, found := f.ids[name]
	if !found {
		t.Fatalf("no fixture record %q", name)
	}
	return id
}

// Outcomes in the matrix.
const (
	yes        = "read"                      // the record is in the user's pull
	no         = "-"                         // it is not
	applied    = "applied"                   // the write is applied
	appendOnly = "invalid_field mutation.op" // events are never updated, by anyone
)

// denied is a rejection with permission_denied naming field.
func denied(field string) string { return domain.CodePermissionDenied + " " + field }

// matrixRole is where a role's user works in scopeOrg: the village, grid and
// household in their scope (in) and out of it (out), for creates.
type matrixRole struct {
	user                      string
	inVillage, outVillage     string
	inGrid, outGrid           string
	inHousehold, outHousehold string
	householdField            string // the household field the role updates
}

var matrixRoles = map[string]matrixRole{
	"member":            {"M1", "V1", "V2", "G1", "G3", "H1", "H2", "phone"},
	"mediator":          {"D1", "V1", "V3", "G1", "G3", "H1", "H4", "phone"},
	"village secretary": {"S1", "V1", "V2", "G1", "G2", "H1", "H3", "head"},
	"town secretary":    {"TS1", "V2", "V3", "G2", "G3", "H3", "H4", "head"},
	"hq":                {"HQ", "V1", "V3", "G1", "G3", "H1", "H4", "phone"},
}

// matrixRow is one role and kind: the record nearest the user that is in
// their scope (or, for a kind the role never reads, in their own unit) and
// one out of it, and the expected outcome of each cell. Creates make a new
// record in the role's in/out village, grid or household (matrixRoles).
type matrixRow struct {
	role, kind          string
	in, out             string // fixture records read and updated
	readIn, readOut     string
	createIn, createOut string
	updateIn, updateOut string
}

// scopeMatrix is the permission table of domain/permissions.go, cell by
// cell, as a device sees it. HQ has no out-of-scope records: its "out"
// column is a record in the other town, which it reads too.
var scopeMatrix = []matrixRow{
	//  role                 kind        in      out     read in/out   create in / out                                update in / out
	{"member", "household", "H1", "H2", yes, no, denied("household"), denied("household"), applied, denied("household")},
	{"member", "visit", "VH1", "VH2", yes, no, applied, denied("visit.household_id"), applied, denied("visit")},
	{"member", "dispute", "X1", "X4", no, no, denied("dispute"), denied("dispute"), denied("dispute"), denied("dispute")},
	{"member", "event", "E_M1", "E_M2", yes, no, applied, denied("event.village_id"), appendOnly, appendOnly},

	{"mediator", "household", "H1", "H4", no, no, denied("household"), denied("household"), denied("household"), denied("household")},
	{"mediator", "visit", "VH1", "VH4", no, no, denied("visit"), denied("visit"), denied("visit"), denied("visit")},
	{"mediator", "dispute", "X1", "X2", yes, no, applied, denied("dispute.village_id"), applied, denied("dispute")},
	{"mediator", "event", "E_D1", "E_D2", yes, no, applied, denied("event.village_id"), appendOnly, appendOnly},

	{"village secretary", "household", "H1", "H3", yes, no, denied("household"), denied("household"), applied, denied("household")},
	{"village secretary", "visit", "VH2", "VH3", yes, no, denied("visit"), denied("visit"), denied("visit"), denied("visit")},
	{"village secretary", "dispute", "X2", "X3", yes, no, denied("dispute"), denied("dispute"), denied("dispute"), denied("dispute")},
	{"village secretary", "event", "E_M2", "E_M3", yes, no, applied, denied("event.village_id"), appendOnly, appendOnly},

	{"town secretary", "household", "H3", "H4", yes, no, denied("household"), denied("household"), applied, denied("household")},
	{"town secretary", "visit", "VH3", "VH4", yes, no, denied("visit"), denied("visit"), denied("visit"), denied("visit")},
	{"town secretary", "dispute", "X3", "X4", yes, no, denied("dispute"), denied("dispute"), denied("dispute"), denied("dispute")},
	{"town secretary", "event", "E_M3", "E_M4", yes, no, applied, denied("event.village_id"), appendOnly, appendOnly},

	{"hq", "household", "H1", "H4", yes, yes, denied("household"), denied("household"), denied("household"), denied("household")},
	{"hq", "visit", "VH1", "VH4", yes, yes, denied("visit"), denied("visit"), denied("visit"), denied("visit")},
	{"hq", "dispute", "X1", "X4", yes, yes, denied("dispute"), denied("dispute"), denied("dispute"), denied("dispute")},
	{"hq", "event", "E_M1", "E_M4", yes, yes, denied("event"), denied("event"), appendOnly, appendOnly},
}

// TestScopeMatrix checks every role x kind x (read, create, update) x (in,
// out of scope) against scopeMatrix, with raw Sync calls on real enrolled
// credentials (the syncer would refuse most of these writes locally).
func TestScopeMatrix(t *testing.T) {
	f := newScopeFixture(t)
	e := f.e

	// Reads first, before any write of the matrix changes a record.
	pulls := map[string]map[string]*pb.Record{}
	for role, r := range matrixRoles {
		pulls[role], _ = f.raw[r.user].pullAll()
	}
	for _, row := range scopeMatrix {
		for _, c := range []struct{ scope, rec, want string }{{"in", row.in, row.readIn}, {"out", row.out, row.readOut}} {
			t.Run(row.role+"/"+row.kind+"/read/"+c.scope, func(t *testing.T) {
				got, held := pulls[row.role][f.id(t, c.rec)]
				switch {
				case c.want == yes && !held:
					t.Fatalf("%s (%s) is not in the %s's pull", c.rec, row.kind, row.role)
				case c.want == no && held:
					t.Fatalf("%s (%s) is in the %s's pull: %v", c.rec, row.kind, row.role, got)
				case held && !proto.Equal(got, serverRecord(t, e, f.id(t, c.rec))):
					t.Fatalf("%s in the pull differs from the server's", c.rec)
				}
			})
		}
	}

	// Writes: each cell one mutation, each role's in one call (a rejection
	// never blocks what follows it).
	type cell struct {
		name string
		want string
		// A create, or an update of record id's field to value.
		create           *pb.Mutation
		kind             pb.Kind
		id, field, value string
	}
	cells := map[string][]*cell{}
	for _, row := range scopeMatrix {
		r := matrixRoles[row.role]
		kind, _ := domain.ParseKind(row.kind)
		create := func(scope string) *pb.Mutation {
			village, grid, household := r.inVillage, r.inGrid, r.inHousehold
			if scope == "out" {
				village, grid, household = r.outVillage, r.outGrid, r.outHousehold
			}
			switch kind {
			case pb.Kind_KIND_HOUSEHOLD:
				return mkHousehold("HN-"+r.user+"-"+scope, grid, "新立戶")
			case pb.Kind_KIND_VISIT:
				return mkVisit(household, "2026-11-22", "help", "送米送油")
			case pb.Kind_KIND_DISPUTE:
				return mkDispute(village, "鄰里噪音爭吵", "category", "quarrel")
			}
			return mkEvent(village, "主題黨日", "type", "party_day")
		}
		field := map[pb.Kind]string{pb.Kind_KIND_HOUSEHOLD: r.householdField, pb.Kind_KIND_VISIT: "met",
			pb.Kind_KIND_DISPUTE: "title", pb.Kind_KIND_EVENT: "detail"}[kind]
		for _, sc := range []struct{ scope, rec, createWant, updateWant string }{
			{"in", row.in, row.createIn, row.updateIn}, {"out", row.out, row.createOut, row.updateOut},
		} {
			cells[r.user] = append(cells[r.user],
				&cell{name: row.role + "/" + row.kind + "/create/" + sc.scope, want: sc.createWant, create: create(sc.scope)},
				&cell{name: row.role + "/" + row.kind + "/update/" + sc.scope, want: sc.updateWant,
					kind: kind, id: f.id(t, sc.rec), field: field, value: "更新-" + r.user})
		}
	}
	for _, role := range []string{"member", "mediator", "village secretary", "town secretary", "hq"} {
		user := matrixRoles[role].user
		cs := cells[user]
		muts := make([]*pb.Mutation, len(cs))
		before := make([]*pb.Record, len(cs)) // the server's state before the write (nil for a create)
		for i, c := range cs {
			if muts[i] = c.create; c.create == nil {
				before[i] = serverRecord(t, e, c.id)
				muts[i] = mkUpdate(c.kind, c.id, before[i], c.field, c.value)
			}
		}
		for i, res := range f.raw[user].push(muts...) {
			c, m := cs[i], muts[i]
			t.Run(c.name, func(t *testing.T) {
				got := applied
				switch res.GetStatus() {
				case pb.MutationStatus_MUTATION_STATUS_REJECTED:
					got = res.GetCode() + " " + res.GetField()
					if res.GetReason() == "" {
						t.Errorf("rejected with no reason")
					}
				case pb.MutationStatus_MUTATION_STATUS_APPLIED:
				default:
					got = res.GetStatus().String()
				}
				if got != c.want {
					t.Fatalf("got %s (%q), want %s", got, res.GetReason(), c.want)
				}
				now, err := e.Store.Record(context.Background(), m.GetRecordId())
				switch {
				case before[i] == nil && got == applied && err != nil:
					t.Fatalf("applied create left no record: %v", err)
				case before[i] == nil && got != applied && !errors.Is(err, store.ErrNotFound):
					t.Fatalf("rejected create left a record: %v %v", now, err)
				case before[i] != nil && got == applied && now.GetFields()[c.field].GetValue() != c.value:
					t.Fatalf("applied update did not set %s: %v", c.field, now)
				case before[i] != nil && got != applied && !proto.Equal(now, before[i]):
					t.Fatalf("rejected update changed the record:\nbefore %v\nafter  %v", before[i], now)
				}
			})
		}
	}

	// Writes to what does not exist name the field at fault with not_found.
	for _, c := range []struct {
		name, user string
		m          *pb.Mutation
		want       string
	}{
		{"member/visit/create/unknown household", "M1", mkVisit("H999", "2026-11-22"), "not_found visit.household_id"},
		{"mediator/dispute/create/unknown village", "D1", mkDispute("V99", "無名村糾紛"), "not_found dispute.village_id"},
		{"town secretary/event/create/unknown village", "TS1", mkEvent("V99", "無名村會議"), "not_found event.village_id"},
		{"member/visit/update/unknown visit", "M1", mkUpdate(pb.Kind_KIND_VISIT, domain.NewRecordID(), nil, "met", "某人"), "not_found mutation.record_id"},
		{"village secretary/household/update/unknown household", "S1", mkUpdate(pb.Kind_KIND_HOUSEHOLD, "H999", nil, "head", "某人"), "not_found mutation.record_id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := f.raw[c.user].push(c.m)[0]
			if got := res.GetCode() + " " + res.GetField(); res.GetStatus() != pb.MutationStatus_MUTATION_STATUS_REJECTED || got != c.want {
				t.Fatalf("got %v, want rejected %s", res, c.want)
			}
		})
	}

	// The reasons say why, without naming who else works on the record.
	res := f.raw["D1"].push(mkUpdate(pb.Kind_KIND_DISPUTE, f.id(t, "X2"), nil, "title", "x"))[0]
	if strings.Contains(res.GetReason(), "D2") || !strings.Contains(res.GetReason(), "not a mediator") {
		t.Errorf("reason for a case of another mediator: %q", res.GetReason())
	}
}
