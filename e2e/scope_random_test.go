package e2e

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

var scopeSeed = flag.Uint64("scope.seed", 0, "seed of TestScopeRandom (0: a new one, printed on failure)")

// randOrg is the test's own model of a generated org and its records,
// from which the oracle decides who may read what, independently of the
// server's code.
type randOrg struct {
	towns    []string
	villages []string          // all villages
	town     map[string]string // village -> town
	grids    map[string][]string
	gridOf   map[string]string // grid -> village
	users    []*randUser
	byID     map[string]*randUser
	links    map[string]string   // household -> member
	mediates map[string][]string // dispute -> mediators
	records  []*randRecord
	byRec    map[string]*randRecord
}

type randUser struct {
	id, name      string
	role          pb.Role
	village, town string // a town secretary has no village
	grid          string // members
	raw           *rawUser
}

type randRecord struct {
	id            string
	kind          pb.Kind
	village, town string
	household     string // a visit's, a need's (may be "")
	author        string
	leader        string // a project's ("" when the branch leads it)
	reporter      string // a member's reported dispute
	voided        bool
}

// userBucket names the user whose u: bucket holds r, if any: an event's
// author, the raiser of a need without a household, a project's leader
// (or its maker, when the branch leads it).
func (r *randRecord) userBucket() string {
	switch r.kind {
	case pb.Kind_KIND_EVENT:
		return r.author
	case pb.Kind_KIND_NEED:
		if r.household == "" {
			return r.author
		}
	case pb.Kind_KIND_PROJECT:
		return cmp.Or(r.leader, r.author)
	}
	return ""
}

// reads is the oracle: whether user u may read record r, by the table in
// domain/permissions.go.
func (o *randOrg) reads(u *randUser, r *randRecord) bool {
	if r.userBucket() == u.id || r.reporter == u.id {
		return true // their own bucket: events, needs without a household, projects they lead, reports
	}
	switch u.role {
	case pb.Role_ROLE_HQ:
		return true
	case pb.Role_ROLE_MEMBER:
		switch r.kind {
		case pb.Kind_KIND_HOUSEHOLD:
			return o.links[r.id] == u.id
		case pb.Kind_KIND_VISIT, pb.Kind_KIND_NEED:
			return r.household != "" && o.links[r.household] == u.id
		}
	case pb.Role_ROLE_MEDIATOR:
		return r.kind == pb.Kind_KIND_DISPUTE && slices.Contains(o.mediates[r.id], u.id)
	case pb.Role_ROLE_SECRETARY:
		if u.village != "" {
			return r.village == u.village
		}
		return r.town == u.town
	}
	return false
}

func (o *randOrg) add(r *randRecord) {
	o.records = append(o.records, r)
	o.byRec[r.id] = r
}

func (o *randOrg) user(id string) *randUser { return o.byID[id] }

func (o *randOrg) usersWith(role pb.Role, match func(*randUser) bool) []*randUser {
	var out []*randUser
	for _, u := range o.users {
		if u.role == role && (match == nil || match(u)) {
			out = append(out, u)
		}
	}
	return out
}

func pick[T any](rng *rand.Rand, items []T) T { return items[rng.IntN(len(items))] }

