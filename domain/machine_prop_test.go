package domain_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Properties of the status machines of needs and projects (and disputes,
// which share the rules), of void and settle, and of the merge of states
// that carry a void and a history.

const (
	npNeedID    = "0190f3a2-1b2c-7d3e-8f40-51627384a5c1"
	npProjectID = "0190f3a2-1b2c-7d3e-8f40-51627384a5c2"
)

var npKinds = []pb.Kind{pb.Kind_KIND_NEED, pb.Kind_KIND_PROJECT, pb.Kind_KIND_DISPUTE}

// npID is the one record of kind k the properties work on.
func npID(k pb.Kind) string {
	switch k {
	case pb.Kind_KIND_NEED:
		return npNeedID
	case pb.Kind_KIND_PROJECT:
		return npProjectID
	}
	return disputeID
}

// npCreate makes the create of kind k's record at hlc at.
func npCreate(k pb.Kind, at string) *pb.Mutation {
	fields := map[pb.Kind]map[string]string{
		pb.Kind_KIND_NEED:    {"village_id": "v-01", "household_id": householdID, "category": "medical", "summary": "看病难"},
		pb.Kind_KIND_PROJECT: {"village_id": "v-01", "title": "修村道", "leader_id": "memA"},
		pb.Kind_KIND_DISPUTE: {"village_id": "v-01", "category": "dispute", "title": "宅基地边界纠纷"},
	}[k]
	return mutation(k, pb.Op_OP_CREATE, npID(k), at, fields)
}

// fataler is what both *testing.T and *rapid.T have.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// npApply validates and applies m, failing t on any rejection.
func npApply(t fataler, cur *pb.Record, m *pb.Mutation, a domain.Actor) (*pb.Record, bool) {
	t.Helper()
	if rej := domain.ValidateMutation(m); rej != nil {
		t.Fatalf("ValidateMutation(%v): %v", m, rej)
	}
	next, conflict, rej := domain.Apply(cur, m, a)
	if rej != nil {
		t.Fatalf("Apply(%v): %v", m, rej)
	}
	return next, conflict
}

// npNew creates kind k's record, stamped by the server at wall0.
func npNew(t fataler, k pb.Kind) *pb.Record {
	t.Helper()
	a := secretary
	a.Now = timeAt(0)
	r, _ := npApply(t, nil, npCreate(k, hlc(wall0, 0, "devS")), a)
	return r
}

// npMove is a transition of kind k's record from -> to with the fields a
// move to "to" must carry.
func npMove(k pb.Kind, at, from, to string) *pb.Mutation {
	fields := map[string]string{"status": to}
	for _, name := range domain.MachineOf(k).Require[to] {
		fields[name] = "理由：" + to
	}
	m := mutation(k, pb.Op_OP_TRANSITION, npID(k), at, fields)
	m.FromStatus = from
	return m
}

// TestMachineMovesOnlyAlongEdges applies random transitions (legal or not,
// from the right status or a stale one) and checks that the status only
// ever moves along an edge, that each move leaves one line of history
// chained from the one before, and that a move from a status the record no
// longer has is a conflict on "status", never an overwrite.
func TestMachineMovesOnlyAlongEdges(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		k := rapid.SampledFrom(npKinds).Draw(t, "kind")
		machine := domain.MachineOf(k)
		r := npNew(t, k)
		moves := 0
		for range rapid.IntRange(1, 12).Draw(t, "n") {
			from := rapid.SampledFrom(machine.Statuses).Draw(t, "from")
			to := rapid.SampledFrom(machine.Statuses).Draw(t, "to")
			m := npMove(k, hlc(wall0+1+rapid.Int64Range(0, 5).Draw(t, "wall"), 0, rapid.SampledFrom(propNodes).Draw(t, "node")), from, to)
			if rej := domain.ValidateMutation(m); rej != nil {
				if machine.Check(from, to) == nil {
					t.Fatalf("legal move %s -> %s refused: %v", from, to, rej)
				}
				if rej.Field != domain.KindName(k)+".status" {
					t.Fatalf("illegal move %s -> %s refused on %q, want %s.status", from, to, rej.Field, domain.KindName(k))
				}
				continue
			}
			before := fieldValue(r, "status")
			next, conflict, rej := domain.Apply(r, m, mediator1)
			if rej != nil {
				t.Fatalf("Apply(%s -> %s) on %s: %v", from, to, before, rej)
			}
			after := fieldValue(next, "status")
			switch {
			case before == from:
				if conflict || after != to {
					t.Fatalf("%s -> %s from %s: status %s, conflict %v", from, to, before, after, conflict)
				}
				moves++
			case before == to:
				if conflict || !proto.Equal(next, r) {
					t.Fatalf("the same move again (%s -> %s) changed the record: conflict %v\n%v", from, to, conflict, next)
				}
			default:
				if !conflict || after != before {
					t.Fatalf("stale %s -> %s on %s: status %s, conflict %v: want the status kept and a conflict", from, to, before, after, conflict)
				}
				if !slices.ContainsFunc(next.GetConflicts(), func(c *pb.Conflict) bool {
					return c.GetField() == "status" && c.GetValue() == to && c.GetHlc() == m.GetHlc()
				}) {
					t.Fatalf("conflicts %v, want one on status with value %s", next.GetConflicts(), to)
				}
			}
			r = next
		}
		h := r.GetHistory()
		if len(h) != moves+1 {
			t.Fatalf("%d moves made, history has %d lines: %v", moves, len(h), h)
		}
		if h[0].GetFrom() != "" || h[0].GetTo() != machine.Start || h[0].GetAtMs() != wall0 {
			t.Fatalf("first line %v, want \"\" -> %s at %d", h[0], machine.Start, wall0)
		}
		for i := 1; i < len(h); i++ {
			if h[i].GetFrom() != h[i-1].GetTo() {
				t.Fatalf("history breaks at %d: %v", i, h)
			}
			if machine.Check(h[i].GetFrom(), h[i].GetTo()) != nil {
				t.Fatalf("history holds a move off the machine: %v", h[i])
			}
		}
		if last := h[len(h)-1].GetTo(); last != fieldValue(r, "status") {
			t.Fatalf("history ends at %s, status is %s", last, fieldValue(r, "status"))
		}
	})
}

