package domain

import (
	"strings"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Rule is one row of the permission table: what a role may do to a kind.
// Where a row needs the record in scope (a linked household, a case the
// user mediates), the server checks that against the org (server/apply.go).
type Rule struct {
	Create, Transition, Append bool
	// Fields the role may update; nil means none.
	Update []string
}

// The permission table: who reads and who writes what. This comment is the
// table a reader checks; the map below is the write side of it, checked by
// CheckWrite on the device and again on the server, and ScopeBuckets
// (buckets.go) is the read side. On top of the table the server checks
// that the record is in the writer's scope (the last column); a write that
// fails that check is rejected with permission_denied, naming the field.
//
// Write (role x kind), for a record in scope:
//
//	role       kind       create  update (fields)                                            transition, append  in scope when
//	member     household  -       phone, members, tags, needs                                -                   the household is linked to the member
//	member     visit      yes     visited_on, met, needs, help, follow_up (own visits only)  -                   its household is linked to the member
//	member     event      yes     - (events are append-only)                                 -                   filed in the member's village
//	mediator   dispute    yes     title, category, parties, agreement, outcome, mediators   yes                 create: in the mediator's village; else the case's mediators name the user
//	mediator   event      yes     -                                                          -                   filed in the mediator's village
//	secretary  household  -       head, address, phone, members, tags, needs                 -                   the household lies in the secretary's village (town secretary: town)
//	secretary  event      yes     -                                                          -                   filed in the secretary's village (town secretary: any village of the town)
//	hq         any        -       -                                                          -                   (reads only)
//
// Any role x kind not listed may not write at all. Households are created
// only by an administrator's import; nobody moves one to another grid from
// a device. A dispute's mediators must name at least one mediator, each a
// user with role mediator. Administrators (AdminService, not a device)
// import the org, link households to members, issue enrollment codes and
// revoke devices.
//
// Read (the user's scope, computed on the server at every sync from the
// device's credential and the org as it is then):
//
//	role               unit     buckets                         reads
//	member             grid     h:<each linked household>, u:   the linked households and every visit to them (any author); own events
//	mediator           village  d:<each case naming them>, u:   the disputes whose mediators name them; own events
//	village secretary  village  v:<village>, u:                 every household, visit, dispute and event of the village
//	town secretary     town     t:<town>, u:                    every household, visit, dispute and event of the town
//	hq                 -        all                             everything
//
// A record lies in a village and a town: a household where its grid is, a
// visit where its household is, a dispute or an event in its village_id.
// When the org changes (a household reassigned, a mediator added or
// removed, a member moved) the scope follows at the next sync: buckets that
// enter start at cursor 0, buckets that leave are purged from the device,
// and queued writes that lost their scope come back rejected.
var permissions = map[pb.Role]map[pb.Kind]Rule{
	pb.Role_ROLE_MEMBER: {
		pb.Kind_KIND_HOUSEHOLD: {Update: []string{"phone", "members", "tags", "needs"}},
		pb.Kind_KIND_VISIT:     {Create: true, Update: []string{"visited_on", "met", "needs", "help", "follow_up"}},
		pb.Kind_KIND_EVENT:     {Create: true},
	},
	pb.Role_ROLE_MEDIATOR: {
		pb.Kind_KIND_DISPUTE: {Create: true, Transition: true, Append: true,
			Update: []string{"title", "category", "parties", "agreement", "outcome", "mediators"}},
		pb.Kind_KIND_EVENT: {Create: true},
	},
	pb.Role_ROLE_SECRETARY: {
		pb.Kind_KIND_HOUSEHOLD: {Update: []string{"head", "address", "phone", "members", "tags", "needs"}},
		pb.Kind_KIND_EVENT:     {Create: true},
	},
}

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
	case pb.Op_OP_UPDATE:
		for _, name := range sortedKeys(m.GetFields()) {
			if !contains(rule.Update, name) {
				may := "no fields"
				if len(rule.Update) > 0 {
					may = strings.Join(rule.Update, ", ")
				}
				return reject(CodePermissionDenied, kind+"."+name, "a %s may not change it: may change %s", RoleName(role), may)
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
	default:
		return reject(CodeInvalidField, "mutation.op", "%v is not an operation", m.GetOp())
	}
	return nil
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