// genOrg builds and imports a random org: 3 towns of 2-3 villages of 3
// grids, 5-9 households and 2 members a grid, 2 mediators and a secretary
// a village, a secretary a town, and HQ.
func genOrg(t *testing.T, e *testenv.Env, rng *rand.Rand) *randOrg {
	o := &randOrg{town: map[string]string{}, grids: map[string][]string{}, gridOf: map[string]string{}, byID: map[string]*randUser{},
		links: map[string]string{}, mediates: map[string][]string{}, byRec: map[string]*randRecord{}}
	req := &pb.ImportOrgRequest{}
	surnames := []rune("趙錢孫李周吳鄭王馮陳褚衛蔣沈韓楊朱秦尤許何呂施張孔曹嚴華金魏陶姜")
	given := []rune("春夏秋冬梅蘭竹菊山河湖海明月星辰松柏")
	name := func() string {
		return string([]rune{pick(rng, surnames), pick(rng, given), pick(rng, given)})
	}
	addUser := func(u *randUser) {
		o.users = append(o.users, u)
		o.byID[u.id] = u
		unit := u.grid
		switch {
		case u.role == pb.Role_ROLE_HQ:
			unit = ""
		case u.role != pb.Role_ROLE_MEMBER:
			unit = u.village
		}
		if u.role == pb.Role_ROLE_SECRETARY && u.village == "" {
			return // a town secretary: stored below, as the import does not take them yet
		}
		req.Users = append(req.Users, &pb.User{Id: u.id, Name: u.name, Role: u.role, UnitId: unit})
	}
	hh := 0
	for ti := range 3 {
		town := fmt.Sprintf("T%d", ti+1)
		o.towns = append(o.towns, town)
		req.Units = append(req.Units, &pb.Unit{Id: town, Kind: pb.UnitKind_UNIT_KIND_TOWN, Name: fmt.Sprintf("第%d鎮", ti+1)})
		for vi := range 2 + rng.IntN(2) {
			v := fmt.Sprintf("%s-V%d", town, vi+1)
			o.villages = append(o.villages, v)
			o.town[v] = town
			req.Units = append(req.Units, &pb.Unit{Id: v, Kind: pb.UnitKind_UNIT_KIND_VILLAGE, ParentId: town, Name: v + "村"})
			for gi := range 3 {
				g := fmt.Sprintf("%s-G%d", v, gi+1)
				o.grids[v] = append(o.grids[v], g)
				o.gridOf[g] = v
				req.Units = append(req.Units, &pb.Unit{Id: g, Kind: pb.UnitKind_UNIT_KIND_GRID, ParentId: v, Name: g + "塆"})
				for mi := range 2 {
					addUser(&randUser{id: fmt.Sprintf("%s-M%d", g, mi+1), name: name(), role: pb.Role_ROLE_MEMBER, village: v, town: town, grid: g})
				}
			}
			for mi := range 2 {
				addUser(&randUser{id: fmt.Sprintf("%s-D%d", v, mi+1), name: name(), role: pb.Role_ROLE_MEDIATOR, village: v, town: town})
			}
			addUser(&randUser{id: v + "-S", name: name(), role: pb.Role_ROLE_SECRETARY, village: v, town: town})
		}
		addUser(&randUser{id: town + "-S", name: name(), role: pb.Role_ROLE_SECRETARY, town: town})
	}
	addUser(&randUser{id: "HQ", name: "組織部", role: pb.Role_ROLE_HQ})
	// Households: most linked to a member of their grid, some to another
	// member of the village, a few to nobody.
	for _, v := range o.villages {
		for _, g := range o.grids[v] {
			for range 5 + rng.IntN(5) {
				hh++
				id := fmt.Sprintf("H%04d", hh)
				req.Households = append(req.Households, &pb.Household{Id: id, GridId: g, Head: name(), Address: fmt.Sprintf("%s%d號", g, hh)})
				o.add(&randRecord{id: id, kind: pb.Kind_KIND_HOUSEHOLD, village: v, town: o.town[v], author: "admin"})
				members := o.usersWith(pb.Role_ROLE_MEMBER, func(u *randUser) bool { return u.grid == g })
				switch p := rng.IntN(10); {
				case p == 0:
					continue
				case p == 1:
					members = o.usersWith(pb.Role_ROLE_MEMBER, func(u *randUser) bool { return u.village == v })
				}
				m := pick(rng, members)
				o.links[id] = m.id
				req.Assignments = append(req.Assignments, &pb.Assignment{HouseholdId: id, MemberId: m.id})
			}
		}
	}
	importOrg(t, e, req)
	for _, u := range o.users {
		if u.role == pb.Role_ROLE_SECRETARY && u.village == "" {
			putTownSecretary(t, e, u.id, u.name, u.town)
		}
		u.raw = newRaw(t, e, u.id)
	}
	return o
}

