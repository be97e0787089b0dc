package domain

import (
	"sort"
	"strings"
	"time"

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
	// Role is the writer's role: a member's new dispute is a report (no
	// mediator named, reported_by set) and a member's project is led by
	// them. Unspecified acts as before roles mattered to the merge.
	Role pb.Role
	// Now is the server's clock when it applies the mutation: it stamps
	// status changes and voids (at_ms). Zero on a device, whose own view
	// shows 0 until the server's record comes back.
	Now time.Time
}

func (a Actor) atMs() int64 {
	if a.Now.IsZero() {
		return 0
	}
	return a.Now.UnixMilli()
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
//   - need, project: status as dispute (their own machines); notes and
//     progress appended; other fields as household.
//   - any kind with a status: each move is kept in the history with the
//     server's time; a create is the move from "" to the first status.
//   - void: marks the record (first void wins), which then takes no more
//     changes; a voided record stays, marked, and counts nowhere.
//   - settle: clears a field's conflicts and writes the value chosen.
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
	if v := cur.GetVoid(); v != nil {
		if m.GetOp() == pb.Op_OP_VOID {
			return proto.Clone(cur).(*pb.Record), false, nil // voided once: the first void stands
		}
		return nil, false, reject(CodeVoided, s.Name, "this %s was voided (%s): it takes no more changes", s.Name, clip(v.GetReason()))
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
			conflict = move(next, m, status, to, a)
		case status == to: // the same move made twice: one outcome
		default:
			conflict = true
			why := "transition " + m.GetFromStatus() + " -> " + to + " made while the status was already " + status
			addConflict(next, &pb.Conflict{Field: "status", Value: to, Hlc: m.GetHlc(), AuthorId: a.UserID, Reason: why})
			// What the losing move carried (an agreement's text, a
			// referral's reason) was acknowledged: it is kept beside the
			// status conflict for a person to settle, never dropped.
			for _, name := range sortedKeys(m.GetFields()) {
				if v := m.GetFields()[name]; name != "status" && v != next.GetFields()[name].GetValue() {
					addConflict(next, &pb.Conflict{Field: name, Value: v, Hlc: m.GetHlc(), AuthorId: a.UserID, Reason: "carried by the " + why})
				}
			}
		}
	case pb.Op_OP_APPEND:
		for name, text := range m.GetFields() {
			next.Entries = append(next.Entries, &pb.Entry{Field: name, Text: text, Hlc: m.GetHlc(), AuthorId: a.UserID})
		}
		sortEntries(next.Entries)
	case pb.Op_OP_VOID:
		next.Void = &pb.Void{Reason: m.GetFields()["reason"], Hlc: m.GetHlc(), AuthorId: a.UserID, AtMs: a.atMs()}
	case pb.Op_OP_SETTLE:
		for name, value := range m.GetFields() {
			if r := settle(next, m, name, value, a); r != nil {
				return nil, false, r
			}
		}
	case pb.Op_OP_ATTACH:
		if m.GetKind() == pb.Kind_KIND_VISIT && cur.GetAuthorId() != a.UserID {
			return nil, false, reject(CodePermissionDenied, "visit", "only its author (%s) adds files to a visit", cur.GetAuthorId())
		}
		if r := attach(next, m, a); r != nil {
			return nil, false, r
		}
	}
	return next, conflict, nil
}

