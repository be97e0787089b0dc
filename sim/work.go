package sim

import (
	"errors"
	"fmt"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/syncer"
)

// work makes the device do one random piece of work, mostly valid, some
// not: a write the device refuses at once is not queued; one it queues
// counts, whatever the server will say.
func (w *World) work(v *device) {
	// Now and then the user first opens the conflict inbox and settles
	// one; with nothing there, the usual work.
	err := syncer.ErrNotFound
	if w.rng.IntN(8) == 0 {
		err = w.settleConflict(v)
	}
	if errors.Is(err, syncer.ErrNotFound) {
		switch v.role {
		case pb.Role_ROLE_MEMBER:
			err = w.memberWork(v)
		case pb.Role_ROLE_MEDIATOR:
			err = w.mediatorWork(v)
		case pb.Role_ROLE_SECRETARY:
			err = w.secretaryWork(v)
		}
	}
	var rej *domain.Rejection
	switch {
	case err == nil:
		v.queued++
		w.stats.Writes++
	case errors.As(err, &rej), errors.Is(err, syncer.ErrNotFound):
		// refused on the device at once: nothing queued, nothing to lose
	case errors.Is(err, syncer.ErrCrashed):
		// killed before the write committed: as if never made; the app restarts
		w.reopen(v)
	default:
		w.t.Fatalf("seed %d: %s local write: %v", w.cfg.Seed, v.user, err)
	}
}

// text makes a unique text, Chinese included, so that every append can be
// counted on the server.
func (w *World) text(v *device, what string) string {
	return fmt.Sprintf("%s：第%d步 %s 記錄%d", what, w.stats.Steps, v.user, w.rng.IntN(1_000_000))
}

func (w *World) localIDs(v *device, kind string) []string {
	items, err := v.d.List(kind)
	if err != nil {
		w.t.Fatalf("seed %d: list: %v", w.cfg.Seed, err)
	}
	var ids []string
	for _, it := range items {
		// A voided record takes no change: mostly left alone, now and
		// then tried (refused on the device at once).
		if it.Record.GetVoid() != nil && w.rng.IntN(8) > 0 {
			continue
		}
		ids = append(ids, it.ID)
	}
	return ids
}

func (w *World) any(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return ids[w.rng.IntN(len(ids))]
}

func (w *World) memberWork(v *device) error {
	hhs := w.localIDs(v, "household")
	// Out of 20: visits 6, their help 2, a household's needs 2, an event 1,
	// and the new work of the field (field.go) 9.
	switch r := w.rng.IntN(20); {
	case r < 6:
		h := w.any(hhs)
		if h == "" || w.rng.IntN(10) == 0 {
			h = w.hh[w.rng.IntN(len(w.hh))] // maybe not linked: the server rejects it
		}
		id, err := v.d.Create("visit", syncer.NewFields().Set("household_id", h).Set("visited_on", v.clock().Format("2006-01-02")).
			Set("needs", w.text(v, "困難")))
		if err == nil {
			w.made(v, id)
		}
		return err
	case r < 8:
		visits := w.localIDs(v, "visit")
		if len(visits) == 0 {
			return syncer.ErrNotFound
		}
		return v.d.Update(w.any(visits), syncer.NewFields().Set("help", w.text(v, "幫扶")))
	case r < 10:
		h := w.any(hhs)
		if h == "" || w.frozenRecord(h) {
			return syncer.ErrNotFound
		}
		return v.d.Update(h, syncer.NewFields().Set("needs", w.text(v, "需要")))
	case r < 11:
		return w.event(v)
	case r < 14:
		return w.raiseNeed(v)
	case r < 15:
		return w.report(v)
	case r < 16:
		return w.newProject(v)
	case r < 17:
		return w.moveStatus(v, "project")
	case r < 18:
		return w.appendTo(v, "project", "progress", "need", "notes")
	case r < 19:
		return w.void(v)
	default:
		return w.settleConflict(v)
	}
}

