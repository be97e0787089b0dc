package server_test

import (
	"testing"

	"github.com/fieldsync/fieldsync/internal/testenv"
	pb "github.com/fieldsync/fieldsync/proto/fieldsync/v1"
	"github.com/fieldsync/fieldsync/store"
)

// Disabling and enabling a person and listing or cancelling their codes
// follow the administrator's scope like every other admin action: a town
// administrator does them for its own town's people only, lists codes one
// user at a time, and the audit names the person who acted.
func TestTownAdministratorManagesOnlyItsTownsPeopleAndCodes(t *testing.T) {
	e := testenv.Start(t)
	e.ImportSample()
	importTown2(t, e)
	admin, owner := e.Admin()
	wang := createAccount(t, e, "王芳", testenv.Town)
	if _, err := admin.CreateEnrollmentCode(owner, &pb.CreateEnrollmentCodeRequest{UserId: town2Membr}); err != nil {
		t.Fatal(err)
	}

	_, err := admin.DisableUser(wang, &pb.DisableUserRequest{UserId: town2Membr})
	wantDenied(t, "disable a user of another town", err, `"U-t2-member"`, "town T02", `"王芳"`)
	_, err = admin.EnableUser(wang, &pb.EnableUserRequest{UserId: town2Membr})
	wantDenied(t, "enable a user of another town", err, "town T02")
	_, err = admin.ListEnrollmentCodes(wang, &pb.ListEnrollmentCodesRequest{UserId: town2Membr})
	wantDenied(t, "list another town's codes", err, "town T02")
	_, err = admin.ListEnrollmentCodes(wang, &pb.ListEnrollmentCodesRequest{})
	wantDenied(t, "list every code", err, "city administrator")
	_, err = admin.CancelEnrollmentCodes(wang, &pb.CancelEnrollmentCodesRequest{UserId: town2Membr})
	wantDenied(t, "cancel another town's codes", err, "town T02")
	codes, err := admin.ListEnrollmentCodes(owner, &pb.ListEnrollmentCodesRequest{UserId: town2Membr})
	if err != nil || len(codes.GetCodes()) != 1 {
		t.Fatalf("owner lists town 2's codes: %v %v", codes, err)
	}
	_, err = admin.CancelEnrollmentCodes(wang, &pb.CancelEnrollmentCodesRequest{CodeRef: codes.GetCodes()[0].GetCodeRef()})
	wantDenied(t, "cancel another town's code by reference", err, "town T02")

	// In its own town it works, and the audit names the person.
	if _, err := admin.DisableUser(wang, &pb.DisableUserRequest{UserId: testenv.Member}); err != nil {
		t.Fatalf("disable a user of its own town: %v", err)
	}
	if _, err := admin.ListEnrollmentCodes(wang, &pb.ListEnrollmentCodesRequest{UserId: testenv.Member}); err != nil {
		t.Fatalf("list its own town's user's codes: %v", err)
	}
	if _, err := admin.EnableUser(wang, &pb.EnableUserRequest{UserId: testenv.Member}); err != nil {
		t.Fatalf("enable a user of its own town: %v", err)
	}
	entries, err := e.Store.AuditLog(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var actors []string
	for _, en := range entries {
		if en.Action == store.AuditDisableUser || en.Action == store.AuditEnableUser {
			actors = append(actors, en.Actor)
		}
	}
	if len(actors) != 2 || actors[0] != "admin:王芳" || actors[1] != "admin:王芳" {
		t.Fatalf("disable/enable audited as %q, want admin:王芳 twice (and nothing for the refused calls)", actors)
	}
}
