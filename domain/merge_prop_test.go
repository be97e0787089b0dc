package domain_test

import (
	"cmp"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// The generators draw from small sets so that equal clocks, equal versions
// and equal entries are common: ties are where a merge goes wrong.
var (
	propNodes  = []string{"devA", "devB", "server"}
	propTexts  = []string{"", "a", "b", "张三", "李四", "宅基地边界纠纷", "屋顶漏雨，需修缮。\n冬季取暖困难。"}
	propFields = []string{"title", "category", "parties", "agreement", "status", "mediators", "村"}
	propUsers  = []string{"", "m1", "m2"}
)

func genHLCString() *rapid.Generator[string] {
	return rapid.Custom(func(t *rapid.T) string {
		return hlc(
			wall0+rapid.Int64Range(0, 3).Draw(t, "wall"),
			rapid.Uint16Range(0, 1).Draw(t, "counter"),
			rapid.SampledFrom(propNodes).Draw(t, "node"),
		)
	})
}

func genFieldValue() *rapid.Generator[*pb.FieldValue] {
	return rapid.Custom(func(t *rapid.T) *pb.FieldValue {
		return &pb.FieldValue{
			Value: rapid.SampledFrom(propTexts).Draw(t, "value"),
			Hlc:   genHLCString().Draw(t, "hlc"),
		}
	})
}

func genEntry() *rapid.Generator[*pb.Entry] {
	return rapid.Custom(func(t *rapid.T) *pb.Entry {
		return &pb.Entry{
			Field:    rapid.SampledFrom([]string{"notes", "sessions"}).Draw(t, "field"),
			Text:     rapid.SampledFrom(propTexts).Draw(t, "text"),
			Hlc:      genHLCString().Draw(t, "hlc"),
			AuthorId: rapid.SampledFrom(propUsers).Draw(t, "author"),
		}
	})
}

func genConflict() *rapid.Generator[*pb.Conflict] {
	return rapid.Custom(func(t *rapid.T) *pb.Conflict {
		return &pb.Conflict{
			Field:    rapid.SampledFrom(propFields).Draw(t, "field"),
			Value:    rapid.SampledFrom(propTexts).Draw(t, "value"),
			Hlc:      genHLCString().Draw(t, "hlc"),
			AuthorId: rapid.SampledFrom(propUsers).Draw(t, "author"),
			Reason:   rapid.SampledFrom([]string{"concurrent edit: lost to a later edit", "transition open -> withdrawn"}).Draw(t, "reason"),
		}
	})
}

// genRecord draws a state of the one dispute disputeID.
func genRecord() *rapid.Generator[*pb.Record] {
	return rapid.Custom(func(t *rapid.T) *pb.Record {
		return &pb.Record{
			Id:             disputeID,
			Kind:           pb.Kind_KIND_DISPUTE,
			Version:        rapid.Uint64Range(0, 3).Draw(t, "version"),
			Fields:         rapid.MapOfN(rapid.SampledFrom(propFields), genFieldValue(), 0, 4).Draw(t, "fields"),
			Entries:        rapid.SliceOfN(genEntry(), 0, 4).Draw(t, "entries"),
			Conflicts:      rapid.SliceOfN(genConflict(), 0, 3).Draw(t, "conflicts"),
			Buckets:        rapid.SliceOfN(rapid.SampledFrom([]string{"d:" + disputeID, "v:v-01", "v:v-02"}), 0, 2).Draw(t, "buckets"),
			AuthorId:       rapid.SampledFrom(propUsers).Draw(t, "author"),
			OriginDeviceId: rapid.SampledFrom([]string{"", "devA", "devB"}).Draw(t, "device"),
		}
	})
}

// entryKey is the order of entries: by hlc, then by content.
func entryKey(e *pb.Entry) []string {
	return []string{e.GetHlc(), e.GetText(), e.GetField(), e.GetAuthorId()}
}

// conflictKey is the order of conflicts: by hlc, then by content.
func conflictKey(c *pb.Conflict) []string {
	return []string{c.GetHlc(), c.GetField(), c.GetValue(), c.GetAuthorId(), c.GetReason()}
}

// normalise returns r as the merge leaves it: entries and conflicts as
// sorted sets.
func normalise(r *pb.Record) *pb.Record {
	out := proto.Clone(r).(*pb.Record)
	slices.SortFunc(out.Entries, func(a, b *pb.Entry) int { return slices.Compare(entryKey(a), entryKey(b)) })
	out.Entries = slices.CompactFunc(out.Entries, func(a, b *pb.Entry) bool { return slices.Equal(entryKey(a), entryKey(b)) })
	slices.SortFunc(out.Conflicts, func(a, b *pb.Conflict) int { return slices.Compare(conflictKey(a), conflictKey(b)) })
	out.Conflicts = slices.CompactFunc(out.Conflicts, func(a, b *pb.Conflict) bool { return slices.Equal(conflictKey(a), conflictKey(b)) })
	return out
}

// wantSameRecord fails t unless got and want are equal.
func wantSameRecord(t *rapid.T, what string, got, want *pb.Record) {
	if !proto.Equal(got, want) {
		t.Fatalf("%s:\n\tgot  %v\n\twant %v", what, got, want)
	}
}

func TestMergeRecordsCommutative(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genRecord().Draw(t, "a"), genRecord().Draw(t, "b")
		wantSameRecord(t, "b⊔a != a⊔b", domain.MergeRecords(b, a), domain.MergeRecords(a, b))
	})
}