// genRecords makes visits, disputes and events through the real Sync RPC.
func genRecords(t *testing.T, o *randOrg, rng *rand.Rand) {
	mediators := o.usersWith(pb.Role_ROLE_MEDIATOR, nil)
	for _, u := range o.users {
		var muts []*pb.Mutation
		var recs []*randRecord
		switch u.role {
		case pb.Role_ROLE_MEMBER:
			for _, h := range o.records {
				if h.kind != pb.Kind_KIND_HOUSEHOLD || o.links[h.id] != u.id {
					continue
				}
				for range 1 + rng.IntN(2) {
					m := mkVisit(h.id, fmt.Sprintf("2026-10-%02d", 1+rng.IntN(28)), "needs", "需要幫助")
					muts = append(muts, m)
					recs = append(recs, &randRecord{id: m.GetRecordId(), kind: pb.Kind_KIND_VISIT, village: h.village, town: h.town, household: h.id, author: u.id})
				}
				if rng.IntN(2) == 0 {
					m := mkNeed(h.village, h.id, "缺化肥")
					muts = append(muts, m)
					recs = append(recs, &randRecord{id: m.GetRecordId(), kind: pb.Kind_KIND_NEED, village: h.village, town: h.town, household: h.id, author: u.id})
				}
			}
			// A need without a household, a project they lead, a report
			// of a hazard: each in the member's own village, at random.
			if rng.IntN(3) == 0 {
				m := mkNeed(u.village, "", "村道路燈壞了")
				muts = append(muts, m)
				recs = append(recs, &randRecord{id: m.GetRecordId(), kind: pb.Kind_KIND_NEED, village: u.village, town: u.town, author: u.id})
			}
			if rng.IntN(3) == 0 {
				m := mkProject(u.village, "修水渠")
				muts = append(muts, m)
				recs = append(recs, &randRecord{id: m.GetRecordId(), kind: pb.Kind_KIND_PROJECT, village: u.village, town: u.town, author: u.id, leader: u.id})
			}
			if rng.IntN(3) == 0 {
				m := mkDispute(u.village, "電線老化", "category", "hazard")
				muts = append(muts, m)
				recs = append(recs, o.report(m, u))
			}
		case pb.Role_ROLE_SECRETARY:
			for range 1 + rng.IntN(2) {
				m, r := o.secretaryRecord(rng, u)
				muts = append(muts, m)
				recs = append(recs, r)
			}
		case pb.Role_ROLE_MEDIATOR:
			for range 1 + rng.IntN(3) {
				var co []string
				for range rng.IntN(3) {
					if c := pick(rng, mediators).id; c != u.id && !slices.Contains(co, c) {
						co = append(co, c)
					}
				}
				m := mkDispute(u.village, "糾紛", "mediators", joinIDs(co))
				muts = append(muts, m)
				recs = append(recs, &randRecord{id: m.GetRecordId(), kind: pb.Kind_KIND_DISPUTE, village: u.village, town: u.town, author: u.id})
				o.mediates[m.GetRecordId()] = append([]string{u.id}, co...)
			}
		case pb.Role_ROLE_HQ:
			continue
		}
		for range 1 + rng.IntN(2) {
			v := u.village
			if v == "" { // a town secretary: any village of the town
				var in []string
				for _, x := range o.villages {
					if o.town[x] == u.town {
						in = append(in, x)
					}
				}
				v = pick(rng, in)
			}
			m := mkEvent(v, "會議")
			muts = append(muts, m)
			recs = append(recs, &randRecord{id: m.GetRecordId(), kind: pb.Kind_KIND_EVENT, village: v, town: o.town[v], author: u.id})
		}
		u.raw.mustApply(muts...)
		for _, r := range recs {
			o.add(r)
		}
	}
}

