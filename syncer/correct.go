package syncer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// ErrNotMine is returned by KeepMine when none of the field's values in
// conflict was written by this device's user.
var ErrNotMine = errors.New("none of the values in conflict is yours")

// Void marks a visit, event, need or project void with a reason (a
// duplicate, a mistake). The record stays, marked, and takes no more
// changes; it counts nowhere. Its author or the village secretary may void
// it; the first void wins. Works offline, as every write.
func (d *Device) Void(id, reason string) error {
	return d.write(func(tx *store.RTx, _ *Identity, m *pb.Mutation) error {
		cur, err := localView(tx, id)
		if err != nil {
			return err
		}
		m.RecordId, m.Kind, m.Op = id, cur.GetKind(), pb.Op_OP_VOID
		m.Fields = map[string]string{"reason": reason}
		return nil
	})
}

// Settle settles the conflicts of one field of a record with value: for a
// status the current status (the other moves are dismissed) or a status it
// may move to now; for any other field the value to keep, written as an
// edit made with the field's value as this device shows it (base_hlc), so
// that a change made meanwhile elsewhere meets it as a new conflict. The
// local view clears the field's conflicts at once.
func (d *Device) Settle(id, field, value string) error {
	return d.settle(id, field, func(*pb.Record, *Identity) (string, error) { return value, nil })
}

// KeepMine settles a field's conflicts with the value this device's user
// wrote: the value that stands if it is theirs, else their latest losing
// value. ErrNotMine if none is theirs.
func (d *Device) KeepMine(id, field string) error {
	return d.settle(id, field, func(cur *pb.Record, ident *Identity) (string, error) {
		c := conflictOf(cur, field, ident)
		if c == nil {
			return "", fmt.Errorf("%s.%s: no conflict to settle", domain.KindName(cur.GetKind()), field)
		}
		return c.MineValue(ident.UserID)
	})
}

// TakeTheirs settles a field's conflicts with the value that stands (for a
// status, the current status): the other values are dismissed.
func (d *Device) TakeTheirs(id, field string) error {
	return d.settle(id, field, func(cur *pb.Record, _ *Identity) (string, error) {
		if conflictOf(cur, field, nil) == nil {
			return "", fmt.Errorf("%s.%s: no conflict to settle", domain.KindName(cur.GetKind()), field)
		}
		return cur.GetFields()[field].GetValue(), nil
	})
}

func (d *Device) settle(id, field string, choose func(*pb.Record, *Identity) (string, error)) error {
	return d.write(func(tx *store.RTx, ident *Identity, m *pb.Mutation) error {
		cur, err := localView(tx, id)
		if err != nil {
			return err
		}
		value, err := choose(cur, ident)
		if err != nil {
			return err
		}
		m.RecordId, m.Kind, m.Op = id, cur.GetKind(), pb.Op_OP_SETTLE
		m.Fields = map[string]string{field: value}
		m.BaseHlc = map[string]string{field: cur.GetFields()[field].GetHlc()}
		return nil
	})
}

// Assign links a household to a member of the same village (an update of
// household.member_id), or unlinks it with memberID "": the village
// secretary's assignment from a phone. The server checks the member and
// the village, relinks and audits it; the members' phones follow at their
// next sync.
func (d *Device) Assign(householdID, memberID string) error {
	return d.Update(householdID, NewFields().Set("member_id", memberID))
}

// ConflictValue is one value of a field in conflict.
type ConflictValue struct {
	Value    string
	AuthorID string // "" when the device cannot tell who wrote it
	HLC      string
	Reason   string // why it lost; "" for the value that stands
}

// ConflictItem is one field of one record in conflict: the value that
// stands and the values that lost, oldest first.
type ConflictItem struct {
	RecordID string
	Kind     string
	Field    string
	// Voided: the record was voided meanwhile; it takes no settle.
	Voided   bool
	Standing ConflictValue
	Losing   []ConflictValue
	// Pending says this device's own settle or edit of the record waits
	// to be sent.
	Pending bool
}