// move makes the transition from -> to of record r (checked by the
// caller): the status, the fields the move carries, the fields derived
// from it, and a line of history stamped with the server's time. It
// reports a conflict: a field the move carries (or a level it derives)
// that a later edit had changed keeps the move's value as a conflict.
func move(r *pb.Record, m *pb.Mutation, from, to string, a Actor) (conflict bool) {
	stamp := afterHistory(r, m.GetHlc())
	r.Fields["status"] = &pb.FieldValue{Value: to, Hlc: stamp}
	for _, name := range sortedKeys(m.GetFields()) {
		if name != "status" && setField(r, name, m.GetFields()[name], m.GetHlc(), "", a, false) {
			conflict = true
		}
	}
	// Derived fields take the move's stamp, which follows the move before:
	// they follow the moves in the order applied, as the status does. With
	// the mutation's own clock, a move from a phone whose clock is behind
	// lost its result or taker to the older move's, as a conflict on a
	// field nobody may settle.
	derive := func(name, value string) {
		if setField(r, name, value, stamp, "", a, false) {
			conflict = true
		}
	}
	switch r.GetKind() {
	case pb.Kind_KIND_DISPUTE:
		if contains(DisputeResults, to) {
			derive("result", to) // kept apart from the status, so closing keeps it
		}
		switch {
		case to == "referred":
			derive("level", "referred_out")
		case to == "agreed" && r.GetFields()["level"].GetValue() == "":
			derive("level", "village") // the village's mediators settled it
		}
	case pb.Kind_KIND_NEED:
		if to == "taken" {
			derive("taken_by", a.UserID)
		}
	}
	addHistory(r, &pb.StatusChange{From: from, To: to, Hlc: stamp, AuthorId: a.UserID, AtMs: a.atMs()})
	return conflict
}

// afterHistory returns h, or, if h is not after the history's last entry,
// the reading just after that entry (on h's node). A move follows the move
// that set the status it moves from, and the history is kept in clock
// order: the server cuts a clock that ran ahead to its time plus
// MaxFutureSkew (ClampFuture), so two moves a phone pushes together can
// carry one reading, and ordered by clock they would no longer read as
// the chain of moves made.
func afterHistory(r *pb.Record, h string) string {
	n := len(r.GetHistory())
	if n == 0 || h > r.History[n-1].GetHlc() {
		return h
	}
	last, err := ParseHLC(r.History[n-1].GetHlc())
	if err != nil {
		return h
	}
	next := HLC{Wall: last.Wall, Counter: last.Counter + 1, Node: hlcNode(h)}
	if last.Counter == 0xffff {
		next = HLC{Wall: last.Wall + 1, Node: hlcNode(h)}
	}
	return next.String()
}

// settle applies the settle of field name with the chosen value. For a
// status the value is the current status (the other moves are dismissed)
// or one it may move to now; the status conflicts go either way. For any
// other field the conflicts go and the value is written as an edit made
// with the base the device saw: if the field changed again meanwhile, that
// meets the settle as a new conflict.
func settle(r *pb.Record, m *pb.Mutation, name, value string, a Actor) *Rejection {
	if name == "status" {
		if machine := MachineOf(r.GetKind()); machine != nil {
			cur := r.GetFields()["status"].GetValue()
			switch {
			case value == cur:
			case value == m.GetFromStatus():
				// "Take theirs" as the device saw it, and the record has
				// moved on since: the moves it saw are dismissed all the
				// same, without going back; a later one stays.
				clearConflictsBefore(r, name, m.GetHlc())
				return nil
			default:
				if rej := machine.Check(cur, value); rej != nil {
					return rej
				}
				// A settle carries the status alone: a move that must carry
				// more (a referral's reason, a completion's outcome) is made
				// by a transition, unless the record already holds it.
				for _, f := range machine.Require[value] {
					if r.GetFields()[f].GetValue() == "" {
						return reject(CodeInvalidField, KindName(r.GetKind())+"."+f, "required when a %s moves to %s: settle to %s and make the move with it", KindName(r.GetKind()), value, cur)
					}
				}
				move(r, &pb.Mutation{Hlc: m.GetHlc(), Fields: map[string]string{"status": value}}, cur, value, a)
			}
			clearConflicts(r, name)
			return nil
		}
	}
	clearConflicts(r, name)
	cur := r.GetFields()[name]
	if cur != nil && cur.GetValue() == value && m.GetBaseHlc()[name] == cur.GetHlc() {
		return nil // the value that stands was chosen: nothing to write
	}
	setField(r, name, value, m.GetHlc(), m.GetBaseHlc()[name], a, true)
	return nil
}

