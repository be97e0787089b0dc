package sim

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// checkField verifies the invariants of the work of the field (field.go),
// after every device converged: all is the server's state, changes the
// changelog in order.
//
//   - A voided record is voided, with the same void, on the server and on
//     every device that holds it, and no change after its void changed it
//     (the changelog's later versions carry the same content); a void a
//     device queued stands on the server unless the server refused it.
//   - Every record with a status has a history that follows its kind's
//     machine: it starts "" -> start, each entry moves from the status the
//     one before reached, along an edge of the machine, stamped with the
//     server's time; the status is the last entry's "to". On the server,
//     in every version of the changelog, and on every device.
//   - Nothing acknowledged lost: each record a device made is on the
//     server and each status move it queued is in the history or kept as
//     a status conflict, unless refused, dismissed by a settle of the
//     status, or made before the last restore.
//   - The links table follows household.member_id: a household whose
//     member_id was written (by a secretary) is linked to that member, or
//     to nobody for "".
//   - The conflicts a device settled are gone from the server and every
//     device, unless the device's settle was refused or a restore since
//     may have applied the edit that made them again.
//   - Each device holds what its user must see of the new kinds, by the
//     read side of the permission table computed from the records.
func (w *World) checkField(ctx context.Context, fail func(string, ...any), all []*pb.Record, changes []*pb.Change) {
	srv := map[string]*pb.Record{}
	for _, r := range all {
		srv[r.GetId()] = r
		if err := checkHistory(r, true); err != nil {
			fail("server's %s %s: %v", domain.KindName(r.GetKind()), r.GetId(), err)
		}
		if v := r.GetVoid(); v != nil && (v.GetAtMs() == 0 || v.GetReason() == "" || v.GetAuthorId() == "") {
			fail("server's %s %s: a void without the server's time, reason or author: %v", domain.KindName(r.GetKind()), r.GetId(), v)
		}
	}

	// The changelog: every version's history follows the machine, and
	// nothing changes a record after its void.
	voidedAt := map[string]*pb.Record{}
	for _, c := range changes {
		r := c.GetRecord()
		if r == nil {
			continue // a unit, person, link, device or refused event
		}
		if err := checkHistory(r, true); err != nil {
			fail("change %d (%s %s version %d): %v", c.GetSeq(), domain.KindName(r.GetKind()), r.GetId(), r.GetVersion(), err)
		}
		first := voidedAt[r.GetId()]
		switch {
		case first == nil && r.GetVoid() != nil:
			voidedAt[r.GetId()] = r
		case first != nil && !proto.Equal(content(first), content(r)):
			fail("%s %s changed after its void (version %d voided, version %d differs):\nvoided %v\nlater  %v",
				domain.KindName(r.GetKind()), r.GetId(), first.GetVersion(), r.GetVersion(), content(first), content(r))
		}
	}

	// Devices: voids and histories as on the server; each void queued
	// stands unless refused.
	for _, v := range w.devs {
		if v.revoked {
			continue
		}
		items, err := v.d.List("")
		if err != nil {
			w.t.Fatalf("seed %d: list: %v", w.cfg.Seed, err)
		}
		for _, it := range items {
			if it.Version == 0 {
				continue // refused by the server, kept for the user
			}
			if err := checkHistory(it.Record, false); err != nil {
				fail("%s's %s %s: %v", v.user, it.Kind, it.ID, err)
			}
			if s := srv[it.ID]; s != nil && !proto.Equal(s.GetVoid(), it.Record.GetVoid()) {
				fail("%s's %s %s: void %v, the server's %v", v.user, it.Kind, it.ID, it.Record.GetVoid(), s.GetVoid())
			}
		}
		refused := w.refusedRecords(v)
		for _, rec := range sortedKeys(v.voids) {
			if refused[rec] {
				continue
			}
			if s := srv[rec]; s == nil || s.GetVoid() == nil {
				fail("%s voided %s (%q) and the server did not refuse it, yet the server's record is not void: %v", v.user, rec, v.voids[rec], s)
			}
		}
	}

	// Nothing acknowledged lost: each record a device made is on the
	// server, and each status move it made is in the record's history or
	// kept as a conflict, unless the server refused a write of the record,
	// a restore since may have lost it (restore.go keeps the counts
	// exact; these are not), or a settle of the status may have
	// dismissed it.
	settledStatus := map[string]bool{}
	for _, s := range w.settles {
		if s.field == "status" {
			settledStatus[s.rec] = true
		}
	}
	for _, v := range w.devs {
		if v.revoked {
			continue
		}
		refused := w.refusedRecords(v)
		for _, id := range v.created {
			if at := v.madeAt[id]; at > w.lastRestore && !refused[id] && srv[id] == nil {
				fail("%s created %s at step %d and the server did not refuse it, yet it does not hold it", v.user, id, at)
			}
		}
		for _, m := range v.moves {
			r := srv[m.rec]
			if m.at <= w.lastRestore || refused[m.rec] || settledStatus[m.rec] || r == nil {
				continue
			}
			kept := false
			for _, c := range r.GetHistory() {
				kept = kept || c.GetTo() == m.to
			}
			for _, c := range r.GetConflicts() {
				kept = kept || (c.GetField() == "status" && c.GetValue() == m.to)
			}
			if !kept {
				fail("%s moved %s %s -> %s at step %d and the server did not refuse it, yet neither its history nor a conflict keeps it: history %v, conflicts %v",
					v.user, m.rec, m.from, m.to, m.at, r.GetHistory(), r.GetConflicts())
			}
		}
	}

	// Links follow member_id.
	links := w.linksTable()
	for _, r := range all {
		if r.GetKind() != pb.Kind_KIND_HOUSEHOLD {
			continue
		}
		f, ok := r.GetFields()["member_id"]
		if !ok {
			continue
		}
		if got := links[r.GetId()]; got != f.GetValue() {
			fail("household %s: member_id is %q, the links table links it to %q", r.GetId(), f.GetValue(), got)
		}
	}

	// The read side of the permission table, from the records themselves
	// rather than the server's scope: each device holds what its user
	// must see of the new kinds and operations (a member their reports,
	// their households' needs, the projects they lead; a mediator the
	// cases naming them, reports included; a secretary every record of
	// the village, voided ones too).
	for _, v := range w.devs {
		if v.revoked {
			continue
		}
		for _, r := range all {
			if !w.mustSee(v, r, links) {
				continue
			}
			if _, err := v.d.Get(r.GetId()); err != nil {
				fail("%s (%s) must see %s %s (%v), yet does not hold it: %v", v.user, domain.RoleName(v.role), domain.KindName(r.GetKind()), r.GetId(), r.GetBuckets(), err)
			}
		}
	}

	// Settled conflicts are gone everywhere.
	for _, s := range w.settles {
		if s.by.revoked || s.at <= w.lastRestore || w.refusedRecords(s.by)[s.rec] {
			continue
		}
		gone := func(where string, r *pb.Record) {
			for _, c := range r.GetConflicts() {
				for _, x := range s.seen {
					if c.GetField() == s.field && c.GetHlc() == x.GetHlc() && c.GetValue() == x.GetValue() {
						fail("%s settled %s.%s at step %d, yet %s still holds the conflict %q (%s)", s.by.user, s.rec, s.field, s.at, where, c.GetValue(), c.GetHlc())
					}
				}
			}
		}
		r := srv[s.rec]
		if r == nil {
			fail("%s settled %s.%s at step %d; the server has no such record", s.by.user, s.rec, s.field, s.at)
			continue
		}
		gone("the server", r)
		for _, v := range w.devs {
			if it, err := v.d.Get(s.rec); err == nil && !v.revoked {
				gone(v.user, it.Record)
			}
		}
	}
}

