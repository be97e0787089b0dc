package sim

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// The work of the field beyond visits, cases and events (issue 12): a
// member raises a household's need (often from a visit, sometimes going
// offline for a while after), reports a quarrel or a hazard, leads a
// project; a secretary takes needs up, refers and resolves them, makes
// projects, records their progress and completes them, voids duplicates
// and relinks households; mediators pick up the reports that reach them;
// anyone settles a conflict from the inbox. Each is one local write, some
// refused at once on the device (nothing queued), some later by the
// server (a rejection); the checks are in check_field.go.

// items lists the device's records of a kind, voided ones mostly left out.
func (w *World) items(v *device, kinds ...string) []*syncer.Item {
	var out []*syncer.Item
	for _, k := range kinds {
		its, err := v.d.List(k)
		if err != nil {
			w.t.Fatalf("seed %d: list: %v", w.cfg.Seed, err)
		}
		for _, it := range its {
			if it.Record.GetVoid() != nil && w.rng.IntN(8) > 0 {
				continue
			}
			out = append(out, it)
		}
	}
	return out
}

func (w *World) anyItem(its []*syncer.Item) *syncer.Item {
	if len(its) == 0 {
		return nil
	}
	return its[w.rng.IntN(len(its))]
}

func (w *World) date(v *device) string { return v.clock().Format("2006-01-02") }

// raiseNeed raises a need: a member's mostly from one of their visits
// (with its household), or of a linked household, now and then of none;
// a secretary's of a household of the village or of none.
func (w *World) raiseNeed(v *device) error {
	f := syncer.NewFields().Set("village_id", v.village).
		Set("category", domain.NeedCategories[w.rng.IntN(len(domain.NeedCategories))]).
		Set("summary", w.text(v, "困難"))
	switch r := w.rng.IntN(10); {
	case r < 5:
		if vis := w.anyItem(w.items(v, "visit")); vis != nil {
			f.Set("household_id", vis.Field("household_id")).Set("visit_id", vis.ID)
		}
	case r < 9:
		if h := w.any(w.localIDs(v, "household")); h != "" {
			f.Set("household_id", h)
		}
	}
	if w.rng.IntN(3) == 0 {
		f.Set("detail", w.text(v, "詳情"))
	}
	id, err := v.d.Create("need", f)
	if err != nil {
		return err
	}
	w.made(v, id)
	w.stats.Needs++
	if v.role == pb.Role_ROLE_MEMBER && w.rng.IntN(3) == 0 {
		// Raised in a hamlet without signal: it waits on the phone.
		v.offUntil = w.now.Add(w.duration(2 * 24 * 60))
	}
	return nil
}

// report is a member's report of a quarrel or a hazard seen on a visit: a
// dispute the server gives the village's mediators.
func (w *World) report(v *device) error {
	cat := []string{"quarrel", "hazard", "problem"}[w.rng.IntN(3)]
	f := syncer.NewFields().Set("category", cat).Set("title", w.text(v, "報告")).Set("occurred_on", w.date(v))
	if vis := w.anyItem(w.items(v, "visit")); vis != nil && w.rng.IntN(2) == 0 {
		f.Set("household_id", vis.Field("household_id")).Set("visit_id", vis.ID)
	}
	id, err := v.d.Create("dispute", f)
	if err != nil {
		return err
	}
	w.made(v, id)
	w.stats.Reports++
	return nil
}

// newProject makes a practical project: a member's is led by them; a
// secretary's by a member of the village or by the branch (no leader).
func (w *World) newProject(v *device) error {
	f := syncer.NewFields().Set("village_id", v.village).Set("title", w.text(v, "實事"))
	if w.rng.IntN(2) == 0 {
		f.Set("planned_on", v.clock().AddDate(0, 1, 0).Format("2006-01-02"))
	}
	if hs := w.localIDs(v, "household"); len(hs) > 0 && w.rng.IntN(2) == 0 {
		f.Set("households", strings.Join(hs[:1+w.rng.IntN(min(3, len(hs)))], ","))
	}
	if v.role == pb.Role_ROLE_SECRETARY && w.rng.IntN(2) == 0 {
		if ms := w.membersOf(v.village); len(ms) > 0 {
			f.Set("leader_id", ms[w.rng.IntN(len(ms))])
		}
	}
	id, err := v.d.Create("project", f)
	if err != nil {
		return err
	}
	w.made(v, id)
	w.stats.Projects++
	return nil
}

