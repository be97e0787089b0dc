package domain

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Format is how a field's value is checked.
type Format int

// The formats of fields.
const (
	Text   Format = iota // UTF-8 text, no control characters but newline and tab
	Line                 // one line of UTF-8 text
	ID                   // a record or org id
	Date                 // YYYY-MM-DD
	Int                  // a whole number in [Min, Max]
	Enum                 // one of Values
	IDList               // comma-separated org ids
	Hex64                // 64 lower-case hex digits (a SHA-256)
)

// Field describes one field of a kind.
type Field struct {
	Name     string
	Format   Format
	MaxBytes int
	Required bool     // must be set on create
	Values   []string // for Enum
	Min, Max int      // for Int
	// Fixed fields are set on create and never change.
	Fixed bool
	// List fields are appended to with OP_APPEND, never set.
	List bool
	// Derived fields are set by the merge rule itself (Apply) from a
	// transition or a create, never by a mutation: a dispute's result, who
	// reported it, who took a need up.
	Derived bool
}

// Spec is the schema of a kind.
type Spec struct {
	Kind   pb.Kind
	Name   string // "household", used in field paths and subjects
	Fields []Field
	byName map[string]*Field
}

// Field returns the named field, or nil.
func (s *Spec) Field(name string) *Field { return s.byName[name] }

// Dispute categories: the "five small" kinds (五小).
var DisputeCategories = []string{"problem", "quarrel", "dispute", "hazard", "case"}

// Event types, and how a service request was handled (directly, by proxy,
// or by appointment).
var (
	EventTypes   = []string{"meeting", "party_day", "service_request", "status_change", "other"}
	ServiceModes = []string{"direct", "proxy", "appointment"}
)

var specs = map[pb.Kind]*Spec{
	pb.Kind_KIND_HOUSEHOLD: {Name: "household", Fields: []Field{
		{Name: "grid_id", Format: ID, MaxBytes: 64, Required: true},
		{Name: "head", Format: Line, MaxBytes: 200, Required: true},
		{Name: "address", Format: Line, MaxBytes: 400},
		{Name: "phone", Format: Line, MaxBytes: 40},
		{Name: "members", Format: Int, Min: 0, Max: 99},
		{Name: "tags", Format: Line, MaxBytes: 400},
		{Name: "needs", Format: Text, MaxBytes: 4000},
		// The member the household is linked to: written by an
		// administrator's assignment and by the village secretary from a
		// phone; "" unlinks it. The server keeps its links table in step.
		{Name: "member_id", Format: ID, MaxBytes: 64},
	}},
	pb.Kind_KIND_VISIT: {Name: "visit", Fields: []Field{
		{Name: "household_id", Format: ID, MaxBytes: 64, Required: true, Fixed: true},
		{Name: "visited_on", Format: Date, Required: true},
		{Name: "met", Format: Line, MaxBytes: 400},
		{Name: "needs", Format: Text, MaxBytes: 4000},
		{Name: "help", Format: Text, MaxBytes: 4000},
		{Name: "follow_up", Format: Text, MaxBytes: 4000},
	}},
	pb.Kind_KIND_DISPUTE: {Name: "dispute", Fields: []Field{
		{Name: "village_id", Format: ID, MaxBytes: 64, Required: true, Fixed: true},
		{Name: "category", Format: Enum, Values: DisputeCategories, Required: true},
		{Name: "title", Format: Line, MaxBytes: 400, Required: true},
		{Name: "parties", Format: Text, MaxBytes: 2000},
		{Name: "agreement", Format: Text, MaxBytes: 4000},
		{Name: "outcome", Format: Text, MaxBytes: 4000},
		{Name: "status", Format: Enum, Values: DisputeStatuses},
		{Name: "mediators", Format: IDList, MaxBytes: 1000},
		{Name: "notes", Format: Text, MaxBytes: 4000, List: true},
		{Name: "sessions", Format: Text, MaxBytes: 4000, List: true},
		{Name: "result", Format: Enum, Values: DisputeResults, Derived: true},
		{Name: "level", Format: Enum, Values: DisputeLevels},
		{Name: "occurred_on", Format: Date},
		{Name: "agreed_on", Format: Date},
		{Name: "household_id", Format: ID, MaxBytes: 64, Fixed: true},
		{Name: "visit_id", Format: ID, MaxBytes: 64, Fixed: true},
		{Name: "reported_by", Format: ID, MaxBytes: 64, Derived: true},
	}},
	pb.Kind_KIND_EVENT: {Name: "event", Fields: []Field{
		{Name: "type", Format: Enum, Values: EventTypes, Required: true, Fixed: true},
		{Name: "village_id", Format: ID, MaxBytes: 64, Required: true, Fixed: true},
		{Name: "occurred_on", Format: Date, Required: true, Fixed: true},
		{Name: "subject", Format: Line, MaxBytes: 400, Required: true, Fixed: true},
		{Name: "detail", Format: Text, MaxBytes: 4000, Fixed: true},
		{Name: "service_mode", Format: Enum, Values: ServiceModes, Fixed: true},
		{Name: "prev_hash", Format: Hex64, Fixed: true},
		{Name: "hash", Format: Hex64, Required: true, Fixed: true},
	}},
	pb.Kind_KIND_NEED: {Name: "need", Fields: []Field{
		{Name: "village_id", Format: ID, MaxBytes: 64, Required: true, Fixed: true},
		{Name: "household_id", Format: ID, MaxBytes: 64, Fixed: true},
		{Name: "visit_id", Format: ID, MaxBytes: 64, Fixed: true},
		{Name: "category", Format: Enum, Values: NeedCategories, Required: true},
		{Name: "summary", Format: Line, MaxBytes: 400, Required: true},
		{Name: "detail", Format: Text, MaxBytes: 4000},
		{Name: "status", Format: Enum, Values: NeedStatuses},
		{Name: "help", Format: Text, MaxBytes: 4000},
		{Name: "resolution", Format: Text, MaxBytes: 4000},
		{Name: "referral_reason", Format: Text, MaxBytes: 2000},
		{Name: "taken_by", Format: ID, MaxBytes: 64, Derived: true},
		{Name: "notes", Format: Text, MaxBytes: 4000, List: true},
	}},
	pb.Kind_KIND_PROJECT: {Name: "project", Fields: []Field{
		{Name: "village_id", Format: ID, MaxBytes: 64, Required: true, Fixed: true},
		{Name: "title", Format: Line, MaxBytes: 400, Required: true},
		{Name: "detail", Format: Text, MaxBytes: 4000},
		{Name: "leader_id", Format: ID, MaxBytes: 64, Fixed: true},
		{Name: "households", Format: IDList, MaxBytes: 2000},
		{Name: "planned_on", Format: Date},
		{Name: "status", Format: Enum, Values: ProjectStatuses},
		{Name: "outcome", Format: Text, MaxBytes: 4000},
		{Name: "progress", Format: Text, MaxBytes: 4000, List: true},
	}},
}

