package e2e

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// covers says whether secretary u's unit holds village v.
func (o *randOrg) covers(u *randUser, v string) bool {
	if u.village != "" {
		return v == u.village
	}
	return u.town != "" && o.town[v] == u.town
}

// mayWrite is the write oracle: whether user u may make op (on field, for
// an update or a settle) to record r, by the table of domain/permissions.go
// (its rows, domain.RuleOf) and its scope column, written out here from
// the test's own model of the org.
func (o *randOrg) mayWrite(u *randUser, r *randRecord, op pb.Op, field string) bool {
	rule := domain.RuleOf(u.role, r.kind)
	switch op {
	case pb.Op_OP_UPDATE:
		if !slices.Contains(rule.Update, field) {
			return false
		}
	case pb.Op_OP_SETTLE:
		if field == "status" && !rule.Transition || field != "status" && !slices.Contains(rule.Update, field) {
			return false
		}
	case pb.Op_OP_TRANSITION:
		if !rule.Transition {
			return false
		}
	case pb.Op_OP_APPEND:
		if !rule.Append {
			return false
		}
	case pb.Op_OP_VOID:
		if !rule.Void {
			return false
		}
	}
	own := r.author == u.id
	switch u.role {
	case pb.Role_ROLE_SECRETARY:
		return o.covers(u, r.village)
	case pb.Role_ROLE_MEDIATOR:
		switch r.kind {
		case pb.Kind_KIND_DISPUTE:
			return slices.Contains(o.mediates[r.id], u.id)
		case pb.Kind_KIND_EVENT:
			return own
		}
	case pb.Role_ROLE_MEMBER:
		switch r.kind {
		case pb.Kind_KIND_HOUSEHOLD:
			return o.links[r.id] == u.id
		case pb.Kind_KIND_VISIT:
			return o.links[r.household] == u.id && own
		case pb.Kind_KIND_EVENT:
			return own
		case pb.Kind_KIND_NEED:
			if r.household == "" {
				return own
			}
			// A need of a household linked to them: notes on any, the
			// rest on their own.
			return o.links[r.household] == u.id && (own || op == pb.Op_OP_APPEND)
		case pb.Kind_KIND_PROJECT:
			if op == pb.Op_OP_VOID {
				return own
			}
			return own || r.leader == u.id
		}
	}
	return false
}

// randomWrite is one write of randomWrites and what the oracle says of it.
type randomWrite struct {
	m       *pb.Mutation
	rec     *randRecord // the record written (a create: the record it makes)
	allowed bool
	link    string // an allowed relink's member
}