// report is the record a member's report m becomes: in the reporter's
// bucket and the village's mediators' (the server names them all).
func (o *randOrg) report(m *pb.Mutation, u *randUser) *randRecord {
	v := m.GetFields()["village_id"]
	for _, d := range o.usersWith(pb.Role_ROLE_MEDIATOR, func(x *randUser) bool { return x.village == v }) {
		o.mediates[m.GetRecordId()] = append(o.mediates[m.GetRecordId()], d.id)
	}
	return &randRecord{id: m.GetRecordId(), kind: pb.Kind_KIND_DISPUTE, village: v, town: o.town[v], author: u.id, reporter: u.id}
}

// unitVillages lists the villages a secretary covers.
func (o *randOrg) unitVillages(u *randUser) []string {
	if u.village != "" {
		return []string{u.village}
	}
	var out []string
	for _, v := range o.villages {
		if o.town[v] == u.town {
			out = append(out, v)
		}
	}
	return out
}

// secretaryRecord is a need (of a household of the village, or none) or
// a project (led by a member of the village, or by the branch) a
// secretary makes in their unit.
func (o *randOrg) secretaryRecord(rng *rand.Rand, u *randUser) (*pb.Mutation, *randRecord) {
	v := pick(rng, o.unitVillages(u))
	r := &randRecord{kind: pb.Kind_KIND_NEED, village: v, town: o.town[v], author: u.id}
	var m *pb.Mutation
	if rng.IntN(2) == 0 {
		var households []string
		for _, h := range o.records {
			if h.kind == pb.Kind_KIND_HOUSEHOLD && h.village == v {
				households = append(households, h.id)
			}
		}
		if rng.IntN(3) > 0 {
			r.household = pick(rng, households)
		}
		m = mkNeed(v, r.household, "老人看病難", "category", "medical")
	} else {
		r.kind = pb.Kind_KIND_PROJECT
		if members := o.usersWith(pb.Role_ROLE_MEMBER, func(x *randUser) bool { return x.village == v }); len(members) > 0 && rng.IntN(3) > 0 {
			r.leader = pick(rng, members).id
		}
		m = mkProject(v, "建文化廣場", "leader_id", r.leader)
		if r.leader == "" {
			delete(m.Fields, "leader_id")
		}
	}
	r.id = m.GetRecordId()
	return m, r
}

func joinIDs(ids []string) string {
	out := ""
	for i, id := range ids {
		if i > 0 {
			out += ","
		}
		out += id
	}
	return out
}

