package domain

import (
	"strings"

	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// Rule is one row of the permission table: what a role may do to a kind.
// Where a row needs the record in scope (a linked household, a case the
// user mediates), the server checks that against the user's buckets.
type Rule struct {
	Create, Transition, Append bool
	// Fields the role may update; nil means none.
	Update []string
}

// The permission table. Reads follow scope (see buckets.go); HQ reads
// everything and writes nothing.
//
//	role       kind       create  update                       transition/append
//	member     household  -       phone, members, tags, needs  -
//	member     visit      yes     met, needs, help, follow_up, visited_on (own visits)
//	member     event      yes     - (append-only)
//	mediator   dispute    yes     title, category, parties, agreement, outcome, mediators  yes
//	mediator   event      yes
//	secretary  household  -       head, address, phone, members, tags, needs  -
//	secretary  event      yes
//	hq         -          -       -                             -
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
