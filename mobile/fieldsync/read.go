package fieldsync

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/mobile/fieldsync/schema"
	"github.com/fieldsync/fieldsync/syncer"
)

// Page limits of the lists.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// Get returns one record with its fields, entries, conflicts, status
// history, state and reason, as a schema.Record. not_found if the device
// does not hold it.
func (c *Client) Get(id string) (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	it, err := c.dev.Get(id)
	if err != nil {
		return "", c.classify("read", err)
	}
	return marshal(toRecord(it, true))
}

// List returns one page of the records matching queryJSON (a
// schema.Query: kind, fields equal to values, state, voided, offset,
// limit; "" = every record not voided), by id, as a
// schema.Page of schema.Record (without entries, conflicts, history: Get
// has them).
func (c *Client) List(queryJSON string) (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	q, err := parseQuery(queryJSON)
	if err != nil {
		return "", err
	}
	items, err := c.dev.List(q.Kind)
	if err != nil {
		return "", c.classify("read", err)
	}
	var out []schema.Record
	for _, it := range items {
		if matches(it, q) {
			out = append(out, toRecord(it, false))
		}
	}
	return marshal(page(out, q.Offset, q.Limit))
}

// parseQuery reads and checks List's query.
func parseQuery(s string) (*schema.Query, error) {
	q := &schema.Query{}
	if strings.TrimSpace(s) != "" {
		dec := json.NewDecoder(bytes.NewReader([]byte(s)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(q); err != nil {
			return nil, codef(CodeInvalid, "queryJSON: %v: want an object with kind, fields, state, voided, offset, limit", err)
		}
	}
	if q.Kind != "" {
		k, ok := domain.ParseKind(q.Kind)
		if !ok {
			return nil, codef(CodeInvalid, "queryJSON: kind %q: want one of %s, or \"\" for all", q.Kind, strings.Join(domain.KindNames(), ", "))
		}
		spec := domain.SpecOf(k)
		for name := range q.Fields {
			if spec.Field(name) == nil {
				var names []string
				for _, f := range spec.Fields {
					names = append(names, f.Name)
				}
				return nil, codef(CodeInvalid, "queryJSON: fields.%s: not a field of %s: want one of %s", name, q.Kind, strings.Join(names, ", "))
			}
		}
	}
	switch q.State {
	case "", "synced", "pending", "rejected", "conflict":
	default:
		return nil, codef(CodeInvalid, "queryJSON: state %q: want synced, pending, rejected, conflict, or \"\" for any", q.State)
	}
	switch q.Voided {
	case "", "exclude", "include", "only":
	default:
		return nil, codef(CodeInvalid, "queryJSON: voided %q: want exclude (the default), include or only", q.Voided)
	}
	if err := checkPage(q.Offset, q.Limit, "queryJSON: "); err != nil {
		return nil, err
	}
	return q, nil
}

// checkPage checks an offset and a limit.
func checkPage(offset, limit int, prefix string) error {
	if offset < 0 {
		return codef(CodeInvalid, "%soffset %d: want 0 or more", prefix, offset)
	}
	if limit < 0 || limit > MaxLimit {
		return codef(CodeInvalid, "%slimit %d: want 1..%d (0 = %d)", prefix, limit, MaxLimit, DefaultLimit)
	}
	return nil
}

// matches says it passes q's filters (its kind is already q's).
func matches(it *syncer.Item, q *schema.Query) bool {
	switch {
	case q.Voided == "only" && !it.Voided(), (q.Voided == "" || q.Voided == "exclude") && it.Voided():
		return false
	case q.State != "" && it.State != q.State:
		return false
	}
	for name, v := range q.Fields {
		if it.Field(name) != v {
			return false
		}
	}
	return true
}

// page cuts one page out of items.
func page[T any](items []T, offset, limit int) *schema.Page[T] {
	if limit == 0 {
		limit = DefaultLimit
	}
	p := &schema.Page[T]{Items: []T{}, Total: len(items), Offset: offset, Limit: limit}
	if offset < len(items) {
		p.Items = items[offset:min(offset+limit, len(items))]
	}
	p.More = offset+len(p.Items) < p.Total
	return p
}

// toRecord turns a syncer item into its JSON shape; full adds entries,
// conflicts and history.
func toRecord(it *syncer.Item, full bool) schema.Record {
	r := it.Record
	out := schema.Record{ID: it.ID, Kind: it.Kind, State: it.State, Reason: it.Reason, Version: int64(it.Version),
		AuthorID: r.GetAuthorId(), OriginDeviceID: r.GetOriginDeviceId(), Status: it.Field("status"),
		Fields: map[string]string{}, Voided: it.Voided(), ConflictCount: len(r.GetConflicts()), CreatedMs: createdMs(it)}
	for name, v := range r.GetFields() {
		if v.GetValue() != "" {
			out.Fields[name] = v.GetValue()
		}
	}
	if v := r.GetVoid(); v != nil {
		out.Void = &schema.Void{Reason: v.GetReason(), AuthorID: v.GetAuthorId(), AtMs: v.GetAtMs()}
	}
	if full {
		for _, e := range r.GetEntries() {
			out.Entries = append(out.Entries, schema.Entry{Field: e.GetField(), Text: e.GetText(), AuthorID: e.GetAuthorId(), HLC: e.GetHlc()})
		}
		for _, cf := range r.GetConflicts() {
			out.Conflicts = append(out.Conflicts, schema.Conflict{Field: cf.GetField(), Value: cf.GetValue(), AuthorID: cf.GetAuthorId(), HLC: cf.GetHlc(), Reason: cf.GetReason()})
		}
		for _, h := range r.GetHistory() {
			out.History = append(out.History, schema.StatusChange{From: h.GetFrom(), To: h.GetTo(), AuthorID: h.GetAuthorId(), AtMs: h.GetAtMs(), HLC: h.GetHlc()})
		}
	}
	return out
}

// createdMs is when the record was created: the server's time of its
// first status change, else the earliest clock reading on it (the clock
// of the device that wrote it).
func createdMs(it *syncer.Item) int64 {
	r := it.Record
	if h := r.GetHistory(); len(h) > 0 && h[0].GetAtMs() > 0 {
		return h[0].GetAtMs()
	}
	var least int64
	see := func(s string) {
		if t, err := domain.ParseHLC(s); err == nil && t.Wall > 0 && (least == 0 || t.Wall < least) {
			least = t.Wall
		}
	}
	for _, v := range r.GetFields() {
		see(v.GetHlc())
	}
	for _, h := range r.GetHistory() {
		see(h.GetHlc())
	}
	return least
}

// MyHouseholds returns one page of the user's households (a member's
// linked households; for other roles every household the device holds, a
// secretary's village) with, for month (YYYY-MM; "" = this month by the
// phone's clock), which are due (no visit in the month): a schema.Page of
// schema.Household, the due ones first, then by id. Voided and retired
// households are left out.
func (c *Client) MyHouseholds(month string, offset, limit int) (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	if month == "" {
		month = time.Now().Format("2006-01")
	}
	if _, err := time.Parse("2006-01", month); err != nil {
		return "", codef(CodeInvalid, "month %q: want YYYY-MM (e.g. 2026-12), or \"\" for this month", month)
	}
	if err := checkPage(offset, limit, ""); err != nil {
		return "", err
	}
	id, err := c.dev.Identity()
	if err != nil {
		return "", c.classify("read", err)
	}
	households, err := c.dev.List("household")
	if err != nil {
		return "", c.classify("read", err)
	}
	visits, err := c.dev.List("visit")
	if err != nil {
		return "", c.classify("read", err)
	}
	type seen struct {
		inMonth int
		last    string
	}
	byHousehold := map[string]*seen{}
	for _, v := range visits {
		if v.Voided() {
			continue
		}
		h, on := v.Field("household_id"), v.Field("visited_on")
		s := byHousehold[h]
		if s == nil {
			s = &seen{}
			byHousehold[h] = s
		}
		if strings.HasPrefix(on, month+"-") {
			s.inMonth++
		}
		if on > s.last {
			s.last = on
		}
	}
	var out []schema.Household
	for _, h := range households {
		if h.Voided() || (id.Role == "member" && h.Field("member_id") != id.UserID) {
			continue
		}
		item := schema.Household{Record: toRecord(h, false)}
		if s := byHousehold[h.ID]; s != nil {
			item.VisitsInMonth, item.LastVisitOn = s.inMonth, s.last
		}
		item.Due = item.VisitsInMonth == 0
		out = append(out, item)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Due && !out[j].Due })
	return marshal(page(out, offset, limit))
}

// pageOf checks a page's bounds and reads who the device is and every
// record of kind it holds: the start of MyOpenCases and VillageNeeds.
func (c *Client) pageOf(kind string, offset, limit int) (*syncer.Identity, []*syncer.Item, error) {
	if err := c.open(); err != nil {
		return nil, nil, err
	}
	if err := checkPage(offset, limit, ""); err != nil {
		return nil, nil, err
	}
	id, err := c.dev.Identity()
	if err != nil {
		return nil, nil, c.classify("read", err)
	}
	items, err := c.dev.List(kind)
	if err != nil {
		return nil, nil, c.classify("read", err)
	}
	return id, items, nil
}

// openDispute are the statuses of a dispute still being worked on.
var openDispute = []string{"open", "mediating"}

// MyOpenCases returns one page of the open disputes (status open or
// mediating, not voided) the user works on: those they mediate, reported
// or opened; a secretary's, every one the device holds (the village's).
// A schema.Page of schema.Case, oldest first, each with its age in days.
func (c *Client) MyOpenCases(offset, limit int) (string, error) {
	id, disputes, err := c.pageOf("dispute", offset, limit)
	if err != nil {
		return "", err
	}
	now := time.Now().UnixMilli()
	var out []schema.Case
	for _, d := range disputes {
		if d.Voided() || !slices.Contains(openDispute, d.Field("status")) {
			continue
		}
		mine := id.Role == "secretary" || d.Author == id.UserID || d.Field("reported_by") == id.UserID ||
			slices.Contains(strings.Split(d.Field("mediators"), ","), id.UserID)
		if !mine {
			continue
		}
		cs := schema.Case{Record: toRecord(d, false)}
		if cs.CreatedMs > 0 && now > cs.CreatedMs {
			cs.AgeDays = int((now - cs.CreatedMs) / (24 * 60 * 60 * 1000))
		}
		out = append(out, cs)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].CreatedMs != out[j].CreatedMs {
			return out[i].CreatedMs < out[j].CreatedMs
		}
		return out[i].ID < out[j].ID
	})
	return marshal(page(out, offset, limit))
}