func init() {
	for k, s := range specs {
		s.Kind = k
		s.byName = make(map[string]*Field, len(s.Fields))
		for i := range s.Fields {
			s.byName[s.Fields[i].Name] = &s.Fields[i]
		}
	}
}

// SpecOf returns the schema of kind k, or nil for an unknown kind.
func SpecOf(k pb.Kind) *Spec { return specs[k] }

// KindName returns "household", "visit", "dispute", "event", "need" or
// "project".
func KindName(k pb.Kind) string {
	if s := specs[k]; s != nil {
		return s.Name
	}
	return "unknown"
}

// ParseKind is the inverse of KindName.
func ParseKind(name string) (pb.Kind, bool) {
	for k, s := range specs {
		if s.Name == name {
			return k, true
		}
	}
	return pb.Kind_KIND_UNSPECIFIED, false
}

// KindNames lists the kind names, for error messages and help.
func KindNames() []string {
	return []string{"household", "visit", "dispute", "event", "need", "project"}
}

// CheckValue validates one value of field f of spec s. The error names the
// field and says what is allowed.
func (s *Spec) CheckValue(f *Field, v string) *Rejection {
	path := s.Name + "." + f.Name
	if !utf8.ValidString(v) {
		return reject(CodeInvalidField, path, "not valid UTF-8 text")
	}
	if f.MaxBytes > 0 && len(v) > f.MaxBytes {
		return reject(CodeInvalidField, path, "%d bytes is too long: at most %d bytes (UTF-8; a Chinese character takes 3)", len(v), f.MaxBytes)
	}
	switch f.Format {
	case Text, Line:
		for _, r := range v {
			if r < 0x20 && r != '\t' && (f.Format == Line || r != '\n') || r == 0x7f {
				return reject(CodeInvalidField, path, "control character %U not allowed", r)
			}
		}
	case ID:
		if v == "" && !f.Required {
			break // an optional id left empty (member_id "" unlinks)
		}
		if !IsRecordID(v) {
			return reject(CodeInvalidField, path, "malformed id %q: want a UUIDv7 or 1-64 of letters, digits and _:-", clip(v))
		}
	case Date:
		if _, err := time.Parse("2006-01-02", v); err != nil {
			return reject(CodeInvalidField, path, "%q is not a date: want YYYY-MM-DD", clip(v))
		}
	case Int:
		n, err := strconv.Atoi(v)
		if err != nil || n < f.Min || n > f.Max {
			return reject(CodeInvalidField, path, "%q: want a whole number from %d to %d", clip(v), f.Min, f.Max)
		}
	case Enum:
		if !contains(f.Values, v) {
			return reject(CodeInvalidField, path, "%q is not allowed: want one of %s", clip(v), strings.Join(f.Values, ", "))
		}
	case IDList:
		for _, id := range SplitList(v) {
			if !IsOrgID(id) {
				return reject(CodeInvalidField, path, "malformed id %q in list: want comma-separated ids of letters, digits and _:-", clip(id))
			}
		}
	case Hex64:
		if len(v) != 64 || strings.Trim(v, "0123456789abcdef") != "" {
			return reject(CodeInvalidField, path, "want 64 lower-case hex digits (a SHA-256)")
		}
	}
	return nil
}