func TestMergeRecordsAssociative(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genRecord().Draw(t, "a"), genRecord().Draw(t, "b"), genRecord().Draw(t, "c")
		left := domain.MergeRecords(domain.MergeRecords(a, b), c)
		right := domain.MergeRecords(a, domain.MergeRecords(b, c))
		wantSameRecord(t, "a⊔(b⊔c) != (a⊔b)⊔c", right, left)
	})
}

func TestMergeRecordsIdempotent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genRecord().Draw(t, "a"), genRecord().Draw(t, "b")
		wantSameRecord(t, "a⊔a != a", domain.MergeRecords(a, a), normalise(a))
		ab := domain.MergeRecords(a, b)
		wantSameRecord(t, "(a⊔b)⊔b != a⊔b", domain.MergeRecords(ab, b), ab)
		wantSameRecord(t, "(a⊔b)⊔a != a⊔b", domain.MergeRecords(ab, a), ab)
		wantSameRecord(t, "a⊔nil != a", domain.MergeRecords(a, nil), a)
		wantSameRecord(t, "nil⊔a != a", domain.MergeRecords(nil, a), a)
	})
}

// TestMergeRecordsContent checks what the join holds, so that a merge that
// drops data cannot pass the algebraic properties by being trivial.
func TestMergeRecordsContent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genRecord().Draw(t, "a"), genRecord().Draw(t, "b")
		before := []*pb.Record{proto.Clone(a).(*pb.Record), proto.Clone(b).(*pb.Record)}
		got := domain.MergeRecords(a, b)
		if !proto.Equal(a, before[0]) || !proto.Equal(b, before[1]) {
			t.Fatalf("MergeRecords modified its inputs")
		}
		if want := max(a.GetVersion(), b.GetVersion()); got.GetVersion() != want {
			t.Fatalf("version = %d, want %d", got.GetVersion(), want)
		}
		for k := range got.GetFields() {
			if a.GetFields()[k] == nil && b.GetFields()[k] == nil {
				t.Fatalf("field %q in neither input", k)
			}
		}
		for _, r := range []*pb.Record{a, b} {
			for k, v := range r.GetFields() {
				g := got.GetFields()[k]
				if g.GetHlc() < v.GetHlc() || (g.GetHlc() == v.GetHlc() && g.GetValue() < v.GetValue()) {
					t.Fatalf("field %q = %v, lost to input value %v", k, g, v)
				}
			}
			for _, e := range r.GetEntries() {
				if !slices.ContainsFunc(got.GetEntries(), func(x *pb.Entry) bool { return proto.Equal(x, e) }) {
					t.Fatalf("entry %v lost", e)
				}
			}
			for _, c := range r.GetConflicts() {
				if !slices.ContainsFunc(got.GetConflicts(), func(x *pb.Conflict) bool { return proto.Equal(x, c) }) {
					t.Fatalf("conflict %v lost", c)
				}
			}
		}
		if n, max := len(got.GetEntries()), len(a.GetEntries())+len(b.GetEntries()); n > max {
			t.Fatalf("%d entries from %d", n, max)
		}
		if !slices.IsSortedFunc(got.GetEntries(), func(x, y *pb.Entry) int { return cmp.Compare(x.GetHlc(), y.GetHlc()) }) {
			t.Fatalf("entries not in hlc order: %v", got.GetEntries())
		}
	})
}

