package domain

import (
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Actor is who makes a mutation: decided by the server from the device's
// credential, never from the request.
type Actor struct {
	UserID   string
	DeviceID string
	// UserOf names the user of a device (an HLC's node), or "" if unknown.
	// A field keeps only the clock of the write that set it, whose node is
	// the device; when a later edit pushes that value into a conflict, the
	// conflict's author is found through UserOf. Without it the author of
	// a conflict would depend on the order the devices synced in: the
	// losing edit arriving second is the actor and has one, the losing
	// value already in place had none. The server sets it; a device's
	// local view may leave it nil until the server's record comes back.
	UserOf func(deviceID string) string
}

// authorOf names the user who wrote the value stamped h.
func (a Actor) authorOf(h string) string {
	node := hlcNode(h)
	switch {
	case node == "":
		return ""
	case node == a.DeviceID:
		return a.UserID
	case a.UserOf != nil:
		return a.UserOf(node)
	}
	return ""
}

// MaxConflicts bounds the conflicts kept on one record; the oldest go first.
const MaxConflicts = 50

// Apply applies the validated mutation m to cur (nil when the record does
// not exist) and returns the new state; cur is not modified. conflict
// reports that m met a concurrent write, kept in the record's conflicts for
// a person to settle. A Rejection means m is refused for good.
//
// The merge rules, by kind (DESIGN.md):
//   - household: per field, the later HLC wins; an edit made without seeing
//     the field's current value is concurrent, and the value that lost is
//     kept as a conflict. A later non-concurrent edit settles the field's
//     conflicts.
//   - visit: created once; only its author amends it; the later HLC wins.
//   - dispute: status moves only along the state machine, and a transition
//     from a status the dispute no longer has is a conflict, not an
//     overwrite; notes and sessions are appended; other fields as household.
//   - event: created once, never changed.
func Apply(cur *pb.Record, m *pb.Mutation, a Actor) (next *pb.Record, conflict bool, rej *Rejection) {
	s := SpecOf(m.GetKind())
	if m.GetOp() == pb.Op_OP_CREATE {
		return create(cur, m, a, s)
	}
	if cur == nil {
		return nil, false, reject(CodeNotFound, "mutation.record_id", "no %s %s: it was never created here or is outside your scope", s.Name, m.GetRecordId())
	}
	if cur.GetKind() != m.GetKind() {
		return nil, false, reject(CodeInvalidField, "mutation.kind", "record %s is a %s, not a %s", cur.GetId(), KindName(cur.GetKind()), s.Name)
	}
	next = proto.Clone(cur).(*pb.Record)
	if next.Fields == nil {
		next.Fields = map[string]*pb.FieldValue{}
	}
	switch m.GetOp() {
	case pb.Op_OP_UPDATE:
		if m.GetKind() == pb.Kind_KIND_VISIT && cur.GetAuthorId() != a.UserID {
			return nil, false, reject(CodePermissionDenied, "visit", "only its author (%s) amends a visit", cur.GetAuthorId())
		}
		detect := m.GetKind() != pb.Kind_KIND_VISIT
		for _, name := range sortedKeys(m.GetFields()) {
			if setField(next, name, m.GetFields()[name], m.GetHlc(), m.GetBaseHlc()[name], a, detect) {
				conflict = true
			}
		}
	case pb.Op_OP_TRANSITION:
		to, status := m.GetFields()["status"], next.GetFields()["status"].GetValue()
		switch {
		case status == m.GetFromStatus():
			next.Fields["status"] = &pb.FieldValue{Value: to, Hlc: m.GetHlc()}
		case status == to: // the same move made twice: one outcome
		default:
			conflict = true
			addConflict(next, &pb.Conflict{Field: "status", Value: to, Hlc: m.GetHlc(), AuthorId: a.UserID,
				Reason: "transition " + m.GetFromStatus() + " -> " + to + " made while the status was already " + status})
		}
	case pb.Op_OP_APPEND:
		for name, text := range m.GetFields() {
			next.Entries = append(next.Entries, &pb.Entry{Field: name, Text: text, Hlc: m.GetHlc(), AuthorId: a.UserID})
		}
		sortEntries(next.Entries)
	}
	return next, conflict, nil
}

func create(cur *pb.Record, m *pb.Mutation, a Actor, s *Spec) (*pb.Record, bool, *Rejection) {
	if cur != nil {
		if cur.GetKind() == m.GetKind() && cur.GetOriginDeviceId() == a.DeviceID && a.DeviceID != "" {
			return proto.Clone(cur).(*pb.Record), false, nil // the same create again
		}
		return nil, false, reject(CodeAlreadyExists, "mutation.record_id", "%s already exists: a new record needs a new id", m.GetRecordId())
	}
	r := &pb.Record{Id: m.GetRecordId(), Kind: m.GetKind(), Fields: make(map[string]*pb.FieldValue, len(m.GetFields())+1),
		AuthorId: a.UserID, OriginDeviceId: a.DeviceID}
	for k, v := range m.GetFields() {
		r.Fields[k] = &pb.FieldValue{Value: v, Hlc: m.GetHlc()}
	}
	if m.GetKind() == pb.Kind_KIND_DISPUTE {
		if st, ok := m.GetFields()["status"]; ok && st != "open" {
			return nil, false, reject(CodeInvalidTransition, "dispute.status", "a new dispute starts open, not %q", clip(st))
		}
		r.Fields["status"] = &pb.FieldValue{Value: "open", Hlc: m.GetHlc()}
		mediators := SplitList(m.GetFields()["mediators"])
		if a.UserID != "" && !contains(mediators, a.UserID) {
			mediators = append([]string{a.UserID}, mediators...)
		}
		r.Fields["mediators"] = &pb.FieldValue{Value: strings.Join(mediators, ","), Hlc: m.GetHlc()}
	}
	return r, false, nil
}

// setField applies one field write under last-writer-wins by HLC. With
// detect, a write whose base is not the field's current clock is concurrent
// and the losing value becomes a conflict, with its author whichever of
// the two lost. It reports a conflict.
func setField(r *pb.Record, name, value, hlc, base string, a Actor, detect bool) bool {
	cur := r.Fields[name]
	if cur == nil {
		r.Fields[name] = &pb.FieldValue{Value: value, Hlc: hlc}
		return false
	}
	if node := hlcNode(hlc); node != "" && node == hlcNode(cur.GetHlc()) {
		// The same device wrote the current value, and a device's
		// mutations are applied in its own order: this write is the later
		// one whatever the clocks say (the server may have cut a clock that
		// ran ahead, or the phone's clock jumped back). The field's clock
		// never goes back.
		if hlc < cur.GetHlc() {
			hlc = cur.GetHlc()
		}
		r.Fields[name] = &pb.FieldValue{Value: value, Hlc: hlc}
		return false
	}
	concurrent := detect && base != cur.GetHlc() && value != cur.GetValue()
	if hlc > cur.GetHlc() {
		if concurrent {
			addConflict(r, &pb.Conflict{Field: name, Value: cur.GetValue(), Hlc: cur.GetHlc(), AuthorId: a.authorOf(cur.GetHlc()),
				Reason: "concurrent edit: lost to a later edit"})
		} else if !detect || base == cur.GetHlc() {
			clearConflicts(r, name) // made with the current value in view: settles the field
		}
		r.Fields[name] = &pb.FieldValue{Value: value, Hlc: hlc}
		return concurrent
	}
	if value == cur.GetValue() {
		return false
	}
	// An older write never overwrites a newer one, and is never lost either.
	addConflict(r, &pb.Conflict{Field: name, Value: value, Hlc: hlc, AuthorId: a.UserID, Reason: "concurrent edit: lost to a later edit"})
	return true
}

// hlcNode returns the node of an HLC string ("" if it has none).
func hlcNode(h string) string {
	if i := strings.IndexByte(h, '@'); i >= 0 {
		return h[i+1:]
	}
	return ""
}

func addConflict(r *pb.Record, c *pb.Conflict) {
	for _, x := range r.Conflicts {
		if x.GetField() == c.GetField() && x.GetHlc() == c.GetHlc() && x.GetValue() == c.GetValue() {
			return
		}
	}
	r.Conflicts = append(r.Conflicts, c)
	// By hlc first, so that the oldest go first; then by content, the order
	// MergeRecords keeps, so that merging a state with itself changes nothing.
	sort.SliceStable(r.Conflicts, func(i, j int) bool { return conflictKey(r.Conflicts[i]) < conflictKey(r.Conflicts[j]) })
	if len(r.Conflicts) > MaxConflicts {
		r.Conflicts = r.Conflicts[len(r.Conflicts)-MaxConflicts:]
	}
}

func clearConflicts(r *pb.Record, field string) {
	kept := r.Conflicts[:0]
	for _, c := range r.Conflicts {
		if c.GetField() != field {
			kept = append(kept, c)
		}
	}
	r.Conflicts = kept
}

func sortEntries(es []*pb.Entry) {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].GetHlc() != es[j].GetHlc() {
			return es[i].GetHlc() < es[j].GetHlc()
		}
		if es[i].GetText() != es[j].GetText() {
			return es[i].GetText() < es[j].GetText()
		}
		// The rest of the entry's key: a total order, so that the order of
		// the merge's inputs never shows in its result.
		if es[i].GetField() != es[j].GetField() {
			return es[i].GetField() < es[j].GetField()
		}
		return es[i].GetAuthorId() < es[j].GetAuthorId()
	})
}