// content is what a change to a record may change: its fields, entries,
// conflicts, history and void (not its version or buckets, which follow
// the org).
func content(r *pb.Record) *pb.Record {
	return &pb.Record{Fields: r.GetFields(), Entries: r.GetEntries(), Conflicts: r.GetConflicts(), History: r.GetHistory(), Void: r.GetVoid()}
}

// checkHistory checks a record's status history against its kind's
// machine; stamped: every entry carries the server's time.
func checkHistory(r *pb.Record, stamped bool) error {
	m := domain.MachineOf(r.GetKind())
	h := r.GetHistory()
	if m == nil {
		if len(h) > 0 {
			return fmt.Errorf("a %s has no status, yet a history %v", domain.KindName(r.GetKind()), h)
		}
		return nil
	}
	if len(h) == 0 {
		return fmt.Errorf("no status history")
	}
	if h[0].GetFrom() != "" || h[0].GetTo() != m.Start {
		return fmt.Errorf("the history starts %q -> %q, want \"\" -> %q: %v", h[0].GetFrom(), h[0].GetTo(), m.Start, h)
	}
	for i, c := range h {
		if stamped && c.GetAtMs() == 0 {
			return fmt.Errorf("history entry %d (%s -> %s) lacks the server's time: %v", i, c.GetFrom(), c.GetTo(), h)
		}
		if c.GetAuthorId() == "" {
			return fmt.Errorf("history entry %d (%s -> %s) names no author: %v", i, c.GetFrom(), c.GetTo(), h)
		}
		if i == 0 {
			continue
		}
		if c.GetFrom() != h[i-1].GetTo() {
			return fmt.Errorf("history entry %d moves from %q, the entry before reached %q: %v", i, c.GetFrom(), h[i-1].GetTo(), h)
		}
		if rej := m.Check(c.GetFrom(), c.GetTo()); rej != nil {
			return fmt.Errorf("history entry %d: %v", i, rej)
		}
	}
	if st, last := r.GetFields()["status"].GetValue(), h[len(h)-1].GetTo(); st != last {
		return fmt.Errorf("status %q, the history's last entry reached %q: %v", st, last, h)
	}
	return nil
}