// TestMergeRecordsAppliedStates merges states that Apply produced on two
// replicas from the same mutations in different orders.
func TestMergeRecordsAppliedStates(t *testing.T) {
	base := newDispute(t, hlc(wall0, 0, "devM1"))
	// rapid.T is not a testing.TB, so this applies without mustApply.
	applyAll := func(t *rapid.T, r *pb.Record, steps ...applyStep) (*pb.Record, []bool) {
		for _, s := range steps {
			if rej := domain.ValidateMutation(s.m); rej != nil {
				t.Fatalf("ValidateMutation(%v): %v", s.m, rej)
			}
			next, _, rej := domain.Apply(r, s.m, s.a)
			if rej != nil {
				t.Fatalf("Apply(%v): %v", s.m, rej)
			}
			r = next
		}
		return r, nil
	}
	rapid.Check(t, func(t *rapid.T) {
		var steps []applyStep
		for i := range rapid.IntRange(1, 6).Draw(t, "n") {
			at := hlc(wall0+1+int64(i), 0, rapid.SampledFrom(propNodes).Draw(t, "node"))
			var m *pb.Mutation
			switch rapid.IntRange(0, 1).Draw(t, "op") {
			case 0:
				m = mutation(pb.Kind_KIND_DISPUTE, pb.Op_OP_APPEND, disputeID, at, map[string]string{
					rapid.SampledFrom([]string{"notes", "sessions"}).Draw(t, "list"): rapid.SampledFrom(propTexts[1:]).Draw(t, "text")})
			case 1:
				fields, base := map[string]string{}, map[string]string{}
				for _, name := range rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"parties", "agreement", "outcome"}), 1, 3, rapid.ID[string]).Draw(t, "fields") {
					fields[name] = rapid.SampledFrom(propTexts).Draw(t, name)
					base[name] = rapid.SampledFrom([]string{"", hlc(wall0, 0, "devM1")}).Draw(t, "base "+name)
				}
				m = update(pb.Kind_KIND_DISPUTE, disputeID, at, fields, base)
			}
			steps = append(steps, applyStep{m, mediator1})
		}
		perm := rapid.Permutation(steps).Draw(t, "order")
		// The server applies each device's mutations in that device's own
		// order; only the interleaving of devices varies. Keep each node's
		// steps in their original order within the permutation.
		perm = keepNodeOrder(steps, perm)
		x, _ := applyAll(t, base, steps...)
		y, _ := applyAll(t, base, perm...)
		wantSameRecord(t, "x⊔y != y⊔x", domain.MergeRecords(y, x), domain.MergeRecords(x, y))
		// What Apply makes is already in the merge's normal form, so a
		// replica that merges the server's state again keeps it unchanged.
		wantSameRecord(t, "x⊔x != x", domain.MergeRecords(x, x), x)
		wantSameRecord(t, "y⊔y != y", domain.MergeRecords(y, y), y)
		// Entries do not depend on the order of application.
		xe, ye := normalise(x).GetEntries(), normalise(y).GetEntries()
		if len(xe) != len(ye) {
			t.Fatalf("entries %v and %v", xe, ye)
		}
		for i := range xe {
			if !proto.Equal(xe[i], ye[i]) {
				t.Fatalf("entries %v and %v", xe, ye)
			}
		}
		for _, name := range []string{"parties", "agreement", "outcome"} {
			if got, want := x.GetFields()[name], y.GetFields()[name]; !proto.Equal(got, want) {
				t.Fatalf("%s %v and %v from the same mutations", name, got, want)
			}
		}
	})
}

// keepNodeOrder returns perm with each HLC node's steps put back in the
// order they have in steps, keeping the places perm gives each node.
func keepNodeOrder(steps, perm []applyStep) []applyStep {
	node := func(s applyStep) string {
		h := s.m.GetHlc()
		for i := range h {
			if h[i] == '@' {
				return h[i+1:]
			}
		}
		return ""
	}
	byNode := map[string][]applyStep{}
	for _, s := range steps {
		byNode[node(s)] = append(byNode[node(s)], s)
	}
	out := make([]applyStep, len(perm))
	for i, s := range perm {
		n := node(s)
		out[i], byNode[n] = byNode[n][0], byNode[n][1:]
	}
	return out
}