// TestConcurrentTransitionsConflict: two people move the record from the
// same status to two different places. Whichever the server applies
// first stands; the other is a status conflict, in either order, and
// nothing of it is written but the conflict.
func TestConcurrentTransitionsConflict(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		k := rapid.SampledFrom(npKinds).Draw(t, "kind")
		machine := domain.MachineOf(k)
		from := rapid.SampledFrom(machine.Statuses).Filter(func(s string) bool { return len(machine.Next[s]) >= 2 }).Draw(t, "from")
		targets := rapid.SliceOfNDistinct(rapid.SampledFrom(machine.Next[from]), 2, 2, rapid.ID[string]).Draw(t, "to")
		r := npNew(t, k)
		// Walk the machine from the start to "from".
		for i, s := range npPath(machine, from) {
			r, _ = npApply(t, r, npMove(k, hlc(wall0+1+int64(i), 0, "devS"), fieldValue(r, "status"), s), secretary)
		}
		mA := npMove(k, hlc(wall0+100, 0, "devA"), from, targets[0])
		mB := npMove(k, hlc(wall0+100, 0, "devB"), from, targets[1])
		for _, order := range [][]applyStep{{{mA, memberA}, {mB, memberB}}, {{mB, memberB}, {mA, memberA}}} {
			got := r
			var flags []bool
			for _, s := range order {
				var c bool
				got, c = npApply(t, got, s.m, s.a)
				flags = append(flags, c)
			}
			first, second := order[0].m.GetFields()["status"], order[1].m.GetFields()["status"]
			if flags[0] || !flags[1] {
				t.Fatalf("conflict flags %v, want [false true]", flags)
			}
			if fieldValue(got, "status") != first {
				t.Fatalf("status %s, want %s (the first applied)", fieldValue(got, "status"), first)
			}
			var cs []*pb.Conflict
			for _, c := range got.GetConflicts() {
				if c.GetField() == "status" {
					cs = append(cs, c)
				}
			}
			if len(cs) != 1 || cs[0].GetValue() != second || cs[0].GetAuthorId() != order[1].a.UserID {
				t.Fatalf("status conflicts %v, want one with %s by %s", cs, second, order[1].a.UserID)
			}
			for name := range order[1].m.GetFields() {
				if name != "status" && fieldValue(got, name) == order[1].m.GetFields()[name] && order[0].m.GetFields()[name] != order[1].m.GetFields()[name] {
					t.Fatalf("the losing move wrote %s", name)
				}
			}
			if h := got.GetHistory(); h[len(h)-1].GetTo() != first {
				t.Fatalf("history %v, want the last line to %s", h, first)
			}
		}
	})
}