// checkPulls pulls every user's whole scope and checks it against the
// oracle: every record of every answer is in the user's scope, and the
// given number of random (user, record) pairs agree.
func checkPulls(t *testing.T, o *randOrg, rng *rand.Rand, pairs int) {
	t.Helper()
	pulled := map[string]map[string]*pb.Record{}
	for _, u := range o.users {
		got, resps := u.raw.pullAll()
		pulled[u.id] = got
		for _, resp := range resps {
			for _, r := range resp.GetRecords() {
				rec := o.byRec[r.GetId()]
				if rec == nil || !o.reads(u, rec) {
					t.Errorf("%s (%s) pulled %s %s, outside their scope", u.id, domain.RoleName(u.role), domain.KindName(r.GetKind()), r.GetId())
				}
			}
		}
	}
	bad := 0
	for range pairs {
		u, r := pick(rng, o.users), pick(rng, o.records)
		want := o.reads(u, r)
		if _, got := pulled[u.id][r.id]; got != want {
			bad++
			if bad <= 20 {
				t.Errorf("%s (%s %s%s) and %s %s (village %s, household %s, author %s): in pull %v, oracle says %v",
					u.id, domain.RoleName(u.role), u.village, u.town, domain.KindName(r.kind), r.id, r.village, r.household, r.author, got, want)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d random pairs disagree with the oracle", bad, pairs)
	}
}

// checkOutOfScopeWrites has every user write to random records outside
// their scope, and create in places outside it: every write is rejected,
// and the server commits nothing.
func checkOutOfScopeWrites(t *testing.T, e *testenv.Env, o *randOrg, rng *rand.Rand, perUser int) int {
	t.Helper()
	before := must[uint64](t)(e.Store.LastSeq(context.Background()))
	total := 0
	for _, u := range o.users {
		var out []*randRecord
		for _, r := range o.records {
			if !o.reads(u, r) || u.role == pb.Role_ROLE_HQ {
				out = append(out, r)
			}
		}
		var muts []*pb.Mutation
		for range perUser {
			r := pick(rng, out)
			field := map[pb.Kind]string{pb.Kind_KIND_HOUSEHOLD: "needs", pb.Kind_KIND_VISIT: "met", pb.Kind_KIND_DISPUTE: "title", pb.Kind_KIND_EVENT: "detail",
				pb.Kind_KIND_NEED: "summary", pb.Kind_KIND_PROJECT: "title"}[r.kind]
			if r.kind == pb.Kind_KIND_HOUSEHOLD && u.role == pb.Role_ROLE_SECRETARY {
				field = "head"
			}
			m := mkUpdate(r.kind, r.id, nil, field, "越權-"+u.id)
			switch rng.IntN(5) {
			case 0: // a create where the user may not
				var villages []string
				for _, v := range o.villages {
					if v != u.village && (u.village != "" || o.town[v] != u.town) {
						villages = append(villages, v)
					}
				}
				var households []string
				for _, h := range out {
					if h.kind == pb.Kind_KIND_HOUSEHOLD {
						households = append(households, h.id)
					}
				}
				switch rng.IntN(5) {
				case 0:
					m = mkVisit(pick(rng, households), "2026-11-01")
				case 1:
					m = mkDispute(pick(rng, villages), "越權糾紛")
				case 2:
					if u.role == pb.Role_ROLE_MEMBER && rng.IntN(2) == 0 {
						// A household not linked to them, in its village.
						h := o.byRec[pick(rng, households)]
						m = mkNeed(h.village, h.id, "越權需求")
					} else {
						m = mkNeed(pick(rng, villages), "", "越權需求")
					}
				case 3:
					m = mkProject(pick(rng, villages), "越權實事")
				default:
					m = mkEvent(pick(rng, villages), "越權會議")
				}
			case 1: // a dispute's mediators, or an append
				if r.kind == pb.Kind_KIND_DISPUTE {
					m = mkUpdate(r.kind, r.id, nil, "mediators", u.id)
					if rng.IntN(2) == 0 {
						m = &pb.Mutation{RecordId: r.id, Kind: r.kind, Op: pb.Op_OP_APPEND, Fields: kv("notes", "越權筆記")}
					}
				}
				if list := map[pb.Kind]string{pb.Kind_KIND_NEED: "notes", pb.Kind_KIND_PROJECT: "progress"}[r.kind]; list != "" {
					m = mkAppend(r.kind, r.id, list, "越權筆記")
				}
			case 2: // a void, a settle or a move
				switch machine := domain.MachineOf(r.kind); {
				case domain.Voidable(r.kind) && rng.IntN(2) == 0:
					m = mkVoid(r.kind, r.id, "越權作廢")
				case machine != nil && rng.IntN(2) == 0:
					m = mkTransition(r.kind, r.id, machine.Start, machine.Next[machine.Start][0])
				case machine != nil && rng.IntN(2) == 0:
					m = mkSettle(r.kind, r.id, nil, "status", machine.Start)
				case r.kind != pb.Kind_KIND_EVENT:
					m = mkSettle(r.kind, r.id, nil, field, "越權定奪")
				}
			case 3: // a relink, by a secretary of another unit
				if r.kind == pb.Kind_KIND_HOUSEHOLD {
					m = mkUpdate(r.kind, r.id, nil, "member_id", "")
				}
			}
			muts = append(muts, m)
		}
		for i, res := range u.raw.push(muts...) {
			if res.GetStatus() != pb.MutationStatus_MUTATION_STATUS_REJECTED {
				t.Errorf("%s (%s) wrote out of scope: %v %v %s %v: %v", u.id, domain.RoleName(u.role),
					muts[i].GetOp(), muts[i].GetKind(), muts[i].GetRecordId(), muts[i].GetFields(), res)
			}
		}
		total += len(muts)
	}
	// Refused events put their chain links on the changelog; no record.
	if n := recordChangesSince(t, e, before); n != 0 {
		t.Errorf("out-of-scope writes committed %d record changes", n)
	}
	return total
}

// changeScopes changes the org at random while devices are offline:
// households reassigned (some across villages), mediators replaced on
// cases by a current mediator, and members moved to another grid.
func changeScopes(t *testing.T, e *testenv.Env, o *randOrg, rng *rand.Rand, watched []*randUser) {
	t.Helper()
	admin, actx := e.Admin()
	members := o.usersWith(pb.Role_ROLE_MEMBER, nil)
	mediators := o.usersWith(pb.Role_ROLE_MEDIATOR, nil)
	var households, disputes []string
	for _, r := range o.records {
		switch r.kind {
		case pb.Kind_KIND_HOUSEHOLD:
			households = append(households, r.id)
		case pb.Kind_KIND_DISPUTE:
			disputes = append(disputes, r.id)
		}
	}
	assign := func(h, m string) {
		_, err := admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: h, MemberId: m})
		ok(t, err)
		o.links[h] = m
	}
	setMediators := func(d string, list []string) {
		by := o.user(pick(rng, o.mediates[d]))
		by.raw.mustApply(mkUpdate(pb.Kind_KIND_DISPUTE, d, serverRecord(t, e, d), "mediators", joinIDs(list)))
		o.mediates[d] = list
	}
	// The devices' users gain and lose for sure; others at random.
	for _, u := range watched {
		switch u.role {
		case pb.Role_ROLE_MEMBER:
			for _, h := range households {
				if o.links[h] == u.id {
					others := slices.DeleteFunc(slices.Clone(members), func(x *randUser) bool { return x == u })
					assign(h, pick(rng, others).id)
					break
				}
			}
			assign(pick(rng, households), u.id)
		case pb.Role_ROLE_MEDIATOR:
			for _, d := range disputes {
				if list := o.mediates[d]; slices.Contains(list, u.id) && len(list) > 1 {
					setMediators(d, slices.DeleteFunc(slices.Clone(list), func(x string) bool { return x == u.id }))
					break
				}
			}
			if d := pick(rng, disputes); !slices.Contains(o.mediates[d], u.id) {
				setMediators(d, append(slices.Clone(o.mediates[d]), u.id))
			}
		}
	}
	for range 15 {
		assign(pick(rng, households), pick(rng, members).id)
	}
	for range 10 {
		d := pick(rng, disputes)
		var list []string
		for range 1 + rng.IntN(3) {
			if m := pick(rng, mediators).id; !slices.Contains(list, m) {
				list = append(list, m)
			}
		}
		setMediators(d, list)
	}
	// Members move to a grid of another village; one is always a watched
	// member. Their links stay until reassigned.
	var grids []string
	for _, v := range o.villages {
		grids = append(grids, o.grids[v]...)
	}
	movers := []*randUser{pick(rng, members), pick(rng, members)}
	for _, u := range watched {
		if u.role == pb.Role_ROLE_MEMBER {
			movers = append(movers, u)
			break
		}
	}
	req := &pb.ImportOrgRequest{}
	for _, u := range movers {
		g := pick(rng, grids)
		u.grid, u.village, u.town = g, o.gridOf[g], o.town[o.gridOf[g]]
		req.Users = append(req.Users, &pb.User{Id: u.id, Name: u.name, Role: u.role, UnitId: g})
	}
	importOrg(t, e, req)
}

