package domain_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// wantRule is one row of the table in permissions.go's doc comment.
type wantRule struct {
	create, transition, append bool
	update                     []string
}

// wantPermissions is that table, written out independently of the code.
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
var wantPermissions = map[pb.Role]map[pb.Kind]wantRule{
	pb.Role_ROLE_MEMBER: {
		pb.Kind_KIND_HOUSEHOLD: {update: []string{"phone", "members", "tags", "needs"}},
		pb.Kind_KIND_VISIT:     {create: true, update: []string{"met", "needs", "help", "follow_up", "visited_on"}},
		pb.Kind_KIND_EVENT:     {create: true},
	},
	pb.Role_ROLE_MEDIATOR: {
		pb.Kind_KIND_DISPUTE: {create: true, transition: true, append: true,
			update: []string{"title", "category", "parties", "agreement", "outcome", "mediators"}},
		pb.Kind_KIND_EVENT: {create: true},
	},
	pb.Role_ROLE_SECRETARY: {
		pb.Kind_KIND_HOUSEHOLD: {update: []string{"head", "address", "phone", "members", "tags", "needs"}},
		pb.Kind_KIND_EVENT:     {create: true},
	},
	pb.Role_ROLE_HQ: {},
}

var allKinds = []pb.Kind{pb.Kind_KIND_HOUSEHOLD, pb.Kind_KIND_VISIT, pb.Kind_KIND_DISPUTE, pb.Kind_KIND_EVENT}

func TestCheckWriteTable(t *testing.T) {
	at := hlc(wall0, 0, "dev")
	roles := []pb.Role{pb.Role_ROLE_MEMBER, pb.Role_ROLE_MEDIATOR, pb.Role_ROLE_SECRETARY, pb.Role_ROLE_HQ, pb.Role_ROLE_UNSPECIFIED}
	type check struct {
		op        string
		m         *pb.Mutation
		allowed   bool
		wantField string // on a denial
	}
	for _, role := range roles {
		for _, kind := range allKinds {
			rule, hasRule := wantPermissions[role][kind]
			kn := domain.KindName(kind)
			denied := func(f string) string {
				if !hasRule {
					return kn // no row at all: the whole kind is refused
				}
				return f
			}
			checks := []check{
				{"create", mutation(kind, pb.Op_OP_CREATE, visitID, at, map[string]string{"x": "y"}), rule.create, denied(kn)},
				{"transition", mutation(kind, pb.Op_OP_TRANSITION, visitID, at, map[string]string{"status": "mediating"}), rule.transition, denied(kn + ".status")},
				{"append", mutation(kind, pb.Op_OP_APPEND, visitID, at, map[string]string{"notes": "n"}), rule.append, denied(kn)},
			}
			for _, f := range domain.SpecOf(kind).Fields {
				checks = append(checks, check{"update " + f.Name,
					mutation(kind, pb.Op_OP_UPDATE, visitID, at, map[string]string{f.Name: "v"}),
					slices.Contains(rule.update, f.Name), denied(kn + "." + f.Name)})
			}
			for _, c := range checks {
				t.Run(domain.RoleName(role)+"/"+kn+"/"+c.op, func(t *testing.T) {
					got := domain.CheckWrite(role, c.m)
					if c.allowed {
						if got != nil {
							t.Fatalf("CheckWrite() = %v, want allowed", got)
						}
						return
					}
					wantRejection(t, got, domain.CodePermissionDenied, c.wantField)
					if !strings.Contains(got.Reason, "a "+domain.RoleName(role)+" may not") {
						t.Fatalf("reason %q, want it to name the role %s", got.Reason, domain.RoleName(role))
					}
				})
			}
		}
	}
}

func TestCheckWriteUpdateReason(t *testing.T) {
	at := hlc(wall0, 0, "dev")
	tests := []struct {
		name   string
		role   pb.Role
		fields map[string]string
		field  string
		reason string
	}{
		{"member may change some household fields", pb.Role_ROLE_MEMBER, map[string]string{"head": "x"},
			"household.head", "a member may not change it: may change phone, members, tags, needs"},
		{"one refused field refuses the whole update", pb.Role_ROLE_MEMBER, map[string]string{"phone": "1", "address": "x"},
			"household.address", "may change phone, members, tags, needs"},
		{"secretary may not move a household to another grid", pb.Role_ROLE_SECRETARY, map[string]string{"grid_id": "g-02"},
			"household.grid_id", "may change head, address, phone, members, tags, needs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := domain.CheckWrite(tt.role, mutation(pb.Kind_KIND_HOUSEHOLD, pb.Op_OP_UPDATE, householdID, at, tt.fields))
			wantRejection(t, got, domain.CodePermissionDenied, tt.field)
			if !strings.Contains(got.Reason, tt.reason) {
				t.Fatalf("reason %q, want it to contain %q", got.Reason, tt.reason)
			}
		})
	}
	t.Run("member event update lists no fields", func(t *testing.T) {
		got := domain.CheckWrite(pb.Role_ROLE_MEMBER, mutation(pb.Kind_KIND_EVENT, pb.Op_OP_UPDATE, eventID, at, map[string]string{"detail": "x"}))
		wantRejection(t, got, domain.CodePermissionDenied, "event.detail")
		if !strings.Contains(got.Reason, "may change no fields") {
			t.Fatalf("reason %q, want it to say no fields", got.Reason)
		}
	})
}

func TestRoleNames(t *testing.T) {
	for _, name := range []string{"member", "mediator", "secretary", "hq"} {
		r, ok := domain.ParseRole(name)
		if !ok || domain.RoleName(r) != name {
			t.Fatalf("ParseRole(%q) = %v, %v; RoleName back = %q", name, r, ok, domain.RoleName(r))
		}
	}
	if r, ok := domain.ParseRole("unknown"); ok || r != pb.Role_ROLE_UNSPECIFIED {
		t.Fatalf(`ParseRole("unknown") = %v, %v; want unspecified, false`, r, ok)
	}
}
