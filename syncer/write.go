package syncer

import (
	"context"
	"errors"
	"fmt"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// Fields is a set of field values for a write.
type Fields struct{ m map[string]string }

// NewFields returns an empty set.
func NewFields() *Fields { return &Fields{m: map[string]string{}} }

// Set sets a field and returns f, for chaining.
func (f *Fields) Set(name, value string) *Fields {
	f.m[name] = value
	return f
}

// Create records a new record of kind ("visit", "dispute", "event",
// "need", "project") and returns its id. It works offline: the record is
// queued for the next sync and readable at once. A dispute, event, need or
// project is filed in the user's village unless village_id is set. An
// event is chained to the device's previous event by hash.
func (d *Device) Create(kind string, f *Fields) (string, error) {
	k, ok := domain.ParseKind(kind)
	if !ok || k == pb.Kind_KIND_HOUSEHOLD {
		return "", fmt.Errorf("kind %q: want one of visit, dispute, event, need, project (households come from the administrator's import)", kind)
	}
	id := domain.NewRecordID()
	err := d.write(func(tx *store.RTx, ident *Identity, m *pb.Mutation) error {
		m.RecordId, m.Kind, m.Op, m.Fields = id, k, pb.Op_OP_CREATE, copyFields(f)
		if inVillage(k) && m.Fields["village_id"] == "" && ident.VillageID != "" {
			m.Fields["village_id"] = ident.VillageID
		}
		if k == pb.Kind_KIND_EVENT {
			prev, err := tx.Meta(metaChain)
			if err != nil {
				return err
			}
			delete(m.Fields, "hash")
			if prev != "" {
				m.Fields["prev_hash"] = prev
			} else {
				delete(m.Fields, "prev_hash")
			}
			m.Fields["hash"] = domain.EventHash(m.Fields)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// Update sets fields of a record the device holds. Each field carries the
// clock of the value the user saw, so that the server can tell a concurrent
// edit from a later one.
func (d *Device) Update(id string, f *Fields) error {
	return d.write(func(tx *store.RTx, _ *Identity, m *pb.Mutation) error {
		cur, err := localView(tx, id)
		if err != nil {
			return err
		}
		m.RecordId, m.Kind, m.Op, m.Fields = id, cur.GetKind(), pb.Op_OP_UPDATE, copyFields(f)
		m.BaseHlc = map[string]string{}
		for name := range m.Fields {
			m.BaseHlc[name] = cur.GetFields()[name].GetHlc()
		}
		return nil
	})
}

// Transition moves a dispute, need or project to status to, from the
// status the device shows.
func (d *Device) Transition(id, to string) error { return d.TransitionWith(id, to, nil) }

// TransitionWith is Transition carrying the fields the move may carry
// (domain.Machine Extra/Require): a need referred with its
// referral_reason, a project completed with its outcome, a dispute agreed
// with its level and agreed_on. A move the machine does not allow, or a
// field it may not carry, is refused here, offline, saying which.
func (d *Device) TransitionWith(id, to string, f *Fields) error {
	return d.write(func(tx *store.RTx, _ *Identity, m *pb.Mutation) error {
		cur, err := localView(tx, id)
		if err != nil {
			return err
		}
		m.RecordId, m.Kind, m.Op = id, cur.GetKind(), pb.Op_OP_TRANSITION
		m.Fields = copyFields(f)
		m.Fields["status"] = to
		m.FromStatus = cur.GetFields()["status"].GetValue()
		return nil
	})
}

// Append adds text as a new entry of a list field: a dispute's "notes" or
// "sessions", a need's "notes", a project's "progress".
func (d *Device) Append(id, field, text string) error {
	return d.write(func(tx *store.RTx, _ *Identity, m *pb.Mutation) error {
		cur, err := localView(tx, id)
		if err != nil {
			return err
		}
		m.RecordId, m.Kind, m.Op = id, cur.GetKind(), pb.Op_OP_APPEND
		m.Fields = map[string]string{field: text}
		return nil
	})
}

func copyFields(f *Fields) map[string]string {
	out := map[string]string{}
	if f != nil {
		for k, v := range f.m {
			out[k] = v
		}
	}
	return out
}

func localView(tx *store.RTx, id string) (*pb.Record, error) {
	lr, err := tx.Record(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return lr.Local, nil
}

// write numbers, validates, queues and locally applies one mutation, all
// in one transaction: either the write is durable in the outbox or nothing
// happened.
func (d *Device) write(build func(*store.RTx, *Identity, *pb.Mutation) error) error {
	// No lock: the database's single write connection serialises writes
	// with each other and with a sync's commits, so numbering, the clock
	// and the outbox always agree.
	ctx := context.Background()
	err := d.db.Update(ctx, func(tx *store.RTx) error {
		ident, err := d.identity(tx)
		if err != nil {
			return err
		}
		seq, err := tx.MetaInt(metaNextSeq)
		if err != nil {
			return err
		}
		m := &pb.Mutation{Seq: uint64(seq)}
		if err := build(tx, ident, m); err != nil {
			return err
		}
		hlc := d.clock.Tick()
		m.Hlc = hlc.String()
		if r := domain.ValidateMutation(m); r != nil {
			return r
		}
		role, _ := domain.ParseRole(ident.Role)
		if r := domain.CheckWrite(role, m); r != nil {
			return r
		}
		if r, err := checkKnownLink(tx, role, ident, m); err != nil {
			return err
		} else if r != nil {
			return r
		}
		cur, err := localView(tx, m.GetRecordId())
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if _, _, r := domain.Apply(cur, m, domain.Actor{UserID: ident.UserID, DeviceID: ident.DeviceID, Role: role}); r != nil {
			return r
		}
		if err := tx.AddOutbox(m, d.opts.Now().UnixMilli()); err != nil {
			return fmt.Errorf("queue mutation: %w", err)
		}
		if err := tx.SetMeta(metaNextSeq, itoa(seq+1)); err != nil {
			return err
		}
		if err := tx.SetMeta(metaHLC, hlc.String()); err != nil {
			return err
		}
		if m.GetKind() == pb.Kind_KIND_EVENT {
			if err := tx.SetMeta(metaChain, m.GetFields()["hash"]); err != nil {
				return err
			}
		}
		if err := d.recompute(tx, ident, m.GetRecordId()); err != nil {
			return err
		}
		if d.crash("write") {
			return ErrCrashed
		}
		return nil
	})
	if err == nil {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
	return err
}

// recompute rebuilds a record's local view: the server's base with the
// pending mutations applied in order, and its state. A record the server
// never accepted stays visible, as its rejected create made it.
func (d *Device) recompute(tx *store.RTx, ident *Identity, id string) error {
	lr, err := tx.Record(id)
	if errors.Is(err, store.ErrNotFound) {
		lr, err = &store.LocalRecord{}, nil
	}
	if err != nil {
		return err
	}
	queued, err := tx.OutboxFor(id)
	if err != nil {
		return err
	}
	actor := domain.Actor{UserID: ident.UserID, DeviceID: ident.DeviceID, Role: roleOf(ident)}
	view, state, reason := lr.Base, StateSynced, ""
	var rejectedCreate *pb.Mutation
	for _, q := range queued {
		if q.Status == store.OutboxRejected {
			if state != StatePending {
				state, reason = StateRejected, q.Field+": "+q.Reason
			}
			if q.Mutation.GetOp() == pb.Op_OP_CREATE {
				rejectedCreate = q.Mutation
			}
			continue
		}
		state, reason = StatePending, ""
		if next, _, r := domain.Apply(view, q.Mutation, actor); r == nil {
			view = next
		}
	}
	if view == nil && rejectedCreate != nil {
		view, _, _ = domain.Apply(nil, rejectedCreate, actor)
	}
	if view == nil {
		return tx.DeleteRecord(id)
	}
	if state == StateSynced && len(view.GetConflicts()) > 0 {
		state, reason = StateConflict, fmt.Sprintf("%d conflict(s) to settle", len(view.GetConflicts()))
	}
	lr.Local, lr.State, lr.Reason, lr.UpdatedMs = view, state, reason, d.opts.Now().UnixMilli()
	return tx.PutRecord(lr)
}

// inVillage says whether records of kind k are filed in a village
// (village_id), which a new one takes from the user's by default.
func inVillage(k pb.Kind) bool {
	switch k {
	case pb.Kind_KIND_DISPUTE, pb.Kind_KIND_EVENT, pb.Kind_KIND_NEED, pb.Kind_KIND_PROJECT:
		return true
	}
	return false
}

// checkKnownLink refuses a member's new visit, or new need about a
// household, to a household that the device knows is not linked to the
// member: a member's scope holds the bucket of each linked household
// (domain.ScopeBuckets), and the device keeps the scope of its last sync
// as its cursors. A device that never synced knows no links and leaves the
// check to the server. A need without a household is not checked.
func checkKnownLink(tx *store.RTx, role pb.Role, ident *Identity, m *pb.Mutation) (*domain.Rejection, error) {
	if role != pb.Role_ROLE_MEMBER || m.GetOp() != pb.Op_OP_CREATE {
		return nil, nil
	}
	switch m.GetKind() {
	case pb.Kind_KIND_VISIT:
	case pb.Kind_KIND_NEED:
		if m.GetFields()["household_id"] == "" {
			return nil, nil
		}
	default:
		return nil, nil
	}
	cursors, err := tx.Cursors()
	if err != nil || len(cursors) == 0 {
		return nil, err
	}
	hid, linked := m.GetFields()["household_id"], ""
	for _, c := range cursors {
		if c.GetBucket() == domain.HouseholdBucket(hid) {
			linked = ident.UserID
		}
	}
	r := domain.CheckVisitLink(ident.UserID, hid, linked)
	if r != nil {
		r.Field = domain.KindName(m.GetKind()) + ".household_id" // the same rule for a need's household
		r.Reason += " (as of this device's last sync: if it was just assigned to you, sync first)"
	}
	return r, nil
}

// roleOf is the device user's role as enrollment recorded it.
func roleOf(ident *Identity) pb.Role {
	r, _ := domain.ParseRole(ident.Role)
	return r
}