// MineValue is the value userID wrote among the item's values: the value
// that stands if it is theirs, else their latest losing value.
func (c *ConflictItem) MineValue(userID string) (string, error) {
	if userID != "" && c.Standing.AuthorID == userID {
		return c.Standing.Value, nil
	}
	for i := len(c.Losing) - 1; i >= 0; i-- {
		if userID != "" && c.Losing[i].AuthorID == userID {
			return c.Losing[i].Value, nil
		}
	}
	return "", fmt.Errorf("%s.%s: %w (%s): take theirs or enter a new value", c.Kind, c.Field, ErrNotMine, c.authors())
}

func (c *ConflictItem) authors() string {
	seen := map[string]bool{}
	var names []string
	for _, v := range append([]ConflictValue{c.Standing}, c.Losing...) {
		a := v.AuthorID
		if a == "" {
			a = "unknown"
		}
		if !seen[a] {
			seen[a] = true
			names = append(names, a)
		}
	}
	return "written by " + strings.Join(names, ", ")
}

// Conflicts is the conflict inbox: every field of every record on the
// device that holds conflicts, by record id then field.
func (d *Device) Conflicts() ([]ConflictItem, error) {
	var out []ConflictItem
	err := d.db.View(context.Background(), func(tx *store.RTx) error {
		ident, err := d.identity(tx)
		if err != nil {
			return err
		}
		recs, err := tx.Records(pb.Kind_KIND_UNSPECIFIED)
		if err != nil {
			return err
		}
		for _, lr := range recs {
			for _, c := range conflictsOf(lr.Local, ident) {
				c.Pending = lr.State == StatePending
				out = append(out, *c)
			}
		}
		return nil
	})
	return out, err
}

// conflictOf is the inbox item of one field of r, or nil.
func conflictOf(r *pb.Record, field string, ident *Identity) *ConflictItem {
	for _, c := range conflictsOf(r, ident) {
		if c.Field == field {
			return c
		}
	}
	return nil
}

func conflictsOf(r *pb.Record, ident *Identity) []*ConflictItem {
	by := map[string]*ConflictItem{}
	for _, c := range r.GetConflicts() {
		item := by[c.GetField()]
		if item == nil {
			cur := r.GetFields()[c.GetField()]
			item = &ConflictItem{RecordID: r.GetId(), Kind: domain.KindName(r.GetKind()), Field: c.GetField(), Voided: r.GetVoid() != nil,
				Standing: ConflictValue{Value: cur.GetValue(), HLC: cur.GetHlc(), AuthorID: authorOfClock(r, cur.GetHlc(), ident)}}
			by[c.GetField()] = item
		}
		item.Losing = append(item.Losing, ConflictValue{Value: c.GetValue(), AuthorID: c.GetAuthorId(), HLC: c.GetHlc(), Reason: c.GetReason()})
	}
	out := make([]*ConflictItem, 0, len(by))
	for _, item := range by {
		sort.SliceStable(item.Losing, func(i, j int) bool { return item.Losing[i].HLC < item.Losing[j].HLC })
		out = append(out, item)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return out
}

// authorOfClock finds who wrote the value stamped h. A field keeps only
// its clock, whose node is the writing device: the device knows its own
// user, and the users of devices whose writes the record names elsewhere
// (its creation, status history, entries, conflicts, void).
func authorOfClock(r *pb.Record, h string, ident *Identity) string {
	node := hlcNode(h)
	if node == "" {
		return ""
	}
	if ident != nil && node == ident.DeviceID {
		return ident.UserID
	}
	for _, c := range r.GetHistory() {
		if c.GetHlc() == h && c.GetAuthorId() != "" {
			return c.GetAuthorId()
		}
	}
	if node == r.GetOriginDeviceId() {
		return r.GetAuthorId()
	}
	for _, c := range r.GetHistory() {
		if hlcNode(c.GetHlc()) == node && c.GetAuthorId() != "" {
			return c.GetAuthorId()
		}
	}
	for _, e := range r.GetEntries() {
		if hlcNode(e.GetHlc()) == node && e.GetAuthorId() != "" {
			return e.GetAuthorId()
		}
	}
	for _, c := range r.GetConflicts() {
		if hlcNode(c.GetHlc()) == node && c.GetAuthorId() != "" {
			return c.GetAuthorId()
		}
	}
	if v := r.GetVoid(); v != nil && hlcNode(v.GetHlc()) == node {
		return v.GetAuthorId()
	}
	return ""
}

func hlcNode(h string) string {
	if i := strings.IndexByte(h, '@'); i >= 0 {
		return h[i+1:]
	}
	return ""
}