// TestScopeRandom checks scope on a random org with records of every kind
// made through the real Sync RPC (needs, projects and members' reports
// among them): every pull answer holds only records in the user's scope,
// at least 10,000 random (user, record) pairs agree with an oracle
// computed here from the org, every write outside the scope is rejected,
// and random writes of every operation (update, transition, append, void,
// settle, relink, create) are applied exactly when the permission table
// and its scope column allow them; the devices' databases then hold
// exactly their scope, voids marked. Then after random scope changes made
// while devices were offline, all of it again. -short makes fewer random
// writes.
func TestScopeRandom(t *testing.T) {
	seed := *scopeSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d: rerun with go test ./e2e -run TestScopeRandom -scope.seed=%d", seed, seed)
		}
	})
	rng := rand.New(rand.NewPCG(seed, 0x5c09e))
	e := testenv.Start(t)
	o := genOrg(t, e, rng)
	genRecords(t, o, rng)
	counts := map[pb.Kind]int{}
	for _, r := range o.records {
		counts[r.kind]++
	}
	t.Logf("seed %d: %d users, %d households, %d visits, %d disputes, %d events, %d needs, %d projects", seed, len(o.users),
		counts[pb.Kind_KIND_HOUSEHOLD], counts[pb.Kind_KIND_VISIT], counts[pb.Kind_KIND_DISPUTE], counts[pb.Kind_KIND_EVENT],
		counts[pb.Kind_KIND_NEED], counts[pb.Kind_KIND_PROJECT])

	// Devices of some users of every role sync before the changes.
	var watched []*randUser
	for _, role := range []pb.Role{pb.Role_ROLE_MEMBER, pb.Role_ROLE_MEMBER, pb.Role_ROLE_MEDIATOR, pb.Role_ROLE_MEDIATOR, pb.Role_ROLE_SECRETARY, pb.Role_ROLE_HQ} {
		for {
			u := pick(rng, o.usersWith(role, nil))
			if !slices.Contains(watched, u) {
				watched = append(watched, u)
				break
			}
		}
	}
	watched = append(watched, o.user(o.towns[0]+"-S"))
	devices := map[*randUser]*syncer.Device{}
	for _, u := range watched {
		devices[u] = e.Device(u.id)
		testenv.Sync(t, devices[u])
	}
	checkDevice := func(when string) {
		t.Helper()
		for _, u := range watched {
			held := map[string]*syncer.Item{}
			for id, it := range deviceIDs(t, devices[u]) {
				if it.Version != 0 { // from the server (not a rejected local create)
					held[id] = it
				}
			}
			for _, r := range o.records {
				it := held[r.id]
				if want := o.reads(u, r); (it != nil) != want {
					t.Errorf("%s: %s's device holds %s %s: %v, oracle says %v", when, u.id, domain.KindName(r.kind), r.id, it != nil, want)
				} else if it != nil && (it.Record.GetVoid() != nil) != r.voided {
					t.Errorf("%s: %s's device shows %s %s voided: %v, want %v", when, u.id, domain.KindName(r.kind), r.id, it.Record.GetVoid() != nil, r.voided)
				}
			}
		}
	}
	checkDevice("before the changes")

	const pairs = 20000
	checkPulls(t, o, rng, pairs)
	n := checkOutOfScopeWrites(t, e, o, rng, 40)
	t.Logf("%d random pairs and %d out-of-scope writes checked", pairs, n)

	// Random writes of every operation, allowed or not (voids, relinks
	// and new records change what each user reads), then again after
	// the org's changes.
	writes := 600
	if testing.Short() {
		writes = 150
	}
	syncAll := func() {
		for _, u := range watched {
			testenv.Sync(t, devices[u])
		}
	}
	randomWrites(t, e, o, rng, writes)
	syncAll()
	checkDevice("after random writes")
	checkPulls(t, o, rng, pairs)

	changeScopes(t, e, o, rng, watched)
	syncAll()
	checkDevice("after the changes")
	checkPulls(t, o, rng, pairs)
	checkOutOfScopeWrites(t, e, o, rng, 40)
	randomWrites(t, e, o, rng, writes)
	syncAll()
	checkDevice("after the changes and random writes")
	checkPulls(t, o, rng, pairs)
}
