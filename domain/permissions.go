package domain

import (
	"strings"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Rule is one row of the permission table: what a role may do to a kind.
// Where a row needs the record in scope (a linked household, a case the
// user mediates), the server checks that against the org (server/apply.go).
type Rule struct {
	Create, Transition, Append, Void bool
	// Attach: the role may attach files (photos, scans) to the kind's
	// records in its scope (a visit: only its author).
	Attach bool
	// Fields the role may update (and settle the conflicts of); nil means
	// none.
	Update []string
	// CreateFields, when set, are the only fields the role may give on a
	// create (a member reporting a case names no mediators).
	CreateFields []string
}

// The permission table: who reads and who writes what. This comment is the
// table a reader checks; the map below is the write side of it, checked by
// CheckWrite on the device and again on the server, and ScopeBuckets
// (buckets.go) is the read side. On top of the table the server checks
// that the record is in the writer's scope (the last column); a write that
// fails that check is rejected with permission_denied, naming the field.
// Settling a field's conflicts needs the right to update that field (for
// "status", or a field a status move carries: to transition).
//
// Write (role x kind), for a record in scope:
//
//	role       kind       create  update (fields)                                              transition  append  void  in scope when
//	member     household  -       phone, members, tags, needs                                  -           -       -     the household is linked to the member
//	member     visit      yes     visited_on, met, needs, help, follow_up (own visits only)    -           -       own   its household is linked to the member
//	member     event      yes     - (events are append-only)                                   -           -       own   filed in the member's village
//	member     dispute    report  -                                                            -           -       -     filed in the member's village (a report: no mediators named; the village's mediators get it)
//	member     need       yes     summary, detail (own needs)                                  -           yes     own   the member's village; with a household, one linked to the member
//	member     project    yes     title, detail, households, planned_on, outcome (led by them) yes         yes     own   the member's village; update etc. when the member leads it
//	mediator   dispute    yes     title, category, parties, agreement, outcome, mediators,     yes         yes     -     create: in the mediator's village; else the case's mediators name the user
//	                              level, occurred_on, agreed_on
//	mediator   event      yes     -                                                            -           -       own   filed in the mediator's village
//	secretary  household  -       head, address, phone, members, tags, needs, member_id        -           -       -     the household lies in the secretary's village (town secretary: town)
//	secretary  visit      -       -                                                            -           -       yes   the visit lies in the secretary's village (town: town)
//	secretary  event      yes     -                                                            -           -       yes   filed in the secretary's village (town secretary: any village of the town)
//	secretary  need       yes     category, summary, detail, help, resolution                  yes         yes     yes   the need lies in the secretary's village (town: town)
//	secretary  project    yes     title, detail, households, planned_on, outcome               yes         yes     yes   the project lies in the secretary's village (town: town)
//	hq         any        -       -                                                            -           -       -     (reads only)
//
// Attach (files: photos, scans; OP_ATTACH), for a record in scope as for
// an update: member on visit (own visits only), need and project;
// mediator on dispute; secretary on need and project. Nobody else.
//
// Any role x kind not listed may not write at all. "own": the author voids
// their own record; a secretary voids any of those kinds in their unit.
// Households are created only by an administrator's import and leave
// through one (retired); nobody moves one to another grid from a device.
// A secretary's member_id links the household to a member of the same
// village ("" unlinks it): the server relinks and audits it. A dispute's
// mediators must name at least one mediator, each a user with role
// mediator (a member's report is given the village's mediators).
// Administrators (AdminService, not a device) import the org, link
// households to members, issue enrollment codes and revoke devices.
//
// Read (the user's scope, computed on the server at every sync from the
// device's credential and the org as it is then):
//
//	role               unit     buckets                         reads
//	member             grid     h:<each linked household>, u:   the linked households, every visit and need of them (any author); own events, reports, needs without a household, projects they lead or made
//	mediator           village  d:<each case naming them>, u:   the disputes whose mediators name them; own events
//	village secretary  village  v:<village>, u:                 every record of the village
//	town secretary     town     t:<town>, u:                    every record of the town
//	hq                 -        all                             everything
//
// A record lies in a village and a town: a household where its grid is, a
// visit where its household is, a dispute, event, need or project in its
// village_id. When the org changes (a household reassigned, a mediator
// added or removed, a member moved) the scope follows at the next sync:
// buckets that enter start at cursor 0, buckets that leave are purged from
// the device, and queued writes that lost their scope come back rejected.
var permissions = map[pb.Role]map[pb.Kind]Rule{
	pb.Role_ROLE_MEMBER: {
		pb.Kind_KIND_HOUSEHOLD: {Update: []string{"phone", "members", "tags", "needs"}},
		pb.Kind_KIND_VISIT:     {Create: true, Void: true, Attach: true, Update: []string{"visited_on", "met", "needs", "help", "follow_up"}},
		pb.Kind_KIND_EVENT:     {Create: true, Void: true},
		pb.Kind_KIND_DISPUTE: {Create: true,
			CreateFields: []string{"village_id", "category", "title", "parties", "occurred_on", "household_id", "visit_id", "status"}},
		pb.Kind_KIND_NEED: {Create: true, Append: true, Void: true, Attach: true, Update: []string{"summary", "detail"}},
		pb.Kind_KIND_PROJECT: {Create: true, Transition: true, Append: true, Void: true, Attach: true,
			Update: []string{"title", "detail", "households", "planned_on", "outcome"}},
	},
	pb.Role_ROLE_MEDIATOR: {
		pb.Kind_KIND_DISPUTE: {Create: true, Transition: true, Append: true, Attach: true,
			Update: []string{"title", "category", "parties", "agreement", "outcome", "mediators", "level", "occurred_on", "agreed_on"}},
		pb.Kind_KIND_EVENT: {Create: true, Void: true},
	},
	pb.Role_ROLE_SECRETARY: {
		pb.Kind_KIND_HOUSEHOLD: {Update: []string{"head", "address", "phone", "members", "tags", "needs", "member_id"}},
		pb.Kind_KIND_VISIT:     {Void: true},
		pb.Kind_KIND_EVENT:     {Create: true, Void: true},
		pb.Kind_KIND_NEED: {Create: true, Transition: true, Append: true, Void: true, Attach: true,
			Update: []string{"category", "summary", "detail", "help", "resolution"}},
		pb.Kind_KIND_PROJECT: {Create: true, Transition: true, Append: true, Void: true, Attach: true,
			Update: []string{"title", "detail", "households", "planned_on", "outcome"}},
	},
}

// RuleOf returns the row of the permission table for role and kind (the
// zero Rule, which allows nothing, if there is none).
func RuleOf(role pb.Role, k pb.Kind) Rule { return permissions[role][k] }

// CheckWrite says whether role may make mutation m at all, by the table.
// Scope (which records) is the server's to check on top.
func CheckWrite(role pb.Role, m *pb.Mutation) *Rejection {
	kind := KindName(m.GetKind())
	rule, ok := permissions[role][m.GetKind()]
	if !ok {
		return reject(CodePermissionDenied, kind, "a %s may not write %s records", RoleName(role), kind)
	}
	switch m.GetOp() {
	case pb.Op_OP_CREATE:
		if !rule.Create {
			return reject(CodePermissionDenied, kind, "a %s may not create %s records", RoleName(role), kind)
		}
		if rule.CreateFields != nil {
			for _, name := range sortedKeys(m.GetFields()) {
				if !contains(rule.CreateFields, name) {
					return reject(CodePermissionDenied, kind+"."+name, "a %s may not give it on a new %s: may give %s", RoleName(role), kind, strings.Join(rule.CreateFields, ", "))
				}
			}
		}
	case pb.Op_OP_UPDATE:
		for _, name := range sortedKeys(m.GetFields()) {
			if !contains(rule.Update, name) {
				return reject(CodePermissionDenied, kind+"."+name, "a %s may not change it: may change %s", RoleName(role), mayChange(rule))
			}
		}
	case pb.Op_OP_TRANSITION:
		if !rule.Transition {
			return reject(CodePermissionDenied, kind+".status", "a %s may not change a %s's status", RoleName(role), kind)
		}
	case pb.Op_OP_APPEND:
		if !rule.Append {
			return reject(CodePermissionDenied, kind, "a %s may not add to a %s", RoleName(role), kind)
		}
	case pb.Op_OP_VOID:
		if !rule.Void {
			return reject(CodePermissionDenied, kind, "a %s may not void a %s", RoleName(role), kind)
		}
	case pb.Op_OP_ATTACH:
		if !rule.Attach {
			return reject(CodePermissionDenied, kind+".attachments", "a %s may not attach files to a %s", RoleName(role), kind)
		}
	case pb.Op_OP_SETTLE:
		for name := range m.GetFields() {
			if name == "status" && MachineOf(m.GetKind()) != nil {
				if !rule.Transition {
					return reject(CodePermissionDenied, kind+".status", "a %s may not settle a %s's status: it may not change it", RoleName(role), kind)
				}
			} else if !contains(rule.Update, name) && !(rule.Transition && carriedByMove(m.GetKind(), name)) {
				return reject(CodePermissionDenied, kind+"."+name, "a %s may not settle it: may change (and settle) %s", RoleName(role), mayChange(rule))
			}
		}
	default:
		return reject(CodeInvalidField, "mutation.op", "%v is not an operation", m.GetOp())
	}
	return nil
}

// carriedByMove says whether field is carried by some status move of kind
// k: a losing move leaves it in conflict, to be settled by those who move
// the status.
func carriedByMove(k pb.Kind, field string) bool {
	if m := MachineOf(k); m != nil {
		for _, fields := range m.Extra {
			if contains(fields, field) {
				return true
			}
		}
	}
	return false
}

func mayChange(rule Rule) string {
	if len(rule.Update) == 0 {
		return "no fields"
	}
	return strings.Join(rule.Update, ", ")
}

// RoleName returns "member", "mediator", "secretary" or "hq".
func RoleName(r pb.Role) string {
	switch r {
	case pb.Role_ROLE_MEMBER:
		return "member"
	case pb.Role_ROLE_MEDIATOR:
		return "mediator"
	case pb.Role_ROLE_SECRETARY:
		return "secretary"
	case pb.Role_ROLE_HQ:
		return "hq"
	}
	return "unknown"
}

// ParseRole is the inverse of RoleName.
func ParseRole(s string) (pb.Role, bool) {
	for _, r := range []pb.Role{pb.Role_ROLE_MEMBER, pb.Role_ROLE_MEDIATOR, pb.Role_ROLE_SECRETARY, pb.Role_ROLE_HQ} {
		if RoleName(r) == s {
			return r, true
		}
	}
	return pb.Role_ROLE_UNSPECIFIED, false
}