// openNeed are the statuses of a need not yet resolved.
var openNeed = []string{"raised", "taken", "referred"}

// VillageNeeds returns one page of the open needs (raised, taken or
// referred; not voided) of the user's village that the device holds,
// oldest first: a schema.Page of schema.Record.
func (c *Client) VillageNeeds(offset, limit int) (string, error) {
	id, needs, err := c.pageOf("need", offset, limit)
	if err != nil {
		return "", err
	}
	var out []schema.Record
	for _, n := range needs {
		if n.Voided() || !slices.Contains(openNeed, n.Field("status")) || (id.VillageID != "" && n.Field("village_id") != id.VillageID) {
			continue
		}
		out = append(out, toRecord(n, false))
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].CreatedMs != out[j].CreatedMs {
			return out[i].CreatedMs < out[j].CreatedMs
		}
		return out[i].ID < out[j].ID
	})
	return marshal(page(out, offset, limit))
}

// Conflicts returns the conflict inbox: every field of every record in
// conflict, by record id then field, as a JSON array of
// schema.ConflictItem.
func (c *Client) Conflicts() (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	items, err := c.dev.Conflicts()
	if err != nil {
		return "", c.classify("read", err)
	}
	user := ""
	if id, err := c.dev.Identity(); err == nil {
		user = id.UserID
	}
	out := []schema.ConflictItem{}
	for i := range items {
		it := &items[i]
		ci := schema.ConflictItem{RecordID: it.RecordID, Kind: it.Kind, Field: it.Field, Voided: it.Voided, Pending: it.Pending,
			Standing: conflictValue(it.Standing), Losing: []schema.ConflictValue{}}
		for _, l := range it.Losing {
			ci.Losing = append(ci.Losing, conflictValue(l))
		}
		if v, err := it.MineValue(user); err == nil {
			ci.Mine, ci.HasMine = v, true
		}
		out = append(out, ci)
	}
	return marshal(out)
}

