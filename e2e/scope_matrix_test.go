package e2e

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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
	yes     = "read"    // the record is in the user's pull
	no      = "-"       // it is not
	applied = "applied" // the write is applied (or met a conflict: it was allowed)
	badOp   = "invalid_field mutation.op"
)

// denied is a rejection with permission_denied naming field.
func denied(field string) string { return domain.CodePermissionDenied + " " + field }

// invalid is a rejection with invalid_field naming field: an operation
// the kind does not have (whoever sends it), or a value not allowed there.
func invalid(field string) string { return domain.CodeInvalidField + " " + field }

// The places of scopeOrg, as the test knows them (not as the server does).
var (
	matrixGridVillage = map[string]string{"G1": "V1", "G2": "V2", "G3": "V3"}
	matrixVillageTown = map[string]string{"V1": "T1", "V2": "T1", "V3": "T2"}
	// matrixKeeper makes the conflicts a settle cell settles: a user who may
	// write the field on the record (a village's secretary; a dispute's
	// mediator), from two devices.
	matrixKeeper = map[string]string{"V1": "S1", "V2": "S2", "V3": "S3"}
)

// recipe is how the matrix fixture makes a record: the user who makes it
// and its create (a new id each call), or an imported household and its
// member. Write cells each act on a twin made by the same recipe, so that
// no cell sees another's effect (a void, a move, a relink).
type recipe struct {
	user string
	mk   func() *pb.Mutation
	// relink: the maker is linked to this household only while making the
	// record (a visit that stays with its household after a reassignment).
	relink string
	// An imported household.
	household *pb.Household
	member    string
	// keeper is the dispute's mediator who makes its conflicts.
	keeper string
}

// matrixFixture is scopeFixture plus the new kinds: needs, projects and a
// member's report, a visit to H1 made by M2 while it was linked to M2,
// and M5, an unlinked member of V2 (for the town secretary's relinks).
//
//	VH1b  visit of H1 by M2          R_M1  dispute reported by M1 in V1
//	VH2x  visit of H2 by M1          NH2x  need of H2 by M1 (made while H2 was M1's)
//	NH1   need of H1 by M1           NM1   need without household by M1 (V1)
//	NS1   need of H1 by S1           NH2 NH3 NH4  needs of H2-H4 by M2-M4
//	P_M1  project of M1 (V1)         P_S1M1  by S1, led by M1
//	P_S1  by S1, no leader           P_M2 P_M3 P_M4  projects of M2-M4
type matrixFixture struct {
	*scopeFixture
	recipes map[string]recipe
	raw2    map[string]*rawUser // a second device of the keepers
	grid    map[string]string   // household id -> grid, twins included
	twins   int
}

func newMatrixFixture(t *testing.T) *matrixFixture {
	t.Helper()
	f := &matrixFixture{scopeFixture: newScopeFixture(t), recipes: map[string]recipe{}, raw2: map[string]*rawUser{},
		grid: map[string]string{}}
	importOrg(t, f.e, &pb.ImportOrgRequest{Users: []*pb.User{{Id: "M5", Name: "孫小紅", Role: pb.Role_ROLE_MEMBER, UnitId: "G2"}}})
	f.raw["M5"] = newRaw(t, f.e, "M5")
	for _, u := range []string{"S1", "S2", "S3", "D1", "D2", "D3", "D4"} {
		f.raw2[u] = newRaw(t, f.e, u)
	}
	org := scopeOrg()
	for _, h := range org.GetHouseholds() {
		f.grid[h.GetId()] = h.GetGridId()
		r := recipe{household: h}
		for _, a := range org.GetAssignments() {
			if a.GetHouseholdId() == h.GetId() {
				r.member = a.GetMemberId()
			}
		}
		f.recipes[h.GetId()] = r
	}
	village := map[string]string{"M1": "V1", "M2": "V1", "M3": "V2", "M4": "V3", "D1": "V1", "D2": "V1", "D3": "V2", "D4": "V3"}
	for i, m := range []string{"M1", "M2", "M3", "M4"} {
		h := fmt.Sprintf("H%d", i+1)
		f.recipes["V"+h] = recipe{user: m, mk: func() *pb.Mutation { return mkVisit(h, "2026-11-01", "met", "戶主", "needs", "春耕缺化肥") }}
		f.recipes["N"+h] = recipe{user: m, mk: func() *pb.Mutation {
			return mkNeed(village[m], h, "春耕缺化肥", "category", "livelihood", "detail", "缺兩袋尿素")
		}}
		f.recipes["P_"+m] = recipe{user: m, mk: func() *pb.Mutation { return mkProject(village[m], "修村口水渠", "households", h) }}
	}
	for i, d := range []string{"D1", "D2", "D3", "D4"} {
		f.recipes[fmt.Sprintf("X%d", i+1)] = recipe{user: d, keeper: d, mk: func() *pb.Mutation {
			return mkDispute(village[d], "宅基地邊界糾紛", "parties", "兩戶鄰居")
		}}
	}
	for _, u := range []string{"M1", "M2", "M3", "M4", "D1", "D2"} {
		f.recipes["E_"+u] = recipe{user: u, mk: func() *pb.Mutation { return mkEvent(village[u], "三會一課：黨員大會") }}
	}
	f.recipes["VH1b"] = recipe{user: "M2", relink: "H1", mk: func() *pb.Mutation { return mkVisit("H1", "2026-10-15", "met", "戶主之妻") }}
	// M1's own visit and need of H2, made while H2 was linked to M1: they
	// stay with H2, out of M1's scope.
	f.recipes["VH2x"] = recipe{user: "M1", relink: "H2", mk: func() *pb.Mutation { return mkVisit("H2", "2026-09-20", "met", "戶主") }}
	f.recipes["NH2x"] = recipe{user: "M1", relink: "H2", mk: func() *pb.Mutation { return mkNeed("V1", "H2", "灶台漏煙") }}
	f.recipes["R_M1"] = recipe{user: "M1", keeper: "D1", mk: func() *pb.Mutation {
		return mkDispute("V1", "村口電線老化", "category", "hazard", "parties", "村民小組")
	}}
	f.recipes["NM1"] = recipe{user: "M1", mk: func() *pb.Mutation { return mkNeed("V1", "", "村道路燈壞了", "category", "infrastructure") }}
	f.recipes["NS1"] = recipe{user: "S1", mk: func() *pb.Mutation { return mkNeed("V1", "H1", "老人看病難", "category", "medical") }}
	f.recipes["P_S1M1"] = recipe{user: "S1", mk: func() *pb.Mutation { return mkProject("V1", "整治塘堰", "leader_id", "M1") }}
	f.recipes["P_S1"] = recipe{user: "S1", mk: func() *pb.Mutation { return mkProject("V1", "建設文化廣場") }}
	names := []string{"VH1b", "VH2x", "NH2x", "R_M1", "NH1", "NM1", "NS1", "NH2", "NH3", "NH4", "P_M1", "P_S1M1", "P_S1", "P_M2", "P_M3", "P_M4"}
	for i, id := range f.build(t, names) {
		f.ids[names[i]] = id
	}
	return f
}

