package e2e

import (
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store"
	"github.com/fieldsync/fieldsync/syncer"
)

// Administrators' actions and revocations land in the audit log in order,
// chained by hash, never with an enrollment code in them; an entry edited
// or removed in the database file is found and named.
func TestAuditLogOfAdminActionsAndRevocation(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	member := e.Device(testenv.Member) // issues a code, then enrolls
	testenv.Sync(t, member)
	id := must[*syncer.Identity](t)(member.Identity())
	secret := e.Secret(testenv.Member2)
	admin, actx := e.Admin()
	must[*pb.AssignHouseholdResponse](t)(admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: "H001", MemberId: testenv.Member2}))
	must[*pb.RevokeDeviceResponse](t)(admin.RevokeDevice(actx, &pb.RevokeDeviceRequest{DeviceId: id.DeviceID}))
	if _, err := member.Sync(t.Context()); !errors.Is(err, syncer.ErrRevoked) {
		t.Fatalf("sync after revocation: %v", err)
	}
	// Refused actions leave no entry.
	if _, err := admin.RevokeDevice(actx, &pb.RevokeDeviceRequest{DeviceId: "dnosuchdev"}); err == nil {
		t.Fatal("revoked an unknown device")
	}
	if _, err := admin.AssignHousehold(actx, &pb.AssignHouseholdRequest{HouseholdId: "H999", MemberId: testenv.Member}); err == nil {
		t.Fatal("assigned an unknown household")
	}

	all := must[[]store.AuditEntry](t)(e.Store.AuditLog(t.Context(), 0, 100))
	// Enrollments are logged by the Enroll RPC (server/enroll.go) once it
	// calls Tx.Audit; until then there are none. Check them apart.
	var got, enrolled []store.AuditEntry
	for _, a := range all {
		if a.Action == store.AuditEnrollDevice {
			enrolled = append(enrolled, a)
			continue
		}
		got = append(got, a)
	}
	want := []struct{ actor, action, target string }{
		{"admin:owner", "import_org", "org"},
		{"admin:owner", "create_enrollment_code", testenv.Member},
		{"admin:owner", "create_enrollment_code", testenv.Member2},
		{"admin:owner", "assign_household", "H001"},
		{"admin:owner", "revoke_device", id.DeviceID},
	}
	if len(got) != len(want) {
		t.Fatalf("%d audit entries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if a := got[i]; a.Actor != w.actor || a.Action != w.action || a.Target != w.target {
			t.Fatalf("entry %d: %s %s %s, want %s %s %s", a.Seq, a.Actor, a.Action, a.Target, w.actor, w.action, w.target)
		}
	}
	detail := func(i int) map[string]any {
		var m map[string]any
		ok(t, json.Unmarshal([]byte(got[i].Detail), &m))
		return m
	}
	if d := detail(0); d["units"] != 5.0 || d["users"] != 7.0 || d["households"] != 6.0 || d["assignments"] != 6.0 || d["rejected"] != 0.0 {
		t.Errorf("import detail %s", got[0].Detail)
	}
	for _, a := range enrolled {
		var d map[string]any
		ok(t, json.Unmarshal([]byte(a.Detail), &d))
		if a.Actor != id.DeviceID || a.Target != testenv.Member || a.Seq != got[1].Seq+1 || d["code_ref"] != detail(1)["code_ref"] {
			t.Errorf("enrollment entry %+v, want device %s enrolling for %s with the code of entry %d", a, id.DeviceID, testenv.Member, got[1].Seq)
		}
	}
	if d := detail(2); d["code_ref"] != server.CodeRef(secret) || d["expires_ms"] == nil {
		t.Errorf("enrollment code detail %s, want code_ref %s", got[2].Detail, server.CodeRef(secret))
	}
	if d := detail(3); d["member_id"] != testenv.Member2 || d["previous_member_id"] != testenv.Member {
		t.Errorf("assign detail %s", got[3].Detail)
	}
	if d := detail(4); d["already_revoked"] != false {
		t.Errorf("revoke detail %s", got[4].Detail)
	}
	for _, a := range all {
		if strings.Contains(a.Detail+a.Target, secret) {
			t.Fatalf("entry %d holds the enrollment code", a.Seq)
		}
	}
	for i, a := range all {
		if a.Seq != uint64(i+1) || (i > 0 && a.PrevHash != all[i-1].Hash) || a.Hash != store.AuditHash(a) {
			t.Fatalf("entry %d is not chained to the one before", a.Seq)
		}
	}
	last := must[store.AuditEntry](t)(e.Store.VerifyAudit(t.Context()))
	if last.Seq != uint64(len(all)) {
		t.Fatalf("verified up to %d of %d entries", last.Seq, len(all))
	}

	// Someone with the database file edits the assignment's detail while
	// syncd runs: the triggers stop plain SQL, so they are dropped first.
	db := must[*sql.DB](t)(sql.Open("sqlite", "file:"+filepath.Join(e.Dir, "fieldsync.db")+"?_pragma=busy_timeout(10000)"))
	defer db.Close()
	assign := got[3]
	if _, err := db.Exec("UPDATE audit_log SET detail = '{}' WHERE seq = ?", assign.Seq); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("plain UPDATE of the audit log: %v, want refused", err)
	}
	must[sql.Result](t)(db.Exec("DROP TRIGGER audit_log_no_update"))
	must[sql.Result](t)(db.Exec("DROP TRIGGER audit_log_no_delete"))
	must[sql.Result](t)(db.Exec(`UPDATE audit_log SET detail = '{"member_id":"U-member3","previous_member_id":"U-member1"}' WHERE seq = ?`, assign.Seq))
	var ae *store.AuditError
	_, err := e.Store.VerifyAudit(t.Context())
	if !errorsAs(err, &ae) || ae.Seq != assign.Seq || !strings.HasPrefix(ae.Problem, "altered") {
		t.Fatalf("after an edit of entry %d: %v", assign.Seq, err)
	}
	t.Logf("edited: %v", err)

	// Put back, it verifies again; removed, it is named as missing.
	must[sql.Result](t)(db.Exec("UPDATE audit_log SET detail = ? WHERE seq = ?", assign.Detail, assign.Seq))
	must[store.AuditEntry](t)(e.Store.VerifyAudit(t.Context()))
	must[sql.Result](t)(db.Exec("DELETE FROM audit_log WHERE seq = ?", assign.Seq))
	_, err = e.Store.VerifyAudit(t.Context())
	if !errorsAs(err, &ae) || ae.Seq != assign.Seq || !strings.HasPrefix(ae.Problem, "removed") {
		t.Fatalf("after removing entry %d: %v", assign.Seq, err)
	}
	t.Logf("removed: %v", err)
}