// npPath is the statuses a record of machine m passes to reach status to
// from the start (the start itself excluded), by a shortest path.
func npPath(m *domain.Machine, to string) []string {
	prev := map[string]string{m.Start: ""}
	for queue := []string{m.Start}; len(queue) > 0; queue = queue[1:] {
		for _, n := range m.Next[queue[0]] {
			if _, ok := prev[n]; !ok {
				prev[n] = queue[0]
				queue = append(queue, n)
			}
		}
	}
	var path []string
	for s := to; s != m.Start; s = prev[s] {
		path = append([]string{s}, path...)
	}
	return path
}

func genVoid() *rapid.Generator[*pb.Void] {
	return rapid.Custom(func(t *rapid.T) *pb.Void {
		if rapid.Bool().Draw(t, "voided") {
			return nil
		}
		return &pb.Void{
			Reason:   rapid.SampledFrom([]string{"重复录入", "录错了", "a"}).Draw(t, "reason"),
			Hlc:      genHLCString().Draw(t, "hlc"),
			AuthorId: rapid.SampledFrom(propUsers).Draw(t, "author"),
			AtMs:     rapid.SampledFrom([]int64{0, wall0, wall0 + 1}).Draw(t, "at"),
		}
	})
}

func genStatusChange(k pb.Kind) *rapid.Generator[*pb.StatusChange] {
	statuses := append([]string{""}, domain.MachineOf(k).Statuses...)
	return rapid.Custom(func(t *rapid.T) *pb.StatusChange {
		return &pb.StatusChange{
			From:     rapid.SampledFrom(statuses).Draw(t, "from"),
			To:       rapid.SampledFrom(statuses[1:]).Draw(t, "to"),
			Hlc:      genHLCString().Draw(t, "hlc"),
			AuthorId: rapid.SampledFrom(propUsers).Draw(t, "author"),
			// 0 as a device sees it, a stamp as the server made it.
			AtMs: rapid.SampledFrom([]int64{0, wall0, wall0 + 1}).Draw(t, "at"),
		}
	})
}

// genRecordOf draws a state of kind k's one record, with a void and a
// history.
func genRecordOf(k pb.Kind) *rapid.Generator[*pb.Record] {
	names := append([]string(nil), domain.SpecOf(k).Fields[0].Name, "status", "summary", "title", "help", "outcome")
	return rapid.Custom(func(t *rapid.T) *pb.Record {
		r := genRecord().Draw(t, "base")
		r.Id, r.Kind = npID(k), k
		r.Fields = rapid.MapOfN(rapid.SampledFrom(names), genFieldValue(), 0, 4).Draw(t, "fields")
		r.Void = genVoid().Draw(t, "void")
		r.History = rapid.SliceOfN(genStatusChange(k), 0, 4).Draw(t, "history")
		return r
	})
}