func conflictValue(v syncer.ConflictValue) schema.ConflictValue {
	return schema.ConflictValue{Value: v.Value, AuthorID: v.AuthorID, HLC: v.HLC, Reason: v.Reason}
}

// Rejections returns the writes the server refused for good, kept on the
// device, oldest first, as a JSON array of schema.Rejection.
func (c *Client) Rejections() (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	rs, err := c.dev.Rejections()
	if err != nil {
		return "", c.classify("read", err)
	}
	out := []schema.Rejection{}
	for _, r := range rs {
		out = append(out, schema.Rejection{Seq: int64(r.Seq), RecordID: r.RecordID, Kind: r.Kind, Op: r.Op, Code: r.Code, Field: r.Field, Reason: r.Reason})
	}
	return marshal(out)
}

// Identity returns who the device is (a schema.Identity), or reenroll
// when it is not enrolled.
func (c *Client) Identity() (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	id, err := c.dev.Identity()
	if err != nil {
		return "", c.classify("read", err)
	}
	return marshal(identity(id))
}

func identity(id *syncer.Identity) *schema.Identity {
	return &schema.Identity{Server: id.Server, DeviceID: id.DeviceID, UserID: id.UserID, UserName: id.UserName,
		Role: id.Role, VillageID: id.VillageID, CAFingerprint: id.CAFingerprint}
}

