package domain

import (
	"sort"
	"strings"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Machine is the status machine of a kind that has one (dispute, need,
// project): the statuses, where a new record starts, the moves allowed
// from each status, and the fields a move to a status may (Extra) or must
// (Require) carry besides "status". Transitions follow the same rules for
// every such kind: a move from a status the record no longer has is a
// conflict kept for a person to settle, never an overwrite; the same move
// made twice is one move.
type Machine struct {
	Kind     pb.Kind
	Statuses []string
	Start    string
	Next     map[string][]string
	Extra    map[string][]string
	Require  map[string][]string
}

// Dispute statuses. A case opens, goes to mediation, ends in an agreement
// or a failure (a failure may be referred to the courts or the police), and
// is closed; it may be withdrawn before an outcome. Closing keeps the
// outcome: it is kept apart in the derived field "result".
var DisputeStatuses = []string{"open", "mediating", "agreed", "failed", "referred", "withdrawn", "closed"}

// DisputeResults are the outcomes a dispute's "result" keeps when it is
// closed: the status it reached before closing.
var DisputeResults = []string{"agreed", "failed", "referred", "withdrawn"}

// DisputeLevels is where a case was settled: in the village (小事不出村), at
// the town, or referred out (courts, police, another body).
var DisputeLevels = []string{"village", "town", "referred_out"}

// Need statuses: raised by a member or a secretary, taken up by someone
// (who: "taken_by", what help: "help"), resolved, or referred to the town
// with a reason; a referred need is taken up or resolved there.
var NeedStatuses = []string{"raised", "taken", "referred", "resolved"}

// NeedCategories are the kinds of difficulty a need records.
var NeedCategories = []string{"livelihood", "medical", "housing", "employment", "education", "elderly", "infrastructure", "other"}

// Project statuses: planned, under way, completed (with an outcome), or
// abandoned.
var ProjectStatuses = []string{"planned", "in_progress", "completed", "abandoned"}

var machines = map[pb.Kind]*Machine{
	pb.Kind_KIND_DISPUTE: {
		Statuses: DisputeStatuses, Start: "open",
		Next: map[string][]string{
			"open":      {"mediating", "withdrawn"},
			"mediating": {"agreed", "failed", "withdrawn"},
			"agreed":    {"closed"},
			"failed":    {"referred", "closed"},
			"referred":  {"closed"},
			"withdrawn": {"closed"},
			"closed":    nil,
		},
		Extra: map[string][]string{
			"agreed":    {"level", "agreed_on", "agreement", "outcome"},
			"failed":    {"level", "outcome"},
			"referred":  {"outcome"},
			"withdrawn": {"level", "outcome"},
			"closed":    {"outcome"},
		},
	},
	pb.Kind_KIND_NEED: {
		Statuses: NeedStatuses, Start: "raised",
		Next: map[string][]string{
			"raised":   {"taken", "referred", "resolved"},
			"taken":    {"referred", "resolved"},
			"referred": {"taken", "resolved"},
			"resolved": nil,
		},
		Extra: map[string][]string{
			"taken":    {"help"},
			"referred": {"referral_reason"},
			"resolved": {"resolution", "help"},
		},
		Require: map[string][]string{"referred": {"referral_reason"}},
	},
	pb.Kind_KIND_PROJECT: {
		Statuses: ProjectStatuses, Start: "planned",
		Next: map[string][]string{
			"planned":     {"in_progress", "completed", "abandoned"},
			"in_progress": {"completed", "abandoned"},
			"completed":   nil,
			"abandoned":   nil,
		},
		Extra: map[string][]string{
			"completed": {"outcome"},
			"abandoned": {"outcome"},
		},
		Require: map[string][]string{"completed": {"outcome"}},
	},
}

func init() {
	for k, m := range machines {
		m.Kind = k
	}
}

// MachineOf returns the status machine of kind k, or nil if it has none.
func MachineOf(k pb.Kind) *Machine { return machines[k] }

// AllowedFrom lists the statuses a dispute in status s may move to.
func AllowedFrom(s string) []string { return machines[pb.Kind_KIND_DISPUTE].Next[s] }

// CheckTransition says whether from -> to is an edge of the dispute
// state machine.
func CheckTransition(from, to string) *Rejection {
	return machines[pb.Kind_KIND_DISPUTE].Check(from, to)
}

// Check says whether from -> to is an edge of the machine.
func (m *Machine) Check(from, to string) *Rejection {
	path := KindName(m.Kind) + ".status"
	if _, ok := m.Next[from]; !ok {
		return reject(CodeInvalidTransition, path, "from status %q is not a status: want one of %s", clip(from), strings.Join(m.Statuses, ", "))
	}
	if !contains(m.Statuses, to) {
		return reject(CodeInvalidField, path, "%q is not a status: want one of %s", clip(to), strings.Join(m.Statuses, ", "))
	}
	if !contains(m.Next[from], to) {
		allowed := m.Next[from]
		if len(allowed) == 0 {
			return reject(CodeInvalidTransition, path, "%s -> %s not allowed: %s is final", from, to, from)
		}
		sorted := append([]string(nil), allowed...)
		sort.Strings(sorted)
		return reject(CodeInvalidTransition, path, "%s -> %s not allowed: from %s a %s may move to %s", from, to, from, KindName(m.Kind), strings.Join(sorted, ", "))
	}
	return nil
}

// checkMove checks a transition mutation's fields against the machine:
// "status" and only the fields a move to that status may carry, with
// those it must carry.
func (m *Machine) checkMove(mu *pb.Mutation) *Rejection {
	kind := KindName(m.Kind)
	to, ok := mu.GetFields()["status"]
	if !ok {
		return reject(CodeInvalidField, kind+".status", "a transition carries the status it moves to")
	}
	if r := m.Check(mu.GetFromStatus(), to); r != nil {
		return r
	}
	for _, name := range sortedKeys(mu.GetFields()) {
		if name != "status" && !contains(m.Extra[to], name) {
			may := "nothing but status"
			if len(m.Extra[to]) > 0 {
				may = "status and " + strings.Join(m.Extra[to], ", ")
			}
			return reject(CodeInvalidField, kind+"."+name, "a move to %s carries %s", to, may)
		}
	}
	for _, name := range m.Require[to] {
		if mu.GetFields()[name] == "" {
			return reject(CodeInvalidField, kind+"."+name, "required when a %s moves to %s", kind, to)
		}
	}
	return nil
}