// SplitList splits a comma-separated list, dropping blanks.
func SplitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func clip(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:80] + "…"
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// ValidateMutation checks a mutation's shape and every field it carries,
// without looking at any stored record. It is what both the device (before
// queueing) and the server (before applying) call first.
func ValidateMutation(m *pb.Mutation) *Rejection {
	if m.GetSeq() == 0 {
		return reject(CodeInvalidField, "mutation.seq", "must be 1 or more")
	}
	s := SpecOf(m.GetKind())
	if s == nil {
		return reject(CodeInvalidField, "mutation.kind", "%v is not a kind: want one of %s", m.GetKind(), strings.Join(KindNames(), ", "))
	}
	if !IsRecordID(m.GetRecordId()) {
		return reject(CodeInvalidField, "mutation.record_id", "malformed id %q: want a UUIDv7 (or an imported household's id)", clip(m.GetRecordId()))
	}
	if _, err := ParseHLC(m.GetHlc()); err != nil {
		return reject(CodeInvalidField, "mutation.hlc", "%v", err)
	}
	if m.GetOp() == pb.Op_OP_ATTACH {
		return validateAttach(s, m)
	}
	if m.GetAttachment() != nil {
		return reject(CodeInvalidField, "mutation.attachment", "only an attach carries an attachment")
	}
	if len(m.GetFields()) == 0 {
		return reject(CodeInvalidField, "mutation.fields", "no fields given")
	}
	if m.GetOp() == pb.Op_OP_VOID {
		return checkVoid(s, m)
	}
	if len(m.GetFields()) > len(s.Fields) {
		return reject(CodeInvalidField, "mutation.fields", "%d fields: %s has only %d", len(m.GetFields()), s.Name, len(s.Fields))
	}
	for _, name := range sortedKeys(m.GetFields()) {
		f := s.Field(name)
		if f == nil {
			return reject(CodeInvalidField, s.Name+"."+clip(name), "unknown field: %s has %s", s.Name, fieldNames(s))
		}
		if r := s.CheckValue(f, m.GetFields()[name]); r != nil {
			return r
		}
	}
	for _, name := range sortedKeys(m.GetFields()) {
		if s.Field(name).Derived {
			return reject(CodeInvalidField, s.Name+"."+name, "set by fieldsync itself (from a status change or the creation), never by a write")
		}
	}
	machine := MachineOf(m.GetKind())
	switch m.GetOp() {
	case pb.Op_OP_CREATE:
		if m.GetKind() != pb.Kind_KIND_HOUSEHOLD && !IsUUIDv7(m.GetRecordId()) {
			return reject(CodeInvalidField, "mutation.record_id", "malformed id %q: a new record's id must be a UUIDv7 made on the device", clip(m.GetRecordId()))
		}
		for _, f := range s.Fields {
			if f.Required && m.GetFields()[f.Name] == "" {
				return reject(CodeInvalidField, s.Name+"."+f.Name, "required")
			}
			if _, ok := m.GetFields()[f.Name]; ok && f.List {
				return reject(CodeInvalidField, s.Name+"."+f.Name, "a list field: add to it with an append, not on create")
			}
		}
		if st, ok := m.GetFields()["status"]; ok && machine != nil && st != machine.Start {
			return reject(CodeInvalidTransition, s.Name+".status", "a new %s starts %s, not %q", s.Name, machine.Start, clip(st))
		}
		if m.GetKind() == pb.Kind_KIND_EVENT {
			if want := EventHash(m.GetFields()); m.GetFields()["hash"] != want {
				return reject(CodeInvalidField, "event.hash", "does not match the event's content: the event was altered after it was chained")
			}
		}
	case pb.Op_OP_UPDATE:
		if m.GetKind() == pb.Kind_KIND_EVENT {
			return reject(CodeInvalidField, "mutation.op", "events are append-only: they cannot be updated (void one with a reason instead)")
		}
		for _, name := range sortedKeys(m.GetFields()) {
			f := s.Field(name)
			switch {
			case f.Fixed:
				return reject(CodeInvalidField, s.Name+"."+name, "set when the %s is created and never changed", s.Name)
			case f.List:
				return reject(CodeInvalidField, s.Name+"."+name, "a list field: add to it with an append")
			case machine != nil && name == "status":
				return reject(CodeInvalidField, s.Name+".status", "change it with a status transition, not an update")
			}
		}
		if r := checkBaseHLCs(m); r != nil {
			return r
		}
	case pb.Op_OP_TRANSITION:
		if machine == nil {
			return reject(CodeInvalidField, "mutation.op", "a %s has no status to transition: only %s do", s.Name, strings.Join(machineKinds(), ", "))
		}
		if r := machine.checkMove(m); r != nil {
			return r
		}
	case pb.Op_OP_APPEND:
		if len(m.GetFields()) != 1 {
			return reject(CodeInvalidField, "mutation.fields", "an append carries exactly one field")
		}
		for name := range m.GetFields() {
			if !s.Field(name).List {
				return reject(CodeInvalidField, s.Name+"."+name, "not a list field: %s appends only to %s", s.Name, listNames(s))
			}
		}
	case pb.Op_OP_SETTLE:
		if len(m.GetFields()) != 1 {
			return reject(CodeInvalidField, "mutation.fields", "a settle carries exactly one field: the value chosen for the field whose conflicts it settles")
		}
		for name := range m.GetFields() {
			if f := s.Field(name); f.Fixed || f.List {
				return reject(CodeInvalidField, s.Name+"."+name, "never in conflict: fixed and list fields do not conflict")
			}
		}
		if r := checkBaseHLCs(m); r != nil {
			return r
		}
	default:
		return reject(CodeInvalidField, "mutation.op", "%v is not an operation: want create, update, transition, append, void, settle or attach", m.GetOp())
	}
	return nil
}