func addHistory(r *pb.Record, c *pb.StatusChange) {
	r.History = append(r.History, c)
	sortHistory(r.History)
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
	set := func(name, value string) { r.Fields[name] = &pb.FieldValue{Value: value, Hlc: m.GetHlc()} }
	switch m.GetKind() {
	case pb.Kind_KIND_DISPUTE:
		mediators := SplitList(m.GetFields()["mediators"])
		if a.Role == pb.Role_ROLE_MEMBER {
			// A member's report: the server gives it the village's
			// mediators; the member follows it in their own bucket.
			set("reported_by", a.UserID)
		} else if a.UserID != "" && !contains(mediators, a.UserID) {
			mediators = append([]string{a.UserID}, mediators...)
		}
		set("mediators", strings.Join(mediators, ","))
	case pb.Kind_KIND_PROJECT:
		if a.Role == pb.Role_ROLE_MEMBER {
			switch leader := m.GetFields()["leader_id"]; leader {
			case "":
				set("leader_id", a.UserID) // a member's project is led by them
			case a.UserID:
			default:
				return nil, false, reject(CodePermissionDenied, "project.leader_id", "a member starts projects they lead themselves (%s), not for %s: the village secretary names other leaders", a.UserID, clip(leader))
			}
		}
	}
	if machine := MachineOf(m.GetKind()); machine != nil {
		set("status", machine.Start)
		addHistory(r, &pb.StatusChange{To: machine.Start, Hlc: m.GetHlc(), AuthorId: a.UserID, AtMs: a.atMs()})
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
	dropConflicts(r, func(c *pb.Conflict) bool { return c.GetField() == field })
}

// dropConflicts removes the conflicts of r for which drop says so.
func dropConflicts(r *pb.Record, drop func(*pb.Conflict) bool) {
	kept := r.Conflicts[:0]
	for _, c := range r.Conflicts {
		if !drop(c) {
			kept = append(kept, c)
		}
	}
	r.Conflicts = kept
}

// clearConflictsBefore removes the conflicts of field made before hlc.
func clearConflictsBefore(r *pb.Record, field, hlc string) {
	dropConflicts(r, func(c *pb.Conflict) bool { return c.GetField() == field && c.GetHlc() < hlc })
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
	out.Void = mergeVoid(hi.GetVoid(), lo.GetVoid())
	hseen := map[string]int{}
	var history []*pb.StatusChange
	for _, c := range append(append([]*pb.StatusChange{}, hi.GetHistory()...), lo.GetHistory()...) {
		key := historyKey(c)
		if i, ok := hseen[key]; ok {
			// The same change as the device saw it (at 0) and as the
			// server stamped it: the stamp is kept.
			history[i].AtMs = max(history[i].AtMs, c.GetAtMs())
			continue
		}
		hseen[key] = len(history)
		history = append(history, proto.Clone(c).(*pb.StatusChange))
	}
	sortHistory(history)
	out.History = history
	return out
}

// mergeVoid keeps the first void by clock (then by content): a record is
// voided once, and which void stands does not depend on the order the
// states meet in.
func mergeVoid(a, b *pb.Void) *pb.Void {
	switch {
	case a == nil && b == nil:
		return nil
	case a == nil:
		return proto.Clone(b).(*pb.Void)
	case b == nil:
		return proto.Clone(a).(*pb.Void)
	}
	ka, kb := a.GetHlc()+"\x00"+a.GetAuthorId()+"\x00"+a.GetReason(), b.GetHlc()+"\x00"+b.GetAuthorId()+"\x00"+b.GetReason()
	if kb < ka || (kb == ka && b.GetAtMs() > a.GetAtMs()) {
		a = b
	}
	return proto.Clone(a).(*pb.Void)
}

func historyKey(c *pb.StatusChange) string {
	return c.GetHlc() + "\x00" + c.GetFrom() + "\x00" + c.GetTo() + "\x00" + c.GetAuthorId()
}

func sortHistory(h []*pb.StatusChange) {
	sort.SliceStable(h, func(i, j int) bool {
		if ki, kj := historyKey(h[i]), historyKey(h[j]); ki != kj {
			return ki < kj
		}
		return h[i].GetAtMs() < h[j].GetAtMs()
	})
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
	m.Fields, m.Entries, m.Conflicts, m.Void, m.History = nil, nil, nil, nil, nil
	return m
}

func recordBytes(r *pb.Record) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	return string(b)
}