// build makes a record by each named recipe (households by one import,
// the rest through Sync as their makers) and returns the new ids in order.
// The fixture's own records keep their names; twins get new ids.
func (f *matrixFixture) build(t *testing.T, names []string) []string {
	t.Helper()
	admin, actx := f.e.Admin()
	assign := func(h, m string) {
		_, err := admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: h, MemberId: m})
		ok(t, err)
	}
	ids := make([]string, len(names))
	imp := &pb.ImportOrgRequest{}
	type batch struct {
		user, relink string
	}
	var order []batch
	muts := map[batch][]*pb.Mutation{}
	for i, name := range names {
		r, found := f.recipes[name]
		if !found {
			t.Fatalf("no recipe %q", name)
		}
		if r.household != nil {
			f.twins++
			h := proto.Clone(r.household).(*pb.Household)
			h.Id = fmt.Sprintf("%s-t%d", r.household.GetId(), f.twins)
			imp.Households = append(imp.Households, h)
			imp.Assignments = append(imp.Assignments, &pb.Assignment{HouseholdId: h.GetId(), MemberId: r.member})
			f.grid[h.GetId()] = h.GetGridId()
			ids[i] = h.GetId()
			continue
		}
		b := batch{r.user, r.relink}
		if muts[b] == nil {
			order = append(order, b)
		}
		m := r.mk()
		muts[b] = append(muts[b], m)
		ids[i] = m.GetRecordId()
	}
	if len(imp.Households) > 0 {
		importOrg(t, f.e, imp)
	}
	for _, b := range order {
		if b.relink != "" {
			was := f.recipes[b.relink].member
			assign(b.relink, b.user)
			f.raw[b.user].mustApply(muts[b]...)
			assign(b.relink, was)
			continue
		}
		f.raw[b.user].mustApply(muts[b]...)
	}
	return ids
}

// place is where a record lies, from the record and the test's own map of
// the org: a household where its grid is, a visit where its household is,
// the rest in their village_id.
func (f *matrixFixture) place(r *pb.Record) (village, town string) {
	switch r.GetKind() {
	case pb.Kind_KIND_HOUSEHOLD:
		village = matrixGridVillage[r.GetFields()["grid_id"].GetValue()]
	case pb.Kind_KIND_VISIT:
		village = matrixGridVillage[f.grid[r.GetFields()["household_id"].GetValue()]]
	default:
		village = r.GetFields()["village_id"].GetValue()
	}
	return village, matrixVillageTown[village]
}

// matrixRoles names the user of each role in the matrices.
var matrixRoles = map[string]string{"member": "M1", "mediator": "D1", "village secretary": "S1", "town secretary": "TS1", "hq": "HQ"}

var matrixRoleOrder = []string{"member", "mediator", "village secretary", "town secretary", "hq"}

// opRow is one role and one record: whether the role reads it, and the
// outcome of each operation on it (on a twin of it, so that the cells do
// not meet). "" is no cell: settling a status the kind does not have.
type opRow struct {
	role, kind, target                                     string
	read                                                   string
	update, transition, append, void, settle, settleStatus string
}

// Outcomes that do not depend on the role: operations a kind does not have.
var (
	noStatus = func(kind string) string { return invalid(kind + ".status") } // a transition of a kind without a status
	noList   = func(kind, field string) string { return invalid(kind + "." + field) }
	fixed    = invalid("event.detail") // an event's fields never change, so never conflict
)

