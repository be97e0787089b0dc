package server_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/fieldsync/fieldsync/domain"
	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
)

// TestSecretaryRelinksAHouseholdAndItIsAudited: the village secretary's
// household.member_id moves the link (the links table follows the
// record), is audited with the secretary's name, and is refused for a
// member of another village, for a mediator, from a secretary of another
// village and from a member; "" unlinks. An administrator's assignment
// writes member_id into the record too.
func TestSecretaryRelinksAHouseholdAndItIsAudited(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	extraPeople(t, e)
	sec, sec2, member := newRawPhone(t, e, testenv.Secretary), newRawPhone(t, e, "U-sec2"), newRawPhone(t, e, testenv.Member)
	const H = pb.Kind_KIND_HOUSEHOLD
	link := func(v string) *pb.Mutation { // made with the current value in view
		m := op("H001", H, pb.Op_OP_UPDATE, map[string]string{"member_id": v})
		m.BaseHlc = map[string]string{"member_id": stored(t, e, "H001").GetFields()["member_id"].GetHlc()}
		return m
	}

	// The admin's import wrote the link into the record.
	if got := stored(t, e, "H001").GetFields()["member_id"].GetValue(); got != testenv.Member {
		t.Fatalf("imported H001 has member_id %q, want %s", got, testenv.Member)
	}

	sec.mustRefuse("a member of another village", link(testenv.Outsider), domain.CodeInvalidField, "household.member_id")
	sec.mustRefuse("a mediator", link(testenv.Mediator), domain.CodeInvalidField, "household.member_id")
	sec.mustRefuse("an unknown user", link("U-nobody"), domain.CodeInvalidField, "household.member_id")
	sec2.mustRefuse("the secretary of another village", link(testenv.Member2), domain.CodePermissionDenied, "household")
	member.mustRefuse("a member", link(testenv.Member2), domain.CodePermissionDenied, "household.member_id")
	if linked := linkedTo(t, e, testenv.Member2); slices.Contains(linked, "H001") {
		t.Fatal("a refused write moved the link")
	}

	sec.mustApply("relink H001 to member2", link(testenv.Member2))
	if got := linkedTo(t, e, testenv.Member2); !slices.Contains(got, "H001") {
		t.Fatalf("member2 links %v, want H001", got)
	}
	if got := linkedTo(t, e, testenv.Member); slices.Contains(got, "H001") {
		t.Fatalf("member1 still links %v", got)
	}
	// Member1's phone has lost the household, member2's has it.
	if member.read("H001") != nil {
		t.Error("member1 still reads H001")
	}
	if newRawPhone(t, e, testenv.Member2).read("H001") == nil {
		t.Error("member2 does not read H001")
	}
	// Member1 may no longer write it.
	member.mustRefuse("the old member's edit", op("H001", H, pb.Op_OP_UPDATE, map[string]string{"phone": "1"}), domain.CodePermissionDenied, "household")

	entries, err := e.Store.AuditLog(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, a := range entries {
		if a.Actor == "secretary:"+testenv.Secretary && a.Target == "H001" {
			var d map[string]any
			if err := json.Unmarshal([]byte(a.Detail), &d); err != nil {
				t.Fatal(err)
			}
			if d["member_id"] != testenv.Member2 || d["previous_member_id"] != testenv.Member || d["by"] != "周書記" {
				t.Errorf("audit detail %s", a.Detail)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("no audit entry by the secretary in %v", entries)
	}

	sec.mustApply("unlink", link(""))
	if got := linkedTo(t, e, testenv.Member2); slices.Contains(got, "H001") {
		t.Fatalf("unlinked H001 still linked: %v", got)
	}

	// The administrator's assignment writes the record too.
	admin, ctx := e.Admin()
	if _, err := admin.AssignHousehold(ctx, &pb.AssignHouseholdRequest{HouseholdId: "H001", MemberId: testenv.Member}); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, e, "H001").GetFields()["member_id"].GetValue(); got != testenv.Member {
		t.Fatalf("after AssignHousehold H001 has member_id %q", got)
	}
}

func linkedTo(t *testing.T, e *testenv.Env, member string) []string {
	t.Helper()
	hs, err := e.Store.LinkedHouseholds(t.Context(), member)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}