// membersOf lists the members whose grid lies in village now.
func (w *World) membersOf(village string) []string {
	var out []string
	for _, o := range w.devs {
		if o.role == pb.Role_ROLE_MEMBER && o.village == village {
			out = append(out, o.user)
		}
	}
	return out
}

// moveStatus moves a record of the kind along its machine, mostly by an
// allowed move with the fields it must carry and some it may; now and then
// a forbidden one (refused at once). A member moves only the projects it
// leads (others the server refuses).
func (w *World) moveStatus(v *device, kind string) error {
	its := w.items(v, kind)
	if v.role == pb.Role_ROLE_MEMBER && w.rng.IntN(5) > 0 {
		its = slices.DeleteFunc(its, func(it *syncer.Item) bool { return it.Field("leader_id") != v.user })
	}
	it := w.anyItem(its)
	if it == nil {
		return syncer.ErrNotFound
	}
	return w.moveTo(v, it, "")
}

// moveTo moves it to status to ("" picks one).
func (w *World) moveTo(v *device, it *syncer.Item, to string) error {
	m := domain.MachineOf(it.Record.GetKind())
	if to == "" {
		to = m.Statuses[w.rng.IntN(len(m.Statuses))] // maybe forbidden: refused at once
		if next := m.Next[it.Field("status")]; len(next) > 0 && w.rng.IntN(4) > 0 {
			to = next[w.rng.IntN(len(next))]
		}
	}
	f := syncer.NewFields()
	for _, name := range m.Extra[to] {
		if slices.Contains(m.Require[to], name) || w.rng.IntN(2) == 0 {
			f.Set(name, w.value(v, it.Record.GetKind(), name))
		}
	}
	err := v.d.TransitionWith(it.ID, to, f)
	if err == nil {
		w.stats.Moves++
		v.moves = append(v.moves, madeMove{rec: it.ID, from: it.Field("status"), to: to, at: w.stats.Steps})
	}
	return err
}

// madeMove is a status move a device queued.
type madeMove struct {
	rec, from, to string
	at            int // the step
}

// made notes a record the device created.
func (w *World) made(v *device, id string) {
	v.created = append(v.created, id)
	v.madeAt[id] = w.stats.Steps
}

// pickUpReport is a mediator taking up a member's report that reached
// them: open -> mediating.
func (w *World) pickUpReport(v *device) error {
	var open []*syncer.Item
	for _, it := range w.items(v, "dispute") {
		if it.Field("reported_by") != "" && it.Field("status") == "open" {
			open = append(open, it)
		}
	}
	it := w.anyItem(open)
	if it == nil {
		return syncer.ErrNotFound
	}
	return w.moveTo(v, it, "mediating")
}

// value makes a valid value for a field of kind, as a user would enter.
func (w *World) value(v *device, k pb.Kind, name string) string {
	f := domain.SpecOf(k).Field(name)
	switch {
	case name == "phone":
		return fmt.Sprintf("138%08d", w.rng.IntN(1e8))
	case name == "member_id":
		if ms := w.membersOf(v.village); len(ms) > 0 {
			return ms[w.rng.IntN(len(ms))]
		}
		return ""
	case f.Format == domain.Enum:
		return f.Values[w.rng.IntN(len(f.Values))]
	case f.Format == domain.Date:
		return w.date(v)
	case f.Format == domain.Int:
		return fmt.Sprint(f.Min + w.rng.IntN(min(f.Max-f.Min+1, 10)))
	case f.Format == domain.IDList, f.Format == domain.ID:
		return v.user
	case f.Format == domain.Line && f.MaxBytes < 200:
		return fmt.Sprintf("第%d步", w.stats.Steps)
	}
	return w.text(v, domain.KindName(k)+"."+name)
}

// appendTo appends to a list field: pairs of kind and field.
func (w *World) appendTo(v *device, kindField ...string) error {
	i := 2 * w.rng.IntN(len(kindField)/2)
	kind, field := kindField[i], kindField[i+1]
	it := w.anyItem(w.items(v, kind))
	if it == nil {
		return syncer.ErrNotFound
	}
	text := w.text(v, field)
	err := v.d.Append(it.ID, field, text)
	if err == nil {
		v.appends[it.ID] = append(v.appends[it.ID], text)
	}
	return err
}