func (w *World) mediatorWork(v *device) error {
	disputes := w.localIDs(v, "dispute")
	// Out of 20: new cases 5, status moves 5 (a member's report first),
	// notes 5, who mediates 2, an event 1, a void of an event 1, a settle 1.
	switch r := w.rng.IntN(20); {
	case r < 5 || len(disputes) == 0:
		f := syncer.NewFields().Set("category", domain.DisputeCategories[w.rng.IntN(5)]).Set("title", w.text(v, "糾紛"))
		if co := w.otherMediator(v); co != "" && w.rng.IntN(2) == 0 {
			f.Set("mediators", co)
		}
		id, err := v.d.Create("dispute", f)
		if err == nil {
			w.made(v, id)
		}
		return err
	case r < 10:
		if err := w.pickUpReport(v); !errors.Is(err, syncer.ErrNotFound) {
			return err
		}
		return w.moveStatus(v, "dispute")
	case r < 15:
		id := w.any(disputes)
		text := w.text(v, "調解筆記")
		err := v.d.Append(id, "notes", text)
		if err == nil {
			v.appends[id] = append(v.appends[id], text)
		}
		return err
	case r < 17:
		// Change who mediates: drop or add the other mediator (a scope
		// change for them).
		id := w.any(disputes)
		it, err := v.d.Get(id)
		if err != nil {
			return err
		}
		ms := v.user
		if co := w.otherMediator(v); co != "" && it.Field("mediators") == v.user {
			ms += "," + co
		}
		err = v.d.Update(id, syncer.NewFields().Set("mediators", ms))
		if err == nil {
			w.stats.MediatorChanges++
		}
		return err
	case r < 18:
		return w.event(v)
	case r < 19:
		return w.void(v)
	default:
		return w.settleConflict(v)
	}
}

func (w *World) otherMediator(v *device) string {
	for _, o := range w.devs {
		if o != v && o.role == pb.Role_ROLE_MEDIATOR && o.village == v.village {
			return o.user
		}
	}
	return ""
}

func (w *World) secretaryWork(v *device) error {
	// Out of 20: events 5, a household's tags 5, and the new work of the
	// field (field.go) 10: needs taken up, referred, resolved; projects
	// made, advanced, completed; voids, relinks, settles.
	switch r := w.rng.IntN(20); {
	case r < 5:
		return w.event(v)
	case r < 10:
		h := w.any(w.localIDs(v, "household"))
		if h == "" || w.frozenRecord(h) {
			return syncer.ErrNotFound
		}
		return v.d.Update(h, syncer.NewFields().Set("tags", w.text(v, "標籤")))
	case r < 12:
		return w.moveStatus(v, "need")
	case r < 13:
		if w.rng.IntN(2) == 0 {
			return w.raiseNeed(v)
		}
		return w.newProject(v)
	case r < 14:
		return w.moveStatus(v, "project")
	case r < 15:
		return w.appendTo(v, "project", "progress", "need", "notes")
	case r < 16:
		return w.void(v)
	case r < 18:
		return w.relink(v)
	default:
		return w.settleConflict(v)
	}
}

func (w *World) event(v *device) error {
	id, err := v.d.Create("event", syncer.NewFields().Set("type", domain.EventTypes[w.rng.IntN(len(domain.EventTypes))]).
		Set("occurred_on", v.clock().Format("2006-01-02")).Set("subject", w.text(v, "事件")))
	if err == nil {
		w.made(v, id)
	}
	return err
}

func (w *World) frozenRecord(id string) bool {
	for k := range w.frozen {
		if len(k) > len(id) && k[:len(id)+1] == id+"/" {
			return true
		}
	}
	return false
}

// concurrentEdit has a household's member and its village secretary edit
// the same field from the same version while neither syncs in between: a
// concurrent edit that must end as one value and one conflict.
func (w *World) concurrentEdit() {
	for _, sec := range w.devs {
		if sec.role != pb.Role_ROLE_SECRETARY || sec.revoked || sec.crashAt != "" {
			continue
		}
		for _, m := range w.devs {
			if m.role != pb.Role_ROLE_MEMBER || m.revoked || m.crashAt != "" {
				continue
			}
			for _, h := range w.localIDs(m, "household") {
				key := h + "/phone"
				if _, done := w.frozen[key]; done || w.frozenRecord(h) {
					continue
				}
				a, b := m.d, sec.d
				ia, errA := a.Get(h)
				ib, errB := b.Get(h)
				if errA != nil || errB != nil || ia.State != "synced" || ib.State != "synced" || ia.Version != ib.Version {
					continue
				}
				va, vb := fmt.Sprintf("139%08d", w.rng.IntN(1e8)), fmt.Sprintf("137%08d", w.rng.IntN(1e8))
				if a.Update(h, syncer.NewFields().Set("phone", va)) != nil || b.Update(h, syncer.NewFields().Set("phone", vb)) != nil {
					w.t.Fatalf("seed %d: concurrent edit refused locally", w.cfg.Seed)
				}
				m.queued++
				sec.queued++
				w.stats.Writes += 2
				w.frozen[key] = va + "|" + vb
				w.frozenBy[key] = [2]*device{m, sec}
				return
			}
		}
	}
}