// randomWrites has random users make random writes of every operation to
// random records (most in their scope, some not) and creates in random
// places, each pushed alone, and checks every one against the oracle:
// applied (or kept as a conflict) if the table and scope allow it, else
// rejected with permission_denied; on a voided record, an allowed write
// other than a void is rejected as voided. The model follows what was
// applied: voids, relinks and new records.
func randomWrites(t *testing.T, e *testenv.Env, o *randOrg, rng *rand.Rand, n int) {
	t.Helper()
	counts := map[string]int{}
	bad := 0
	for range n {
		u := pick(rng, o.users)
		w := o.randomWrite(t, e, rng, u)
		if w == nil {
			continue
		}
		res := u.raw.push(w.m)[0]
		got := applied
		if res.GetStatus() == pb.MutationStatus_MUTATION_STATUS_REJECTED {
			got = res.GetCode()
		}
		want := applied
		switch {
		case !w.allowed:
			want = domain.CodePermissionDenied
		case w.rec.voided && w.m.GetOp() != pb.Op_OP_VOID:
			want = domain.CodeVoided
		}
		if got != want && !(want == domain.CodePermissionDenied && got == domain.CodeVoided && w.rec.voided) {
			// (A refused write to a voided record may be told it is void
			// before it is told it is not theirs: a visit's author is
			// checked by the merge, after the void.)
			bad++
			if bad <= 20 {
				t.Errorf("%s (%s %s%s) %v %s %s (village %s, household %s, author %s, leader %s, voided %v) %v: got %s %s (%s), oracle says %s",
					u.id, domain.RoleName(u.role), u.village, u.town, w.m.GetOp(), domain.KindName(w.m.GetKind()), w.m.GetRecordId(),
					w.rec.village, w.rec.household, w.rec.author, w.rec.leader, w.rec.voided, w.m.GetFields(), got, res.GetField(), res.GetReason(), want)
			}
			continue
		}
		counts[fmt.Sprintf("%v %v", w.m.GetOp(), got == applied)]++
		if got != applied {
			continue
		}
		switch w.m.GetOp() {
		case pb.Op_OP_CREATE:
			o.add(w.rec)
			if w.rec.kind == pb.Kind_KIND_DISPUTE && w.rec.reporter == "" {
				o.mediates[w.rec.id] = []string{u.id}
			}
		case pb.Op_OP_VOID:
			w.rec.voided = true
		case pb.Op_OP_UPDATE, pb.Op_OP_SETTLE: // a settle of member_id relinks too
			if _, relink := w.m.GetFields()["member_id"]; relink {
				if w.link == "" {
					delete(o.links, w.rec.id)
				} else {
					o.links[w.rec.id] = w.link
				}
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d random writes disagree with the oracle", bad, n)
	}
	t.Logf("random writes (op, allowed): %v", counts)
}

// randomWrite makes one random write of user u: three in four on a record
// u reads, else on any record, or a create. nil when the pick has no
// write to make (a status that is final).
func (o *randOrg) randomWrite(t *testing.T, e *testenv.Env, rng *rand.Rand, u *randUser) *randomWrite {
	t.Helper()
	if rng.IntN(5) == 0 {
		return o.randomCreate(rng, u)
	}
	pool := o.records
	if rng.IntN(4) > 0 {
		pool = slices.DeleteFunc(slices.Clone(pool), func(r *randRecord) bool { return !o.reads(u, r) })
	}
	if len(pool) == 0 {
		return nil
	}
	r := pick(rng, pool)
	cur := serverRecord(t, e, r.id)
	update := map[pb.Kind][]string{
		pb.Kind_KIND_HOUSEHOLD: {"phone", "needs", "head", "member_id"},
		pb.Kind_KIND_VISIT:     {"met", "help"},
		pb.Kind_KIND_DISPUTE:   {"title", "agreement"},
		pb.Kind_KIND_NEED:      {"summary", "help"},
		pb.Kind_KIND_PROJECT:   {"title", "households"},
	}[r.kind]
	list := map[pb.Kind]string{pb.Kind_KIND_DISPUTE: "notes", pb.Kind_KIND_NEED: "notes", pb.Kind_KIND_PROJECT: "progress"}[r.kind]
	machine := domain.MachineOf(r.kind)
	var ops []pb.Op
	if update != nil {
		ops = append(ops, pb.Op_OP_UPDATE, pb.Op_OP_SETTLE)
	}
	if machine != nil && len(machine.Next[cur.GetFields()["status"].GetValue()]) > 0 {
		ops = append(ops, pb.Op_OP_TRANSITION)
	}
	if list != "" {
		ops = append(ops, pb.Op_OP_APPEND)
	}
	if domain.Voidable(r.kind) {
		ops = append(ops, pb.Op_OP_VOID)
	}
	w := &randomWrite{rec: r}
	switch op := pick(rng, ops); op {
	case pb.Op_OP_UPDATE, pb.Op_OP_SETTLE:
		field := pick(rng, update)
		if op == pb.Op_OP_SETTLE && machine != nil && rng.IntN(2) == 0 {
			field = "status"
		}
		value := "改-" + u.id
		switch field {
		case "member_id":
			// A member of the household's village, or "" (unlinks).
			if members := o.usersWith(pb.Role_ROLE_MEMBER, func(x *randUser) bool { return x.village == r.village }); len(members) > 0 && rng.IntN(4) > 0 {
				value = pick(rng, members).id
			} else {
				value = ""
			}
			w.link = value
		case "households":
			value = ""
		case "status":
			value = cur.GetFields()["status"].GetValue()
		}
		w.m = mkUpdate(r.kind, r.id, cur, field, value)
		if op == pb.Op_OP_SETTLE {
			w.m = mkSettle(r.kind, r.id, cur, field, value)
		}
		w.allowed = o.mayWrite(u, r, op, field)
	case pb.Op_OP_TRANSITION:
		from := cur.GetFields()["status"].GetValue()
		to := pick(rng, machine.Next[from])
		var more []string
		for _, f := range machine.Require[to] {
			more = append(more, f, "因由-"+u.id)
		}
		w.m = mkTransition(r.kind, r.id, from, to, more...)
		w.allowed = o.mayWrite(u, r, op, "status")
	case pb.Op_OP_APPEND:
		w.m = mkAppend(r.kind, r.id, list, "記-"+u.id)
		w.allowed = o.mayWrite(u, r, op, list)
	case pb.Op_OP_VOID:
		w.m = mkVoid(r.kind, r.id, "作廢-"+u.id)
		w.allowed = o.mayWrite(u, r, op, "")
	}
	return w
}

// randomCreate makes a create of a random kind in a random village (half
// the time the user's own), and says whether the table allows it there.
func (o *randOrg) randomCreate(rng *rand.Rand, u *randUser) *randomWrite {
	v := pick(rng, o.villages)
	if u.village != "" && rng.IntN(2) == 0 {
		v = u.village
	}
	var households []*randRecord
	for _, h := range o.records {
		if h.kind == pb.Kind_KIND_HOUSEHOLD && h.village == v {
			households = append(households, h)
		}
	}
	h := pick(rng, households)
	inUnit := u.village == v || u.role == pb.Role_ROLE_SECRETARY && o.covers(u, v)
	r := &randRecord{village: v, town: o.town[v], author: u.id}
	w := &randomWrite{rec: r}
	switch rng.IntN(5) {
	case 0:
		w.m = mkVisit(h.id, "2026-11-02")
		r.kind, r.household = pb.Kind_KIND_VISIT, h.id
		w.allowed = u.role == pb.Role_ROLE_MEMBER && o.links[h.id] == u.id
	case 1:
		w.m = mkDispute(v, "新糾紛", "category", "quarrel")
		r.kind = pb.Kind_KIND_DISPUTE
		w.allowed = (u.role == pb.Role_ROLE_MEDIATOR || u.role == pb.Role_ROLE_MEMBER) && inUnit
		if u.role == pb.Role_ROLE_MEMBER {
			r.reporter = u.id
			if w.allowed {
				o.report(w.m, u) // the village's mediators get it
			}
		}
	case 2:
		w.m = mkEvent(v, "新會議")
		r.kind = pb.Kind_KIND_EVENT
		w.allowed = u.role != pb.Role_ROLE_HQ && inUnit
	case 3:
		r.kind = pb.Kind_KIND_NEED
		if rng.IntN(3) > 0 {
			r.household = h.id
		}
		w.m = mkNeed(v, r.household, "新需求")
		w.allowed = u.role == pb.Role_ROLE_SECRETARY && inUnit ||
			u.role == pb.Role_ROLE_MEMBER && inUnit && (r.household == "" || o.links[r.household] == u.id)
	default:
		r.kind = pb.Kind_KIND_PROJECT
		w.m = mkProject(v, "新實事")
		switch u.role {
		case pb.Role_ROLE_MEMBER:
			r.leader = u.id
			w.allowed = inUnit
		case pb.Role_ROLE_SECRETARY:
			if members := o.usersWith(pb.Role_ROLE_MEMBER, func(x *randUser) bool { return x.village == v }); len(members) > 0 && rng.IntN(2) == 0 {
				r.leader = pick(rng, members).id
				w.m.Fields["leader_id"] = r.leader
			}
			w.allowed = inUnit
		}
	}
	r.id = w.m.GetRecordId()
	return w
}