// opMatrix is the permission table of domain/permissions.go, cell by cell,
// for records that exist: read, update, transition, append, void, settle
// (a field's conflicts, then the status's). For each role and kind, a
// record in scope and one out of it, and where the table says "own" or
// "led by them", one in scope that is not their own. HQ has no
// out-of-scope records: its second record is in the other town.
var opMatrix = []opRow{
	// role, kind, target; read; update, transition, append, void, settle (a field), settle (the status)
	{"member", "household", "H1", yes, applied, noStatus("household"), noList("household", "needs"), badOp, applied, ""},
	{"member", "household", "H2", no, denied("household"), noStatus("household"), noList("household", "needs"), badOp, denied("household"), ""},
	{"member", "visit", "VH1", yes, applied, noStatus("visit"), noList("visit", "needs"), applied, applied, ""},
	{"member", "visit", "VH1b", yes, denied("visit"), noStatus("visit"), noList("visit", "needs"), denied("visit"), denied("visit"), ""},
	{"member", "visit", "VH2", no, denied("visit"), noStatus("visit"), noList("visit", "needs"), denied("visit"), denied("visit"), ""},
	{"member", "visit", "VH2x", no, denied("visit"), noStatus("visit"), noList("visit", "needs"), denied("visit"), denied("visit"), ""},
	{"member", "dispute", "R_M1", yes, denied("dispute.title"), denied("dispute.status"), denied("dispute"), badOp, denied("dispute.title"), denied("dispute.status")},
	{"member", "dispute", "X1", no, denied("dispute.title"), denied("dispute.status"), denied("dispute"), badOp, denied("dispute.title"), denied("dispute.status")},
	{"member", "event", "E_M1", yes, badOp, noStatus("event"), noList("event", "detail"), applied, fixed, ""},
	{"member", "event", "E_M2", no, badOp, noStatus("event"), noList("event", "detail"), denied("event"), fixed, ""},
	{"member", "need", "NH1", yes, applied, denied("need.status"), applied, applied, applied, denied("need.status")},
	{"member", "need", "NM1", yes, applied, denied("need.status"), applied, applied, applied, denied("need.status")},
	{"member", "need", "NS1", yes, denied("need"), denied("need.status"), applied, denied("need"), denied("need"), denied("need.status")},
	{"member", "need", "NH2", no, denied("need"), denied("need.status"), denied("need"), denied("need"), denied("need"), denied("need.status")},
	{"member", "need", "NH2x", no, denied("need"), denied("need.status"), denied("need"), denied("need"), denied("need"), denied("need.status")},
	{"member", "project", "P_M1", yes, applied, applied, applied, applied, applied, applied},
	{"member", "project", "P_S1M1", yes, applied, applied, applied, denied("project"), applied, applied},
	{"member", "project", "P_M2", no, denied("project"), denied("project"), denied("project"), denied("project"), denied("project"), denied("project")},
	{"member", "project", "P_S1", no, denied("project"), denied("project"), denied("project"), denied("project"), denied("project"), denied("project")},

	{"mediator", "household", "H1", no, denied("household"), noStatus("household"), noList("household", "needs"), badOp, denied("household"), ""},
	{"mediator", "visit", "VH1", no, denied("visit"), noStatus("visit"), noList("visit", "needs"), denied("visit"), denied("visit"), ""},
	{"mediator", "dispute", "X1", yes, applied, applied, applied, badOp, applied, applied},
	{"mediator", "dispute", "R_M1", yes, applied, applied, applied, badOp, applied, applied},
	{"mediator", "dispute", "X2", no, denied("dispute"), denied("dispute"), denied("dispute"), badOp, denied("dispute"), denied("dispute")},
	{"mediator", "event", "E_D1", yes, badOp, noStatus("event"), noList("event", "detail"), applied, fixed, ""},
	{"mediator", "event", "E_D2", no, badOp, noStatus("event"), noList("event", "detail"), denied("event"), fixed, ""},
	{"mediator", "need", "NH1", no, denied("need"), denied("need"), denied("need"), denied("need"), denied("need"), denied("need")},
	{"mediator", "project", "P_M1", no, denied("project"), denied("project"), denied("project"), denied("project"), denied("project"), denied("project")},

	{"village secretary", "household", "H1", yes, applied, noStatus("household"), noList("household", "needs"), badOp, applied, ""},
	{"village secretary", "household", "H3", no, denied("household"), noStatus("household"), noList("household", "needs"), badOp, denied("household"), ""},
	{"village secretary", "visit", "VH2", yes, denied("visit.met"), noStatus("visit"), noList("visit", "needs"), applied, denied("visit.met"), ""},
	{"village secretary", "visit", "VH3", no, denied("visit.met"), noStatus("visit"), noList("visit", "needs"), denied("visit"), denied("visit.met"), ""},
	{"village secretary", "dispute", "X2", yes, denied("dispute"), denied("dispute"), denied("dispute"), badOp, denied("dispute"), denied("dispute")},
	{"village secretary", "dispute", "X3", no, denied("dispute"), denied("dispute"), denied("dispute"), badOp, denied("dispute"), denied("dispute")},
	{"village secretary", "event", "E_M2", yes, badOp, noStatus("event"), noList("event", "detail"), applied, fixed, ""},
	{"village secretary", "event", "E_M3", no, badOp, noStatus("event"), noList("event", "detail"), denied("event"), fixed, ""},
	{"village secretary", "need", "NH2", yes, applied, applied, applied, applied, applied, applied},
	{"village secretary", "need", "NH3", no, denied("need"), denied("need"), denied("need"), denied("need"), denied("need"), denied("need")},
	{"village secretary", "project", "P_M2", yes, applied, applied, applied, applied, applied, applied},
	{"village secretary", "project", "P_M3", no, denied("project"), denied("project"), denied("project"), denied("project"), denied("project"), denied("project")},

	{"town secretary", "household", "H3", yes, applied, noStatus("household"), noList("household", "needs"), badOp, applied, ""},
	{"town secretary", "household", "H4", no, denied("household"), noStatus("household"), noList("household", "needs"), badOp, denied("household"), ""},
	{"town secretary", "visit", "VH3", yes, denied("visit.met"), noStatus("visit"), noList("visit", "needs"), applied, denied("visit.met"), ""},
	{"town secretary", "visit", "VH4", no, denied("visit.met"), noStatus("visit"), noList("visit", "needs"), denied("visit"), denied("visit.met"), ""},
	{"town secretary", "dispute", "X3", yes, denied("dispute"), denied("dispute"), denied("dispute"), badOp, denied("dispute"), denied("dispute")},
	{"town secretary", "dispute", "X4", no, denied("dispute"), denied("dispute"), denied("dispute"), badOp, denied("dispute"), denied("dispute")},
	{"town secretary", "event", "E_M3", yes, badOp, noStatus("event"), noList("event", "detail"), applied, fixed, ""},
	{"town secretary", "event", "E_M4", no, badOp, noStatus("event"), noList("event", "detail"), denied("event"), fixed, ""},
	{"town secretary", "need", "NH3", yes, applied, applied, applied, applied, applied, applied},
	{"town secretary", "need", "NH4", no, denied("need"), denied("need"), denied("need"), denied("need"), denied("need"), denied("need")},
	{"town secretary", "project", "P_M3", yes, applied, applied, applied, applied, applied, applied},
	{"town secretary", "project", "P_M4", no, denied("project"), denied("project"), denied("project"), denied("project"), denied("project"), denied("project")},

	{"hq", "household", "H1", yes, denied("household"), noStatus("household"), noList("household", "needs"), badOp, denied("household"), ""},
	{"hq", "household", "H4", yes, denied("household"), noStatus("household"), noList("household", "needs"), badOp, denied("household"), ""},
	{"hq", "visit", "VH1", yes, denied("visit"), noStatus("visit"), noList("visit", "needs"), denied("visit"), denied("visit"), ""},
	{"hq", "visit", "VH4", yes, denied("visit"), noStatus("visit"), noList("visit", "needs"), denied("visit"), denied("visit"), ""},
	{"hq", "dispute", "X1", yes, denied("dispute"), denied("dispute"), denied("dispute"), badOp, denied("dispute"), denied("dispute")},
	{"hq", "dispute", "R_M1", yes, denied("dispute"), denied("dispute"), denied("dispute"), badOp, denied("dispute"), denied("dispute")},
	{"hq", "event", "E_M1", yes, badOp, noStatus("event"), noList("event", "detail"), denied("event"), fixed, ""},
	{"hq", "event", "E_M4", yes, badOp, noStatus("event"), noList("event", "detail"), denied("event"), fixed, ""},
	{"hq", "need", "NH1", yes, denied("need"), denied("need"), denied("need"), denied("need"), denied("need"), denied("need")},
	{"hq", "need", "NH4", yes, denied("need"), denied("need"), denied("need"), denied("need"), denied("need"), denied("need")},
	{"hq", "project", "P_M1", yes, denied("project"), denied("project"), denied("project"), denied("project"), denied("project"), denied("project")},
	{"hq", "project", "P_M4", yes, denied("project"), denied("project"), denied("project"), denied("project"), denied("project"), denied("project")},
}