// npNormalise is r as the merge leaves it: entries, conflicts and history
// as sorted sets, a line of history seen twice kept with its stamp.
func npNormalise(r *pb.Record) *pb.Record {
	out := normalise(r)
	key := func(c *pb.StatusChange) []string {
		return []string{c.GetHlc(), c.GetFrom(), c.GetTo(), c.GetAuthorId()}
	}
	slices.SortStableFunc(out.History, func(a, b *pb.StatusChange) int {
		if c := slices.Compare(key(a), key(b)); c != 0 {
			return c
		}
		return -cmpInt64(a.GetAtMs(), b.GetAtMs()) // the stamp first
	})
	out.History = slices.CompactFunc(out.History, func(a, b *pb.StatusChange) bool { return slices.Equal(key(a), key(b)) })
	if len(out.History) == 0 {
		out.History = nil
	}
	return out
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestMergeRecordsWithVoidAndHistory(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		k := rapid.SampledFrom(npKinds).Draw(t, "kind")
		a, b, c := genRecordOf(k).Draw(t, "a"), genRecordOf(k).Draw(t, "b"), genRecordOf(k).Draw(t, "c")
		ab := domain.MergeRecords(a, b)
		wantSameRecord(t, "b⊔a != a⊔b", domain.MergeRecords(b, a), ab)
		wantSameRecord(t, "a⊔(b⊔c) != (a⊔b)⊔c", domain.MergeRecords(a, domain.MergeRecords(b, c)), domain.MergeRecords(ab, c))
		wantSameRecord(t, "a⊔a != a", domain.MergeRecords(a, a), npNormalise(a))
		wantSameRecord(t, "(a⊔b)⊔a != a⊔b", domain.MergeRecords(ab, a), ab)
		// The void that stands is the first by clock, whichever state
		// holds it; a record voided in either state is voided in the join.
		var voids []*pb.Void
		for _, v := range []*pb.Void{a.GetVoid(), b.GetVoid()} {
			if v != nil {
				voids = append(voids, v)
			}
		}
		switch {
		case len(voids) == 0 && ab.GetVoid() != nil:
			t.Fatalf("void %v out of nowhere", ab.GetVoid())
		case len(voids) > 0 && ab.GetVoid() == nil:
			t.Fatalf("void %v lost", voids)
		case len(voids) > 0:
			first := slices.MinFunc(voids, func(x, y *pb.Void) int { return cmpString(x.GetHlc(), y.GetHlc()) })
			if ab.GetVoid().GetHlc() != first.GetHlc() {
				t.Fatalf("void %v stands, want the first by clock %v", ab.GetVoid(), first)
			}
		}
		// Every line of history is kept, with the server's stamp when a
		// state has one.
		for _, r := range []*pb.Record{a, b} {
			for _, h := range r.GetHistory() {
				if !slices.ContainsFunc(ab.GetHistory(), func(x *pb.StatusChange) bool {
					return x.GetHlc() == h.GetHlc() && x.GetFrom() == h.GetFrom() && x.GetTo() == h.GetTo() && x.GetAuthorId() == h.GetAuthorId() && x.GetAtMs() >= h.GetAtMs()
				}) {
					t.Fatalf("history line %v lost: %v", h, ab.GetHistory())
				}
			}
		}
		if !slices.IsSortedFunc(ab.GetHistory(), func(x, y *pb.StatusChange) int { return cmpString(x.GetHlc(), y.GetHlc()) }) {
			t.Fatalf("history not in clock order: %v", ab.GetHistory())
		}
	})
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestApplyInterleavingsConverge applies the same edits, appends and
// voids of a need or a project in different interleavings (each device's
// in its own order, as the server does) and checks the states agree on
// what does not depend on the order, and that a void is sticky: once
// voided, every later change is refused with "voided" and a second void
// changes nothing.
func TestApplyInterleavingsConverge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		k := rapid.SampledFrom([]pb.Kind{pb.Kind_KIND_NEED, pb.Kind_KIND_PROJECT}).Draw(t, "kind")
		base := npNew(t, k)
		h0 := hlc(wall0, 0, "devS")
		editable := map[pb.Kind][]string{pb.Kind_KIND_NEED: {"summary", "detail", "help"}, pb.Kind_KIND_PROJECT: {"title", "detail", "outcome"}}[k]
		list := map[pb.Kind]string{pb.Kind_KIND_NEED: "notes", pb.Kind_KIND_PROJECT: "progress"}[k]
		var steps []applyStep
		for i := range rapid.IntRange(1, 7).Draw(t, "n") {
			node := rapid.SampledFrom([]string{"devA", "devB", "devS"}).Draw(t, "node")
			a := map[string]domain.Actor{"devA": memberA, "devB": memberB, "devS": secretary}[node]
			at := hlc(wall0+1+int64(i), 0, node)
			var m *pb.Mutation
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0:
				m = mutation(k, pb.Op_OP_APPEND, npID(k), at, map[string]string{list: rapid.SampledFrom(propTexts[1:]).Draw(t, "text")})
			case 1, 2:
				name := rapid.SampledFrom(editable).Draw(t, "field")
				// One-line texts: summary and title are lines.
				m = update(k, npID(k), at, map[string]string{name: rapid.SampledFrom(propTexts[:len(propTexts)-1]).Draw(t, "value")},
					map[string]string{name: rapid.SampledFrom([]string{"", h0}).Draw(t, "base")})
			case 3:
				m = mutation(k, pb.Op_OP_VOID, npID(k), at, map[string]string{"reason": rapid.SampledFrom([]string{"重复录入", "录错了"}).Draw(t, "reason")})
			}
			if rej := domain.ValidateMutation(m); rej != nil {
				t.Fatalf("ValidateMutation(%v): %v", m, rej)
			}
			steps = append(steps, applyStep{m, a})
		}
		perm := keepNodeOrder(steps, rapid.Permutation(steps).Draw(t, "order"))
		run := func(order []applyStep) (*pb.Record, *pb.Mutation) {
			r := base
			var firstVoid *pb.Mutation
			for _, s := range order {
				next, _, rej := domain.Apply(r, s.m, s.a)
				switch {
				case r.GetVoid() != nil && s.m.GetOp() == pb.Op_OP_VOID:
					if rej != nil || !proto.Equal(next, r) {
						t.Fatalf("a second void changed the record or was refused: %v", rej)
					}
				case r.GetVoid() != nil:
					if rej == nil || rej.Code != domain.CodeVoided {
						t.Fatalf("%v on a voided record: %v, want %s", s.m.GetOp(), rej, domain.CodeVoided)
					}
					continue
				case rej != nil:
					t.Fatalf("Apply(%v): %v", s.m, rej)
				}
				if s.m.GetOp() == pb.Op_OP_VOID && firstVoid == nil {
					firstVoid = s.m
				}
				r = next
			}
			return r, firstVoid
		}
		x, vx := run(steps)
		y, vy := run(perm)
		for _, p := range []struct {
			r *pb.Record
			v *pb.Mutation
		}{{x, vx}, {y, vy}} {
			if (p.v == nil) != (p.r.GetVoid() == nil) {
				t.Fatalf("void %v after void mutation %v", p.r.GetVoid(), p.v)
			}
			if p.v != nil && (p.r.GetVoid().GetHlc() != p.v.GetHlc() || p.r.GetVoid().GetReason() != p.v.GetFields()["reason"]) {
				t.Fatalf("void %v stands, want the first applied %v", p.r.GetVoid(), p.v)
			}
		}
		wantSameRecord(t, "x⊔y != y⊔x", domain.MergeRecords(y, x), domain.MergeRecords(x, y))
		wantSameRecord(t, "x⊔x != x", domain.MergeRecords(x, x), x)
		wantSameRecord(t, "y⊔y != y", domain.MergeRecords(y, y), y)
		if vx != nil || vy != nil {
			return // what a void cut off depends on where it fell
		}
		if !proto.Equal(&pb.Record{Entries: normalise(x).GetEntries()}, &pb.Record{Entries: normalise(y).GetEntries()}) {
			t.Fatalf("entries %v and %v", x.GetEntries(), y.GetEntries())
		}
		for _, name := range editable {
			if got, want := x.GetFields()[name], y.GetFields()[name]; !proto.Equal(got, want) {
				t.Fatalf("%s %v and %v from the same mutations", name, got, want)
			}
		}
	})
}