// void voids a duplicate or a mistake: a record the device made, mostly;
// a secretary any visit, event, need or project of the village.
func (w *World) void(v *device) error {
	its := w.items(v, "visit", "event", "need", "project")
	if v.role != pb.Role_ROLE_SECRETARY && w.rng.IntN(5) > 0 {
		its = slices.DeleteFunc(its, func(it *syncer.Item) bool { return it.Author != v.user })
	}
	it := w.anyItem(its)
	if it == nil {
		return syncer.ErrNotFound
	}
	reason := w.text(v, "重複錄入")
	err := v.d.Void(it.ID, reason)
	if err == nil {
		if _, done := v.voids[it.ID]; !done {
			v.voids[it.ID] = reason
		}
		w.stats.Voids++
	}
	return err
}

// relink is a secretary linking a household of the village to another
// member of it, now and then unlinking it.
func (w *World) relink(v *device) error {
	h := w.any(w.localIDs(v, "household"))
	if h == "" || w.frozenRecord(h) {
		return syncer.ErrNotFound
	}
	to := ""
	if ms := w.membersOf(v.village); len(ms) > 0 && w.rng.IntN(8) > 0 {
		to = ms[w.rng.IntN(len(ms))]
	}
	err := v.d.Assign(h, to)
	if err == nil {
		w.links[h] = to
		w.stats.Relinks++
	}
	return err
}

// settled is one conflict settled on a device: the conflicts of the field
// the device showed then must be gone everywhere at the end.
type settled struct {
	by         *device
	rec, field string
	seen       []*pb.Conflict
	at         int // the step
}

// settleConflict settles one conflict from the device's inbox: keep
// mine, take theirs (the value that stands), another value in conflict, or
// a new value; for a status, dismiss the other moves or make one allowed
// now.
func (w *World) settleConflict(v *device) error {
	inbox, err := v.d.Conflicts()
	if err != nil {
		w.t.Fatalf("seed %d: %s conflicts: %v", w.cfg.Seed, v.user, err)
	}
	inbox = slices.DeleteFunc(inbox, func(c syncer.ConflictItem) bool { return c.Voided && w.rng.IntN(8) > 0 })
	if len(inbox) == 0 {
		return syncer.ErrNotFound
	}
	c := inbox[w.rng.IntN(len(inbox))]
	it, err := v.d.Get(c.RecordID)
	if err != nil {
		return err
	}
	var seen []*pb.Conflict
	for _, x := range it.Record.GetConflicts() {
		if x.GetField() == c.Field {
			seen = append(seen, x)
		}
	}
	cur := c.Standing.Value
	theirs := c.Losing[w.rng.IntN(len(c.Losing))].Value
	if m := domain.MachineOf(it.Record.GetKind()); m != nil && c.Field == "status" {
		// Dismiss the other moves, or make one (or another) if allowed now.
		value := cur
		if w.rng.IntN(2) == 0 {
			if m.Check(cur, theirs) == nil {
				value = theirs
			} else if next := m.Next[cur]; len(next) > 0 {
				value = next[w.rng.IntN(len(next))]
			}
		}
		err = v.d.Settle(it.ID, c.Field, value)
	} else {
		switch w.rng.IntN(4) {
		case 0:
			err = v.d.KeepMine(it.ID, c.Field)
			if errors.Is(err, syncer.ErrNotMine) {
				return syncer.ErrNotFound // none is theirs: the app offers the other choices
			}
		case 1:
			err = v.d.TakeTheirs(it.ID, c.Field)
		case 2:
			err = v.d.Settle(it.ID, c.Field, theirs)
		default:
			err = v.d.Settle(it.ID, c.Field, w.value(v, it.Record.GetKind(), c.Field))
		}
	}
	if err != nil {
		return err
	}
	w.stats.Settles++
	w.settles = append(w.settles, &settled{by: v, rec: it.ID, field: c.Field, seen: seen, at: w.stats.Steps})
	// A deliberate concurrent edit settled: its conflict is no longer
	// expected at the end.
	key := it.ID + "/" + c.Field
	delete(w.frozen, key)
	delete(w.frozenBy, key)
	return nil
}

// duration draws up to n minutes.
func (w *World) duration(n int) time.Duration { return time.Duration(w.rng.IntN(n)) * time.Minute }