// Status returns the device's summary (a schema.Status): enrolled or
// not, pending writes, rejections, conflicts, the last sync and its
// error. It works on a device that is not enrolled.
func (c *Client) Status() (string, error) {
	if err := c.open(); err != nil {
		return "", err
	}
	st, err := c.status()
	if err != nil {
		return "", err
	}
	return marshal(st)
}

// status reads the device's summary.
func (c *Client) status() (*schema.Status, error) {
	out := &schema.Status{}
	c.mu.Lock()
	out.Syncing, out.Foreground = c.syncing > 0, c.fgStop != nil && !isClosed(c.fgDone)
	c.mu.Unlock()
	st, err := c.dev.Status()
	if errors.Is(err, syncer.ErrNotEnrolled) {
		return out, nil
	}
	if err != nil {
		return nil, c.classify("read", err)
	}
	out.Enrolled, out.Identity = true, identity(&st.Identity)
	out.Pending, out.Rejected, out.Records, out.Conflicts = st.Pending, st.Rejected, st.Records, st.Conflicts
	out.LastSyncMs, out.LastError, out.Notice, out.Stopped = st.LastSyncMs, st.LastError, st.Notice, st.Stopped
	out.LastErrorCode = messageCode(st.LastError)
	out.FilesPending, out.FilesRefused = st.FilesPending, st.FilesRefused
	return out, nil
}

// isClosed says a done channel is closed.
func isClosed(ch chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// messageCode is the code of a sync error as syncer kept its message in
// the database ("" for none).
func messageCode(msg string) string {
	if msg == "" {
		return ""
	}
	for _, known := range []error{syncer.ErrRevoked, syncer.ErrCloned, syncer.ErrUnknownDevice, syncer.ErrNotEnrolled, syncer.ErrWrongServer, syncer.ErrWrongKey} {
		if strings.Contains(msg, known.Error()) {
			return ErrorCode(classify("sync", known).Error())
		}
	}
	if strings.Contains(msg, "asked this device to wait") {
		return CodeRetryLater
	}
	return ErrorCode(classify("sync", errors.New(msg)).Error())
}