// TestSettleStatusProperty settles a record's status conflicts with a
// random value: a legal choice (the current status, or a move from it)
// clears every status conflict and leaves other fields' conflicts; any
// other value is refused and changes nothing.
func TestSettleStatusProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		k := rapid.SampledFrom(npKinds).Draw(t, "kind")
		machine := domain.MachineOf(k)
		r := npNew(t, k)
		start := machine.Start
		targets := machine.Next[start]
		// Two moves from the start: the second is a status conflict.
		r, _ = npApply(t, r, npMove(k, hlc(wall0+1, 0, "devA"), start, targets[0]), secretary)
		r, _ = npApply(t, r, npMove(k, hlc(wall0+2, 0, "devB"), start, targets[len(targets)-1]), secretary)
		// And a field conflict that the settle of status leaves alone.
		r.Conflicts = append(r.Conflicts, &pb.Conflict{Field: "detail", Value: "旧", Hlc: hlc(wall0+3, 0, "devB")})
		cur := fieldValue(r, "status")
		value := rapid.SampledFrom(append([]string{"bogus"}, machine.Statuses...)).Draw(t, "value")
		m := mutation(k, pb.Op_OP_SETTLE, npID(k), hlc(wall0+10, 0, "devS"), map[string]string{"status": value})
		if rej := domain.ValidateMutation(m); rej != nil {
			if value != "bogus" {
				t.Fatalf("settle to %s refused by ValidateMutation: %v", value, rej)
			}
			return
		}
		next, conflict, rej := domain.Apply(r, m, secretary)
		legal := value == cur || machine.Check(cur, value) == nil
		for _, name := range machine.Require[value] {
			if value != cur && fieldValue(r, name) == "" {
				legal = false // the move must carry what a settle cannot
			}
		}
		if !legal {
			if rej == nil {
				t.Fatalf("settle %s -> %s accepted: %v", cur, value, next)
			}
			return
		}
		if rej != nil || conflict {
			t.Fatalf("settle %s -> %s: conflict %v, %v", cur, value, conflict, rej)
		}
		if fieldValue(next, "status") != value {
			t.Fatalf("status %s after settling to %s", fieldValue(next, "status"), value)
		}
		var left []string
		for _, c := range next.GetConflicts() {
			left = append(left, c.GetField())
		}
		if !slices.Equal(left, []string{"detail"}) {
			t.Fatalf("conflicts left on %v, want only detail", left)
		}
		wantLines := len(r.GetHistory())
		if value != cur {
			wantLines++
		}
		if len(next.GetHistory()) != wantLines {
			t.Fatalf("history %v after settle %s -> %s", next.GetHistory(), cur, value)
		}
	})
}

// timeAt is the server's clock d ms after wall0.
func timeAt(d int64) time.Time { return time.UnixMilli(wall0 + d) }