// assignRow is a relink: the user sets a twin of household target's
// member_id to member ("" unlinks).
type assignRow struct {
	role, target, member, want string
}

// assignMatrix: only a secretary relinks, a household of their unit, to a
// member of the household's own village. A member of another village, or
// a user who is not a member, is a value not allowed (invalid_field), as
// an unknown mediator is for a dispute's mediators.
var assignMatrix = []assignRow{
	{"member", "H1", "M2", denied("household.member_id")},
	{"member", "H2", "M1", denied("household.member_id")},
	{"mediator", "H1", "M2", denied("household")},
	{"village secretary", "H1", "M2", applied},
	{"village secretary", "H1", "", applied},
	{"village secretary", "H1", "M3", invalid("household.member_id")}, // a member of another village
	{"village secretary", "H1", "D1", invalid("household.member_id")}, // not a member
	{"village secretary", "H3", "M3", denied("household")},
	{"town secretary", "H3", "M5", applied},
	{"town secretary", "H3", "M1", invalid("household.member_id")}, // a member of another village of the town
	{"town secretary", "H4", "M4", denied("household")},
	{"hq", "H1", "M2", denied("household")},
}

// createRow is a create by role: where, and the outcome.
type createRow struct {
	role, label string
	mk          func() *pb.Mutation
	want        string
	// check, for an applied create, looks at what the server made of it.
	check func(t *testing.T, r *pb.Record)
}

func wantFields(pairs ...string) func(t *testing.T, r *pb.Record) {
	return func(t *testing.T, r *pb.Record) {
		t.Helper()
		for i := 0; i+1 < len(pairs); i += 2 {
			if got := r.GetFields()[pairs[i]].GetValue(); got != pairs[i+1] {
				t.Errorf("%s = %q, want %q", pairs[i], got, pairs[i+1])
			}
		}
	}
}