// MergeRecords joins two states of one record: per field the value with
// the later HLC, the union of entries and of conflicts, the higher version.
// It is commutative, associative and idempotent, so replicas that exchange
// states in any order, any number of times, agree. Buckets and authorship
// come from the higher version.
func MergeRecords(a, b *pb.Record) *pb.Record {
	if a == nil {
		return proto.Clone(b).(*pb.Record)
	}
	if b == nil {
		return proto.Clone(a).(*pb.Record)
	}
	hi, lo := a, b
	if b.GetVersion() > a.GetVersion() || (b.GetVersion() == a.GetVersion() && lessRecord(a, b)) {
		hi, lo = b, a
	}
	out := proto.Clone(hi).(*pb.Record)
	if out.Fields == nil {
		out.Fields = map[string]*pb.FieldValue{}
	}
	for k, v := range lo.GetFields() {
		if cur, ok := out.Fields[k]; !ok || v.GetHlc() > cur.GetHlc() || (v.GetHlc() == cur.GetHlc() && v.GetValue() > cur.GetValue()) {
			out.Fields[k] = proto.Clone(v).(*pb.FieldValue)
		}
	}
	seen := map[string]bool{}
	var entries []*pb.Entry
	for _, e := range append(append([]*pb.Entry{}, hi.GetEntries()...), lo.GetEntries()...) {
		key := e.GetField() + "\x00" + e.GetHlc() + "\x00" + e.GetAuthorId() + "\x00" + e.GetText()
		if !seen[key] {
			seen[key] = true
			entries = append(entries, proto.Clone(e).(*pb.Entry))
		}
	}
	sortEntries(entries)
	out.Entries = entries
	cseen := map[string]bool{}
	var conflicts []*pb.Conflict
	for _, c := range append(append([]*pb.Conflict{}, hi.GetConflicts()...), lo.GetConflicts()...) {
		key := c.GetField() + "\x00" + c.GetHlc() + "\x00" + c.GetValue() + "\x00" + c.GetAuthorId() + "\x00" + c.GetReason()
		if !cseen[key] {
			cseen[key] = true
			conflicts = append(conflicts, proto.Clone(c).(*pb.Conflict))
		}
	}
	sort.SliceStable(conflicts, func(i, j int) bool {
		return conflictKey(conflicts[i]) < conflictKey(conflicts[j])
	})
	out.Conflicts = conflicts
	return out
}

func conflictKey(c *pb.Conflict) string {
	return c.GetHlc() + "\x00" + c.GetField() + "\x00" + c.GetValue() + "\x00" + c.GetAuthorId() + "\x00" + c.GetReason()
}

// lessRecord orders two states of equal version deterministically: first by
// what the merge takes from the higher state (id, kind, buckets, authorship),
// then by the whole state. Comparing the fields, entries and conflicts first,
// which the merge joins anyway, would let a join's result pick other
// metadata than its parts did, and the merge would not be associative.
func lessRecord(a, b *pb.Record) bool {
	if am, bm := recordBytes(recordMeta(a)), recordBytes(recordMeta(b)); am != bm {
		return am < bm
	}
	return recordBytes(a) < recordBytes(b)
}

func recordMeta(r *pb.Record) *pb.Record {
	m := proto.Clone(r).(*pb.Record)
	m.Fields, m.Entries, m.Conflicts = nil, nil, nil
	return m
}

func recordBytes(r *pb.Record) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	return string(b)
}
