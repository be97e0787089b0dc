package fieldsync

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/mobile/fieldsync/schema"
	"github.com/fieldsync/fieldsync/syncer"
)

// Every write works offline: it is validated with the same rules as the
// server's (an error names the field and says what is allowed), queued
// for the next sync, and readable at once. The listener's OnDataChanged
// hears of it after it is committed. Writes need an enrolled device
// (reenroll otherwise).

// parseFields reads a write's fieldsJSON: an object of field names to
// string values; "" is no fields.
func parseFields(fieldsJSON string) (*syncer.Fields, error) {
	f := syncer.NewFields()
	if strings.TrimSpace(fieldsJSON) == "" {
		return f, nil
	}
	var m map[string]string
	dec := json.NewDecoder(bytes.NewReader([]byte(fieldsJSON)))
	if err := dec.Decode(&m); err != nil {
		return nil, codef(CodeInvalid, "fieldsJSON: %v: want an object of field names to string values, e.g. {\"visited_on\":\"2026-12-07\"}", err)
	}
	for k, v := range m {
		f.Set(k, v)
	}
	return f, nil
}

// wrote tells the listener of a committed write and wakes foreground
// mode.
func (c *Client) wrote(op, id, kind string) {
	if kind == "" {
		if it, err := c.dev.Get(id); err == nil {
			kind = it.Kind
		}
	}
	c.wakeForeground()
	c.notifyData(nil, &schema.Change{Source: "write", Op: op, RecordID: id, Kind: kind})
}

// write runs one write on an open client and tells the listener.
func (c *Client) write(op, id, kind string, do func() error) error {
	if err := c.open(); err != nil {
		return err
	}
	if err := do(); err != nil {
		return c.classify("write", err)
	}
	c.wrote(op, id, kind)
	return nil
}

// Create records a new record of kind (visit, dispute, event, need,
// project; households come from the administrator's import) with the
// fields of fieldsJSON (an object of field names to string values) and
// returns its id. A dispute, event, need or project is filed in the user's
// village unless village_id is set; an event is chained to the device's
// previous event by hash (prev_hash and hash are computed here).
func (c *Client) Create(kind, fieldsJSON string) (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	if _, ok := domain.ParseKind(kind); !ok || kind == "household" {
		return "", codef(CodeInvalid, "kind %q: want one of visit, dispute, event, need, project (households come from the administrator's import)", kind)
	}
	f, err := parseFields(fieldsJSON)
	if err != nil {
		return "", err
	}
	id, err := c.dev.Create(kind, f)
	if err != nil {
		return "", c.classify("write", err)
	}
	c.wrote("create", id, kind)
	return id, nil
}

// Update sets fields (fieldsJSON: an object of field names to string
// values) of a record the device holds. Each field carries the clock of
// the value the device showed, so the server can tell a concurrent edit
// (a conflict to settle) from a later one.
func (c *Client) Update(id, fieldsJSON string) error {
	f, err := parseFields(fieldsJSON)
	if err != nil {
		return err
	}
	return c.write("update", id, "", func() error { return c.dev.Update(id, f) })
}

// Transition moves a dispute, need or project to status to, from the
// status the device shows, carrying the fields the move may carry
// (fieldsJSON, "" for none): a need referred with its referral_reason, a
// project completed with its outcome, a dispute agreed with its level and
// agreed_on. A move the status machine does not allow is refused
// (invalid), saying which moves are.
func (c *Client) Transition(id, to, fieldsJSON string) error {
	f, err := parseFields(fieldsJSON)
	if err != nil {
		return err
	}
	return c.write("transition", id, "", func() error { return c.dev.TransitionWith(id, to, f) })
}

// Append adds text as a new entry of a list field: a dispute's "notes" or
// "sessions", a need's "notes", a project's "progress".
func (c *Client) Append(id, field, text string) error {
	return c.write("append", id, "", func() error { return c.dev.Append(id, field, text) })
}

// VoidRecord marks a visit, event, need or project void with a reason (a
// duplicate, a mistake): it stays, marked, takes no more changes and
// counts nowhere. Its author or the village secretary may void it. (Not
// named Void: void is a reserved word in Java and Objective-C.)
func (c *Client) VoidRecord(id, reason string) error {
	return c.write("void", id, "", func() error { return c.dev.Void(id, reason) })
}

// KeepMine settles the conflicts of a record's field with the value this
// device's user wrote (invalid if none of them is theirs).
func (c *Client) KeepMine(id, field string) error {
	return c.write("settle", id, "", func() error { return c.dev.KeepMine(id, field) })
}

// TakeTheirs settles the conflicts of a record's field with the value that
// stands (for a status, the current status).
func (c *Client) TakeTheirs(id, field string) error {
	return c.write("settle", id, "", func() error { return c.dev.TakeTheirs(id, field) })
}

// Settle settles the conflicts of a record's field with value: for a
// status the current status or a status it may move to now; for any other
// field the value to keep.
func (c *Client) Settle(id, field, value string) error {
	return c.write("settle", id, "", func() error { return c.dev.Settle(id, field, value) })
}

// Assign links a household to a member of the same village, or unlinks it
// with memberID "": the village secretary's assignment.
func (c *Client) Assign(householdID, memberID string) error {
	return c.write("assign", householdID, "household", func() error { return c.dev.Assign(householdID, memberID) })
}

// RecordVisit records a visit to a household on visitedOn (YYYY-MM-DD):
// whom the member met, the needs heard, the help given and what to follow
// up ("" for none). It returns the visit's id.
func (c *Client) RecordVisit(householdID, visitedOn, met, needs, help, followUp string) (string, error) {
	return c.create("visit", map[string]string{"household_id": householdID, "visited_on": visitedOn,
		"met": met, "needs": needs, "help": help, "follow_up": followUp})
}

// OpenDispute opens a dispute in the user's village: category (problem,
// quarrel, dispute, hazard, case), a title, the parties and the day it
// occurred (YYYY-MM-DD; "" for none). It returns the dispute's id.
func (c *Client) OpenDispute(category, title, parties, occurredOn string) (string, error) {
	return c.create("dispute", map[string]string{"category": category, "title": title,
		"parties": parties, "occurred_on": occurredOn})
}

// RaiseNeed raises a need of a household ("" for one with no household)
// in the user's village: a category, a one-line summary and the detail. It
// returns the need's id.
func (c *Client) RaiseNeed(householdID, category, summary, detail string) (string, error) {
	return c.create("need", map[string]string{"household_id": householdID, "category": category,
		"summary": summary, "detail": detail})
}

// LogEvent logs an event of the user's work in their village: its type
// (meeting, party_day, service_request, status_change, other), the day
// (YYYY-MM-DD), a subject and the detail. It returns the event's id.
func (c *Client) LogEvent(eventType, occurredOn, subject, detail string) (string, error) {
	return c.create("event", map[string]string{"type": eventType, "occurred_on": occurredOn,
		"subject": subject, "detail": detail})
}

// AddNote appends a note to a dispute or a need (its "notes" list).
func (c *Client) AddNote(id, text string) error { return c.Append(id, "notes", text) }

// create is Create with the fields that have a value.
func (c *Client) create(kind string, fields map[string]string) (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	f := syncer.NewFields()
	for k, v := range fields {
		if v != "" {
			f.Set(k, v)
		}
	}
	id, err := c.dev.Create(kind, f)
	if err != nil {
		return "", c.classify("write", err)
	}
	c.wrote("create", id, kind)
	return id, nil
}