// createMatrix: every role creates every kind in its unit and outside it.
var createMatrix = []createRow{
	{"member", "household", func() *pb.Mutation { return mkHousehold("HN-M1", "G1", "新立戶") }, denied("household"), nil},
	{"member", "visit/linked", func() *pb.Mutation { return mkVisit("H1", "2026-11-22", "help", "送米送油") }, applied, nil},
	{"member", "visit/not linked", func() *pb.Mutation { return mkVisit("H2", "2026-11-22") }, denied("visit.household_id"), nil},
	{"member", "dispute/report in village", func() *pb.Mutation { return mkDispute("V1", "鄰里噪音爭吵", "category", "quarrel") }, applied,
		wantFields("reported_by", "M1", "mediators", "D1,D2", "status", "open")},
	{"member", "dispute/report in another village", func() *pb.Mutation { return mkDispute("V2", "鄰里噪音爭吵", "category", "quarrel") }, denied("dispute.village_id"), nil},
	{"member", "dispute/report naming mediators", func() *pb.Mutation { return mkDispute("V1", "鄰里噪音爭吵", "mediators", "D1") }, denied("dispute.mediators"), nil},
	{"member", "event/village", func() *pb.Mutation { return mkEvent("V1", "主題黨日", "type", "party_day") }, applied, nil},
	{"member", "event/another village", func() *pb.Mutation { return mkEvent("V2", "主題黨日", "type", "party_day") }, denied("event.village_id"), nil},
	{"member", "need/linked household", func() *pb.Mutation { return mkNeed("V1", "H1", "屋頂漏雨") }, applied, wantFields("status", "raised")},
	{"member", "need/no household", func() *pb.Mutation { return mkNeed("V1", "", "村裡缺路燈") }, applied, nil},
	{"member", "need/household not linked", func() *pb.Mutation { return mkNeed("V1", "H2", "屋頂漏雨") }, denied("need.household_id"), nil},
	{"member", "need/household of another village", func() *pb.Mutation { return mkNeed("V1", "H3", "屋頂漏雨") }, invalid("need.household_id"), nil},
	{"member", "need/another village", func() *pb.Mutation { return mkNeed("V2", "", "村裡缺路燈") }, denied("need.village_id"), nil},
	{"member", "project/led by them", func() *pb.Mutation { return mkProject("V1", "硬化村道") }, applied, wantFields("leader_id", "M1", "status", "planned")},
	{"member", "project/led by another", func() *pb.Mutation { return mkProject("V1", "硬化村道", "leader_id", "M2") }, denied("project.leader_id"), nil},
	{"member", "project/another village", func() *pb.Mutation { return mkProject("V2", "硬化村道") }, denied("project.village_id"), nil},

	{"mediator", "household", func() *pb.Mutation { return mkHousehold("HN-D1", "G1", "新立戶") }, denied("household"), nil},
	{"mediator", "visit", func() *pb.Mutation { return mkVisit("H1", "2026-11-22") }, denied("visit"), nil},
	{"mediator", "dispute/village", func() *pb.Mutation { return mkDispute("V1", "鄰里噪音爭吵", "category", "quarrel") }, applied,
		wantFields("mediators", "D1", "reported_by", "")},
	{"mediator", "dispute/another village", func() *pb.Mutation { return mkDispute("V3", "鄰里噪音爭吵") }, denied("dispute.village_id"), nil},
	{"mediator", "event/village", func() *pb.Mutation { return mkEvent("V1", "調解員例會") }, applied, nil},
	{"mediator", "event/another village", func() *pb.Mutation { return mkEvent("V3", "調解員例會") }, denied("event.village_id"), nil},
	{"mediator", "need", func() *pb.Mutation { return mkNeed("V1", "H1", "屋頂漏雨") }, denied("need"), nil},
	{"mediator", "project", func() *pb.Mutation { return mkProject("V1", "硬化村道") }, denied("project"), nil},

	{"village secretary", "household", func() *pb.Mutation { return mkHousehold("HN-S1", "G1", "新立戶") }, denied("household"), nil},
	{"village secretary", "visit", func() *pb.Mutation { return mkVisit("H1", "2026-11-22") }, denied("visit"), nil},
	{"village secretary", "dispute", func() *pb.Mutation { return mkDispute("V1", "鄰里噪音爭吵") }, denied("dispute"), nil},
	{"village secretary", "event/village", func() *pb.Mutation { return mkEvent("V1", "主題黨日", "type", "party_day") }, applied, nil},
	{"village secretary", "event/another village", func() *pb.Mutation { return mkEvent("V2", "主題黨日") }, denied("event.village_id"), nil},
	{"village secretary", "need/household of the village", func() *pb.Mutation { return mkNeed("V1", "H2", "屋頂漏雨") }, applied, nil},
	{"village secretary", "need/no household", func() *pb.Mutation { return mkNeed("V1", "", "村裡缺路燈") }, applied, nil},
	{"village secretary", "need/another village", func() *pb.Mutation { return mkNeed("V2", "H3", "屋頂漏雨") }, denied("need.village_id"), nil},
	{"village secretary", "project/led by a member", func() *pb.Mutation { return mkProject("V1", "硬化村道", "leader_id", "M2") }, applied,
		wantFields("leader_id", "M2")},
	{"village secretary", "project/led by the branch", func() *pb.Mutation { return mkProject("V1", "硬化村道") }, applied, wantFields("leader_id", "")},
	{"village secretary", "project/led by a member of another village", func() *pb.Mutation { return mkProject("V1", "硬化村道", "leader_id", "M3") },
		invalid("project.leader_id"), nil},
	{"village secretary", "project/for a household of another village", func() *pb.Mutation { return mkProject("V1", "硬化村道", "households", "H1,H3") },
		invalid("project.households"), nil},
	{"village secretary", "project/another village", func() *pb.Mutation { return mkProject("V2", "硬化村道") }, denied("project.village_id"), nil},

	{"town secretary", "household", func() *pb.Mutation { return mkHousehold("HN-TS1", "G2", "新立戶") }, denied("household"), nil},
	{"town secretary", "visit", func() *pb.Mutation { return mkVisit("H3", "2026-11-22") }, denied("visit"), nil},
	{"town secretary", "dispute", func() *pb.Mutation { return mkDispute("V2", "鄰里噪音爭吵") }, denied("dispute"), nil},
	{"town secretary", "event/town", func() *pb.Mutation { return mkEvent("V2", "主題黨日") }, applied, nil},
	{"town secretary", "event/another town", func() *pb.Mutation { return mkEvent("V3", "主題黨日") }, denied("event.village_id"), nil},
	{"town secretary", "need/town", func() *pb.Mutation { return mkNeed("V2", "H3", "屋頂漏雨") }, applied, nil},
	{"town secretary", "need/another town", func() *pb.Mutation { return mkNeed("V3", "H4", "屋頂漏雨") }, denied("need.village_id"), nil},
	{"town secretary", "project/town", func() *pb.Mutation { return mkProject("V2", "硬化村道") }, applied, nil},
	{"town secretary", "project/another town", func() *pb.Mutation { return mkProject("V3", "硬化村道") }, denied("project.village_id"), nil},

	{"hq", "household", func() *pb.Mutation { return mkHousehold("HN-HQ", "G1", "新立戶") }, denied("household"), nil},
	{"hq", "visit", func() *pb.Mutation { return mkVisit("H1", "2026-11-22") }, denied("visit"), nil},
	{"hq", "dispute", func() *pb.Mutation { return mkDispute("V1", "鄰里噪音爭吵") }, denied("dispute"), nil},
	{"hq", "event", func() *pb.Mutation { return mkEvent("V1", "主題黨日") }, denied("event"), nil},
	{"hq", "need", func() *pb.Mutation { return mkNeed("V1", "H1", "屋頂漏雨") }, denied("need"), nil},
	{"hq", "project", func() *pb.Mutation { return mkProject("V1", "硬化村道") }, denied("project"), nil},
}

// matrixField is the field a role updates and settles on a kind (and
// appends to: a kind without a list is sent its text field, and refused).
func matrixField(role string, k pb.Kind) (update, appendTo string) {
	switch k {
	case pb.Kind_KIND_HOUSEHOLD:
		if strings.HasSuffix(role, "secretary") {
			return "head", "needs"
		}
		return "phone", "needs"
	case pb.Kind_KIND_VISIT:
		return "met", "needs"
	case pb.Kind_KIND_DISPUTE:
		return "title", "notes"
	case pb.Kind_KIND_EVENT:
		return "detail", "detail"
	case pb.Kind_KIND_NEED:
		return "summary", "notes"
	}
	return "title", "progress"
}