// voidReason is the one field of a void.
var voidReason = &Field{Name: "reason", Format: Text, MaxBytes: 1000, Required: true}

func checkVoid(s *Spec, m *pb.Mutation) *Rejection {
	if !Voidable(m.GetKind()) {
		return reject(CodeInvalidField, "mutation.op", "a %s cannot be voided: only %s can (a household leaves through an import, a dispute is withdrawn)", s.Name, strings.Join(voidableNames(), ", "))
	}
	reason, ok := m.GetFields()["reason"]
	if !ok || len(m.GetFields()) != 1 || strings.TrimSpace(reason) == "" {
		return reject(CodeInvalidField, s.Name+".void.reason", "a void carries exactly one field, reason: why the record is void (a duplicate, a mistake)")
	}
	vs := &Spec{Name: s.Name + ".void"}
	return vs.CheckValue(voidReason, reason)
}

func checkBaseHLCs(m *pb.Mutation) *Rejection {
	for _, name := range sortedKeys(m.GetBaseHlc()) {
		if h := m.GetBaseHlc()[name]; h != "" {
			if _, err := ParseHLC(h); err != nil {
				return reject(CodeInvalidField, "mutation.base_hlc."+clip(name), "%v", err)
			}
		}
	}
	return nil
}

// voidable lists the kinds a person may void from a device.
var voidable = []pb.Kind{pb.Kind_KIND_VISIT, pb.Kind_KIND_EVENT, pb.Kind_KIND_NEED, pb.Kind_KIND_PROJECT}

// Voidable says whether records of kind k can be voided from a device.
func Voidable(k pb.Kind) bool {
	for _, v := range voidable {
		if v == k {
			return true
		}
	}
	return false
}

func voidableNames() []string {
	var out []string
	for _, k := range voidable {
		out = append(out, KindName(k))
	}
	return out
}

func machineKinds() []string {
	var out []string
	for _, name := range KindNames() {
		if k, _ := ParseKind(name); machines[k] != nil {
			out = append(out, name)
		}
	}
	return out
}

func fieldNames(s *Spec) string {
	names := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

func listNames(s *Spec) string {
	var names []string
	for _, f := range s.Fields {
		if f.List {
			names = append(names, f.Name)
		}
	}
	if names == nil {
		return "nothing"
	}
	return strings.Join(names, ", ")
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Describe renders a kind's fields, for help text.
func Describe(k pb.Kind) string {
	s := SpecOf(k)
	var b strings.Builder
	for _, f := range s.Fields {
		fmt.Fprintf(&b, "  %-13s", f.Name)
		switch f.Format {
		case Enum:
			fmt.Fprintf(&b, " one of %s", strings.Join(f.Values, ", "))
		case Date:
			b.WriteString(" YYYY-MM-DD")
		case Int:
			fmt.Fprintf(&b, " %d-%d", f.Min, f.Max)
		case ID:
			b.WriteString(" id")
		default:
			if f.MaxBytes > 0 {
				fmt.Fprintf(&b, " text, at most %d bytes", f.MaxBytes)
			}
		}
		if f.Required {
			b.WriteString(" (required)")
		}
		b.WriteString("\n")
	}
	return b.String()
}