// refusedRecords lists the records of which the server refused a write
// of v's.
func (w *World) refusedRecords(v *device) map[string]bool {
	rejs, err := v.d.Rejections()
	if err != nil {
		w.t.Fatalf("seed %d: rejections: %v", w.cfg.Seed, err)
	}
	out := map[string]bool{}
	for _, r := range rejs {
		out[r.RecordID] = true
	}
	return out
}

// linksTable reads the server's links: household -> member.
func (w *World) linksTable() map[string]string {
	db := w.readDB(w.serverDB())
	defer db.Close()
	rows, err := db.Query("SELECT household_id, member_id FROM links")
	if err != nil {
		w.t.Fatalf("seed %d: links: %v", w.cfg.Seed, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var h, m string
		if err := rows.Scan(&h, &m); err != nil {
			w.t.Fatal(err)
		}
		out[h] = m
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	return out
}

// mustSee says whether v's user must see r of a new kind or operation, by
// the permission table's read side (domain/permissions.go).
func (w *World) mustSee(v *device, r *pb.Record, links map[string]string) bool {
	f := func(name string) string { return r.GetFields()[name].GetValue() }
	switch v.role {
	case pb.Role_ROLE_MEMBER:
		switch r.GetKind() {
		case pb.Kind_KIND_DISPUTE:
			return f("reported_by") == v.user
		case pb.Kind_KIND_NEED:
			if h := f("household_id"); h != "" {
				return links[h] == v.user
			}
			return r.GetAuthorId() == v.user
		case pb.Kind_KIND_PROJECT:
			return f("leader_id") == v.user
		case pb.Kind_KIND_HOUSEHOLD:
			return links[r.GetId()] == v.user
		}
	case pb.Role_ROLE_MEDIATOR:
		return r.GetKind() == pb.Kind_KIND_DISPUTE && slices.Contains(domain.SplitList(f("mediators")), v.user)
	case pb.Role_ROLE_SECRETARY:
		return slices.Contains(r.GetBuckets(), domain.VillageBucket(v.village))
	}
	return false
}