// staleMove is a move the machine allows from a status the record does
// not have (it starts at Start), needing no extra field: sent to a new
// record, it is kept as a status conflict.
func staleMove(m *domain.Machine) (from, to string) {
	from = m.Next[m.Start][0]
	for _, to := range m.Next[from] {
		if to != m.Start && len(m.Require[to]) == 0 {
			return from, to
		}
	}
	panic("no stale move for " + domain.KindName(m.Kind))
}

// writeCell is one write of the matrices and what it must give.
type writeCell struct {
	name, user, want string
	op               string // create, update, transition, append, void, settle, settle status, assign
	kind             pb.Kind
	target           string // the recipe of the twin written to
	id               string
	field, value     string
	from, to         string // a transition's
	old              string // an assign's member before
	mut              *pb.Mutation
	before           *pb.Record
	check            func(*testing.T, *pb.Record)
}

// TestScopeMatrix checks the permission table of domain/permissions.go
// cell by cell against a real server, with raw Sync calls on real enrolled
// credentials (the syncer would refuse most of these writes locally): for
// every role and kind, reads of records in and out of scope, then every
// operation (update, transition, append, void, settle of a field and of
// the status, the secretary's relink) on records in and out of scope, and
// creates in and out of the role's unit. Allowed cells must apply with
// their effect; refused ones come back rejected with the code and field
// of the table and change nothing. Every user's pull, before and after the
// writes, holds exactly the records whose buckets (domain.RecordBuckets)
// meet the user's scope (domain.ScopeBuckets).
func TestScopeMatrix(t *testing.T) {
	f := newMatrixFixture(t)
	e := f.e

	// Reads first, before any write of the matrix.
	pulls := map[string]map[string]*pb.Record{}
	for _, role := range matrixRoleOrder {
		pulls[role], _ = f.raw[matrixRoles[role]].pullAll()
	}
	for _, row := range opMatrix {
		t.Run(row.role+"/"+row.kind+"/read/"+row.target, func(t *testing.T) {
			got, held := pulls[row.role][f.id(t, row.target)]
			switch {
			case row.read == yes && !held:
				t.Fatalf("%s (%s) is not in the %s's pull", row.target, row.kind, row.role)
			case row.read == no && held:
				t.Fatalf("%s (%s) is in the %s's pull: %v", row.target, row.kind, row.role, got)
			case held && !proto.Equal(got, serverRecord(t, e, f.id(t, row.target))):
				t.Fatalf("%s in the pull differs from the server's", row.target)
			}
		})
	}
	f.checkExactScope(t, "before the writes")

	// The cells on existing records, each on its own twin of the target.
	var cells []*writeCell
	for _, row := range opMatrix {
		kind, _ := domain.ParseKind(row.kind)
		user := matrixRoles[row.role]
		for _, c := range []struct{ op, want string }{{"update", row.update}, {"transition", row.transition}, {"append", row.append},
			{"void", row.void}, {"settle", row.settle}, {"settle status", row.settleStatus}} {
			if c.want == "" {
				continue
			}
			cells = append(cells, &writeCell{name: row.role + "/" + row.kind + "/" + c.op + "/" + row.target, user: user, want: c.want,
				op: c.op, kind: kind, target: row.target})
		}
	}
	for _, row := range assignMatrix {
		cells = append(cells, &writeCell{name: row.role + "/household/assign/" + row.target + " to " + cmp.Or(row.member, `""`),
			user: matrixRoles[row.role], want: row.want, op: "assign", kind: pb.Kind_KIND_HOUSEHOLD, target: row.target,
			field: "member_id", value: row.member, old: f.recipes[row.target].member})
	}
	targets := make([]string, len(cells))
	for i, c := range cells {
		targets[i] = c.target
	}
	for i, id := range f.build(t, targets) {
		cells[i].id = id
	}
	f.makeConflicts(t, cells)

	for _, c := range createMatrixCells() {
		cells = append(cells, c)
	}
	for _, role := range matrixRoleOrder {
		user := matrixRoles[role]
		var mine []*writeCell
		var muts []*pb.Mutation
		for _, c := range cells {
			if c.user != user {
				continue
			}
			c.prepare(t, e, role)
			mine = append(mine, c)
			muts = append(muts, c.mut)
		}
		for i, res := range f.raw[user].push(muts...) {
			c := mine[i]
			t.Run(c.name, func(t *testing.T) {
				got := outcome(res)
				if res.GetStatus() == pb.MutationStatus_MUTATION_STATUS_REJECTED && res.GetReason() == "" {
					t.Errorf("rejected with no reason")
				}
				if got != c.want {
					t.Fatalf("got %s (%q), want %s", got, res.GetReason(), c.want)
				}
				c.checkEffect(t, e, got == applied)
			})
		}
	}

	// A household that left through an import (retired) stays, marked
	// void, in the same scopes, and takes no more writes or new records.
	importOrg(t, e, &pb.ImportOrgRequest{Households: []*pb.Household{{Id: "HR1", GridId: "G1", Head: "夏侯惇", Address: "彭店村張家塆五組2號"}},
		Assignments: []*pb.Assignment{{HouseholdId: "HR1", MemberId: "M1"}}})
	importOrg(t, e, &pb.ImportOrgRequest{Households: []*pb.Household{{Id: "HR1", GridId: "G1", Head: "夏侯惇", Address: "彭店村張家塆五組2號", Retired: "全戶遷往武漢"}}})
	f.grid["HR1"] = "G1"
	if serverRecord(t, e, "HR1").GetVoid() == nil {
		t.Errorf("a retired household is not marked void: %v", serverRecord(t, e, "HR1"))
	}
	for _, c := range []struct {
		name, user string
		m          *pb.Mutation
		want       string
	}{
		{"village secretary/household/update/retired", "S1", mkUpdate(pb.Kind_KIND_HOUSEHOLD, "HR1", serverRecord(t, e, "HR1"), "head", "夏侯淵"), "voided household"},
		{"village secretary/household/assign/retired", "S1", mkUpdate(pb.Kind_KIND_HOUSEHOLD, "HR1", serverRecord(t, e, "HR1"), "member_id", "M2"), "voided household"},
		{"member/household/update/retired", "M1", mkUpdate(pb.Kind_KIND_HOUSEHOLD, "HR1", serverRecord(t, e, "HR1"), "phone", "13900000000"), "voided household"},
		{"member/visit/create/retired household", "M1", mkVisit("HR1", "2026-11-23"), "voided visit.household_id"},
		{"member/need/create/retired household", "M1", mkNeed("V1", "HR1", "搬家缺車"), "voided need.household_id"},
		{"village secretary/need/create/retired household", "S1", mkNeed("V1", "HR1", "搬家缺車"), "voided need.household_id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, _ := e.Store.Record(context.Background(), c.m.GetRecordId())
			res := f.raw[c.user].push(c.m)[0]
			if got := outcome(res); got != c.want {
				t.Fatalf("got %s (%q), want %s", got, res.GetReason(), c.want)
			}
			if now, _ := e.Store.Record(context.Background(), c.m.GetRecordId()); !proto.Equal(now, before) {
				t.Fatalf("a refused write changed the record:\nbefore %v\nafter  %v", before, now)
			}
		})
	}
	f.checkExactScope(t, "after the writes")

	// Writes to what does not exist name the field at fault with not_found.
	for _, c := range []struct {
		name, user string
		m          *pb.Mutation
		want       string
	}{
		{"member/visit/create/unknown household", "M1", mkVisit("H999", "2026-11-22"), "not_found visit.household_id"},
		{"mediator/dispute/create/unknown village", "D1", mkDispute("V99", "無名村糾紛"), "not_found dispute.village_id"},
		{"town secretary/event/create/unknown village", "TS1", mkEvent("V99", "無名村會議"), "not_found event.village_id"},
		{"village secretary/need/create/unknown household", "S1", mkNeed("V1", "H999", "無名戶"), "not_found need.household_id"},
		{"village secretary/project/create/unknown village", "S1", mkProject("V99", "無名村實事"), "not_found project.village_id"},
		{"member/visit/update/unknown visit", "M1", mkUpdate(pb.Kind_KIND_VISIT, domain.NewRecordID(), nil, "met", "某人"), "not_found mutation.record_id"},
		{"member/need/void/unknown need", "M1", mkVoid(pb.Kind_KIND_NEED, domain.NewRecordID(), "重複"), "not_found mutation.record_id"},
		{"village secretary/household/update/unknown household", "S1", mkUpdate(pb.Kind_KIND_HOUSEHOLD, "H999", nil, "head", "某人"), "not_found mutation.record_id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := f.raw[c.user].push(c.m)[0]
			if got := outcome(res); got != c.want {
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

// createMatrixCells turns createMatrix into cells.
func createMatrixCells() []*writeCell {
	var out []*writeCell
	for _, row := range createMatrix {
		m := row.mk()
		out = append(out, &writeCell{name: row.role + "/" + domain.KindName(m.GetKind()) + "/create/" + row.label, user: matrixRoles[row.role],
			want: row.want, op: "create", kind: m.GetKind(), id: m.GetRecordId(), mut: m, check: row.check})
	}
	return out
}

// makeConflicts gives the record of every settle cell conflicts on the
// field it settles: two edits made without seeing each other, from two
// devices of a user who may write it (its status: a move from a status it
// does not have). A settle that applies must clear them.
func (f *matrixFixture) makeConflicts(t *testing.T, cells []*writeCell) {
	t.Helper()
	first, second := map[string][]*pb.Mutation{}, map[string][]*pb.Mutation{}
	for _, c := range cells {
		if c.op != "settle" && c.op != "settle status" || c.kind == pb.Kind_KIND_VISIT || c.kind == pb.Kind_KIND_EVENT {
			continue // visits and events never conflict
		}
		keeper := f.recipes[c.target].keeper
		if keeper == "" {
			village, _ := f.place(serverRecord(t, f.e, c.id))
			keeper = matrixKeeper[village]
		}
		if c.op == "settle status" {
			from, to := staleMove(domain.MachineOf(c.kind))
			second[keeper] = append(second[keeper], mkTransition(c.kind, c.id, from, to))
			continue
		}
		field, _ := matrixField(strings.SplitN(c.name, "/", 2)[0], c.kind)
		first[keeper] = append(first[keeper], mkUpdate(c.kind, c.id, nil, field, "甲說法"))
		second[keeper] = append(second[keeper], mkUpdate(c.kind, c.id, nil, field, "乙說法"))
	}
	for _, k := range slices.Sorted(maps.Keys(second)) {
		for _, run := range []struct {
			raw  *rawUser
			muts []*pb.Mutation
		}{{f.raw[k], first[k]}, {f.raw2[k], second[k]}} {
			for i, res := range run.raw.push(run.muts...) {
				if res.GetStatus() == pb.MutationStatus_MUTATION_STATUS_REJECTED {
					t.Errorf("making a conflict on %s as %s: %v", run.muts[i].GetRecordId(), k, res)
				}
			}
		}
	}
}

// prepare builds the cell's mutation from the record as the server holds
// it now (its base and status, as a device that had just synced).
func (c *writeCell) prepare(t *testing.T, e *testenv.Env, role string) {
	t.Helper()
	if c.op == "create" {
		return
	}
	c.before = serverRecord(t, e, c.id)
	update, appendTo := matrixField(role, c.kind)
	switch c.op {
	case "update":
		c.field, c.value = update, "更新-"+c.user
		c.mut = mkUpdate(c.kind, c.id, c.before, c.field, c.value)
	case "transition":
		c.from, c.to = "", "closed" // a kind without a status
		if m := domain.MachineOf(c.kind); m != nil {
			c.from = c.before.GetFields()["status"].GetValue()
			c.to = m.Next[c.from][0]
		}
		c.mut = mkTransition(c.kind, c.id, c.from, c.to)
	case "append":
		c.field, c.value = appendTo, "追記-"+c.user
		c.mut = mkAppend(c.kind, c.id, c.field, c.value)
	case "void":
		c.value = "重複錄入-" + c.user
		c.mut = mkVoid(c.kind, c.id, c.value)
	case "settle":
		c.field, c.value = update, "定奪-"+c.user
		c.mut = mkSettle(c.kind, c.id, c.before, c.field, c.value)
	case "settle status":
		c.field, c.value = "status", c.before.GetFields()["status"].GetValue() // dismiss the other moves
		c.mut = mkSettle(c.kind, c.id, c.before, c.field, c.value)
	case "assign":
		c.mut = mkUpdate(c.kind, c.id, c.before, c.field, c.value)
	}
}

// checkEffect checks what an applied cell did, and that a refused one
// changed nothing.
func (c *writeCell) checkEffect(t *testing.T, e *testenv.Env, wasApplied bool) {
	t.Helper()
	now, err := e.Store.Record(context.Background(), c.id)
	if c.op == "create" {
		switch {
		case wasApplied && err != nil:
			t.Fatalf("applied create left no record: %v", err)
		case !wasApplied && !errors.Is(err, store.ErrNotFound):
			t.Fatalf("rejected create left a record: %v %v", now, err)
		case wasApplied && c.check != nil:
			c.check(t, now)
		}
		return
	}
	ok(t, err)
	if !wasApplied {
		if !proto.Equal(now, c.before) {
			t.Fatalf("rejected %s changed the record:\nbefore %v\nafter  %v", c.op, c.before, now)
		}
		return
	}
	conflicts := func(field string) int {
		n := 0
		for _, x := range now.GetConflicts() {
			if x.GetField() == field {
				n++
			}
		}
		return n
	}
	switch c.op {
	case "update", "assign":
		if got := now.GetFields()[c.field].GetValue(); got != c.value {
			t.Fatalf("%s = %q, want %q", c.field, got, c.value)
		}
	case "transition":
		h := now.GetHistory()
		if now.GetFields()["status"].GetValue() != c.to || len(h) == 0 || h[len(h)-1].GetFrom() != c.from || h[len(h)-1].GetTo() != c.to ||
			h[len(h)-1].GetAuthorId() != c.user || h[len(h)-1].GetAtMs() == 0 {
			t.Fatalf("after %s -> %s by %s: status %q, history %v", c.from, c.to, c.user, now.GetFields()["status"].GetValue(), h)
		}
	case "append":
		if !slices.ContainsFunc(now.GetEntries(), func(x *pb.Entry) bool {
			return x.GetField() == c.field && x.GetText() == c.value && x.GetAuthorId() == c.user
		}) {
			t.Fatalf("no entry %s %q by %s: %v", c.field, c.value, c.user, now.GetEntries())
		}
	case "void":
		if v := now.GetVoid(); v.GetReason() != c.value || v.GetAuthorId() != c.user || v.GetAtMs() == 0 {
			t.Fatalf("void %v, want reason %q by %s stamped by the server", v, c.value, c.user)
		}
	case "settle", "settle status":
		if got := now.GetFields()[c.field].GetValue(); got != c.value || conflicts(c.field) != 0 {
			t.Fatalf("after the settle %s = %q (want %q), conflicts %v", c.field, got, c.value, now.GetConflicts())
		}
	}
	if c.op == "assign" {
		for _, m := range []string{c.value, c.old} {
			if m == "" {
				continue
			}
			linked, err := e.Store.LinkedHouseholds(context.Background(), m)
			ok(t, err)
			if want := m == c.value; slices.Contains(linked, c.id) != want {
				t.Errorf("links: %s linked to %s: %v, want %v", c.id, m, !want, want)
			}
		}
	}
}

// checkExactScope checks that every record sits in the buckets
// domain.RecordBuckets gives it (from where the test knows it lies), and
// that every role's pull holds exactly the records whose buckets meet the
// user's scope (domain.ScopeBuckets, from the links and cases as they are).
func (f *matrixFixture) checkExactScope(t *testing.T, when string) {
	t.Helper()
	all := export(t, f.e)
	mediates := map[string][]string{}
	buckets := map[string][]string{}
	for _, r := range all {
		village, town := f.place(r)
		buckets[r.GetId()] = domain.RecordBuckets(r, village, town)
		if got, want := slices.Sorted(slices.Values(r.GetBuckets())), slices.Sorted(slices.Values(buckets[r.GetId()])); !slices.Equal(got, want) {
			t.Errorf("%s: %s %s sits in %v, want %v", when, domain.KindName(r.GetKind()), r.GetId(), got, want)
		}
		if r.GetKind() == pb.Kind_KIND_DISPUTE {
			for _, m := range domain.SplitList(r.GetFields()["mediators"].GetValue()) {
				mediates[m] = append(mediates[m], r.GetId())
			}
		}
	}
	readers := map[string]domain.Reader{
		"member":            {Role: pb.Role_ROLE_MEMBER, UserID: "M1", VillageID: "V1"},
		"mediator":          {Role: pb.Role_ROLE_MEDIATOR, UserID: "D1", VillageID: "V1"},
		"village secretary": {Role: pb.Role_ROLE_SECRETARY, UserID: "S1", VillageID: "V1"},
		"town secretary":    {Role: pb.Role_ROLE_SECRETARY, UserID: "TS1", TownID: "T1"},
		"hq":                {Role: pb.Role_ROLE_HQ, UserID: "HQ"},
	}
	for _, role := range matrixRoleOrder {
		rd := readers[role]
		linked, err := f.e.Store.LinkedHouseholds(context.Background(), rd.UserID)
		ok(t, err)
		rd.Linked, rd.Mediates = linked, mediates[rd.UserID]
		scope := domain.ScopeBuckets(rd)
		pulled, _ := f.raw[rd.UserID].pullAll()
		bad := 0
		for _, r := range all {
			want := slices.ContainsFunc(buckets[r.GetId()], func(b string) bool { return slices.Contains(scope, b) })
			if _, got := pulled[r.GetId()]; got != want && bad < 10 {
				bad++
				t.Errorf("%s: the %s's pull holds %s %s (%v): %v, scope %v says %v", when, role, domain.KindName(r.GetKind()), r.GetId(),
					buckets[r.GetId()], got, scope, want)
			}
			delete(pulled, r.GetId())
		}
		for id := range pulled {
			t.Errorf("%s: the %s's pull holds %s, which the server does not export", when, role, id)
		}
	}
}
